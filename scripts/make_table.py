"""Print the paper-style tables of fine-tuning runs (mean ± std over seeds) and write them as CSV.

Usage::

    python scripts/make_table.py RUNS_DIR                       # main table, CSV in RUNS_DIR/table_main.csv
    python scripts/make_table.py runs/m4cea runs/labram --seeds 42 2024 3407 4399 114514   # comparison
    python scripts/make_table.py --ablation full=runs/full no_tie=runs/no_tie random_mask=runs/random_mask

``RUNS_DIR`` holds ``<task>/seed<S>/results.json`` (``finetune/finetune_main.py --output RUNS_DIR``). The
main table has one row per task, in the registry's order, missing tasks included; the ablation table has
one row per task and variant, each variant a runs folder of the same layout (``NAME=RUNS_DIR``, e.g. runs
fine-tuned from checkpoints pretrained with TIE on/off, knowledge-guided or random masking). With two or
more RUNS_DIRs, the comparison table: one row per model (``model.name`` of the runs) and task, and for
every row after a task's first the difference to it with a paired test over seeds (``--test ttest``,
the paired t-test, or ``wilcoxon``; with 5 seeds Wilcoxon's smallest p is 0.0625). Every table shows the
test split's n and notes its warnings. Conventions: :mod:`finetune.report`. Exit status: 0, or 2 on a
usage error or an unreadable results file.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: repo root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import os  # noqa: E402

from finetune.report import (  # noqa: E402
    PAIRED_TESTS,
    PAPER_SEEDS,
    ablation_table,
    comparison_table,
    main_table,
    to_markdown,
    write_csv,
)
from tasks import METRIC_NAMES  # noqa: E402


def _variant(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(
            f"expected NAME=RUNS_DIR (e.g. no_tie=runs/no_tie), but got {text!r}"
        )
    return name, path


def _metric_list(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METRIC_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"allowed metrics are {', '.join(METRIC_NAMES)}, but got {text!r}")
    return names


def _seed_list(text: str) -> list[int]:
    """``"42,2024"`` or ``"42"`` -> seeds (``--seeds 42 2024`` and ``--seeds 42,2024`` both work)."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integer seeds like 42 2024 or 42,2024, but got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "runs_dir",
        nargs="*",
        help="folder(s) of <task>/seed<S>/results.json: one gives the "
        "main table, several the comparison table (first folder = reference rows)",
    )
    parser.add_argument(
        "--ablation",
        nargs="+",
        type=_variant,
        metavar="NAME=RUNS_DIR",
        help="ablation variants, each a runs folder, in table order",
    )
    parser.add_argument("--split", choices=("test", "val"), default="test", help="results to tabulate")
    parser.add_argument(
        "--metrics",
        type=_metric_list,
        default=list(METRIC_NAMES),
        help="comma-separated metric columns (default: all)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=_seed_list,
        action="extend",
        default=None,
        metavar="SEED",
        help="expected seeds, reported when missing: 42 2024 or 42,2024 "
        f"(default: {' '.join(map(str, PAPER_SEEDS))})",
    )
    parser.add_argument(
        "--test",
        choices=PAIRED_TESTS,
        default="ttest",
        help="paired test over seeds of the comparison table (default: ttest)",
    )
    parser.add_argument("--digits", type=int, default=4, help="decimals in the Markdown table")
    parser.add_argument(
        "--csv",
        help="main table CSV (default RUNS_DIR/table_main.csv; comparison: "
        "table_comparison.csv in the folders' common parent)",
    )
    parser.add_argument(
        "--ablation-csv",
        help="ablation CSV (default: table_ablation.csv in the variants' common parent folder)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.runs_dir and not args.ablation:
        parser.error("give RUNS_DIR [RUNS_DIR ...], --ablation NAME=RUNS_DIR ..., or both")
    seeds = list(PAPER_SEEDS) if args.seeds is None else [seed for part in args.seeds for seed in part]
    options = dict(split=args.split, metrics=args.metrics, expected_seeds=seeds)
    try:
        if len(args.runs_dir) == 1:
            runs_dir = args.runs_dir[0]
            rows, notes = main_table(runs_dir, **options)
            csv_path = write_csv(rows, args.csv or Path(runs_dir) / "table_main.csv", args.metrics)
            title = f"Main table ({args.split}, mean ± std over seeds): {runs_dir}"
            _print(title, rows, notes, csv_path, args)
        elif args.runs_dir:
            rows, notes = comparison_table(args.runs_dir, test=args.test, **options)
            metrics = [m for m in args.metrics if any(m in row.metrics for row in rows)] or args.metrics
            parent = Path(os.path.commonpath([Path(p).resolve() for p in args.runs_dir]))
            csv_path = write_csv(rows, args.csv or parent / "table_comparison.csv", metrics)
            title = (
                f"Comparison table ({args.split}, mean ± std over seeds; Δ to each task's first row, "
                f"{args.test} over seeds): {', '.join(args.runs_dir)}"
            )
            _print(title, rows, notes, csv_path, args, metrics)
        if args.ablation:
            rows, notes = ablation_table(args.ablation, **options)
            parent = Path(os.path.commonpath([Path(p).resolve() for _, p in args.ablation]))
            csv_path = write_csv(rows, args.ablation_csv or parent / "table_ablation.csv", args.metrics)
            variants = ", ".join(f"{name}={path}" for name, path in args.ablation)
            title = f"Ablation table ({args.split}, mean ± std over seeds): {variants}"
            _print(title, rows, notes, csv_path, args)
    except (FileNotFoundError, ValueError) as err:
        print(f"make_table.py: error: {err}", file=sys.stderr)
        return 2
    return 0


def _print(title, rows, notes, csv_path, args, metrics=None) -> None:
    print(f"\n{title}\n")
    print(to_markdown(rows, metrics or args.metrics, args.digits))
    if notes:
        print("\nNotes:")
        for note in notes:
            print(f"- {note}")
    print(f"\nCSV: {csv_path}")


if __name__ == "__main__":
    sys.exit(main())
