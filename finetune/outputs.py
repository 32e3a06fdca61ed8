"""What a fine-tuning run leaves behind: ``results.json``, ``predictions.csv`` and figures.

Layout of one run folder, ``OUTPUT/<task>/seed<S>/`` (read by :mod:`finetune.report`)::

    results.json        {"task", "seed",
                         "test": {metric: value}, "val": {metric: value},   (NaN written as null)
                         "confusion_matrix": {"classes", "unit", "test": [[...]], "val": [[...]]},
                         "undefined": {"test": {metric: reason}, "val": {...}},
                         "n_units": {"test": n, "val": n},
                         "event_scoring": {"test": {...}, "val": {...}},   (tasks with event metrics:
                             SzCORE event and sample scores against DATA/events.csv, per recording and
                             in total; finetune.event_evaluation.score_recordings)
                         "n": {split: {units, subjects, recordings, windows, per_class, duration_s}},
                         "ci95": {test metric: [low, high]}, "bootstrap": {how ci95 was made},
                         "warnings": [why the test figures are not a result yet],
                         "split": Split.describe(), "checkpoint": {...}, "training": {...},
                         "config": resolved config}
    predictions.csv     one row per val and test window: split, path, subject, recording, start_s,
                        label, predicted, p_<class> for each class
    confusion_matrix.png   test confusion matrix at the task's unit
    roc.png                test ROC curve at the task's unit (binary tasks, when both classes occur)

Confusion matrices: rows are true classes, columns predicted classes, both in ``task.classes`` order.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from finetune.report import RESULTS_FILE
from runtime.files import atomic_write
from tasks import Task, aggregate, predict

__all__ = [
    "PREDICTIONS_FILE",
    "RESULTS_FILE",
    "json_safe",
    "plot_confusion_matrix",
    "plot_roc",
    "split_results",
    "write_predictions",
    "write_results",
]

PREDICTIONS_FILE = "predictions.csv"


def json_safe(value):
    """``value`` with NaN/inf floats replaced by None and numpy scalars and arrays made plain (recursive)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def split_results(task: Task, seed: int, evaluated: Mapping) -> dict:
    """The first keys of ``results.json``: the validation and test figures at the task's unit.

    Parameters
    ----------
    task : Task
    seed : int
        The run's seed.
    evaluated : Mapping
        ``"val"`` and ``"test"``: :func:`finetune.metrics.evaluate_predictions` of each split, with its
        ``"loss"`` added.

    Returns
    -------
    results : dict
        ``task``, ``seed``, ``test`` and ``val`` (the task's metrics and ``loss``), ``confusion_matrix``
        (``classes``, ``unit``, ``test``, ``val``), ``undefined`` and ``n_units`` (per split), in the
        layout of the module docstring.
    """
    metric_names = [*task.metrics, "loss"]
    return {
        "task": task.name,
        "seed": seed,
        "test": {m: evaluated["test"][m] for m in metric_names},
        "val": {m: evaluated["val"][m] for m in metric_names},
        "confusion_matrix": {
            "classes": list(task.classes),
            "unit": task.unit,
            "test": evaluated["test"]["confusion_matrix"],
            "val": evaluated["val"]["confusion_matrix"],
        },
        "undefined": {name: evaluated[name]["undefined"] for name in ("val", "test")},
        "n_units": {name: evaluated[name]["n_units"] for name in ("val", "test")},
    }


def write_results(path: str | os.PathLike, results: Mapping) -> Path:
    """Write ``results`` as standard JSON (NaN as null), atomically."""
    with atomic_write(path, "w") as f:
        json.dump(json_safe(results), f, indent=1, allow_nan=False)
        f.write("\n")
    return Path(path)


def write_predictions(
    path: str | os.PathLike, task: Task, parts: Sequence[tuple[str, Sequence[Mapping], np.ndarray]]
) -> Path:
    """Write per-window predictions as CSV, atomically.

    Parameters
    ----------
    path : path-like
    task : Task
    parts : sequence of (split name, rows, probabilities)
        ``probabilities`` (n_rows, n_classes) in the order of ``rows``.

    Returns
    -------
    path : Path
        Columns ``split, path, subject, recording, start_s, label, predicted, p_<class>...``;
        ``predicted`` is the window's class by :func:`tasks.predict`.
    """
    header = ["split", "path", "subject", "recording", "start_s", "label", "predicted"]
    header += [f"p_{name}" for name in task.classes]
    with atomic_write(path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for split, rows, probabilities in parts:
            predicted = predict(task, probabilities)
            for row, p, c in zip(rows, probabilities, predicted, strict=True):
                writer.writerow(
                    [
                        split,
                        row["path"],
                        row["subject"],
                        row["recording"],
                        repr(float(row["start_s"])),
                        row["label"],
                        task.classes[c],
                        *(repr(float(v)) for v in p),
                    ]
                )
    return Path(path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(
    path: str | os.PathLike, task: Task, matrix: Sequence[Sequence[int]], title: str = ""
) -> Path:
    """Save a confusion matrix (counts of units; rows true, columns predicted) as a PNG."""
    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=np.int64)
    size = 2.5 + 0.7 * task.n_classes
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ticks = np.arange(task.n_classes)
    ax.set_xticks(ticks, task.classes, rotation=45, ha="right")
    ax.set_yticks(ticks, task.classes)
    ax.set_xlabel(f"predicted ({task.unit})")
    ax.set_ylabel(f"true ({task.unit})")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(task.n_classes):
        for j in range(task.n_classes):
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                color="white" if matrix[i, j] > threshold else "black",
            )
    ax.set_title(title or f"{task.name}\ntest confusion matrix", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_roc(
    path: str | os.PathLike,
    task: Task,
    rows: Sequence[Mapping],
    probabilities: np.ndarray,
    auroc: float | None = None,
    title: str = "",
) -> Path | None:
    """Save the ROC curve of the positive class at the task's unit as a PNG (binary tasks).

    ``title``: the figure's title (default: the task and unit; runs add n, see :mod:`finetune.run`).

    Returns
    -------
    path : Path | None
        None (nothing written) when the task is multi-class or the units hold one class only (the ROC
        curve is undefined).
    """
    if not task.is_binary:
        return None
    from sklearn.metrics import roc_curve

    units = aggregate(task, rows, probabilities)
    positive = units.labels == task.positive_index
    if positive.all() or not positive.any():
        return None
    fpr, tpr, _ = roc_curve(positive, units.probabilities[:, task.positive_index])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    label = "ROC" if auroc is None or not math.isfinite(auroc) else f"ROC (AUROC {auroc:.3f})"
    ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel(f"true positive rate ({task.positive_class})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right")
    ax.set_title(title or f"{task.name}\ntest ROC per {task.unit}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
