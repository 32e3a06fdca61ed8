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
    "PAPER_SEEDS",
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
    """

    task: str
    variant: str | None = None
    seeds: list[int] = field(default_factory=list)
    missing_seeds: list[int] = field(default_factory=list)
    metrics: dict[str, tuple[float, float, int, int]] = field(default_factory=dict)

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


def _task_row(task: str, by_seed: Mapping[int, dict], split: str, metrics: Sequence[str],
              expected_seeds: Sequence[int], ddof: int, variant: str | None = None) -> TableRow:
    seeds = sorted(by_seed)
    row = TableRow(task=task, variant=variant, seeds=seeds,
                   missing_seeds=[s for s in expected_seeds if s not in by_seed])
    for metric in metrics:
        values = [_metric_value(by_seed[s], split, metric, f"{task}/seed{s}") for s in seeds]
        values = [v for v in values if v is not None]
        if values:
            row.metrics[metric] = (*summarise(values, ddof), len(values))
    return row


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
    rows = [_task_row(task, runs.get(task, {}), split, metrics, expected_seeds, ddof) for task in TASKS]
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
        raise ValueError(f"Invalid value for the 'variants' parameter: expected distinct variant names, "
                         f"but got {names!r} instead.")
    collected = {}
    notes = []
    for name, runs_dir in items:
        collected[name], variant_notes = collect_runs(runs_dir)
        notes += [f"[{name}] {note}" for note in variant_notes]
    rows = [_task_row(task, collected[name].get(task, {}), split, metrics, expected_seeds, ddof, variant=name)
            for task in TASKS for name in names]
    return rows, notes + _missing_notes(rows)


def _missing_notes(rows: Sequence[TableRow]) -> list[str]:
    notes = []
    for row in rows:
        label = row.task if row.variant is None else f"[{row.variant}] {row.task}"
        if row.missing:
            notes.append(f"{label}: missing (no results)")
        elif row.missing_seeds:
            notes.append(f"{label}: missing seeds {', '.join(map(str, row.missing_seeds))}")
    return notes


def _cells(row: TableRow, metrics: Sequence[str], digits: int) -> list[str]:
    if row.missing:
        return ["-"] * len(metrics)
    return [format_cell(*row.metrics[m], digits=digits) if m in row.metrics else "" for m in metrics]


def to_markdown(rows: Sequence[TableRow], metrics: Sequence[str] = METRIC_NAMES, digits: int = 4) -> str:
    """A Markdown table: task, [variant,] seeds, then one column per metric.

    The ``seeds`` column holds the number of seeds with results, or ``missing``; a missing row has ``-``
    in every metric cell.
    """
    with_variant = any(row.variant is not None for row in rows)
    header = ["task"] + (["variant"] if with_variant else []) + ["seeds"] + list(metrics)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for row in rows:
        cells = [row.task] + ([row.variant or ""] if with_variant else [])
        cells += ["missing" if row.missing else str(len(row.seeds))] + _cells(row, metrics, digits)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(
    rows: Sequence[TableRow], path: str | os.PathLike, metrics: Sequence[str] = METRIC_NAMES
) -> Path:
    """Write the table as CSV (atomically), with numbers rather than text.

    Columns: ``task``, [``variant``,] ``status`` (``ok`` | ``missing``), ``n_seeds``, ``seeds`` and
    ``missing_seeds`` (space-separated), then ``<metric>_mean``, ``<metric>_std``, ``<metric>_n`` (seeds
    defining it) per metric; a cell is empty where the value is undefined or not reported.
    """
    with_variant = any(row.variant is not None for row in rows)
    header = ["task"] + (["variant"] if with_variant else [])
    header += ["status", "n_seeds", "seeds", "missing_seeds"]
    for metric in metrics:
        header += [f"{metric}_mean", f"{metric}_std", f"{metric}_n"]

    def number(x: float) -> str:
        return repr(float(x)) if math.isfinite(x) else ""

    with atomic_write(path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            line = [row.task] + ([row.variant or ""] if with_variant else [])
            line += ["missing" if row.missing else "ok", len(row.seeds), " ".join(map(str, row.seeds)),
                     " ".join(map(str, row.missing_seeds))]
            for metric in metrics:
                if metric in row.metrics:
                    mean, std, n_defined, _ = row.metrics[metric]
                    line += [number(mean), number(std), n_defined]
                else:
                    line += ["", "", ""]
            writer.writerow(line)
    return Path(path)
