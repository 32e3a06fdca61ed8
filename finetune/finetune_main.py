"""Fine-tune M4CEA on one childhood-epilepsy task and evaluate it: one process or ``torchrun`` DDP.

Usage::

    python finetune/finetune_main.py --task T --seed S --data DIR --output DIR [--pretrained CKPT]
        [--config FILE] [--epochs N] [--linear-probe] [--overwrite] [--set key=value ...]
    torchrun --nproc_per_node=8 finetune/finetune_main.py --task hie_grading --seed 42 --data DIR ...

``T`` is one of :data:`tasks.TASKS`; ``DIR`` (``--data``, or ``data.root`` in a config file) a
labelled preprocessing output folder (``manifest.csv`` + one pickle per window, labels named as the
task's classes). The config resolves ``configs/finetune/_base.yaml`` <- ``<task>.yaml`` <- ``--config``
<- ``--set`` <- the flags (``--seed`` = ``runtime.seed``, ``--epochs`` = ``optim.epochs``,
``--linear-probe`` = ``head.linear_probe``, ``--pretrained`` = ``model.pretrained``, ``--data`` =
``data.root``). ``--pretrained`` takes this project's pretraining checkpoints
(``pretrain/pretrain_main.py``: a dict with ``"model"`` and ``"config"``), fine-tuning checkpoints, and
official M4CEA state dicts; the classification head is always new and every other key must load.

What a run does (the paper's recipe, DESIGN.md section 2, with the official code's defects fixed):
split the manifest without leakage (:mod:`finetune.splits`; the split seed is ``split.seed``, not the
training seed), AdamW with layer-wise lr decay (timm's ``create_optimizer_v2``, lr = ``base_lr *
batch_size / 256``), linear warm-up then half-cosine per optimiser step, exact gradient accumulation,
drop-path, optional class weights or a balanced sampler, label smoothing, optional linear probing
(frozen backbone); after each epoch the validation loss decides the best checkpoint
(``checkpoint-best.pth``, written atomically by rank 0) and early stopping (``early_stopping.patience``
epochs without a lower loss). The best checkpoint is then evaluated on validation and test at the task's
unit (:func:`finetune.metrics.evaluate_predictions`).

Run folder ``OUTPUT/<task>/seed<S>/``: ``results.json``, ``predictions.csv``, ``confusion_matrix.png``,
``roc.png`` (binary tasks) (:mod:`finetune.outputs`), ``checkpoint-best.pth``, ``config.yaml`` (the
resolved config), ``preprocess.yaml`` (the preprocessing config of the data folder, its ``config.yaml``,
when it has one; also stored in the checkpoint under ``"preprocess"``, so that ``finetune/predict.py``
windows new recordings exactly as the training data), ``metrics.jsonl`` (one line per epoch),
``log.txt`` and ``tensorboard/``. A folder
that holds a finished run (``results.json``) is refused unless ``--overwrite``.

Exit status 2 on a usage, config or data error (unknown task or key, wrong type, missing data folder,
labels outside the task, too few subjects for the split, a checkpoint of another architecture...),
with the message on stderr.

Layout after MAE's ``main_finetune.py`` (facebookresearch/mae): arguments here; the run set-up, the epoch
loop and the evaluation in :mod:`finetune.run`; the epoch, the evaluation pass and early stopping in
:mod:`finetune.engine`; the model and its checkpoints in :mod:`finetune.checkpoints`. torch is imported
when the run starts, so ``--help`` answers at once.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script (python finetune/finetune_main.py, torchrun ...): put the repo root on the path.
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402

from runtime.config import add_override_argument  # noqa: E402
from tasks import TASKS  # noqa: E402

__all__ = ["DEFAULT_OUTPUT", "cli", "get_args_parser", "main"]

#: Default ``--output``: runs land in ``runs/finetune/<task>/seed<S>/``.
DEFAULT_OUTPUT = "runs/finetune"


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line arguments of the fine-tuning entry point."""
    parser = argparse.ArgumentParser(
        "finetune_main.py",
        description="Fine-tune M4CEA on a childhood-epilepsy task; evaluate it on a leakage-free test split.",
    )
    parser.add_argument("--task", required=True, help=f"task name, one of: {', '.join(TASKS)}")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="training seed (runtime.seed; paper: 42 2024 3407 4399 114514); the split seed is split.seed",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="labelled preprocessing output folder (manifest.csv + pickles); default: data.root "
        "of the config",
    )
    parser.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        help="runs folder; the run goes to OUTPUT/<task>/seed<S>/ (default: %(default)s)",
    )
    parser.add_argument(
        "--pretrained",
        default=None,
        help="checkpoint to start from: this project's pretraining checkpoint or an official "
        "M4CEA state dict (model.pretrained)",
    )
    parser.add_argument("--config", default=None, help="YAML that changes the task's defaults")
    parser.add_argument("--epochs", type=int, default=None, help="number of epochs (optim.epochs)")
    parser.add_argument(
        "--linear-probe",
        action="store_true",
        help="freeze the backbone, train the head only (head.linear_probe)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in the run folder")
    add_override_argument(parser, "optim.base_lr=5e-4 split.protocol=patient_specific")
    return parser


def main(argv: list[str] | None = None) -> dict | None:
    """Run fine-tuning and evaluation with command-line arguments ``argv`` (default ``sys.argv[1:]``).

    Returns
    -------
    results : dict | None
        What ``results.json`` holds (NaN as float NaN) on rank 0; None on other ranks.

    Raises
    ------
    ConfigError, ValueError, TypeError, FileNotFoundError
        On usage, config and data errors (before training starts).
    FloatingPointError
        If the training or validation loss becomes non-finite.
    """
    from finetune.run import setup_run, train_and_evaluate
    from runtime.entry import run_entry

    return run_entry(setup_run, train_and_evaluate, get_args_parser().parse_args(argv))


def cli(argv: list[str] | None = None) -> int:
    """Command-line entry: like :func:`main`, but usage/config/data errors print a message and return 2."""
    args = get_args_parser().parse_args(argv)  # argparse exits with status 2 itself
    from finetune.run import setup_run, train_and_evaluate
    from runtime.entry import run_entry

    return run_entry(setup_run, train_and_evaluate, args, prog="finetune_main.py")


if __name__ == "__main__":
    sys.exit(cli())
