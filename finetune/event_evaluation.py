"""Seizure events of a fine-tuning evaluation scored against the annotated events (SzCORE, ``timescoring``).

The reference seizures are the annotated events that labelled the windows, kept by preprocessing in
``DIR/events.csv`` (:func:`read_annotated_events`), not runs of windows labelled ``seizure``: rebuilt from
window labels, a seizure whose edge windows were dropped (``labels.straddle: drop``) is shorter than
annotated, so a detection running over its edges is split into false alarms outside it, and a seizure
with a rejected window inside becomes two seizures (half of it "missed").

Per test recording (:func:`score_recordings`), the hypothesis events (runs of positive windows after the
task's smoothing, :func:`finetune.metrics.find_events`) are scored against the recording's annotated
seizures over the time actually evaluated (the union of the recording's windows in the split) by
:func:`finetune.event_scoring.score_events` with ``timescoring``'s defaults (event and sample scoring);
totals sum the counts over recordings, rates are per total evaluated time. ``task.events.strict_any_overlap``
adds the plain any-overlap event figures (no tolerance, merging or splitting) for comparison with older
papers.

A preprocessing folder without ``events.csv`` (made before it was kept), or a recording missing from it,
falls back to events rebuilt from the window labels, with a warning in the results.

References
----------
Dan et al., "SzCORE: Seizure Community Open-Source Research Evaluation framework", Epilepsia 2024,
doi:10.1111/epi.18113 (``timescoring``).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finetune.event_scoring import score_events, total_scores
from preprocess.batch import EVENTS_FILE
from runtime.config import UsageError

__all__ = [
    "EVENTS_FILE",
    "RecordingEvents",
    "events_of_class",
    "read_annotated_events",
    "read_events_table",
    "score_recordings",
]

_COLUMNS = ("recording", "onset_s", "duration_s", "label")


@dataclass(frozen=True)
class RecordingEvents:
    """What one recording's event scoring needs (built by :func:`finetune.metrics.event_metrics`).

    Attributes
    ----------
    recording : str
        The manifest's recording (file name).
    windows : ndarray, shape (n_windows, 2)
        ``[start_s, stop_s)`` of its evaluated windows, in s.
    hypothesis : ndarray, shape (n_hyp, 2)
        ``[onset_s, offset_s)`` of the detected events (runs of positive windows).
    from_labels : ndarray, shape (n_lab, 2)
        ``[onset_s, offset_s)`` of the runs of windows labelled with the positive class (the fallback
        reference).
    """

    recording: str
    windows: np.ndarray
    hypothesis: np.ndarray
    from_labels: np.ndarray


def read_events_table(root: str | os.PathLike) -> dict[str, list[tuple[float | None, float, str]]] | None:
    """The annotated events that preprocessing kept in ``root/events.csv``.

    Parameters
    ----------
    root : path-like
        A labelled preprocessing output folder.

    Returns
    -------
    events : dict | None
        Recording file name, lower case -> list of ``(onset_s, duration_s, label)`` (``onset_s`` None:
        the whole recording), for every recording listed in the file. None when the folder has no
        ``events.csv`` (made before preprocessing kept its events).

    Raises
    ------
    ValueError
        If the file lacks a column or a time is not a non-negative number (file and row named).
    """
    path = Path(root) / EVENTS_FILE
    if not path.is_file():
        return None
    events: dict[str, list[tuple[float | None, float, str]]] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UsageError(
                f"The events file {path} lacks the columns {missing}; it has {reader.fieldnames}."
            )
        for row_number, row in enumerate(reader, start=1):
            rec_events = events.setdefault(Path((row["recording"] or "").strip()).name.lower(), [])
            try:
                onset = float(row["onset_s"]) if (row["onset_s"] or "").strip() else None
                duration = float(row["duration_s"]) if (row["duration_s"] or "").strip() else 0.0
            except ValueError:
                onset = duration = math.nan
            if (onset is not None and not onset >= 0) or not (math.isfinite(duration) and duration >= 0):
                raise UsageError(
                    f"Invalid event in {path}, row {row_number}: onset_s={row['onset_s']!r}, "
                    f"duration_s={row['duration_s']!r} must be non-negative numbers of seconds."
                )
            rec_events.append((onset, duration, (row["label"] or "").strip()))
    return events


def events_of_class(events: Mapping | None, label: str) -> dict[str, list[tuple[float | None, float]]] | None:
    """``(onset_s, duration_s)`` of the events of one label per recording (:func:`read_events_table`)."""
    if events is None:
        return None
    return {rec: [(on, d) for on, d, lab in rec_events if lab == label] for rec, rec_events in events.items()}


def read_annotated_events(
    root: str | os.PathLike, positive_class: str
) -> dict[str, list[tuple[float | None, float]]] | None:
    """The annotated events of the positive class kept in ``root/events.csv`` (None: no such file).

    :func:`events_of_class` of :func:`read_events_table`: recording (lower case) -> ``(onset_s,
    duration_s)`` pairs, an empty list for a recording without such events.
    """
    return events_of_class(read_events_table(root), positive_class)


def _lookup(annotated: Mapping, recording: str):
    for key in (Path(recording).name.lower(), Path(recording).stem.lower()):
        if key in annotated:
            return annotated[key]
    return None


def _pairs(intervals: np.ndarray) -> list[tuple[float, float]]:
    return [(float(a), float(b - a)) for a, b in np.asarray(intervals, dtype=float).reshape(-1, 2)]


def score_recordings(
    recordings: Sequence[RecordingEvents],
    annotated: Mapping | None,
    strict_any_overlap: bool = False,
    source: str = EVENTS_FILE,
) -> dict:
    """SzCORE event and sample scores of the detected events of several recordings, and their totals.

    Parameters
    ----------
    recordings : sequence of RecordingEvents
        One per evaluated recording.
    annotated : mapping | None
        :func:`read_annotated_events` (the positive class); None: every reference is rebuilt from the
        window labels.
    strict_any_overlap : bool
        Also score events by plain any-overlap (``score_events(strict=True)``).
    source : str
        Where ``annotated`` was read, for the warnings.

    Returns
    -------
    scoring : dict
        ``event``, ``sample``: totals (:func:`finetune.event_scoring.total_scores`: sensitivity,
        precision, f1, false_alarms_per_24h and counts); ``strict_any_overlap`` (``{"event": ...}``, only
        with the option); ``reference``: ``"annotated"``, ``"window_labels"`` or ``"mixed"``;
        ``n_recordings``, ``evaluated_s``; ``recordings``: per recording ``recording``, ``reference``,
        ``evaluated_s``, ``event``, ``sample``, ``warnings``; ``warnings``: the fallbacks and the totals'
        warnings.

    Raises
    ------
    ValueError
        If ``recordings`` is empty.
    """
    if not recordings:
        raise ValueError("Invalid value for the 'recordings' parameter: no recording to score.")
    warnings: list[str] = []
    if annotated is None:
        warnings.append(
            f"the data folder has no {source} (made before preprocessing kept its events): reference "
            f"seizures were rebuilt from the window labels, which splits seizures at rejected windows and "
            f"shortens them at dropped edge windows; preprocess again for scores against the annotations."
        )
    rows, strict_rows, fallbacks = [], [], []
    for rec in recordings:
        windows = np.asarray(rec.windows, dtype=float).reshape(-1, 2)
        reference = None if annotated is None else _lookup(annotated, rec.recording)
        if reference is None:
            kind, reference = "window_labels", _pairs(rec.from_labels)
            if annotated is not None:
                fallbacks.append(rec.recording)
        else:
            kind = "annotated"
        hypothesis = _pairs(rec.hypothesis)
        duration_s = max([float(windows[:, 1].max())] + [on + d for on, d in reference if on is not None])
        reference = [(0.0, duration_s) if on is None else (on, d) for on, d in reference]
        evaluated = [tuple(w) for w in windows]
        result = score_events(reference, hypothesis, duration_s, evaluated=evaluated)
        rows.append({"recording": rec.recording, "reference": kind, **result})
        if strict_any_overlap:
            strict_rows.append(
                score_events(reference, hypothesis, duration_s, evaluated=evaluated, strict=True)
            )
    if fallbacks:
        warnings.append(
            f"{len(fallbacks)} recording(s) are not in {source}: their reference seizures were rebuilt "
            f"from the window labels ({', '.join(fallbacks[:10])}{' ...' if len(fallbacks) > 10 else ''})."
        )
    total = total_scores(rows)
    kinds = {row["reference"] for row in rows}
    out = {
        "scoring": "SzCORE (timescoring default parameters)",
        "reference": kinds.pop() if len(kinds) == 1 else "mixed",
        "event": total["event"],
        "sample": total["sample"],
    }
    if strict_any_overlap:
        out["strict_any_overlap"] = {"event": total_scores(strict_rows)["event"]}
    out.update(
        n_recordings=total["n_recordings"],
        evaluated_s=total["evaluated_s"],
        recordings=[
            {k: row[k] for k in ("recording", "reference", "evaluated_s", "event", "sample", "warnings")}
            for row in rows
        ],
        warnings=warnings + total["warnings"],
    )
    return out
