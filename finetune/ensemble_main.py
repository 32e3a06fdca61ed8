"""Gated ensemble of fine-tuned runs (EnECG): a gate over frozen members, trained on the training split.

Usage::

    python finetune/ensemble_main.py --task T --seed S --data DIR --members RUN [RUN ...] --output DIR
        [--config FILE] [--epochs N] [--overwrite] [--set key=value ...]

``RUN`` are finished fine-tuning run folders (``OUTPUT/<task>/seed<S>``) of any models, trained for the
same task, classes, split and seed (anything else is an error naming the member). The options and config
keys are finetune_main.py's where they apply (``optim.*``, ``early_stopping.*``, ``runtime.seed``), plus
``ensemble.*`` (configs/finetune/_base.yaml): ``inputs`` (``probabilities``, or ``features`` through a
trainable FFN head per member, as EnECG), ``gate_inputs`` (``outputs``, ``channels``: a small network on
``gate_channels`` of the window signal, or ``both``), ``gate_hidden``, ``head_hidden``; the split is the
members'. Runs under ``torchrun --nproc_per_node=N`` (DDP; gloo on CPU), only rank 0 writing. The run
folder ``OUTPUT/<task>/seed<S>/`` gets ``results.json`` (as any run, plus ``members``,
``gate.mean_weights`` and the ``baselines`` uniform average and best single member),
``predictions.csv``, ``checkpoint-best.pth`` (the gate) and ``config.yaml``. The library code is
:mod:`finetune.ensemble`, :mod:`finetune.ensemble_members` and :mod:`finetune.ensemble_run`.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402

from runtime.config import add_override_argument  # noqa: E402
from tasks import TASKS  # noqa: E402

__all__ = ["cli", "get_args_parser", "main"]


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line arguments of the ensemble entry point."""
    parser = argparse.ArgumentParser("ensemble_main.py", description="Gated ensemble of fine-tuned runs.")
    parser.add_argument("--task", required=True, help=f"task name, one of: {', '.join(TASKS)}")
    parser.add_argument("--seed", type=int, default=None, help="seed (runtime.seed); the members' seed")
    parser.add_argument("--data", default=None, help="the members' labelled preprocessing output folder")
    parser.add_argument("--members", nargs="+", required=True, help="fine-tuning run folders (two or more)")
    parser.add_argument("--output", default="runs/ensemble", help="runs folder (default: %(default)s)")
    parser.add_argument("--config", default=None, help="YAML that changes the task's defaults")
    parser.add_argument("--epochs", type=int, default=None, help="gate training epochs (optim.epochs)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in the run folder")
    add_override_argument(parser, "optim.base_lr=1e-2 ensemble.gate_hidden=8")
    return parser


def _setup(args):
    from finetune.ensemble import ENSEMBLE_INPUTS, GATE_INPUTS
    from finetune.run import check_config, resolve_config
    from runtime.config import check_values
    from tasks import get_task

    args.linear_probe, args.pretrained = False, None
    cfg = resolve_config(args)
    check_config(cfg)
    check_values(
        cfg,
        {
            "ensemble.inputs": (lambda v: v in ENSEMBLE_INPUTS, f"one of {list(ENSEMBLE_INPUTS)}"),
            "ensemble.gate_inputs": (lambda v: v in GATE_INPUTS, f"one of {list(GATE_INPUTS)}"),
            "ensemble.gate_hidden": (lambda v: v >= 0, ">= 0"),
            "ensemble.head_hidden": (lambda v: v >= 0, ">= 0"),
            "ensemble.gate_channels": (
                lambda v: all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in v),
                "a list of channel names or 0-based indices",
            ),
        },
    )
    return args, cfg, get_task(args.task, cfg)


def _train(setup):
    from finetune.ensemble_run import run_ensemble

    return run_ensemble(*setup)


def main(argv: list[str] | None = None) -> dict:
    """Run the ensemble with ``argv`` (default ``sys.argv[1:]``); returns what ``results.json`` holds.

    Raises
    ------
    ValueError, FileNotFoundError
        On usage, config and member errors.
    """
    from runtime.entry import run_entry

    return run_entry(_setup, _train, get_args_parser().parse_args(argv))


def cli(argv: list[str] | None = None) -> int:
    """Command-line entry: usage/config/member errors print a message and return 2."""
    from runtime.entry import run_entry

    return run_entry(_setup, _train, get_args_parser().parse_args(argv), prog="ensemble_main.py")


if __name__ == "__main__":
    sys.exit(cli())
