"""Apply a fine-tuned M4CEA model to new recordings: probabilities, events, annotations, figures.

Usage::

    python finetune/predict.py --checkpoint RUN_DIR_OR_CKPT --input PATH [PATH ...] --output DIR
        [--config FILE] [--set key=value ...] [--quiet]

``--checkpoint`` is a fine-tuning run folder (``OUTPUT/<task>/seed<S>/`` of ``finetune/finetune_main.py``)
or its ``checkpoint-best.pth``; the task, classes and model come from it, and so does the preprocessing
of its training data (montage, filters, sampling rate, window length), so that new recordings are windowed
exactly as the training data were. ``--input`` takes recordings in any format the preprocessing reads
(EDF/BDF/GDF, FIF, BrainVision, EEGLAB, CNT, Nihon Kohden...) or folders searched for them. The config
resolves ``configs/predict/default.yaml`` <- ``--config`` <- ``--set`` (stride, batch size, threshold,
smoothing, minimum duration and merge gap of events, device, figure; ``--set preprocess.notch_freq=60``
changes the preprocessing).

Each recording gets a folder ``DIR/<recording_id>/`` (per-window probabilities CSV, events TSV with MNE
and EDF+ annotations for the detection tasks, a hypnogram for sleep staging, the recording's class for
HIE grading and syndrome classification, the spike-wave index for SWI quantification, a PNG figure and a
JSON summary; see :mod:`finetune.predict_outputs`); ``DIR/predict_summary.json`` lists the batch.

Exit status: 0 when every recording was annotated; 1 when some failed (each is reported with its file
and reason, and the batch goes on); 2 on a usage error (missing or unusable checkpoint, unknown config
key or bad value, missing input), with the message on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (python finetune/predict.py): repo root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import logging  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

from runtime.config import add_override_argument  # noqa: E402
from runtime.logging import setup_logging  # noqa: E402

if TYPE_CHECKING:  # torch and the model are imported when prediction starts: --help answers at once
    from finetune.predict_outputs import BatchResult
    from finetune.predictor import Predictor

__all__ = ["cli", "get_args_parser", "main"]

logger = logging.getLogger("finetune.predict")


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line arguments of the prediction entry point."""
    parser = argparse.ArgumentParser(
        "predict.py",
        description="Apply a fine-tuned M4CEA model to new EEG recordings: window probabilities, events "
        "(TSV, MNE and EDF+ annotations), hypnograms, recording classes, figures.",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="fine-tuning run folder (OUTPUT/<task>/seed<S>/) or its checkpoint-best.pth",
    )
    parser.add_argument(
        "--input",
        required=True,
        nargs="+",
        metavar="PATH",
        help="recordings, or folders searched recursively for recordings",
    )
    parser.add_argument(
        "--output", required=True, metavar="DIR", help="output folder (one sub-folder per recording)"
    )
    parser.add_argument("--config", default=None, help="YAML that changes configs/predict/default.yaml")
    add_override_argument(parser, "stride_s=2 min_duration_s=10 merge_gap_s=8 preprocess.notch_freq=60")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _setup(args: argparse.Namespace) -> Predictor:
    import torch

    from finetune.predict_config import load_predict_config, without_events
    from finetune.predictor import Predictor, load_finetuned

    config = load_predict_config(args.config, args.overrides)
    if config["num_threads"] is not None:
        torch.set_num_threads(config["num_threads"])
    finetuned = load_finetuned(args.checkpoint)
    predictor = Predictor(finetuned, config)
    logger.info(
        "%s (%s, classes %s) from %s; windows of %g s every %g s (preprocessing: %s); %s, autocast %s.",
        finetuned.model_name,
        finetuned.task.name,
        ", ".join(finetuned.task.classes),
        finetuned.checkpoint,
        predictor.window_s,
        predictor.stride_s,
        finetuned.preprocess_source,
        predictor.device,
        predictor.amp,
    )
    no_events = without_events(finetuned.task)
    if no_events:
        logger.info(no_events)
    return predictor


def main(argv: list[str] | None = None) -> BatchResult:
    """Run prediction with command-line arguments ``argv`` (default ``sys.argv[1:]``).

    Returns
    -------
    result : BatchResult
        Recordings done and failed.

    Raises
    ------
    ConfigError, ValueError, TypeError, FileNotFoundError
        On usage errors (before any recording is read).
    """
    from finetune.predict_batch import run_batch

    args = get_args_parser().parse_args(argv)
    setup_logging(0)
    predictor = _setup(args)
    return run_batch(args.input, args.output, predictor, progress=not args.quiet)


def cli(argv: list[str] | None = None) -> int:
    """Command-line entry: like :func:`main`, with exit status 0 (all done), 1 (some failed), 2 (usage)."""
    args = get_args_parser().parse_args(argv)  # argparse exits with status 2 itself
    from finetune.predict_batch import run_batch
    from runtime.entry import USAGE_ERRORS

    setup_logging(0)
    try:
        predictor = _setup(args)
        result = run_batch(args.input, args.output, predictor, progress=not args.quiet)
    except USAGE_ERRORS as err:
        print(f"predict.py: error: {err}", file=sys.stderr)
        return 2
    for path, reason in result.failed:
        print(f"FAILED {path}: {reason}", file=sys.stderr)
    print(
        f"{len(result.done)} recording(s) annotated, {len(result.failed)} failed, in {result.time_s:.1f} s "
        f"-> {args.output}",
        file=sys.stderr,
    )
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(cli())
