"""Preprocess raw EEG into pickled windows with MFDE knowledge weights and a manifest.

Usage::

    python preprocess/preprocess_main.py --input PATH [PATH ...] --output DIR [--config FILE]
        [--events FILE [--events-partial] | --events annotations] [--workers N] [--shard I/N]
        [--set key=value ...]

    python preprocess/preprocess_main.py --dataset NAME --input ROOT --output DIR --task TASK
        [--dataset-option key=value ...] [--config FILE] [--workers N] [--shard I/N] [--set key=value ...]

With ``--dataset`` the dataset's adapter (``preprocess/datasets/``) provides the recordings, labels,
subjects, montage and split, and the output is labelled for ``TASK`` (``DIR/events.csv``,
``DIR/split.csv``, ``DIR/dataset_summary.json`` besides the windows and the manifest).

Rows of an events CSV that name no input recording are an error (a typo would leave a recording
unlabelled), unless ``--events-partial`` says the CSV covers more recordings than this run (they are then
listed in a warning).

One run at a time per output folder and shard: a second run on the same folder is refused (naming the
other run's pid) while the first holds the folder's lock; ``--shard I/N`` runs share a folder.

Exit status: 0 when every recording succeeded, 1 when any failed (after finishing the others),
2 for usage or configuration errors (including an output folder in use by another run).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.config import CONFIG_DIR, UsageError, add_override_argument, load_config  # noqa: E402

DEFAULT_CONFIG = CONFIG_DIR / "preprocess" / "m4cea.yaml"

logger = logging.getLogger("m4cea.preprocess")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="PATH",
        help="recordings, or folders searched recursively (with --dataset: the dataset root)",
    )
    parser.add_argument(
        "--output", required=True, metavar="DIR", help="output folder (pickles + manifest.csv)"
    )
    parser.add_argument(
        "--config", metavar="FILE", help=f"YAML that changes the defaults of {DEFAULT_CONFIG.name}"
    )
    parser.add_argument(
        "--events",
        metavar="FILE",
        help="events CSV (recording, subject, onset_s, duration_s, label) or 'annotations'",
    )
    parser.add_argument(
        "--events-partial",
        action="store_true",
        help="the events CSV may name recordings that are not inputs of this run (a warning lists them)",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--shard", metavar="I/N", help="process every N-th recording from the I-th (0-based)")
    add_override_argument(parser, "notch_freq=60")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    dataset = parser.add_argument_group("datasets (preprocess/datasets/)")
    dataset.add_argument(
        "--dataset",
        metavar="NAME",
        help="read --input ROOT through this dataset's adapter (chbmit, helsinki_seizures, "
        "helsinki_artefacts, sleep_edf, cork_hie, tusz, tuev, tuar, hms, bids, csv)",
    )
    dataset.add_argument("--task", metavar="TASK", help="the fine-tuning task to label for (with --dataset)")
    dataset.add_argument(
        "--dataset-option",
        dest="dataset_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an adapter option, e.g. rule=majority (repeatable)",
    )
    return parser


def _run_dataset(args) -> int:
    """``--dataset``: labels, subjects, montage and split from the dataset's adapter."""
    from preprocess.batch import parse_shard
    from preprocess.datasets.base import parse_option
    from preprocess.datasets.prepare import prepare_dataset

    if len(args.input) != 1:
        raise UsageError(
            f"Invalid value for --input: with --dataset give the dataset's root folder, but got "
            f"{len(args.input)} paths."
        )
    if not args.task:
        raise UsageError("--dataset needs --task TASK (a task the dataset serves).")
    try:
        options = dict(parse_option(text) for text in args.dataset_options)
    except ValueError as err:  # parse_option only checks the user's text
        raise UsageError(str(err)) from None
    if args.events is not None:
        if args.dataset != "csv":
            raise UsageError(
                "--events cannot be combined with --dataset: the dataset's adapter provides the "
                "labels (use --dataset csv --events FILE for a folder with an events CSV)."
            )
        options["events"] = args.events
    summary, batch = prepare_dataset(
        args.dataset,
        args.input[0],
        args.output,
        args.task,
        args.config,
        args.overrides,
        options,
        workers=args.workers,
        shard=parse_shard(args.shard),
        progress=not args.quiet,
    )
    print(batch.to_text())
    print(summary.to_text())
    return 1 if batch.failed else 0


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    # The pipeline (MNE, SciPy) is imported when the run starts, so that --help answers at once.
    from preprocess.batch import parse_shard, run_preprocessing
    from runtime.entry import USAGE_ERRORS  # UsageError (ConfigError...), FileNotFoundError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.dataset is None and (args.task or args.dataset_options):
        print("error: --task and --dataset-option need --dataset NAME.", file=sys.stderr)
        return 2
    if args.events_partial and (args.events is None or args.events == "annotations" or args.dataset):
        print("error: --events-partial needs --events FILE (a CSV), without --dataset.", file=sys.stderr)
        return 2
    try:
        if args.dataset is not None:
            return _run_dataset(args)
        config = load_config(DEFAULT_CONFIG, args.config, args.overrides)
        summary = run_preprocessing(
            args.input,
            args.output,
            config,
            events=args.events,
            workers=args.workers,
            shard=parse_shard(args.shard),
            progress=not args.quiet,
            events_partial=args.events_partial,
        )
    except USAGE_ERRORS as err:  # bad input; anything else is a bug and shows its traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary.to_text())
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
