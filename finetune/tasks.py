"""The eight childhood-epilepsy tasks: classes, unit of evaluation, aggregation and metrics.

One :class:`Task` dataclass; the eight entries are data, configured by ``configs/finetune/<task>.yaml``
over ``configs/finetune/_base.yaml`` (DESIGN.md section 5). A cohort renames or adds classes in its own
``--config`` (``task.classes``).

Every task predicts one probability vector per window; the task's **unit** says what is evaluated:

========== ======================================================== =========================================
unit       a manifest row (window) belongs to                       true label of the unit
========== ======================================================== =========================================
window     itself, key ``(recording, start_s)``                     the window's label
epoch      ``(recording, floor(start_s / epoch_s))`` (30-s epochs)  majority of its windows' labels (ties: the
                                                                    class listed first in ``task.classes``)
event      ``(recording, k)``: the k-th run (in time) of contiguous the run's label
           windows with the same label in one recording
recording  ``(row["recording"],)``                                  the label of its windows, which must agree
subject    ``(row["subject"],)``                                    the label of its windows, which must agree
========== ======================================================== =========================================

The unit's class probabilities are the **mean of its windows' class probabilities**; the unit's
prediction is the class of highest mean probability (multi-class tasks) or the positive class when its
mean probability is at least ``task.threshold`` (binary tasks). Windows of one recording are
**contiguous** when their starts (``start_s``, sorted) differ by at most the stride (``task.stride_s``;
by default the window length ``n_times / sfreq`` of the earlier window); a larger gap (a rejected or
unlabelled window) ends a run.

Manifest rows are dicts as returned by :func:`preprocess.segments.read_manifest`: ``path``, ``subject``,
``recording``, ``start_s`` (float, s), ``label`` (str | None), ``n_chans``, ``n_times``, ``sfreq`` (Hz).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.config import CONFIG_DIR, load_config

__all__ = [
    "BASE_CONFIG",
    "BINARY_METRICS",
    "FINETUNE_CONFIG_DIR",
    "METRIC_NAMES",
    "TASKS",
    "UNITS",
    "Task",
    "Units",
    "aggregate",
    "check_probabilities",
    "contiguous_segments",
    "encode_labels",
    "get_task",
    "list_tasks",
    "load_task_config",
    "predict",
    "recording_timelines",
    "task_config_path",
    "unit_index",
    "window_durations",
]

#: The eight tasks, in the order of the paper's tables (DESIGN.md section 5).
TASKS = (
    "artifact_detection",
    "onset_detection",
    "seizure_type",
    "syndrome_classification",
    "hie_grading",
    "sleep_staging",
    "epileptiform_detection",
    "swi_quantification",
)

#: Units of evaluation.
UNITS = ("window", "epoch", "event", "recording", "subject")

#: Every metric :func:`finetune.metrics.evaluate_predictions` computes, in table order.
METRIC_NAMES = (
    "balanced_accuracy",
    "auroc",
    "auprc",
    "cohen_kappa",
    "weighted_f1",
    "event_sensitivity",
    "false_alarms_per_hour",
    "swi_mae",
    "swi_pearson_r",
)

#: Metrics that need a binary task (two classes and a positive class).
BINARY_METRICS = ("auroc", "auprc", "event_sensitivity", "false_alarms_per_hour", "swi_mae", "swi_pearson_r")

#: ``configs/finetune``: ``_base.yaml`` (defaults and schema) and one ``<task>.yaml`` per task.
FINETUNE_CONFIG_DIR = CONFIG_DIR / "finetune"
BASE_CONFIG = FINETUNE_CONFIG_DIR / "_base.yaml"

# Two start times closer than this (s) are the same instant (start_s comes from CSV text).
_TIME_TOL_S = 1e-6


def _allowed(name: str, allowed: Sequence, got) -> str:
    return (f"Invalid value for the '{name}' parameter. Allowed values are {list(allowed)}, "
            f"but got {got!r} instead.")


@dataclass(frozen=True)
class Task:
    """One fine-tuning task: its classes, unit of evaluation and metrics.

    Parameters
    ----------
    name : str
        Task name (one of :data:`TASKS` when made by :func:`get_task`).
    classes : tuple of str
        Class names as written in the manifest's ``label`` column; position = output index of the head.
    unit : str
        Unit of evaluation, one of :data:`UNITS` (see the module docstring).
    metrics : tuple of str
        Metrics reported, names from :data:`METRIC_NAMES`.
    positive_class : str | None
        Binary tasks (two classes): the class scored by AUROC, AUPRC, the event and SWI metrics.
        Must be None for multi-class tasks.
    threshold : float
        Binary tasks: a window or unit is predicted positive when its (mean) probability of the positive
        class is at least ``threshold``. In [0, 1].
    epoch_s : float
        Length of an ``epoch`` unit in s (30 s for sleep staging).
    window_s : float | None
        Window length in s; None: ``n_times / sfreq`` of each row.
    stride_s : float | None
        Largest difference of consecutive window starts (s) for two windows of one recording to be
        contiguous; None: the earlier window's length.
    smoothing_k, smoothing_n : int
        Event metrics: a window is positive when at least ``smoothing_k`` of the last ``smoothing_n``
        contiguous windows (itself included) are above the threshold; 1 of 1 means no smoothing.

    Raises
    ------
    ValueError
        On an empty or duplicated class list, an unknown unit or metric, a binary-only metric on a
        multi-class task, a missing or unknown positive class, or an out-of-range number.
    """

    name: str
    classes: tuple[str, ...]
    unit: str
    metrics: tuple[str, ...]
    positive_class: str | None = None
    threshold: float = 0.5
    epoch_s: float = 30.0
    window_s: float | None = None
    stride_s: float | None = None
    smoothing_k: int = 1
    smoothing_n: int = 1

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Invalid value for the 'name' parameter: expected a task name, "
                             f"but got {self.name!r}.")
        where = f"of the task '{self.name}'"
        if len(self.classes) < 2 or not all(isinstance(c, str) and c for c in self.classes):
            raise ValueError(f"Invalid value for 'task.classes' {where}: expected at least two class names, "
                             f"but got {list(self.classes)!r} instead.")
        duplicated = sorted({c for c in self.classes if self.classes.count(c) > 1})
        if duplicated:
            raise ValueError(f"Invalid value for 'task.classes' {where}: {duplicated} listed more than once.")
        if self.unit not in UNITS:
            raise ValueError(_allowed("task.unit", UNITS, self.unit))
        if not self.metrics:
            raise ValueError(f"Invalid value for 'task.metrics' {where}: expected at least one of "
                             f"{list(METRIC_NAMES)}, but got an empty list.")
        for metric in self.metrics:
            if metric not in METRIC_NAMES:
                raise ValueError(_allowed("task.metrics", METRIC_NAMES, metric))
        if len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"Invalid value for 'task.metrics' {where}: a metric is listed twice "
                             f"({list(self.metrics)}).")
        if self.is_binary:
            if self.positive_class not in self.classes:
                raise ValueError(
                    f"Invalid value for 'task.positive_class' {where}: a binary task needs one of its "
                    f"classes {list(self.classes)}, but got {self.positive_class!r} instead."
                )
        else:
            if self.positive_class is not None:
                raise ValueError(
                    f"Invalid value for 'task.positive_class' {where}: a task with {self.n_classes} classes "
                    f"is multi-class and has no positive class (set it to null), but got "
                    f"{self.positive_class!r}."
                )
            binary_only = [m for m in self.metrics if m in BINARY_METRICS]
            if binary_only:
                raise ValueError(
                    f"Invalid value for 'task.metrics' {where}: {binary_only} need a binary task (two "
                    f"classes), but the task has {self.n_classes} classes {list(self.classes)}. "
                    f"Multi-class metrics: balanced_accuracy, cohen_kappa, weighted_f1."
                )
        if not isinstance(self.threshold, (int, float)) or not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"Invalid value for 'task.threshold' {where}: expected a number in [0, 1], "
                             f"but got {self.threshold!r} instead.")
        for key in ("epoch_s", "window_s", "stride_s"):
            value = getattr(self, key)
            if value is None and key != "epoch_s":
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"Invalid value for 'task.{key}' {where}: expected a positive number of "
                                 f"seconds, but got {value!r} instead.")
        k, n = self.smoothing_k, self.smoothing_n
        if not (isinstance(k, int) and isinstance(n, int) and 1 <= k <= n):
            raise ValueError(f"Invalid value for 'task.events' {where}: expected integers "
                             f"1 <= smoothing_k <= smoothing_n, but got k={k!r}, n={n!r} instead.")

    @property
    def n_classes(self) -> int:
        """Number of classes (outputs of the head)."""
        return len(self.classes)

    @property
    def is_binary(self) -> bool:
        """True for two-class tasks (scored on the positive class), False for multi-class tasks."""
        return len(self.classes) == 2

    @property
    def positive_index(self) -> int | None:
        """Index of :attr:`positive_class` in :attr:`classes` (None for multi-class tasks)."""
        return None if self.positive_class is None else self.classes.index(self.positive_class)

    @classmethod
    def from_config(cls, section: Mapping) -> Task:
        """Build a task from the ``task`` section of a resolved fine-tuning config.

        Parameters
        ----------
        section : mapping
            Keys ``name``, ``classes``, ``unit``, ``metrics`` and optionally ``positive_class``,
            ``threshold``, ``epoch_s``, ``window_s``, ``stride_s``, ``events`` (``smoothing_k``,
            ``smoothing_n``), as in ``configs/finetune/_base.yaml``.

        Returns
        -------
        task : Task

        Raises
        ------
        ValueError
            On a missing or unknown key, or an invalid value (see :class:`Task`).
        """
        section = dict(section)
        events = section.pop("events", None) or {}
        if not isinstance(events, Mapping):
            raise ValueError(f"Invalid value for 'task.events': expected a mapping, but got {events!r}.")
        event_keys = ("smoothing_k", "smoothing_n")
        allowed = {f.name for f in dataclasses.fields(cls)} - set(event_keys)
        unknown = sorted(set(section) - allowed)
        unknown += sorted(f"events.{k}" for k in events if k not in event_keys)
        if unknown:
            raise ValueError(f"Unknown keys {unknown} in the task config. Allowed keys are "
                             f"{sorted(allowed) + ['events.' + k for k in event_keys]}.")
        missing = [k for k in ("name", "classes", "unit", "metrics") if section.get(k) is None]
        if missing:
            raise ValueError(f"The task config lacks the keys {['task.' + k for k in missing]}.")
        for key in ("classes", "metrics"):
            if not isinstance(section[key], (list, tuple)):
                raise ValueError(f"Invalid value for 'task.{key}': expected a list, "
                                 f"but got {section[key]!r}.")
        return cls(**section, **events)


def list_tasks() -> list[str]:
    """Names of the registered tasks, in table order (:data:`TASKS`)."""
    return list(TASKS)


def _check_task_name(name) -> str:
    if not isinstance(name, str) or name not in TASKS:
        raise ValueError(_allowed("task", TASKS, name))
    return name


def task_config_path(name: str) -> Path:
    """Path of the task's YAML file, ``configs/finetune/<name>.yaml``.

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`TASKS`.
    """
    return FINETUNE_CONFIG_DIR / f"{_check_task_name(name)}.yaml"


def load_task_config(
    name: str,
    config: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
) -> dict:
    """Resolve a fine-tuning config: ``_base.yaml`` <- ``<name>.yaml`` <- ``config`` <- ``overrides``.

    Parameters
    ----------
    name : str
        Task name, one of :data:`TASKS`.
    config : path-like | None
        The user's ``--config`` file (any subset of the keys of ``_base.yaml``).
    overrides : sequence of str
        ``--set key=value`` strings, applied last.

    Returns
    -------
    config : dict
        The resolved config; ``config["task"]["name"] == name``.

    Raises
    ------
    ValueError
        If ``name`` is unknown, or the files set ``task.name`` to another task.
    runtime.config.ConfigError
        On an unknown key or a wrong type (from :func:`runtime.config.load_config`).
    FileNotFoundError
        If ``config`` does not exist.
    """
    resolved = load_config(BASE_CONFIG, [task_config_path(name), config], overrides)
    if resolved["task"]["name"] != name:
        raise ValueError(f"Invalid value for 'task.name': the config is for the task --task {name!r}, "
                         f"but got {resolved['task']['name']!r} instead (from --config or --set).")
    return resolved


def get_task(name: str, config: Mapping | None = None) -> Task:
    """The registered task ``name``, configured by a resolved fine-tuning config.

    Parameters
    ----------
    name : str
        Task name, one of :data:`TASKS`.
    config : mapping | None
        A resolved fine-tuning config (from :func:`load_task_config`) whose ``task`` section defines the
        task; None loads the task's defaults (``_base.yaml`` <- ``<name>.yaml``).

    Returns
    -------
    task : Task

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`TASKS` (the message lists them), if ``config`` has no ``task``
        mapping or is the config of another task, or if the task section is invalid.

    Examples
    --------
    >>> get_task("hie_grading").classes
    ('normal_mild', 'moderate', 'severe', 'inactive')
    """
    _check_task_name(name)
    if config is None:
        config = load_task_config(name)
    if not isinstance(config, Mapping) or not isinstance(config.get("task"), Mapping):
        raise ValueError("Invalid value for the 'config' parameter: expected a resolved fine-tuning config "
                         "with a 'task' mapping (finetune.tasks.load_task_config).")
    section = dict(config["task"])
    if section.get("name") is None:
        section["name"] = name
    if section["name"] != name:
        raise ValueError(f"Invalid value for the 'config' parameter: it configures the task "
                         f"{section['name']!r}, but the task {name!r} was asked for.")
    return Task.from_config(section)


def _row_value(rows: Sequence[Mapping], i: int, key: str):
    try:
        return rows[i][key]
    except KeyError:
        path = rows[i].get("path", "no path")
        raise ValueError(f"Manifest row {i} ({path}) has no '{key}' column.") from None


def encode_labels(rows: Sequence[Mapping], task: Task) -> np.ndarray:
    """Class indices of the rows' labels.

    Parameters
    ----------
    rows : sequence of dict
        Manifest rows with a ``label`` (str | None) and, for error messages, a ``path``.
    task : Task

    Returns
    -------
    labels : ndarray of int64, shape (n_rows,)
        ``task.classes.index(row["label"])``.

    Raises
    ------
    ValueError
        If a row has no label, or a label outside ``task.classes``: the message names the unknown
        labels, how many rows carry them, the first such row (index and file) and the allowed values.
    """
    index = {name: i for i, name in enumerate(task.classes)}
    labels = np.empty(len(rows), dtype=np.int64)
    bad = []
    for i in range(len(rows)):
        label = _row_value(rows, i, "label")
        code = index.get(label) if isinstance(label, str) else None
        if code is None:
            bad.append(i)
        else:
            labels[i] = code
    if bad:
        first = bad[0]
        found = sorted({repr(rows[i]["label"]) for i in bad})
        raise ValueError(
            f"Invalid labels for the task '{task.name}': {', '.join(found)} in {len(bad)} of {len(rows)} "
            f"rows (first: row {first}, file {rows[first].get('path', '?')}). Allowed values are "
            f"{list(task.classes)}; unlabelled windows (None) cannot be used. Relabel the data at "
            f"preprocessing (labels.classes, --events) or list the cohort's classes in task.classes."
        )
    return labels


def window_durations(rows: Sequence[Mapping], task: Task) -> np.ndarray:
    """Length of each row's window in s.

    Parameters
    ----------
    rows : sequence of dict
        Manifest rows; ``n_times`` and ``sfreq`` (Hz) are read unless ``task.window_s`` is set.
    task : Task

    Returns
    -------
    window_s : ndarray of float64, shape (n_rows,)

    Raises
    ------
    ValueError
        If ``task.window_s`` is None and a row lacks ``n_times`` or ``sfreq`` (or they are not positive).
    """
    if task.window_s is not None:
        return np.full(len(rows), float(task.window_s))
    out = np.empty(len(rows))
    for i, row in enumerate(rows):
        n_times, sfreq = row.get("n_times"), row.get("sfreq")
        try:
            out[i] = float(n_times) / float(sfreq)
        except (TypeError, ValueError, ZeroDivisionError):
            out[i] = np.nan
        if not out[i] > 0:
            raise ValueError(
                f"Manifest row {i} ({row.get('path', '?')}) gives no window length (n_times={n_times!r}, "
                f"sfreq={sfreq!r}); set task.window_s to the window length in s."
            )
    return out


def contiguous_segments(starts_s: np.ndarray, stride_s: np.ndarray) -> np.ndarray:
    """Split one recording's sorted windows into runs of contiguous windows.

    Parameters
    ----------
    starts_s : ndarray, shape (n_windows,)
        Window starts in s, sorted increasing, no duplicates.
    stride_s : ndarray, shape (n_windows,)
        Largest start difference (s) from each window to the next for them to be contiguous.

    Returns
    -------
    segment : ndarray of int64, shape (n_windows,)
        0, 0, ..., 1, 1, ...: the index of the run each window belongs to.
    """
    starts_s = np.asarray(starts_s, dtype=float)
    gaps = np.diff(starts_s) > np.asarray(stride_s, dtype=float)[:-1] + _TIME_TOL_S
    return np.concatenate([[0], np.cumsum(gaps)]).astype(np.int64)


def recording_timelines(rows: Sequence[Mapping], task: Task) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each recording's windows in time order, with their contiguous runs.

    Parameters
    ----------
    rows : sequence of dict
        Manifest rows with ``recording`` and ``start_s`` (s); see :func:`window_durations` for the length.
    task : Task
        Gives ``stride_s`` (None: the window length).

    Returns
    -------
    timelines : dict
        ``recording -> (order, segment)``: ``order`` (n_windows,) the row indices sorted by ``start_s``,
        ``segment`` (n_windows,) the contiguous-run index of each (:func:`contiguous_segments`).
        Recordings in sorted order.

    Raises
    ------
    ValueError
        If two rows of one recording have the same ``start_s`` (a window listed twice), or a row lacks
        ``recording`` or ``start_s``.
    """
    durations = window_durations(rows, task)
    strides = durations if task.stride_s is None else np.full(len(rows), float(task.stride_s))
    starts = np.array([float(_row_value(rows, i, "start_s")) for i in range(len(rows))])
    return {recording: (order, contiguous_segments(starts[order], strides[order]))
            for recording, order in _windows_by_recording(rows).items()}


def _windows_by_recording(rows: Sequence[Mapping]) -> dict[str, np.ndarray]:
    """``recording -> row indices sorted by start_s``, refusing a window listed twice."""
    by_recording: dict[str, list[int]] = {}
    for i in range(len(rows)):
        by_recording.setdefault(str(_row_value(rows, i, "recording")), []).append(i)
    starts = np.array([float(_row_value(rows, i, "start_s")) for i in range(len(rows))])
    out = {}
    for recording in sorted(by_recording):
        idx = np.asarray(by_recording[recording], dtype=np.int64)
        order = idx[np.argsort(starts[idx], kind="stable")]
        dup = np.flatnonzero(np.diff(starts[order]) <= _TIME_TOL_S)
        if dup.size:
            a, b = order[dup[0]], order[dup[0] + 1]
            raise ValueError(f"Recording {recording!r} has two windows starting at {starts[a]} s (rows {a} "
                             f"and {b}: {rows[a].get('path', '?')}, {rows[b].get('path', '?')}).")
        out[recording] = order
    return out


def unit_index(
    rows: Sequence[Mapping], task: Task, labels: np.ndarray | None = None
) -> tuple[np.ndarray, list]:
    """Which unit of evaluation each row (window) belongs to.

    Parameters
    ----------
    rows : sequence of dict
        Manifest rows (see the module docstring for the keys each unit reads).
    task : Task
    labels : ndarray of int, shape (n_rows,) | None
        Class indices of the rows (needed by the ``event`` unit); None: :func:`encode_labels`.

    Returns
    -------
    index : ndarray of int64, shape (n_rows,)
        Unit index of each row, into ``keys``.
    keys : list of tuple, length n_units
        Sorted unit keys: ``(recording, start_s)`` for windows, ``(recording, epoch)`` for epochs,
        ``(recording, k)`` for the k-th event of a recording, ``(recording,)``, ``(subject,)``.

    Raises
    ------
    ValueError
        If a row lacks a key the unit needs, or a window is listed twice.
    """
    n = len(rows)
    if task.unit == "window":
        _windows_by_recording(rows)  # refuses duplicated windows
        row_keys = [(str(_row_value(rows, i, "recording")), float(_row_value(rows, i, "start_s")))
                    for i in range(n)]
    elif task.unit == "epoch":
        _windows_by_recording(rows)  # refuses duplicated windows
        row_keys = [(str(_row_value(rows, i, "recording")),
                     int(math.floor(float(_row_value(rows, i, "start_s")) / task.epoch_s + _TIME_TOL_S)))
                    for i in range(n)]
    elif task.unit == "event":
        labels = encode_labels(rows, task) if labels is None else np.asarray(labels)
        row_keys = [None] * n
        for recording, (order, segment) in recording_timelines(rows, task).items():
            lab = labels[order]
            new_run = np.concatenate([[True], (np.diff(segment) != 0) | (np.diff(lab) != 0)])
            for i, k in zip(order, np.cumsum(new_run) - 1, strict=True):
                row_keys[i] = (recording, int(k))
    elif task.unit == "recording":
        row_keys = [(str(_row_value(rows, i, "recording")),) for i in range(n)]
    else:  # subject
        row_keys = [(str(_row_value(rows, i, "subject")),) for i in range(n)]
    keys = sorted(set(row_keys))
    position = {key: u for u, key in enumerate(keys)}
    return np.fromiter((position[key] for key in row_keys), dtype=np.int64, count=n), keys


@dataclass(frozen=True)
class Units:
    """Window predictions aggregated to a task's units (:func:`aggregate`).

    Attributes
    ----------
    keys : list of tuple, length n_units
        Unit keys (:func:`unit_index`).
    probabilities : ndarray of float64, shape (n_units, n_classes)
        Mean of the unit's window class probabilities.
    labels : ndarray of int64, shape (n_units,)
        True class index of each unit.
    n_windows : ndarray of int64, shape (n_units,)
        Windows per unit.
    index : ndarray of int64, shape (n_rows,)
        Unit of each row.
    """

    keys: list
    probabilities: np.ndarray
    labels: np.ndarray
    n_windows: np.ndarray
    index: np.ndarray


def _unit_labels(task: Task, labels: np.ndarray, index: np.ndarray, keys: list) -> np.ndarray:
    counts = np.zeros((len(keys), task.n_classes), dtype=np.int64)
    np.add.at(counts, (index, labels), 1)
    if task.unit in ("recording", "subject"):
        mixed = np.flatnonzero((counts > 0).sum(axis=1) > 1)
        if mixed.size:
            u = mixed[0]
            found = {task.classes[c]: int(counts[u, c]) for c in np.flatnonzero(counts[u])}
            raise ValueError(
                f"The {task.unit} {keys[u][0]!r} has windows with different labels {found} (windows per "
                f"label), but the task '{task.name}' gives one label per {task.unit}; {mixed.size} "
                f"{task.unit}(s) disagree. Fix the labels at preprocessing (--events)."
            )
    # Majority label (epochs); argmax takes the first class of task.classes on ties.
    return counts.argmax(axis=1).astype(np.int64)


def check_probabilities(probabilities, n_rows: int, task: Task) -> np.ndarray:
    """Check window class probabilities against the task and the number of rows.

    Parameters
    ----------
    probabilities : array-like, shape (n_rows, n_classes)
    n_rows : int
    task : Task

    Returns
    -------
    probabilities : ndarray of float64, shape (n_rows, n_classes)

    Raises
    ------
    ValueError
        If the shape differs, or a value is not finite, negative, or a row does not sum to 1 (+/- 1e-3),
        e.g. logits passed instead of probabilities.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape != (n_rows, task.n_classes):
        raise ValueError(f"Invalid value for the 'probabilities' parameter: expected shape (n_rows, "
                         f"n_classes) = ({n_rows}, {task.n_classes}) for the task '{task.name}', "
                         f"but got {p.shape}.")
    if not np.isfinite(p).all() or (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("Invalid value for the 'probabilities' parameter: expected finite class "
                         "probabilities (softmax of the logits, each row summing to 1), but got values "
                         "outside that.")
    return p


def aggregate(task: Task, rows: Sequence[Mapping], probabilities: np.ndarray) -> Units:
    """Average window class probabilities over the task's units and find each unit's true label.

    Parameters
    ----------
    task : Task
    rows : sequence of dict
        Manifest rows (labelled), one per window, in the order of ``probabilities``.
    probabilities : ndarray, shape (n_rows, n_classes)
        Window class probabilities (softmax of the head's logits), columns in ``task.classes`` order.

    Returns
    -------
    units : Units

    Raises
    ------
    ValueError
        On no rows, probabilities of the wrong shape or not probabilities, labels outside the task
        (:func:`encode_labels`), or a recording/subject whose windows have different labels.
    """
    if len(rows) == 0:
        raise ValueError(f"Invalid value for the 'rows' parameter: no windows to evaluate for '{task.name}'.")
    p = check_probabilities(probabilities, len(rows), task)
    labels = encode_labels(rows, task)
    index, keys = unit_index(rows, task, labels)
    n_windows = np.bincount(index, minlength=len(keys)).astype(np.int64)
    sums = np.zeros((len(keys), task.n_classes))
    np.add.at(sums, index, p)
    return Units(keys=keys, probabilities=sums / n_windows[:, None],
                 labels=_unit_labels(task, labels, index, keys), n_windows=n_windows, index=index)


def predict(task: Task, probabilities: np.ndarray) -> np.ndarray:
    """Predicted class indices from class probabilities (of windows or units).

    Parameters
    ----------
    task : Task
    probabilities : ndarray, shape (n, n_classes)

    Returns
    -------
    predicted : ndarray of int64, shape (n,)
        Binary tasks: the positive class where ``P(positive) >= task.threshold``, else the other class.
        Multi-class tasks: the class of highest probability (ties: the first in ``task.classes``).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if task.is_binary:
        pos = task.positive_index
        return np.where(p[:, pos] >= task.threshold, pos, 1 - pos).astype(np.int64)
    return p.argmax(axis=1).astype(np.int64)
