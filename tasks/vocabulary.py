"""The task vocabulary: the eight childhood-epilepsy tasks, their classes, unit of evaluation and metrics.

One :class:`Task` dataclass; the eight entries are data, configured by ``configs/finetune/<task>.yaml``
over ``configs/finetune/_base.yaml`` (DESIGN.md section 5). A cohort renames or adds classes in its own
``--config`` (``task.classes``). This package sits below both preprocessing and fine-tuning: preprocessing
takes the labels it accepts from here (:func:`label_vocabulary`), fine-tuning its heads and metrics.
How window predictions aggregate to the units is in :mod:`tasks.units`.

Manifest rows are dicts as returned by :func:`preprocess.segments.read_manifest`: ``path``, ``subject``,
``recording``, ``start_s`` (float, s), ``label`` (str | None), ``n_chans``, ``n_times``, ``sfreq`` (Hz).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.config import CONFIG_DIR, UsageError, load_config

__all__ = [
    "BASE_CONFIG",
    "BINARY_METRICS",
    "FINETUNE_CONFIG_DIR",
    "METRIC_NAMES",
    "TASKS",
    "UNITS",
    "Task",
    "encode_label_probs",
    "encode_labels",
    "get_task",
    "label_vocabulary",
    "list_tasks",
    "load_task_config",
    "task_config_path",
]

#: The eight tasks, in the order of the paper's tables (DESIGN.md section 5), then the HMS seed's task
#: (harmful brain activity, soft labels).
TASKS = (
    "artifact_detection",
    "onset_detection",
    "seizure_type",
    "syndrome_classification",
    "hie_grading",
    "sleep_staging",
    "epileptiform_detection",
    "swi_quantification",
    "harmful_brain_activity",
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
    "event_precision",
    "event_f1",
    "false_alarms_per_24h",
    "false_alarms_per_hour",
    "swi_mae",
    "swi_pearson_r",
    "kl_divergence",
)

#: Metrics that need a binary task (two classes and a positive class).
BINARY_METRICS = (
    "auroc",
    "auprc",
    "event_sensitivity",
    "event_precision",
    "event_f1",
    "false_alarms_per_24h",
    "false_alarms_per_hour",
    "swi_mae",
    "swi_pearson_r",
)

#: ``configs/finetune``: ``_base.yaml`` (defaults and schema) and one ``<task>.yaml`` per task.
FINETUNE_CONFIG_DIR = CONFIG_DIR / "finetune"
BASE_CONFIG = FINETUNE_CONFIG_DIR / "_base.yaml"


def _allowed(name: str, allowed: Sequence, got) -> str:
    return (
        f"Invalid value for the '{name}' parameter. Allowed values are {list(allowed)}, "
        f"but got {got!r} instead."
    )


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
    strict_any_overlap : bool
        Event metrics: also report plain any-overlap event scoring (no tolerance, merging or splitting)
        beside SzCORE's (``results.json``, ``event_scoring``); the metrics stay SzCORE's.
    extra_labels : tuple of str
        Further labels preprocessing accepts for the task (:func:`label_vocabulary`), e.g. the artefact
        types a cohort may train on by listing them in ``classes``; not outputs of the head.

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
    strict_any_overlap: bool = False
    extra_labels: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "extra_labels", tuple(self.extra_labels))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        if not isinstance(self.name, str) or not self.name:
            raise UsageError(
                f"Invalid value for the 'name' parameter: expected a task name, but got {self.name!r}."
            )
        where = f"of the task '{self.name}'"
        if len(self.classes) < 2 or not all(isinstance(c, str) and c for c in self.classes):
            raise UsageError(
                f"Invalid value for 'task.classes' {where}: expected at least two class names, "
                f"but got {list(self.classes)!r} instead."
            )
        duplicated = sorted({c for c in self.classes if self.classes.count(c) > 1})
        if duplicated:
            raise UsageError(f"Invalid value for 'task.classes' {where}: {duplicated} listed more than once.")
        if self.unit not in UNITS:
            raise UsageError(_allowed("task.unit", UNITS, self.unit))
        if not self.metrics:
            raise UsageError(
                f"Invalid value for 'task.metrics' {where}: expected at least one of "
                f"{list(METRIC_NAMES)}, but got an empty list."
            )
        for metric in self.metrics:
            if metric not in METRIC_NAMES:
                raise UsageError(_allowed("task.metrics", METRIC_NAMES, metric))
        if len(set(self.metrics)) != len(self.metrics):
            raise UsageError(
                f"Invalid value for 'task.metrics' {where}: a metric is listed twice ({list(self.metrics)})."
            )
        if self.is_binary:
            if self.positive_class not in self.classes:
                raise UsageError(
                    f"Invalid value for 'task.positive_class' {where}: a binary task needs one of its "
                    f"classes {list(self.classes)}, but got {self.positive_class!r} instead."
                )
        else:
            if self.positive_class is not None:
                raise UsageError(
                    f"Invalid value for 'task.positive_class' {where}: a task with {self.n_classes} classes "
                    f"is multi-class and has no positive class (set it to null), but got "
                    f"{self.positive_class!r}."
                )
            binary_only = [m for m in self.metrics if m in BINARY_METRICS]
            if binary_only:
                raise UsageError(
                    f"Invalid value for 'task.metrics' {where}: {binary_only} need a binary task (two "
                    f"classes), but the task has {self.n_classes} classes {list(self.classes)}. "
                    f"Multi-class metrics: balanced_accuracy, cohen_kappa, weighted_f1."
                )
        if not isinstance(self.threshold, (int, float)) or not 0.0 <= self.threshold <= 1.0:
            raise UsageError(
                f"Invalid value for 'task.threshold' {where}: expected a number in [0, 1], "
                f"but got {self.threshold!r} instead."
            )
        for key in ("epoch_s", "window_s", "stride_s"):
            value = getattr(self, key)
            if value is None and key != "epoch_s":
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise UsageError(
                    f"Invalid value for 'task.{key}' {where}: expected a positive number of "
                    f"seconds, but got {value!r} instead."
                )
        k, n = self.smoothing_k, self.smoothing_n
        if not (isinstance(k, int) and isinstance(n, int) and 1 <= k <= n):
            raise UsageError(
                f"Invalid value for 'task.events' {where}: expected integers "
                f"1 <= smoothing_k <= smoothing_n, but got k={k!r}, n={n!r} instead."
            )
        if not isinstance(self.strict_any_overlap, bool):
            raise UsageError(
                f"Invalid value for 'task.events.strict_any_overlap' {where}: expected true or "
                f"false, but got {self.strict_any_overlap!r} instead."
            )

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
            raise UsageError(f"Invalid value for 'task.events': expected a mapping, but got {events!r}.")
        event_keys = ("smoothing_k", "smoothing_n", "strict_any_overlap")
        allowed = {f.name for f in dataclasses.fields(cls)} - set(event_keys)
        unknown = sorted(set(section) - allowed)
        unknown += sorted(f"events.{k}" for k in events if k not in event_keys)
        if unknown:
            raise UsageError(
                f"Unknown keys {unknown} in the task config. Allowed keys are "
                f"{sorted(allowed) + ['events.' + k for k in event_keys]}."
            )
        missing = [k for k in ("name", "classes", "unit", "metrics") if section.get(k) is None]
        if missing:
            raise UsageError(f"The task config lacks the keys {['task.' + k for k in missing]}.")
        for key in ("classes", "metrics", "extra_labels"):
            if key in section and not isinstance(section[key], (list, tuple)):
                raise UsageError(
                    f"Invalid value for 'task.{key}': expected a list, but got {section[key]!r}."
                )
        return cls(**section, **events)


def list_tasks() -> list[str]:
    """Names of the registered tasks, in table order (:data:`TASKS`)."""
    return list(TASKS)


def _check_task_name(name) -> str:
    if not isinstance(name, str) or name not in TASKS:
        raise UsageError(_allowed("task", TASKS, name))
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
        raise UsageError(
            f"Invalid value for 'task.name': the config is for the task --task {name!r}, "
            f"but got {resolved['task']['name']!r} instead (from --config or --set)."
        )
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
        raise UsageError(
            "Invalid value for the 'config' parameter: expected a resolved fine-tuning config "
            "with a 'task' mapping (tasks.load_task_config)."
        )
    section = dict(config["task"])
    if section.get("name") is None:
        section["name"] = name
    if section["name"] != name:
        raise UsageError(
            f"Invalid value for the 'config' parameter: it configures the task "
            f"{section['name']!r}, but the task {name!r} was asked for."
        )
    return Task.from_config(section)


def row_value(rows: Sequence[Mapping], i: int, key: str):
    try:
        return rows[i][key]
    except KeyError:
        path = rows[i].get("path", "no path")
        raise UsageError(f"Manifest row {i} ({path}) has no '{key}' column.") from None


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
        label = row_value(rows, i, "label")
        code = index.get(label) if isinstance(label, str) else None
        if code is None:
            bad.append(i)
        else:
            labels[i] = code
    if bad:
        first = bad[0]
        found = sorted({repr(rows[i]["label"]) for i in bad})
        raise UsageError(
            f"Invalid labels for the task '{task.name}': {', '.join(found)} in {len(bad)} of {len(rows)} "
            f"rows (first: row {first}, file {rows[first].get('path', '?')}). Allowed values are "
            f"{list(task.classes)}; unlabelled windows (None) cannot be used. Relabel the data at "
            f"preprocessing (labels.classes, --events) or list the cohort's classes in task.classes."
        )
    return labels


def encode_label_probs(rows: Sequence[Mapping], task: Task) -> np.ndarray:
    """True class distributions of the rows: their soft labels, else one-hot of their label.

    Parameters
    ----------
    rows : sequence of dict
        Manifest rows with a ``label`` and, for soft-labelled windows (e.g. the HMS expert votes), a
        ``label_probs`` dict class name -> probability (:func:`preprocess.segments.read_manifest`).
    task : Task

    Returns
    -------
    probs : ndarray of float64, shape (n_rows, n_classes)
        Columns in ``task.classes`` order; each row sums to 1. A row without ``label_probs`` (None or
        absent) is one-hot at its label (:func:`encode_labels`).

    Raises
    ------
    ValueError
        If a row's label is invalid (as :func:`encode_labels`), or its ``label_probs`` names a class
        outside ``task.classes``, holds a negative or non-finite value, or does not sum to 1 (within 1e-6).
    """
    labels = encode_labels(rows, task)
    probs = np.zeros((len(rows), task.n_classes))
    probs[np.arange(len(rows)), labels] = 1.0
    index = {name: i for i, name in enumerate(task.classes)}
    for i, row in enumerate(rows):
        soft = row.get("label_probs")
        if not soft:
            continue
        unknown = sorted(set(soft) - set(index))
        values = np.array([float(v) for v in soft.values()])
        if unknown or not np.all(np.isfinite(values)) or values.min() < 0 or abs(values.sum() - 1) > 1e-6:
            raise UsageError(
                f"Invalid label_probs in manifest row {i} ({row.get('path', 'no path')}): {dict(soft)}. "
                f"Expected probabilities of the classes {list(task.classes)} that sum to 1."
            )
        probs[i] = 0.0
        for name, value in soft.items():
            probs[i, index[name]] = float(value)
    return probs


def label_vocabulary() -> tuple[str, ...]:
    """Every label a window may carry: the classes of the eight tasks and their ``task.extra_labels``.

    Preprocessing accepts these labels by default (``labels.classes: null`` in
    ``configs/preprocess/m4cea.yaml``), so the list follows ``configs/finetune/<task>.yaml`` and is never
    kept in step by hand.

    Returns
    -------
    labels : tuple of str
        Task by task (the paper's eight tasks; not ``harmful_brain_activity``, whose adapter and
        cohorts set ``labels.classes`` themselves, so that output folders made before it still resume), each
        task's ``classes`` then its ``extra_labels`` (e.g. the artefact types a cohort
        may list in ``task.classes``); each label once, first place kept. The tasks in table order
        (:data:`TASKS`) but ``onset_detection`` first: the order of the list preprocessing configs held
        before, so that output folders made then still resume (their ``config.yaml`` is compared).
    """
    labels: dict[str, None] = {}
    paper_tasks = TASKS[: TASKS.index("harmful_brain_activity")]
    for name in ("onset_detection", *(t for t in paper_tasks if t != "onset_detection")):
        task = get_task(name)
        labels.update(dict.fromkeys(task.classes + task.extra_labels))
    return tuple(labels)
