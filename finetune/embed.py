"""Frozen-backbone embeddings of every window of a preprocessing output folder, and their UMAP figure.

Usage::

    python finetune/embed.py --checkpoint CKPT --data DIR --output OUT [--tokens] [--model NAME]
        [--batch-size 64] [--workers 0] [--device cuda] [--no-figure] [--quiet]

``CKPT`` is this project's pretraining or fine-tuning checkpoint, or an official M4CEA or LaBraM
checkpoint (``--model`` names its size when the file carries no config). Windows are adapted to the
model's input contract (LaBraM: 200 Hz, uV / 100). Writes ``OUT/embeddings.h5`` (mean over tokens,
float32 (n_windows, dim), with ``path``, ``subject``, ``recording``, ``start_s``, ``label`` in manifest
order; ``--tokens`` adds every token), ``OUT/embedding_space.png`` (UMAP coloured by label and by
subject) and ``OUT/separation.json`` (silhouettes by label and by subject). See
:mod:`finetune.embeddings`. Exit status 2 on a usage error (missing file, unfit checkpoint).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (python finetune/embed.py): repo root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["get_args_parser", "main"]


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line arguments of the embedding entry point."""
    parser = argparse.ArgumentParser("embed.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint file (this project's or official)")
    parser.add_argument("--data", required=True, help="preprocessing output folder (manifest.csv)")
    parser.add_argument("--output", required=True, help="folder for embeddings.h5 and the figure")
    parser.add_argument("--tokens", action="store_true", help="also store every token's embedding")
    parser.add_argument("--model", default=None, help="model size of a checkpoint without config")
    parser.add_argument("--batch-size", type=int, default=64, help="windows per forward pass (64)")
    parser.add_argument("--workers", type=int, default=0, help="loader worker processes (0)")
    parser.add_argument("--device", default=None, help="cuda, cpu... (default: cuda when available)")
    parser.add_argument("--n-neighbors", type=int, default=15, help="UMAP neighbourhood size (15)")
    parser.add_argument("--projection", choices=("umap", "pca"), default="umap", help="figure's projection")
    parser.add_argument("--no-figure", action="store_true", help="skip the UMAP figure and the scores")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _setup(args):  # all the work: a usage error anywhere in it exits with status 2
    from finetune.embeddings import embed_folder, embedding_space

    path = embed_folder(
        args.checkpoint,
        args.data,
        args.output,
        tokens=args.tokens,
        model_name=args.model,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=args.device,
        progress=not args.quiet,
    )
    if not args.no_figure:
        scores = embedding_space(path, args.output, n_neighbors=args.n_neighbors, projection=args.projection)
        print(f"separation: {scores}")
    print(f"embeddings: {path}")
    return path


def main(argv=None) -> int:
    """Parse ``argv`` and embed; returns the exit status (0, or 2 on a usage error)."""
    args = get_args_parser().parse_args(argv)
    from runtime.entry import run_command  # torch: imported once the arguments are valid (fast --help)

    return run_command(_setup, args, prog="embed.py")


if __name__ == "__main__":
    sys.exit(main())
