"""The paper-style tables: mean +/- std over seeds of every task's test metrics.

Layout read (written by ``finetune/finetune_main.py``)::

    RUNS_DIR/<task>/seed<S>/results.json     {"test": {metric: value}, "val": {...}, "confusion_matrix",
                                              "split", "config", "checkpoint"}

**Main table** (:func:`main_table`): one row per task of :data:`tasks.TASKS`, in that order; a task
without any results is a row marked missing, never dropped. A cell is ``mean ± std`` over the seeds found,
the std being the sample standard deviation (``ddof=1``, as :func:`statistics.stdev`); with one seed the
cell is the value alone. NaN values (an undefined metric, see :mod:`finetune.metrics`) are left out of the
mean and the cell says over how many seeds it is taken, e.g. ``0.8000 ± 0.0100 (3/5)``; ``undefined`` when
no seed has a value; empty when the task does not report the metric. Seeds of :data:`PAPER_SEEDS` that
have no ``results.json`` are listed as missing.

**Ablation table** (:func:`ablation_table`): the same for several variants, each a runs folder of the main
layout, named on the command line: ``--ablation NAME=RUNS_DIR ...`` (e.g. ``full=runs/full
no_tie=runs/no_tie random_mask=runs/random_mask``). Variants are pretraining choices (TIE on/off,
knowledge-guided or random masking) that a results file cannot tell apart, so their names are the
user's. Rows: each task, then each variant in the order given.

**Evidence** (issue #11): every table has an ``n`` column, the test split's units and subjects from
``results.json["n"]`` (the seeds share one test set; differing values are all listed), and the notes
repeat each task's ``warnings`` (test split too small to be a result) and any subjects in two splits
(``split.subject_overlap``, accepted with ``split.allow_subject_overlap``); the CSV has ``n_units``,
``n_subjects`` and ``subject_overlap``.

**Comparison table** (:func:`comparison_table`, ``make_table.py RUN_DIR RUN_DIR ...``): one row per
model and task, the model named by each run's config (``model.name``; the folder name is added when two
folders hold the same model), rows of a task in the order of the folders. Every row after a task's first
gets, per metric, the difference to the first row (mean over the seeds both have, of this row minus the
first) and a paired test over those seeds: the paired t-test (:func:`scipy.stats.ttest_rel`, default) or
the Wilcoxon signed-rank test (:func:`scipy.stats.wilcoxon`, exact for few pairs). What it can show:
with the paper's 5 seeds the test asks whether the difference is larger than the spread that training
randomness (initialisation, order) gives **on this one test set**; it says nothing about other children
(that uncertainty is ``ci95``, over subjects). Five pairs are few: the smallest two-sided Wilcoxon p is
2/32 = 0.0625, so it can never reach 0.05; the t-test (4 degrees of freedom) can, but assumes roughly
normal differences, and a p-value is not the size of the effect.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.files import atomic_write
from tasks import METRIC_NAMES, TASKS

__all__ = [
    "PAIRED_TESTS",
    "PAPER_SEEDS",
    "comparison_table",
    "paired_difference",
    "RESULTS_FILE",
    "TableRow",
    "ablation_table",
    "collect_runs",
    "format_cell",
    "main_table",
    "summarise",
    "to_markdown",
    "write_csv",
]

#: The five fine-tuning seeds of the paper (DESIGN.md section 1).
PAPER_SEEDS = (42, 2024, 3407, 4399, 114514)

#: File name of one run's results.
RESULTS_FILE = "results.json"

_SEED_DIR = re.compile(r"^seed(\d+)$")

#: Paired tests over seeds of :func:`paired_difference`.
PAIRED_TESTS = ("ttest", "wilcoxon")


@dataclass
class TableRow:
    """One row of a table: a task (and variant) with its metrics summarised over seeds.

    Attributes
    ----------
    task : str
    variant : str | None
        Ablation variant name; None in the main table.
    seeds : list of int
        Seeds with results, sorted.
    missing_seeds : list of int
        Expected seeds without results.
    metrics : dict
        Metric name -> (mean, std, n_defined, n_seeds); metrics the runs do not report are absent.
    model : str | None
        Model name (comparison table).
    n_units, n_subjects : list of int
        Distinct sizes of the test split over the seeds (one value: the seeds share the test set).
    subject_overlap : dict
        Subjects in two splits (``split.subject_overlap`` of any seed) -> splits.
    warnings : list of str
        Distinct ``warnings`` of the seeds' results.
    values : dict
        Metric -> {seed: value} (NaN when undefined), for paired comparisons.
    diff : dict
        Comparison table, rows after a task's first: metric -> (mean difference to the first row,
        p-value of the paired test, number of pairs).
    """

    task: str
    variant: str | None = None
    seeds: list[int] = field(default_factory=list)
    missing_seeds: list[int] = field(default_factory=list)
    metrics: dict[str, tuple[float, float, int, int]] = field(default_factory=dict)
    model: str | None = None
    n_units: list[int] = field(default_factory=list)
    n_subjects: list[int] = field(default_factory=list)
    subject_overlap: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    values: dict[str, dict[int, float]] = field(default_factory=dict)
    diff: dict[str, tuple[float, float, int]] = field(default_factory=dict)

    @property
    def missing(self) -> bool:
        """True when no seed of the task has results."""
        return not self.seeds


def _read_results(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"Results file {path} is not valid JSON: {err}") from None
    if not isinstance(results, dict) or not isinstance(results.get("test"), dict):
        raise ValueError(f"Results file {path} has no 'test' mapping of metric name to value.")
    return results


def collect_runs(runs_dir: str | os.PathLike) -> tuple[dict[str, dict[int, dict]], list[str]]:
    """Read every ``<task>/seed<S>/results.json`` of a runs folder.

    Parameters
    ----------
    runs_dir : path-like
        A folder of fine-tuning outputs.

    Returns
    -------
    runs : dict
        ``task -> {seed: results}`` for the tasks of :data:`TASKS` that have at least one results file.
    notes : list of str
        What was not read and why: folders that are not tasks, task folders entries that are not
        ``seed<S>``, seed folders without ``results.json`` (an unfinished or failed run).

    Raises
    ------
    FileNotFoundError
        If ``runs_dir`` is not a folder.
    ValueError
        If a ``results.json`` is not valid JSON or has no ``test`` mapping (names the file).
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"Runs folder not found: {runs_dir}")
    runs: dict[str, dict[int, dict]] = {}
    notes = []
    for entry in sorted(runs_dir.iterdir()):
        if not entry.is_dir():
            continue
        if entry.name not in TASKS:
            notes.append(f"{entry}: not a task folder (tasks: {', '.join(TASKS)}), ignored")
            continue
        for seed_dir in sorted(entry.iterdir()):
            match = _SEED_DIR.match(seed_dir.name)
            if not seed_dir.is_dir() or match is None:
                notes.append(f"{seed_dir}: not a seed<S> folder, ignored")
                continue
            results_path = seed_dir / RESULTS_FILE
            if not results_path.is_file():
                notes.append(f"{seed_dir}: no {RESULTS_FILE} (run unfinished or failed)")
                continue
            runs.setdefault(entry.name, {})[int(match.group(1))] = _read_results(results_path)
    return runs, notes


def summarise(values: Sequence[float], ddof: int = 1) -> tuple[float, float, int]:
    """Mean and standard deviation of the defined (finite) values.

    Parameters
    ----------
    values : sequence of float
        One value per seed; NaN for undefined.
    ddof : int
        Delta degrees of freedom of the std (1: sample std, as :func:`statistics.stdev`).

    Returns
    -------
    mean, std : float
        NaN when no value is defined; std NaN when fewer than ``ddof + 1`` values are.
    n_defined : int
        Number of finite values.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), 0
    std = float(np.std(x, ddof=ddof)) if x.size > ddof else float("nan")
    return float(np.mean(x)), std, int(x.size)


def format_cell(mean: float, std: float, n_defined: int, n_seeds: int, digits: int = 4) -> str:
    """Text of one table cell.

    Returns
    -------
    text : str
        ``"0.8123 ± 0.0123"``; ``"0.8123"`` when the std is undefined (one seed); ``" (3/5)"`` appended
        when only 3 of 5 seeds define the metric; ``"undefined"`` when none does.
    """
    if n_defined == 0:
        return "undefined"
    text = f"{mean:.{digits}f}" if not math.isfinite(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"
    return text if n_defined == n_seeds else f"{text} ({n_defined}/{n_seeds})"


def _metric_value(results: dict, split: str, metric: str, source: str) -> float | None:
    if not isinstance(results.get(split), dict):
        raise ValueError(f"Results of {source} have no '{split}' mapping of metric name to value.")
    if metric not in results[split]:
        return None
    value = results[split][metric]
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"Results of {source}: '{split}.{metric}' should be a number, but got {value!r}.")
    return float(value)


def task_row(
    task: str,
    by_seed: Mapping[int, dict],
    split: str,
    metrics: Sequence[str],
    expected_seeds: Sequence[int],
    ddof: int,
    variant: str | None = None,
) -> TableRow:
    """One table row: a task's metrics summarised over seeds.

    Parameters
    ----------
    task : str
        Task name (tasks.TASKS).
    by_seed : mapping of int to dict
        ``{seed: results.json}`` of the task's runs.
    split : str
        The split whose metrics are read (``test``).
    metrics : sequence of str
        Metric names, in column order.
    expected_seeds : sequence of int
        Seeds the protocol asks for; those without a run are listed as missing.
    ddof : int
        Delta degrees of freedom of the standard deviation over seeds.
    variant : str, optional
        The row's label beside the task (a model, an ablation, an ensemble baseline).

    Returns
    -------
    TableRow
        ``metrics[name] = (mean, std, n_seeds)`` for each metric present in at least one run.
    """
    seeds = sorted(by_seed)
    row = TableRow(
        task=task, variant=variant, seeds=seeds, missing_seeds=[s for s in expected_seeds if s not in by_seed]
    )
    for metric in metrics:
        by_value = {s: _metric_value(by_seed[s], split, metric, f"{task}/seed{s}") for s in seeds}
        by_value = {s: v for s, v in by_value.items() if v is not None}
        if by_value:
            row.metrics[metric] = (*summarise(list(by_value.values()), ddof), len(by_value))
            row.values[metric] = by_value
    for s in seeds:
        results = by_seed[s]
        n_test = (results.get("n") or {}).get(split) or {}
        units = n_test.get("units", (results.get("n_units") or {}).get(split))
        if units is not None and units not in row.n_units:
            row.n_units.append(units)
        if n_test.get("subjects") is not None and n_test["subjects"] not in row.n_subjects:
            row.n_subjects.append(n_test["subjects"])
        split_info = results.get("split") if isinstance(results.get("split"), dict) else {}
        row.subject_overlap.update(split_info.get("subject_overlap") or {})
        row.warnings += [w for w in results.get("warnings") or [] if w not in row.warnings]
    return row


def _n_text(row: TableRow) -> str:
    """``"40 units, 8 subjects"`` (values differing over seeds joined by ``/``); empty when unknown."""
    parts = []
    if row.n_units:
        parts.append(f"{'/'.join(map(str, row.n_units))} units")
    if row.n_subjects:
        plural = "" if row.n_subjects == [1] else "s"
        parts.append(f"{'/'.join(map(str, row.n_subjects))} subject{plural}")
    text = ", ".join(parts)
    return f"{text}; overlap" if row.subject_overlap else text


def main_table(
    runs_dir: str | os.PathLike,
    split: str = "test",
    metrics: Sequence[str] = METRIC_NAMES,
    expected_seeds: Sequence[int] = PAPER_SEEDS,
    ddof: int = 1,
) -> tuple[list[TableRow], list[str]]:
    """Rows of the main table: every task of :data:`TASKS`, in order, summarised over seeds.

    Parameters
    ----------
    runs_dir : path-like
        ``RUNS_DIR/<task>/seed<S>/results.json``.
    split : {"test", "val"}
        Which results to tabulate.
    metrics : sequence of str
        Metric columns, in order.
    expected_seeds : sequence of int
        Seeds reported as missing when absent.
    ddof : int
        Delta degrees of freedom of the std.

    Returns
    -------
    rows : list of TableRow
        One per task of :data:`TASKS` (``row.missing`` for tasks without results).
    notes : list of str
        What was ignored (:func:`collect_runs`) and which seeds are missing per task.
    """
    runs, notes = collect_runs(runs_dir)
    rows = [task_row(task, runs.get(task, {}), split, metrics, expected_seeds, ddof) for task in TASKS]
    return rows, notes + _missing_notes(rows)


def ablation_table(
    variants: Mapping[str, str | os.PathLike] | Sequence[tuple[str, str | os.PathLike]],
    split: str = "test",
    metrics: Sequence[str] = METRIC_NAMES,
    expected_seeds: Sequence[int] = PAPER_SEEDS,
    ddof: int = 1,
) -> tuple[list[TableRow], list[str]]:
    """Rows of the ablation table: every task x every variant.

    Parameters
    ----------
    variants : mapping or sequence of (name, runs_dir)
        Variant name -> runs folder of the main layout, in table order (e.g. ``full``, ``no_tie``,
        ``random_mask``).
    split, metrics, expected_seeds, ddof
        As in :func:`main_table`.

    Returns
    -------
    rows : list of TableRow
        For each task of :data:`TASKS`, one row per variant (``row.variant``), missing ones included.
    notes : list of str
        As in :func:`main_table`, prefixed with the variant.

    Raises
    ------
    ValueError
        If no variant is given or a name repeats.
    """
    items = list(variants.items()) if isinstance(variants, Mapping) else list(variants)
    names = [name for name, _ in items]
    if not items or len(set(names)) != len(names):
        raise ValueError(
            f"Invalid value for the 'variants' parameter: expected distinct variant names, "
            f"but got {names!r} instead."
        )
    collected = {}
    notes = []
    for name, runs_dir in items:
        collected[name], variant_notes = collect_runs(runs_dir)
        notes += [f"[{name}] {note}" for note in variant_notes]
    rows = [
        task_row(task, collected[name].get(task, {}), split, metrics, expected_seeds, ddof, variant=name)
        for task in TASKS
        for name in names
    ]
    return rows, notes + _missing_notes(rows)


def _label(row: TableRow) -> str:
    name = row.variant if row.variant is not None else row.model
    return row.task if name is None else f"[{name}] {row.task}"


def _missing_notes(rows: Sequence[TableRow]) -> list[str]:
    notes = []
    for row in rows:
        label = _label(row)
        if row.missing:
            notes.append(f"{label}: missing (no results)")
        elif row.missing_seeds:
            notes.append(f"{label}: missing seeds {', '.join(map(str, row.missing_seeds))}")
        if row.subject_overlap:
            listed = "; ".join(f"{s} in {' and '.join(n)}" for s, n in sorted(row.subject_overlap.items()))
            notes.append(f"{label}: subjects in two splits (split.allow_subject_overlap): {listed}")
        notes += [f"{label}: {warning}" for warning in row.warnings]
    return notes


def _cells(row: TableRow, metrics: Sequence[str], digits: int) -> list[str]:
    if row.missing:
        return ["-"] * len(metrics)
    cells = []
    for m in metrics:
        text = format_cell(*row.metrics[m], digits=digits) if m in row.metrics else ""
        if m in row.diff:
            diff, p, pairs = row.diff[m]
            p_text = f"p {p:.3g}" if math.isfinite(p) else "p undefined"
            text += f"; Δ {diff:+.{digits}f} ({p_text}, {pairs} pairs)" if math.isfinite(diff) else "; Δ -"
        cells.append(text)
    return cells


def to_markdown(rows: Sequence[TableRow], metrics: Sequence[str] = METRIC_NAMES, digits: int = 4) -> str:
    """A Markdown table: task, [variant,] seeds, then one column per metric.

    The ``seeds`` column holds the number of seeds with results, or ``missing``; ``n (test)`` the test
    split's units and subjects (``; overlap`` when subjects are in two splits); a missing row has ``-``
    in every metric cell. Comparison rows add ``; Δ +0.0123 (p 0.04, 5 pairs)`` to their cells.
    """
    with_variant = any(row.variant is not None for row in rows)
    with_model = any(row.model is not None for row in rows)
    header = (["model"] if with_model else []) + ["task"] + (["variant"] if with_variant else [])
    header += ["seeds", "n (test)"] + list(metrics)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for row in rows:
        cells = ([row.model or ""] if with_model else []) + [row.task]
        cells += [row.variant or ""] if with_variant else []
        cells += ["missing" if row.missing else str(len(row.seeds)), _n_text(row)]
        cells += _cells(row, metrics, digits)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(
    rows: Sequence[TableRow], path: str | os.PathLike, metrics: Sequence[str] = METRIC_NAMES
) -> Path:
    """Write the table as CSV (atomically), with numbers rather than text.

    Columns: [``model``,] ``task``, [``variant``,] ``status`` (``ok`` | ``missing``), ``n_seeds``,
    ``seeds`` and ``missing_seeds`` (space-separated), ``n_units``, ``n_subjects`` (test split),
    ``subject_overlap`` (``subject:train+val ...``), then ``<metric>_mean``, ``<metric>_std``,
    ``<metric>_n`` (seeds defining it) per metric, and in comparison tables ``<metric>_diff``,
    ``<metric>_p``, ``<metric>_pairs``; a cell is empty where the value is undefined or not reported.
    """
    with_variant = any(row.variant is not None for row in rows)
    with_model = any(row.model is not None for row in rows)
    with_diff = any(row.diff for row in rows)
    header = (["model"] if with_model else []) + ["task"] + (["variant"] if with_variant else [])
    header += ["status", "n_seeds", "seeds", "missing_seeds", "n_units", "n_subjects", "subject_overlap"]
    for metric in metrics:
        header += [f"{metric}_mean", f"{metric}_std", f"{metric}_n"]
        header += [f"{metric}_diff", f"{metric}_p", f"{metric}_pairs"] if with_diff else []

    def number(x: float) -> str:
        return repr(float(x)) if math.isfinite(x) else ""

    with atomic_write(path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            line = ([row.model or ""] if with_model else []) + [row.task]
            line += [row.variant or ""] if with_variant else []
            line += [
                "missing" if row.missing else "ok",
                len(row.seeds),
                " ".join(map(str, row.seeds)),
                " ".join(map(str, row.missing_seeds)),
                " ".join(map(str, row.n_units)),
                " ".join(map(str, row.n_subjects)),
                " ".join(f"{s}:{'+'.join(n)}" for s, n in sorted(row.subject_overlap.items())),
            ]
            for metric in metrics:
                if metric in row.metrics:
                    mean, std, n_defined, _ = row.metrics[metric]
                    line += [number(mean), number(std), n_defined]
                else:
                    line += ["", "", ""]
                if with_diff:
                    diff = row.diff.get(metric)
                    line += ["", "", ""] if diff is None else [number(diff[0]), number(diff[1]), diff[2]]
            writer.writerow(line)
    return Path(path)


def paired_difference(
    values: Mapping[int, float], reference: Mapping[int, float], test: str = "ttest"
) -> tuple[float, float, int]:
    """Difference of a row to the reference row over the seeds both have, with a paired test.

    Parameters
    ----------
    values, reference : mapping of int to float
        Seed -> metric value (NaN when undefined) of the row and of the reference (first) row.
    test : {"ttest", "wilcoxon"}
        :func:`scipy.stats.ttest_rel` (paired t-test) or :func:`scipy.stats.wilcoxon` (signed-rank,
        exact distribution for few pairs, two-sided).

    Returns
    -------
    diff : float
        Mean over the paired seeds of ``values - reference`` (NaN without pairs).
    p : float
        Two-sided p-value; NaN with fewer than 2 pairs or when every difference is 0.
    n_pairs : int
        Seeds where both values are defined.

    Raises
    ------
    ValueError
        If ``test`` is not one of :data:`PAIRED_TESTS`.
    """
    from scipy import stats

    if test not in PAIRED_TESTS:
        raise ValueError(
            f"Invalid value for the 'test' parameter. Allowed values are {list(PAIRED_TESTS)}, "
            f"but got {test!r} instead."
        )
    seeds = sorted(
        s for s in values if s in reference and math.isfinite(values[s]) and math.isfinite(reference[s])
    )
    x = np.array([values[s] for s in seeds], dtype=np.float64)
    y = np.array([reference[s] for s in seeds], dtype=np.float64)
    if not seeds:
        return float("nan"), float("nan"), 0
    diff = float(np.mean(x - y))
    if len(seeds) < 2 or np.all(x == y):
        return diff, float("nan"), len(seeds)
    if test == "ttest":
        p = stats.ttest_rel(x, y).pvalue
    else:
        p = stats.wilcoxon(x, y, alternative="two-sided").pvalue
    return diff, float(p), len(seeds)


def _model_name(results: Mapping, source: str) -> str:
    config = results.get("config") if isinstance(results.get("config"), Mapping) else {}
    model = config.get("model") if isinstance(config.get("model"), Mapping) else {}
    name = model.get("name") or results.get("model")
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"Results of {source} name no model (config.model.name): the comparison table "
            f"needs it to label the row."
        )
    return name


def comparison_table(
    run_dirs: Sequence[str | os.PathLike],
    split: str = "test",
    metrics: Sequence[str] = METRIC_NAMES,
    expected_seeds: Sequence[int] = PAPER_SEEDS,
    ddof: int = 1,
    test: str = "ttest",
) -> tuple[list[TableRow], list[str]]:
    """Rows of the comparison table: one per model and task, with differences to each task's first row.

    Parameters
    ----------
    run_dirs : sequence of path-like
        Runs folders of the main layout (``<task>/seed<S>/results.json``), in table order: the first
        folder holding a task gives that task's reference row.
    split, metrics, expected_seeds, ddof
        As in :func:`main_table`.
    test : {"ttest", "wilcoxon"}
        Paired test over seeds (:func:`paired_difference`).

    Returns
    -------
    rows : list of TableRow
        Tasks in :data:`TASKS` order (tasks no folder holds are left out), then the folders' order;
        ``row.model`` set, ``row.diff`` on every row after a task's first.
    notes : list of str
        As in :func:`main_table`, labelled ``[model] task``, and the test used.

    Raises
    ------
    ValueError
        If fewer than two folders are given, a folder repeats, or a results file names no model.
    """
    dirs = [Path(d) for d in run_dirs]
    if len(dirs) < 2 or len({d.resolve() for d in dirs}) != len(dirs):
        raise ValueError(
            f"Invalid value for the 'run_dirs' parameter: expected two or more distinct runs "
            f"folders, but got {[str(d) for d in dirs]}."
        )
    notes: list[str] = []
    found: list[tuple[str, str, Path, dict]] = []  # (task, model, folder, seed -> results)
    for folder in dirs:
        runs, folder_notes = collect_runs(folder)
        notes += [f"[{folder}] {note}" for note in folder_notes]
        for task, by_seed in runs.items():
            by_model: dict[str, dict[int, dict]] = {}
            for seed, results in by_seed.items():
                model = _model_name(results, f"{folder}/{task}/seed{seed}")
                by_model.setdefault(model, {})[seed] = results
            found += [(task, model, folder, seeds) for model, seeds in by_model.items()]
    names = [(task, model) for task, model, _, _ in found]
    rows = []
    for task in TASKS:
        reference = None
        for t, model, folder, by_seed in found:
            if t != task:
                continue
            label = f"{model} ({folder.name})" if names.count((task, model)) > 1 else model
            row = task_row(task, by_seed, split, metrics, expected_seeds, ddof)
            row.model = label
            if reference is None:
                reference = row
            else:
                row.diff = {
                    m: paired_difference(row.values[m], reference.values[m], test)
                    for m in row.values
                    if m in reference.values
                }
            rows.append(row)
    test_name = "paired t-test" if test == "ttest" else "Wilcoxon signed-rank test"
    notes.append(
        f"Δ: mean difference to the task's first row over the seeds both have; p: two-sided "
        f"{test_name} over those seeds (training randomness on one test set, not other children)."
    )
    return rows, notes + _missing_notes(rows)
