"""Pretrain M4CEA with knowledge-guided masking: one process (CPU or one GPU) or ``torchrun`` DDP.

Usage::

    python pretrain/pretrain_main.py --config configs/pretrain/m4cea_base.yaml --data DIR --output DIR \\
        [--epochs N] [--resume CKPT] [--set key=value ...]
    torchrun --nproc_per_node=8 pretrain/pretrain_main.py --config configs/pretrain/m4cea_base.yaml ...

``DIR`` (``--data``) is a preprocessing output folder (``manifest.csv`` + one pickle per window).
LaBraM's two stages run through the same entry point: ``--config configs/pretrain/vqnsp_base.yaml``
(tokenizer training) and ``--config configs/pretrain/labram_base.yaml --set model.tokenizer=CKPT``
(masked code prediction); the family of ``model.name`` chooses the schema and the engine
(:mod:`pretrain.run_labram`, :mod:`pretrain.engine_labram`).
The output folder receives ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one line per
epoch, averaged over ranks), ``log.txt``, ``tensorboard/`` and the checkpoints
``checkpoint-NNNN.pth`` (NNNN = epochs done) and ``checkpoint-last.pth``.

Exit status 2 on a usage or config error (unknown key, wrong type, missing file, data of another
shape, a batch size the accumulation cannot reach...), with the message on stderr.

Layout after MAE's ``main_pretrain.py`` (facebookresearch/mae): arguments here; the run set-up, epoch
loop and checkpoints in :mod:`pretrain.run`; the epoch itself in :mod:`pretrain.engine`. torch is
imported when the run starts, so ``--help`` answers at once.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script (python pretrain/pretrain_main.py, torchrun ...): put the repo root on the path.
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402

from runtime.config import CONFIG_DIR, add_override_argument  # noqa: E402

__all__ = ["DEFAULT_CONFIG", "cli", "get_args_parser", "main"]

#: The pretraining schema and defaults (also :data:`pretrain.run.DEFAULT_CONFIG`).
DEFAULT_CONFIG = CONFIG_DIR / "pretrain" / "m4cea_base.yaml"


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line arguments of the pretraining entry point."""
    parser = argparse.ArgumentParser(
        "pretrain_main.py",
        description="Pretrain M4CEA (knowledge-guided masked spectrum reconstruction) or LaBraM "
        "(VQ-NSP tokenizer, masked code prediction) on a preprocessing output folder.",
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (default: %(default)s)")
    parser.add_argument("--data", required=True, help="preprocessing output folder (manifest.csv + pickles)")
    parser.add_argument("--output", required=True, help="run folder: config, logs, checkpoints")
    parser.add_argument("--epochs", type=int, default=None, help="number of epochs (overrides optim.epochs)")
    parser.add_argument("--resume", default=None, help="checkpoint to continue from (checkpoint-*.pth)")
    add_override_argument(parser, "optim.base_lr=5e-4 model.depth=6")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    """Run pretraining with command-line arguments ``argv`` (default ``sys.argv[1:]``).

    Returns
    -------
    history : list of dict
        The metrics of each epoch run (also in ``OUTPUT/metrics.jsonl``).

    Raises
    ------
    ConfigError, ValueError, TypeError, FileNotFoundError
        On usage and config errors (before training starts).
    FloatingPointError
        If the loss becomes non-finite.
    """
    from pretrain.run import setup_run, train
    from runtime.entry import run_entry

    return run_entry(setup_run, train, get_args_parser().parse_args(argv))


def cli(argv: list[str] | None = None) -> int:
    """Command-line entry: like :func:`main`, but usage/config errors print a message and return 2."""
    args = get_args_parser().parse_args(argv)  # argparse exits with status 2 itself
    from pretrain.run import setup_run, train
    from runtime.entry import run_entry

    return run_entry(setup_run, train, args, prog="pretrain_main.py")


if __name__ == "__main__":
    sys.exit(cli())
