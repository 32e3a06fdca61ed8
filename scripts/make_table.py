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

Ensemble runs (``finetune/ensemble_main.py``, ``model.name: ensemble``) get two more rows after theirs,
from their ``results.json["baselines"]``: the uniform average of the members (``<name>: uniform average``)
and the best single member by validation loss (``<name>: best member``), on the same test windows, so the
gate's gain is visible; the notes say which member was best per seed and the gate's mean weights.
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
    collect_runs,
    comparison_table,
    main_table,
    paired_difference,
    task_row,  # one table row from {seed: results}: the rows of the ensembles' baselines
    to_markdown,
    write_csv,
)
from tasks import METRIC_NAMES  # noqa: E402

#: The rows after an ensemble's: ``results.json["baselines"]`` key and row label.
ENSEMBLE_BASELINES = (("uniform", "uniform average"), ("best_single", "best member"))


def ensemble_baselines(runs_dir) -> tuple[dict, list[str]]:
    """The baselines of the ensemble runs of a runs folder, as results per baseline, task and seed.

    Parameters
    ----------
    runs_dir : path-like
        A runs folder of the main layout.

    Returns
    -------
    baselines : dict
        ``key -> task -> seed -> results`` (the run's ``results.json`` with ``test`` and ``val`` the
        baseline's), for the keys of :data:`ENSEMBLE_BASELINES`; empty when the folder holds no ensemble.
    notes : list of str
        Per task: the best member of each seed and the gate's mean weights over the seeds.
    """
    runs, _ = collect_runs(runs_dir)
    baselines: dict = {}
    notes = []
    for task, by_seed in runs.items():
        best, weights = {}, {}
        for seed, results in sorted(by_seed.items()):
            found = results.get("baselines") if isinstance(results.get("baselines"), dict) else {}
            for key, _ in ENSEMBLE_BASELINES:
                if isinstance(found.get(key), dict) and isinstance(found[key].get("test"), dict):
                    base = {**results, "test": found[key]["test"], "val": found[key].get("val") or {}}
                    baselines.setdefault(key, {}).setdefault(task, {})[seed] = {**base, "warnings": []}
            if isinstance(found.get("best_single"), dict):
                best.setdefault(str(found["best_single"].get("model")), []).append(seed)
            members = [m.get("model") for m in results.get("members") or [] if isinstance(m, dict)]
            gate = results.get("gate") if isinstance(results.get("gate"), dict) else {}
            for model, w in zip(members, gate.get("mean_weights") or [], strict=False):
                weights.setdefault(model, []).append(float(w))
        if best:
            listed = "; ".join(f"{model} (seeds {', '.join(map(str, s))})" for model, s in best.items())
            notes.append(f"{task}: best member by validation loss: {listed}")
        if weights:
            listed = ", ".join(f"{model} {sum(w) / len(w):.3f}" for model, w in weights.items())
            notes.append(f"{task}: gate mean weights on the test split (mean over seeds): {listed}")
    return baselines, notes


def _baseline_rows(baselines, task, name, options, as_variant=True) -> list:
    rows = []
    for key, label in ENSEMBLE_BASELINES:
        by_seed = baselines.get(key, {}).get(task)
        if by_seed:
            label = f"{name}: {label}" if name else label
            row = task_row(task, by_seed, options["split"], options["metrics"], options["expected_seeds"], 1)
            if as_variant:
                row.variant = label
            else:
                row.model = label
            rows.append(row)
    return rows


def with_ensemble_baselines(rows, folders, options, mode, test="ttest") -> tuple[list, list[str]]:
    """Insert the ensembles' baseline rows after their rows (:data:`ENSEMBLE_BASELINES`).

    Parameters
    ----------
    rows : list of TableRow
        A main, ablation or comparison table.
    folders : list of (name, path)
        The table's runs folders and the name their rows carry (``row.variant`` in the ablation table,
        ``row.model`` in the comparison table, None in the main table).
    options : dict
        ``split``, ``metrics``, ``expected_seeds``.
    mode : {"main", "ablation", "comparison"}
    test : str
        Paired test of the comparison table's differences to each task's first row.

    Returns
    -------
    rows : list of TableRow
    notes : list of str
    """
    found, notes, read = {}, [], {}
    for name, path in folders:
        if path not in read:
            read[path] = ensemble_baselines(path)
            notes += [f"[{name or path}] {note}" for note in read[path][1]]
        if read[path][0]:
            found[name] = read[path][0]
    if not found:
        return rows, []
    out, reference = [], {}
    for row in rows:
        out.append(row)
        reference.setdefault(row.task, row)
        name = {"main": None, "ablation": row.variant, "comparison": row.model}[mode]
        if name not in found or row.missing:
            continue
        for extra in _baseline_rows(found[name], row.task, name, options, as_variant=mode != "comparison"):
            if mode == "comparison":
                first = reference[row.task]
                extra.diff = {
                    m: paired_difference(extra.values[m], first.values[m], test)
                    for m in extra.values
                    if m in first.values
                }
            out.append(extra)
    return out, notes


def _comparison_labels(run_dirs) -> list[tuple[str, str]]:
    """(row label, folder) of every model of each folder, labelled as :func:`comparison_table` does: the
    model name, or ``name (folder)`` when two folders hold the model (both labels are listed)."""
    labels = []
    for folder in run_dirs:
        runs, _ = collect_runs(folder)
        configs = [r.get("config") for by_seed in runs.values() for r in by_seed.values()]
        models = {
            c["model"].get("name")
            for c in configs
            if isinstance(c, dict) and isinstance(c.get("model"), dict)
        }
        for name in sorted(m for m in models if isinstance(m, str)):
            labels += [(name, folder), (f"{name} ({Path(folder).name})", folder)]
    return labels


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
            rows, extra = with_ensemble_baselines(rows, [(None, runs_dir)], options, "main")
            notes += extra
            csv_path = write_csv(rows, args.csv or Path(runs_dir) / "table_main.csv", args.metrics)
            title = f"Main table ({args.split}, mean ± std over seeds): {runs_dir}"
            _print(title, rows, notes, csv_path, args)
        elif args.runs_dir:
            rows, notes = comparison_table(args.runs_dir, test=args.test, **options)
            folders = _comparison_labels(args.runs_dir)
            rows, extra = with_ensemble_baselines(rows, folders, options, "comparison", args.test)
            notes += extra
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
            rows, extra = with_ensemble_baselines(rows, args.ablation, options, "ablation")
            notes += extra
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
