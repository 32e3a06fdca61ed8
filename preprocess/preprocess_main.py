"""Preprocess raw EEG into pickled windows with MFDE knowledge weights and a manifest.

Usage::

    python preprocess/preprocess_main.py --input PATH [PATH ...] --output DIR [--config FILE]
        [--events FILE | --events annotations] [--workers N] [--shard I/N] [--set key=value ...]

Exit status: 0 when every recording succeeded, 1 when any failed (after finishing the others),
2 for usage or configuration errors.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from preprocess.batch import parse_shard, run_preprocessing  # noqa: E402
from runtime.config import CONFIG_DIR, ConfigError, load_config  # noqa: E402

DEFAULT_CONFIG = CONFIG_DIR / "preprocess" / "m4cea.yaml"

logger = logging.getLogger("m4cea.preprocess")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", nargs="+", required=True, metavar="PATH",
                        help="recordings, or folders searched recursively")
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder (pickles + manifest.csv)")
    parser.add_argument("--config", metavar="FILE", help=f"YAML that changes the defaults of {DEFAULT_CONFIG.name}")
    parser.add_argument("--events", metavar="FILE",
                        help="events CSV (recording, subject, onset_s, duration_s, label) or 'annotations'")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--shard", metavar="I/N", help="process every N-th recording from the I-th (0-based)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set notch_freq=60 (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(DEFAULT_CONFIG, args.config, args.overrides)
        summary = run_preprocessing(
            args.input, args.output, config, events=args.events, workers=args.workers,
            shard=parse_shard(args.shard), progress=not args.quiet,
        )
    except (ConfigError, ValueError, FileNotFoundError, PermissionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary.to_text())
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
