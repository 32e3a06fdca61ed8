"""Linear probe on frozen embeddings, with a task's split protocol, units, metrics and results.json.

Usage::

    python finetune/probe.py --embeddings OUT/embeddings.h5 --task T --seed S --output RUNS
        [--C 1.0] [--set split.protocol=subject_wise ...]

Fits a logistic regression (scikit-learn, standardised features) on the training split of the task's
split protocol (:mod:`finetune.splits`) and writes ``RUNS/<task>/seed<S>/results.json`` in the format of
fine-tuning runs, with the metrics at the task's unit: ``scripts/make_table.py RUNS`` tables probes
beside fine-tuned models. See :func:`finetune.embeddings.probe`. Exit status 2 on a usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (python finetune/probe.py): repo root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402

from runtime.config import add_override_argument  # noqa: E402

__all__ = ["get_args_parser", "main"]


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line arguments of the probe entry point."""
    parser = argparse.ArgumentParser("probe.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--embeddings", required=True, help="embeddings.h5 (finetune/embed.py)")
    parser.add_argument("--task", required=True, help="task name (configs/finetune/<task>.yaml)")
    parser.add_argument("--seed", type=int, required=True, help="run seed (solver seed)")
    parser.add_argument("--output", required=True, help="runs folder (results in <task>/seed<S>/)")
    parser.add_argument("--C", type=float, default=1.0, dest="c", help="inverse L2 strength (1.0)")
    add_override_argument(parser)
    return parser


def _setup(args):  # all the work: a usage error anywhere in it exits with status 2
    from finetune.embeddings import probe

    summary = probe(
        args.embeddings, args.task, args.seed, args.output, overrides=list(args.overrides or ()), c=args.c
    )
    text = ", ".join(f"{k} {v:.4f}" for k, v in summary["test"].items() if v is not None)
    print(f"probe {summary['task']} seed {summary['seed']}: test {text}")
    return summary


def main(argv=None) -> int:
    """Parse ``argv`` and probe; returns the exit status (0, or 2 on a usage error)."""
    args = get_args_parser().parse_args(argv)
    from runtime.entry import run_command  # torch: imported once the arguments are valid (fast --help)

    return run_command(_setup, args, prog="probe.py")


if __name__ == "__main__":
    sys.exit(main())
