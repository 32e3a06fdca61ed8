"""Events and window labels.

Events come from a CSV file (``--events FILE``) or from a recording's own annotations
(``--events annotations``). The CSV has the columns ``recording`` (file name without folder; the
name with or without its extension matches), ``subject`` (optional; default: the recording),
``onset_s``, ``duration_s`` and ``label``. An empty ``onset_s`` means a recording-level label (an
event covering the whole recording).

Overlap rule (:func:`label_windows`): a window takes the label of the event(s) covering it when one
label covers all of it. Time that no event covers counts as the ``default`` label (or as unlabelled
when there is no default). A window with more than one label inside it *straddles* a boundary:
``straddle="drop"`` rejects it, ``straddle="majority"`` gives it the label covering most of it (ties go
to the label that comes first in ``classes``). A window covered by nothing is unlabelled (None).

Soft labels (:func:`window_label_probs`): an event may carry a class distribution (``p_<class>``
columns of the CSV, e.g. the fractions of expert votes of the HMS task; :attr:`Event.probs`). A labelled
window that overlaps such an event gets the overlap-weighted mean of the distributions of the events
covering it (an event without a distribution counts as one-hot at its label, time that only
``default`` covers as one-hot at ``default``), stored as ``label_probs`` beside its ``label``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.checks import check_choice
from runtime.config import UsageError
from runtime.files import atomic_write

__all__ = [
    "Event",
    "EventsError",
    "EVENTS_COLUMNS",
    "read_events_csv",
    "write_events_csv",
    "events_for",
    "unmatched_recordings",
    "events_from_annotations",
    "check_events",
    "label_windows",
    "window_label_probs",
]

#: Columns of an events CSV (:func:`read_events_csv`, :func:`write_events_csv`), in order.
EVENTS_COLUMNS = ("recording", "subject", "onset_s", "duration_s", "label")

#: Tolerance in s when checking that an event lies inside its recording (one sample at 256 Hz).
BOUNDARY_TOLERANCE_S = 1e-3


class EventsError(UsageError):
    """An events file or an annotation is invalid (message names the file, row and value).

    A :class:`runtime.config.UsageError` (a ValueError).
    """


@dataclass(frozen=True)
class Event:
    """A labelled interval of a recording; ``onset_s=None`` labels the whole recording.

    ``probs``: an optional soft label, class name -> probability (sums to 1), e.g. expert-vote fractions.
    """

    onset_s: float | None
    duration_s: float
    label: str
    probs: dict | None = None


def _recording_key(name: str) -> str:
    """Match key of a recording: its file name without folder, lower case."""
    return Path(name).name.lower()


def read_events_csv(
    path: str | os.PathLike, classes: list[str]
) -> tuple[dict[str, list[Event]], dict[str, str]]:
    """Read an events CSV.

    Parameters
    ----------
    path : path-like
        CSV with columns ``recording``, ``onset_s``, ``duration_s``, ``label`` and optionally ``subject``
        and soft-label columns ``p_<class>`` (one per class of the distribution, e.g. ``p_seizure``):
        a row whose ``p_`` cells are filled gets :attr:`Event.probs`, the cells normalised to sum 1
        (probabilities or vote counts); a row whose ``p_`` cells are all empty has none.
    classes : list of str
        Allowed labels (and ``p_`` class names).

    Returns
    -------
    events : dict
        Recording file name (lower case) -> list of :class:`Event`.
    subjects : dict
        Recording file name (lower case) -> subject id, for rows that name one.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    EventsError
        On a missing column, a non-numeric or negative time, a label outside ``classes``, a ``p_`` column
        of a class outside ``classes``, partly filled, negative, non-numeric or all-zero ``p_`` cells, or
        a recording given two subjects; the message names the file and the row (1 = first data row).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Events file not found: {path}")
    events: dict[str, list[Event]] = {}
    subjects: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [
            c for c in ("recording", "onset_s", "duration_s", "label") if c not in (reader.fieldnames or [])
        ]
        if missing:
            raise EventsError(f"Events file {path} lacks the columns {missing}; it has {reader.fieldnames}.")
        prob_columns = [c for c in reader.fieldnames if c.startswith("p_")]
        unknown = [c for c in prob_columns if c[2:] not in classes]
        if unknown:
            raise EventsError(
                f"Events file {path} has soft-label columns {unknown} of classes outside the "
                f"allowed labels {classes}; name them p_<class>."
            )
        for row_number, row in enumerate(reader, start=1):
            where = f"{path}, row {row_number}"
            recording = (row["recording"] or "").strip()
            if not recording:
                raise EventsError(f"Empty 'recording' in {where}.")
            label = (row["label"] or "").strip()
            if label not in classes:
                raise EventsError(
                    f"Invalid label {label!r} in {where}. Allowed labels are {classes}; add a class with "
                    "--set labels.classes=[...] if the cohort has one."
                )
            try:
                onset = float(row["onset_s"]) if (row["onset_s"] or "").strip() else None
                duration = float(row["duration_s"]) if (row["duration_s"] or "").strip() else 0.0
            except ValueError:
                raise EventsError(
                    f"Invalid time in {where}: onset_s={row['onset_s']!r}, duration_s={row['duration_s']!r} "
                    "must be numbers in seconds."
                ) from None
            if (
                (onset is not None and (onset < 0 or not np.isfinite(onset)))
                or duration < 0
                or not np.isfinite(duration)
            ):
                raise EventsError(
                    f"Invalid event in {where}: onset_s={onset}, duration_s={duration} must be >= 0."
                )
            probs = _row_probs(row, prob_columns, where)
            key = _recording_key(recording)
            events.setdefault(key, []).append(Event(onset, duration, label, probs))
            subject = (row.get("subject") or "").strip()
            if subject:
                if subjects.setdefault(key, subject) != subject:
                    raise EventsError(
                        f"Recording {recording!r} has two subjects in {path}: {subjects[key]!r}, {subject!r}."
                    )
    return events, subjects


def write_events_csv(path: str | os.PathLike, rows, classes: Sequence[str] | None = None) -> None:
    """Write events in the CSV format :func:`read_events_csv` reads, atomically.

    Parameters
    ----------
    path : path-like
        The CSV file (its folder is created).
    rows : iterable of (recording, subject, Event)
        One row per event; ``onset_s=None`` (a recording-level label) is written as an empty ``onset_s``.
        Times are written with ``repr`` (no rounding).
    classes : sequence of str | None
        The task's classes: when an event carries a soft label (``Event.probs``), ``p_<class>`` columns
        are written in this order (empty cells for events without one).
    """
    rows = list(rows)
    soft = classes is not None and any(event.probs for _, _, event in rows)
    with atomic_write(path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([*EVENTS_COLUMNS, *([f"p_{c}" for c in classes] if soft else [])])
        for recording, subject, event in rows:
            onset = "" if event.onset_s is None else repr(float(event.onset_s))
            probs = (
                [repr(float(event.probs.get(c, 0.0))) if event.probs else "" for c in classes] if soft else []
            )
            writer.writerow([recording, subject, onset, repr(float(event.duration_s)), event.label, *probs])


def _row_probs(row: dict, columns: list[str], where: str) -> dict | None:
    """The soft label of a CSV row from its ``p_<class>`` cells (None when they are all empty)."""
    cells = {c[2:]: (row[c] or "").strip() for c in columns}
    if not any(cells.values()):
        return None
    try:
        values = {k: float(v) for k, v in cells.items()}
    except ValueError:
        raise EventsError(f"Invalid soft label in {where}: {cells} must all be numbers.") from None
    total = sum(values.values())
    if not all(np.isfinite(v) and v >= 0 for v in values.values()) or not total > 0:
        raise EventsError(f"Invalid soft label in {where}: {cells} must be >= 0 with a positive sum.")
    return {k: v / total for k, v in values.items()}


def _matching_key(events: dict[str, list[Event]], path: str | os.PathLike) -> str | None:
    """The key of ``events`` that :func:`events_for` reads for ``path``: its file name, else its stem."""
    for key in (Path(path).name.lower(), Path(path).stem.lower()):
        if key in events:
            return key
    return None


def events_for(events: dict[str, list[Event]], path: str | os.PathLike) -> list[Event] | None:
    """The events of one recording, matched by file name with or without extension (None if absent)."""
    key = _matching_key(events, path)
    return None if key is None else events[key]


def unmatched_recordings(events: dict[str, list[Event]], paths: list[str | os.PathLike]) -> list[str]:
    """Recordings named in an events table that none of ``paths`` reads (a typo, another cohort...).

    Parameters
    ----------
    events : dict
        As returned by :func:`read_events_csv`.
    paths : list of path-like
        The recordings of the run (all of them, not one shard's).

    Returns
    -------
    names : list of str
        Sorted keys of ``events`` (lower-case names as written in the CSV) that :func:`events_for` gives
        to no recording of ``paths``; their rows would be ignored.
    """
    used = {_matching_key(events, path) for path in paths}
    return sorted(key for key in events if key not in used)


def events_from_annotations(
    annotations,
    description_map: dict,
    classes: list[str],
    ignore_unknown: bool,
    source: str,
    first_time: float = 0.0,
) -> list[Event]:
    """Turn MNE annotations into events.

    Parameters
    ----------
    annotations : mne.Annotations
        The recording's annotations (onsets relative to the first sample after subtracting ``first_time``).
    description_map : dict
        Description -> label, or -> None to ignore the description.
    classes : list of str
        Allowed labels; a description that is a class name is used as it is.
    ignore_unknown : bool
        Ignore descriptions that are neither mapped nor class names instead of raising.
    source : str
        The recording's file name, for error messages.
    first_time : float
        Time of the recording's first sample in s (``raw.first_time``), subtracted from onsets.

    Raises
    ------
    EventsError
        If a description is unknown and ``ignore_unknown`` is False, or maps to a label outside ``classes``.
    """
    events, unknown = [], set()
    for onset, duration, description in zip(
        annotations.onset, annotations.duration, annotations.description, strict=True
    ):
        description = str(description).strip()
        if description in description_map:
            label = description_map[description]
            if label is None:
                continue
            if label not in classes:
                raise EventsError(
                    f"labels.annotation_map maps {description!r} to {label!r}, which is not in "
                    f"labels.classes {classes}."
                )
        elif description in classes:
            label = description
        else:
            unknown.add(description)
            continue
        events.append(Event(float(onset) - first_time, float(duration), label))
    if unknown and not ignore_unknown:
        raise EventsError(
            f"annotations with unknown labels in {source}: {sorted(unknown)}. Map them with "
            "labels.annotation_map (null to ignore) or set labels.ignore_unknown_annotations=true. "
            f"Allowed labels are {classes}."
        )
    return events


def check_events(events: list[Event], duration_s: float, source: str) -> None:
    """Raise :class:`EventsError` if an event starts before 0 or ends after the recording's end."""
    for event in events:
        if event.onset_s is None:
            continue
        end = event.onset_s + event.duration_s
        if event.onset_s < -BOUNDARY_TOLERANCE_S or end > duration_s + BOUNDARY_TOLERANCE_S:
            raise EventsError(
                f"event outside the recording {source}: {event.label!r} from {event.onset_s:g} s "
                f"to {end:g} s, "
                f"but the recording lasts {duration_s:g} s."
            )


def label_windows(
    starts_s: np.ndarray,
    window_s: float,
    events: list[Event],
    classes: list[str],
    default: str | None = None,
    straddle: str = "drop",
    duration_s: float | None = None,
) -> tuple[list[str | None], np.ndarray]:
    """Label windows from events by the overlap rule of this module's docstring.

    Parameters
    ----------
    starts_s : ndarray, shape (n_windows,)
        Window start times in s.
    window_s : float
        Window length in s.
    events : list of Event
        The recording's events; ``onset_s=None`` events cover ``[0, duration_s)``.
    classes : list of str
        Allowed labels, in tie-breaking order.
    default : str | None
        Label of time no event covers (None: unlabelled).
    straddle : ``"drop"`` | ``"majority"``
        What to do with windows covered by more than one label.
    duration_s : float | None
        Recording duration, needed for recording-level events.

    Returns
    -------
    labels : list of (str | None)
        One label per window (None: unlabelled or dropped).
    dropped : ndarray of bool, shape (n_windows,)
        True for windows that straddle a boundary under ``straddle="drop"``.

    Raises
    ------
    ValueError
        If ``straddle`` is not one of the allowed values.
    """
    check_choice("labels.straddle", straddle, ("drop", "majority"))
    starts = np.asarray(starts_s, dtype=float)
    ends = starts + window_s
    order = {label: i for i, label in enumerate(classes)}
    used = sorted({e.label for e in events} | ({default} if default else set()), key=order.__getitem__)
    coverage = np.zeros((len(used), len(starts)))  # seconds of each label inside each window
    covered = np.zeros(len(starts))
    for event in events:
        onset = 0.0 if event.onset_s is None else event.onset_s
        offset = (duration_s if event.onset_s is None else onset + event.duration_s) or 0.0
        overlap = np.clip(np.minimum(ends, offset) - np.maximum(starts, onset), 0.0, None)
        coverage[used.index(event.label)] += overlap
        covered += overlap
    tolerance = 1e-6 * window_s
    if default:
        coverage[used.index(default)] += np.clip(window_s - covered, 0.0, None)
    n_present = (coverage > tolerance).sum(axis=0)
    full = (n_present == 1) & (coverage.max(axis=0, initial=0.0) >= window_s - tolerance)
    uncovered = np.clip(window_s - covered, 0.0, None) if not default else np.zeros(len(starts))
    majority = (n_present > 0) & (coverage.max(axis=0, initial=0.0) >= uncovered)  # unlabelled time competes
    keep = full | (majority & (straddle == "majority"))
    best = coverage.argmax(axis=0) if len(used) else np.zeros(len(starts), dtype=int)  # first of ties
    labels = [used[b] if k else None for b, k in zip(best, keep, strict=True)]
    dropped = (n_present > 0) & ~keep & (straddle == "drop")
    return labels, dropped


def window_label_probs(
    starts_s: np.ndarray,
    window_s: float,
    events: list[Event],
    classes: list[str],
    labels: list[str | None],
    default: str | None = None,
    duration_s: float | None = None,
) -> list[dict | None]:
    """Soft labels of labelled windows, from the events' distributions (this module's docstring).

    Parameters
    ----------
    starts_s : ndarray, shape (n_windows,)
        Window start times in s.
    window_s : float
        Window length in s.
    events : list of Event
        The recording's events; those with :attr:`Event.probs` make soft labels.
    classes : list of str
        The allowed labels: the keys of each distribution, in this order.
    labels : list of (str | None)
        The windows' labels (:func:`label_windows`); an unlabelled window gets no soft label.
    default : str | None
        Label of time no event covers (one-hot there).
    duration_s : float | None
        Recording duration, for recording-level events.

    Returns
    -------
    label_probs : list of (dict | None)
        Per window, class name -> probability (every class of ``classes``, sums to 1), or None when the
        window is unlabelled or overlaps no event with a distribution.
    """
    starts = np.asarray(starts_s, dtype=float)
    result: list[dict | None] = [None] * len(starts)
    if not any(e.probs for e in events):
        return result
    ends = starts + window_s
    index = {c: i for i, c in enumerate(classes)}
    mass = np.zeros((len(starts), len(classes)))  # seconds x probability of each class
    soft = np.zeros(len(starts), dtype=bool)
    covered = np.zeros(len(starts))
    for event in events:
        onset = 0.0 if event.onset_s is None else event.onset_s
        offset = (duration_s if event.onset_s is None else onset + event.duration_s) or 0.0
        overlap = np.clip(np.minimum(ends, offset) - np.maximum(starts, onset), 0.0, None)
        dist = np.zeros(len(classes))
        if event.probs:
            for name, p in event.probs.items():
                dist[index[name]] = p
            soft |= overlap > 0
        else:
            dist[index[event.label]] = 1.0
        mass += overlap[:, None] * dist
        covered += overlap
    if default is not None:
        mass[:, index[default]] += np.clip(window_s - covered, 0.0, None)
    for i in np.flatnonzero(soft):
        total = mass[i].sum()
        if labels[i] is not None and total > 0:
            result[i] = {c: float(v) for c, v in zip(classes, mass[i] / total, strict=True)}
    return result
