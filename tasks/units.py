"""Window predictions aggregated to a task's unit of evaluation.

Every task predicts one probability vector per window; the task's **unit** says what is evaluated:

========== ======================================================== =========================================
unit       a manifest row (window) belongs to                       true label of the unit
========== ======================================================== =========================================
window     itself, key ``(recording, start_s)``                     the window's label
epoch      ``(recording, floor(start_s / epoch_s))`` (30-s epochs)  majority of its windows' labels (ties: the
                                                                    class listed first in ``task.classes``)
event      ``(recording, k)``: the annotated event of its label   the event's label
           it overlaps most (``events``); without one, the k-th
           run (in time) of contiguous windows with the same
           label in one recording
recording  ``(row["recording"],)``                                  the label of its windows, which must agree
subject    ``(row["subject"],)``                                    the label of its windows, which must agree
========== ======================================================== =========================================

The unit's class probabilities are the **mean of its windows' class probabilities**; the unit's
prediction is the class of highest mean probability (multi-class tasks) or the positive class when its
mean probability is at least ``task.threshold`` (binary tasks). Windows of one recording are
**contiguous** when their starts (``start_s``, sorted) differ by at most the stride (``task.stride_s``;
by default the window length ``n_times / sfreq`` of the earlier window); a larger gap (a rejected or
unlabelled window) ends a run.

Event units come from the annotated events when they are given (``events``: the data folder's
``events.csv``, :func:`finetune.event_evaluation.read_events_table`): a seizure whose edge windows were
dropped or with a rejected window inside is still one unit. Windows of no annotated event (or all windows,
without ``events``) fall back to runs of contiguous windows with the same label.

Manifest rows are dicts as returned by :func:`preprocess.segments.read_manifest` (:mod:`tasks.vocabulary`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from runtime.config import UsageError
from tasks.vocabulary import Task, encode_labels, row_value

__all__ = [
    "Units",
    "aggregate",
    "check_probabilities",
    "contiguous_segments",
    "predict",
    "recording_timelines",
    "unit_index",
    "window_durations",
]

#: Two times closer than this (s) are the same instant (start_s comes from CSV text).
TIME_TOL_S = 1e-6


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
            raise UsageError(
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
    gaps = np.diff(starts_s) > np.asarray(stride_s, dtype=float)[:-1] + TIME_TOL_S
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
    starts = np.array([float(row_value(rows, i, "start_s")) for i in range(len(rows))])
    return {
        recording: (order, contiguous_segments(starts[order], strides[order]))
        for recording, order in _windows_by_recording(rows).items()
    }


def _windows_by_recording(rows: Sequence[Mapping]) -> dict[str, np.ndarray]:
    """``recording -> row indices sorted by start_s``, refusing a window listed twice."""
    by_recording: dict[str, list[int]] = {}
    for i in range(len(rows)):
        by_recording.setdefault(str(row_value(rows, i, "recording")), []).append(i)
    starts = np.array([float(row_value(rows, i, "start_s")) for i in range(len(rows))])
    out = {}
    for recording in sorted(by_recording):
        idx = np.asarray(by_recording[recording], dtype=np.int64)
        order = idx[np.argsort(starts[idx], kind="stable")]
        dup = np.flatnonzero(np.diff(starts[order]) <= TIME_TOL_S)
        if dup.size:
            a, b = order[dup[0]], order[dup[0] + 1]
            raise UsageError(
                f"Recording {recording!r} has two windows starting at {starts[a]} s (rows {a} "
                f"and {b}: {rows[a].get('path', '?')}, {rows[b].get('path', '?')})."
            )
        out[recording] = order
    return out


def _annotated_event_units(
    recording: str, events: Mapping, task: Task, starts_s, stops_s, labels
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Annotated event (index) of each window of one recording, whether it has one, and the number of
    events; None: the recording has no event of the task's classes."""
    annotated = None
    for key in (PurePath(recording).name.lower(), PurePath(recording).stem.lower()):
        if key in events:
            annotated = events[key]
            break
    index = {name: c for c, name in enumerate(task.classes)}
    annotated = [(on, d, index[lab]) for on, d, lab in annotated or () if lab in index]
    if not annotated:
        return None
    onset = np.array([0.0 if on is None else on for on, _, _ in annotated])
    offset = np.array([np.inf if on is None else on + d for on, d, _ in annotated])
    cls = np.array([c for _, _, c in annotated])
    overlap = np.clip(np.minimum(stops_s[:, None], offset) - np.maximum(starts_s[:, None], onset), 0.0, None)
    overlap *= labels[:, None] == cls[None, :]  # only an event of the window's own label
    return overlap.argmax(axis=1), overlap.max(axis=1, initial=0.0) > TIME_TOL_S, len(annotated)


def unit_index(
    rows: Sequence[Mapping], task: Task, labels: np.ndarray | None = None, events: Mapping | None = None
) -> tuple[np.ndarray, list]:
    """Which unit of evaluation each row (window) belongs to.

    Parameters
    ----------
    rows : sequence of dict
        Manifest rows (see the module docstring for the keys each unit reads).
    task : Task
    labels : ndarray of int, shape (n_rows,) | None
        Class indices of the rows (needed by the ``event`` unit); None: :func:`encode_labels`.
    events : mapping | None
        ``event`` unit: annotated events per recording (file name, lower case -> list of ``(onset_s |
        None, duration_s, label)``); a window belongs to the event of its label it overlaps most. None
        (or a window of no such event): runs of contiguous windows with the same label.

    Returns
    -------
    index : ndarray of int64, shape (n_rows,)
        Unit index of each row, into ``keys``.
    keys : list of tuple, length n_units
        Sorted unit keys: ``(recording, start_s)`` for windows, ``(recording, epoch)`` for epochs,
        ``(recording, k)`` for the k-th event of a recording (annotated events first, then the runs of
        windows outside them), ``(recording,)``, ``(subject,)``.

    Raises
    ------
    ValueError
        If a row lacks a key the unit needs, or a window is listed twice.
    """
    n = len(rows)
    if task.unit == "window":
        _windows_by_recording(rows)  # refuses duplicated windows
        row_keys = [
            (str(row_value(rows, i, "recording")), float(row_value(rows, i, "start_s"))) for i in range(n)
        ]
    elif task.unit == "epoch":
        _windows_by_recording(rows)  # refuses duplicated windows
        row_keys = [
            (
                str(row_value(rows, i, "recording")),
                int(math.floor(float(row_value(rows, i, "start_s")) / task.epoch_s + TIME_TOL_S)),
            )
            for i in range(n)
        ]
    elif task.unit == "event":
        labels = encode_labels(rows, task) if labels is None else np.asarray(labels)
        row_keys = [None] * n
        starts = np.array([float(row_value(rows, i, "start_s")) for i in range(n)])
        durations = window_durations(rows, task)
        for recording, (order, segment) in recording_timelines(rows, task).items():
            lab = labels[order]
            new_run = np.concatenate([[True], (np.diff(segment) != 0) | (np.diff(lab) != 0)])
            unit = np.cumsum(new_run) - 1
            found = None
            if events is not None:
                s = starts[order]
                found = _annotated_event_units(recording, events, task, s, s + durations[order], lab)
            if found is not None:
                event, inside, n_events = found
                unit = np.where(inside, event, n_events + unit)  # runs outside the events after them
            for i, k in zip(order, unit, strict=True):
                row_keys[i] = (recording, int(k))
    elif task.unit == "recording":
        row_keys = [(str(row_value(rows, i, "recording")),) for i in range(n)]
    else:  # subject
        row_keys = [(str(row_value(rows, i, "subject")),) for i in range(n)]
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
            raise UsageError(
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
        raise UsageError(
            f"Invalid value for the 'probabilities' parameter: expected shape (n_rows, "
            f"n_classes) = ({n_rows}, {task.n_classes}) for the task '{task.name}', "
            f"but got {p.shape}."
        )
    if not np.isfinite(p).all() or (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise UsageError(
            "Invalid value for the 'probabilities' parameter: expected finite class "
            "probabilities (softmax of the logits, each row summing to 1), but got values "
            "outside that."
        )
    return p


def aggregate(
    task: Task, rows: Sequence[Mapping], probabilities: np.ndarray, events: Mapping | None = None
) -> Units:
    """Average window class probabilities over the task's units and find each unit's true label.

    Parameters
    ----------
    task : Task
    rows : sequence of dict
        Manifest rows (labelled), one per window, in the order of ``probabilities``.
    probabilities : ndarray, shape (n_rows, n_classes)
        Window class probabilities (softmax of the head's logits), columns in ``task.classes`` order.
    events : mapping | None
        Annotated events of the ``event`` unit (:func:`unit_index`); ignored by the other units.

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
        raise UsageError(f"Invalid value for the 'rows' parameter: no windows to evaluate for '{task.name}'.")
    p = check_probabilities(probabilities, len(rows), task)
    labels = encode_labels(rows, task)
    index, keys = unit_index(rows, task, labels, events)
    n_windows = np.bincount(index, minlength=len(keys)).astype(np.int64)
    sums = np.zeros((len(keys), task.n_classes))
    np.add.at(sums, index, p)
    return Units(
        keys=keys,
        probabilities=sums / n_windows[:, None],
        labels=_unit_labels(task, labels, index, keys),
        n_windows=n_windows,
        index=index,
    )


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
