"""Seizure events scored the community's way: SzCORE event and sample scoring through ``timescoring``.

The reference events are the annotated seizures themselves (not events rebuilt from window labels), the
hypothesis events any detector's output; both are scored over the recording time actually evaluated.
The scoring itself is the ``timescoring`` package of the SzCORE framework (Dan et al., Epilepsia 2024):

- event scoring (:class:`timescoring.scoring.EventScoring`, default parameters): any overlap between a
  reference event widened by 30 s before and 60 s after and a hypothesis event is a detection; events
  closer than 90 s are merged and events longer than 5 min split (in the reference and the hypothesis);
  a hypothesis event that overlaps no detected (widened) reference event is a false alarm;
- sample scoring (:class:`timescoring.scoring.SampleScoring`, default 1-Hz labels): every second of
  seizure counts.

``strict=True`` gives the plain any-overlap figures instead (no tolerance, no merging or splitting; the
same ``EventScoring`` with those parameters set to 0 and infinity): documented for comparison with
older papers, not the default.

Events are ``(onset_s, duration_s)`` pairs. They become ``timescoring.annotations.Annotation`` objects
built from the event list (10 Hz, event scoring's resolution); sample scoring resamples them to 1-s
labels, where an event shorter than a second can vanish (reported in ``warnings``).

Evaluated time: by default the whole recording ``[0, duration_s)``. With ``evaluated`` (intervals of
time the detector actually saw, e.g. without rejected windows), hypothesis events outside it are ignored
(clipped, reported), reference events wholly outside it are not scored (reported), reference events
that reach into it are kept whole (a seizure cut by a rejected window stays one seizure), sample
scoring runs on the evaluated samples only and the false-alarm rates are per evaluated time.

References
----------
.. [1] Dan, Pale, Amirshahi, Cappelletti, Ingolfsson, Wang, Cossettini, Bernini, Benini, Beniczky,
   Atienza, Ryvlin, "SzCORE: Seizure Community Open-Source Research Evaluation framework for the
   validation of electroencephalography-based automated seizure detection algorithms", Epilepsia, 2024,
   doi:10.1111/epi.18113. Package: https://github.com/esl-epfl/epilepsy_performance_metrics
   (``pip install timescoring``).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from timescoring import scoring
from timescoring.annotations import Annotation

from runtime.config import UsageError

__all__ = [
    "DEFAULT_SEIZURE_PREFIXES",
    "MIN_RATE_DURATION_S",
    "LEVELS",
    "is_seizure_label",
    "read_events_tsv",
    "recording_duration_s",
    "score_events",
    "scores_from_counts",
    "total_scores",
]

#: Scoring levels of every result: SzCORE event scoring and sample scoring.
LEVELS = ("event", "sample")

#: Evaluated time under which per-24-h rates are flagged as extrapolated (10 min).
MIN_RATE_DURATION_S = 600.0

#: ``trial_type`` values taken as seizures by default: ``seizure`` and the SzCORE/HED-SCORE codes that
#: start with ``sz`` (``sz``, ``sz_foc_ia``, ``sz_gen_m_tonicClonic``...), case-insensitive.
DEFAULT_SEIZURE_PREFIXES = ("sz", "seizure")

_REQUIRED_COLUMNS = ("onset", "duration")
_SECONDS_PER_DAY = 24 * 3600.0
# Label resolutions of timescoring: EventScoring works at 10 Hz, SampleScoring's default labels are 1 Hz.
_EVENT_SFREQ = 10
_SAMPLE_SFREQ = 1
# Tolerance on "an event ends past the recording" (float rounding in events files written by others).
_END_TOLERANCE_S = 1e-6


def is_seizure_label(label: str, labels: Iterable[str] | None = None) -> bool:
    """Whether an events-file label marks a seizure.

    Parameters
    ----------
    label : str
        The row's ``trial_type`` (or chosen label column).
    labels : iterable of str | None
        Labels that are seizures (exact, case-sensitive). None: :data:`DEFAULT_SEIZURE_PREFIXES`
        (``seizure``, and ``sz`` / ``sz_*`` codes), case-insensitive.

    Returns
    -------
    bool
    """
    if labels is not None:
        return label in set(labels)
    low = label.strip().lower()
    return low == "seizure" or low == "sz" or low.startswith("sz_")


def _check_duration(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(
            f"Invalid value for the '{name}' parameter. Expected a number of seconds, "
            f"but got {value!r} instead."
        )
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise UsageError(
            f"Invalid value for the '{name}' parameter. Allowed values are positive finite "
            f"durations in s, but got {value!r} instead."
        )
    return value


def read_events_tsv(
    path: str | os.PathLike,
    labels: Iterable[str] | None = None,
    label_column: str = "trial_type",
) -> list[tuple[float, float]]:
    """Seizure events of a BIDS events file.

    Parameters
    ----------
    path : path-like
        Tab-separated file with a header; columns ``onset`` and ``duration`` (in s) and the label
        column. Other columns are ignored. ``n/a`` or an empty duration is an error.
    labels : iterable of str | None
        Label values that are seizures (see :func:`is_seizure_label`); None: ``seizure``/``sz*``.
    label_column : str
        The column holding the labels (BIDS: ``trial_type``; SzCORE's files: ``eventType``).

    Returns
    -------
    events : list of (onset_s, duration_s)
        The seizure rows, in file order, floats in s.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If a column is missing, or a value is not a number, or an onset or duration is negative or not
        finite (the message names the file, line and column).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Events file not found: {path}.")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter="\t")
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in (*_REQUIRED_COLUMNS, label_column) if c not in columns]
        if missing:
            raise UsageError(
                f"The events file {path} lacks the column(s) {missing}: a BIDS events file is tab-separated "
                f"with the columns onset, duration and {label_column} (got {columns}; choose the label "
                f"column with label_column / --label-column)."
            )
        events = []
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            if not is_seizure_label(row[label_column], labels):
                continue
            values = []
            for column in _REQUIRED_COLUMNS:
                try:
                    value = float(row[column])
                except ValueError:
                    raise UsageError(
                        f"The events file {path}, line {line}: the {column} {row[column]!r} is "
                        f"not a number of seconds."
                    ) from None
                if not math.isfinite(value) or value < 0:
                    raise UsageError(
                        f"The events file {path}, line {line}: the {column} must be a finite "
                        f"non-negative number of seconds, but got {row[column]!r}."
                    )
                values.append(value)
            events.append((values[0], values[1]))
    return events


def recording_duration_s(path: str | os.PathLike, column: str = "recordingDuration") -> float | None:
    """The recording duration an events file states (SzCORE's ``recordingDuration`` column), if any.

    Parameters
    ----------
    path : path-like
        Tab-separated events file.
    column : str
        Column holding the duration in s.

    Returns
    -------
    duration_s : float | None
        The column's value (the same on every row); None when the file has no such column or no row.

    Raises
    ------
    ValueError
        If the rows disagree or a value is not a positive number.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter="\t")
        if column not in [c.strip() for c in (reader.fieldnames or [])]:
            return None
        values = {(row.get(column) or "").strip() for row in reader}
    if not values:
        return None
    try:
        durations = {float(v) for v in values}
    except ValueError:
        raise UsageError(
            f"The events file {path}: the {column} column holds {sorted(values)}, not a number of seconds."
        ) from None
    if len(durations) != 1 or not all(math.isfinite(d) and d > 0 for d in durations):
        raise UsageError(
            f"The events file {path}: the {column} column must hold one positive duration in s, "
            f"but got {sorted(values)}."
        )
    return durations.pop()


def _check_events(name: str, events, duration_s: float) -> list[tuple[float, float]]:
    out = []
    for k, event in enumerate(events):
        try:
            onset_s, length_s = (float(v) for v in event)
        except (TypeError, ValueError):
            raise TypeError(
                f"Invalid value for the '{name}' parameter. Expected (onset_s, duration_s) pairs "
                f"of numbers, but got {event!r} at position {k} instead."
            ) from None
        if not (math.isfinite(onset_s) and math.isfinite(length_s)) or onset_s < 0 or length_s < 0:
            raise UsageError(
                f"Invalid value for the '{name}' parameter. Onsets and durations must be finite "
                f"and non-negative, but event {k} is (onset_s={onset_s}, duration_s={length_s})."
            )
        if onset_s + length_s > duration_s + _END_TOLERANCE_S:
            raise UsageError(
                f"Invalid value for the '{name}' parameter. Event {k} (onset_s={onset_s}, duration_s="
                f"{length_s}) ends at {onset_s + length_s} s, past the recording's duration_s={duration_s}: "
                f"give the recording's full duration (--duration-s), or events of this recording."
            )
        out.append((onset_s, length_s))
    return out


def _union(intervals) -> list[tuple[float, float]]:
    """Sorted union of (start_s, stop_s) intervals; empty ones dropped."""
    out = []
    for start, stop in sorted((a, b) for a, b in intervals if b > a):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return out


def _intersect(intervals, other) -> list[tuple[float, float]]:
    """Intersection of two sorted unions of intervals."""
    out = []
    for start, stop in intervals:
        for a, b in other:
            lo, hi = max(start, a), min(stop, b)
            if hi > lo:
                out.append((lo, hi))
    return out


def _annotation(intervals, sfreq: float, n_samples: int) -> Annotation:
    return Annotation([tuple(i) for i in intervals], sfreq, n_samples)


def scores_from_counts(true_positives, false_positives, n_reference, duration_s: float) -> dict:
    """Sensitivity, precision, F1 and false alarms per 24 h from counts, as ``timescoring`` computes them.

    Parameters
    ----------
    true_positives, false_positives, n_reference : int
        Detected reference events (or samples), false detections, reference events (or samples).
    duration_s : float
        Evaluated time in s.

    Returns
    -------
    scores : dict
        ``sensitivity`` (NaN without reference events), ``precision`` (NaN without detections), ``f1``
        (NaN without reference events and false alarms), ``false_alarms_per_24h``, and the counts
        ``n_reference``, ``true_positives``, ``false_positives``, ``duration_h``.

    Notes
    -----
    The formulas of ``timescoring.scoring._Scoring.computeScores`` [1]_: sensitivity = tp / n_reference,
    precision = tp / (tp + fp), F1 = 2 tp / (2 tp + fp + fn), false alarms per day = fp / days.
    """
    tp, fp, n_ref = int(true_positives), int(false_positives), int(n_reference)
    return {
        "sensitivity": tp / n_ref if n_ref > 0 else math.nan,
        "precision": tp / (tp + fp) if tp + fp > 0 else math.nan,
        "f1": 2 * tp / (2 * tp + fp + (n_ref - tp)) if n_ref + fp > 0 else math.nan,
        "false_alarms_per_24h": fp / (duration_s / _SECONDS_PER_DAY) if duration_s > 0 else math.nan,
        "n_reference": n_ref,
        "true_positives": tp,
        "false_positives": fp,
        "duration_h": duration_s / 3600.0,
    }


def _rate_warning(evaluated_s: float, what: str = "") -> list[str]:
    if evaluated_s < MIN_RATE_DURATION_S:
        return [
            f"false_alarms_per_24h{what} extrapolated from {evaluated_s:g} s of evaluated EEG "
            f"(less than {MIN_RATE_DURATION_S / 60:g} min): not a rate to report."
        ]
    return []


def _event_parameters(strict: bool) -> scoring.EventScoring.Parameters:
    if strict:
        return scoring.EventScoring.Parameters(
            toleranceStart=0,
            toleranceEnd=0,
            minOverlap=0,
            maxEventDuration=math.inf,
            minDurationBetweenEvents=0,
        )
    return scoring.EventScoring.Parameters()


def score_events(
    reference: Sequence[tuple[float, float]],
    hypothesis: Sequence[tuple[float, float]],
    duration_s: float,
    evaluated: Sequence[tuple[float, float]] | None = None,
    strict: bool = False,
) -> dict:
    """SzCORE event and sample scores of one recording's seizure detections.

    Parameters
    ----------
    reference : sequence of (onset_s, duration_s)
        Annotated seizures, in s from the recording's start; any order, overlapping events are one.
    hypothesis : sequence of (onset_s, duration_s)
        Detected seizures.
    duration_s : float
        The recording's duration in s: every event must end by then.
    evaluated : sequence of (start_s, stop_s) | None
        Time the detector evaluated (e.g. without rejected windows); None: all of ``[0, duration_s)``.
    strict : bool
        False (default): SzCORE scoring, ``timescoring``'s default parameters. True: plain any-overlap
        event scoring (no tolerance, merging or splitting); the sample scores are the same.

    Returns
    -------
    result : dict
        ``event`` and ``sample``: the dicts of :func:`scores_from_counts` (for ``sample`` the counts are
        1-s samples); ``duration_s``; ``evaluated_s`` (evaluated time in s, at the 0.1-s resolution of
        event scoring); ``strict``; ``warnings``: list of str, non-empty when the rates are extrapolated
        from less than 10 min (:data:`MIN_RATE_DURATION_S`), events vanished from the 1-s sample scoring,
        or events lay outside the evaluated time.

    Raises
    ------
    TypeError
        If an event is not a pair of numbers.
    ValueError
        If ``duration_s`` is not positive, an event has a negative or non-finite onset or duration or ends
        after ``duration_s``, or ``evaluated`` holds no time or an interval outside ``[0, duration_s]``.

    Notes
    -----
    Events become ``timescoring.annotations.Annotation`` objects built from the (sorted, merged) event
    list at 10 Hz, the resolution of ``EventScoring``; ``SampleScoring`` resamples them to its default
    1-Hz labels (``mask[round(onset_s):round(onset_s + duration_s)]``), where an event shorter than a
    second can vanish (a warning). With ``evaluated=None`` the figures equal
    ``timescoring.scoring.EventScoring(ref, hyp)`` and ``SampleScoring(ref, hyp)`` (tested), the SzCORE
    evaluation [1]_.

    References
    ----------
    .. [1] Dan et al., "SzCORE", Epilepsia 2024, doi:10.1111/epi.18113;
       https://github.com/esl-epfl/epilepsy_performance_metrics
    """
    duration_s = _check_duration("duration_s", duration_s)
    reference = _union((on, on + d) for on, d in _check_events("reference", reference, duration_s))
    hypothesis = _union((on, on + d) for on, d in _check_events("hypothesis", hypothesis, duration_s))
    n_event = round(duration_s * _EVENT_SFREQ)
    n_sample = round(n_event / _EVENT_SFREQ * _SAMPLE_SFREQ)
    if n_sample < 1:
        raise UsageError(
            f"Invalid value for the 'duration_s' parameter. Expected at least 1 s of recording, "
            f"but got {duration_s} s."
        )
    warnings = []
    if evaluated is None:
        evaluated = [(0.0, duration_s)]
    else:
        checked = []
        for k, interval in enumerate(evaluated):
            start_s, stop_s = (float(v) for v in interval)
            if not (0 <= start_s <= stop_s <= duration_s + _END_TOLERANCE_S):
                raise UsageError(
                    f"Invalid value for the 'evaluated' parameter. Interval {k} ({start_s}, "
                    f"{stop_s}) s is not inside [0, duration_s={duration_s}] with start <= stop."
                )
            checked.append((start_s, stop_s))
        evaluated = _union(checked)
    evaluated_event = _annotation(evaluated, _EVENT_SFREQ, n_event).mask
    evaluated_sample = _annotation(evaluated, _SAMPLE_SFREQ, n_sample).mask
    if not evaluated_sample.any():
        raise UsageError(
            "Invalid value for the 'evaluated' parameter: it holds no whole second of the "
            "recording, so nothing can be scored."
        )
    evaluated_s = float(evaluated_event.sum()) / _EVENT_SFREQ

    # hypothesis events outside the evaluated time are ignored; reference events that reach into it are
    # kept whole (a seizure cut by a rejected window stays one seizure)
    clipped = _intersect(hypothesis, evaluated)
    outside_s = sum(b - a for a, b in hypothesis) - sum(b - a for a, b in clipped)
    if outside_s > _END_TOLERANCE_S:
        warnings.append(f"{outside_s:g} s of hypothesis events outside the evaluated time were ignored.")
    kept = [event for event in reference if _intersect([event], evaluated)]
    if len(kept) < len(reference):
        warnings.append(
            f"{len(reference) - len(kept)} reference event(s) wholly outside the evaluated time "
            f"were not scored."
        )
    for name, events in (("reference", kept), ("hypothesis", clipped)):
        vanished = sum(1 for e in events if not _annotation([e], _SAMPLE_SFREQ, n_sample).mask.any())
        if vanished:
            warnings.append(
                f"{vanished} {name} event(s) shorter than the 1-s labels of sample scoring "
                f"vanished from it (event scoring keeps them)."
            )

    event = scoring.EventScoring(
        _annotation(kept, _EVENT_SFREQ, n_event),
        _annotation(clipped, _EVENT_SFREQ, n_event),
        _event_parameters(strict),
    )
    ref_sample = _annotation(kept, _SAMPLE_SFREQ, n_sample).mask[evaluated_sample]
    hyp_sample = _annotation(clipped, _SAMPLE_SFREQ, n_sample).mask[evaluated_sample]
    sample = scoring.SampleScoring(
        Annotation(ref_sample, _SAMPLE_SFREQ), Annotation(hyp_sample, _SAMPLE_SFREQ)
    )
    warnings += _rate_warning(evaluated_s)
    return {
        "event": scores_from_counts(event.tp, event.fp, event.refTrue, evaluated_s),
        "sample": scores_from_counts(sample.tp, sample.fp, sample.refTrue, sample.numSamples / sample.fs),
        "duration_s": duration_s,
        "evaluated_s": evaluated_s,
        "strict": bool(strict),
        "warnings": warnings,
    }


def total_scores(results: Sequence[Mapping]) -> dict:
    """Totals over recordings: counts summed, rates over the total evaluated time.

    Parameters
    ----------
    results : sequence of dict
        Results of :func:`score_events`.

    Returns
    -------
    total : dict
        ``event``, ``sample`` (:func:`scores_from_counts` of the summed counts and durations),
        ``n_recordings``, ``evaluated_s`` and ``warnings`` (the 10-min rule on the total time).

    Raises
    ------
    ValueError
        If ``results`` is empty.
    """
    if not results:
        raise ValueError("Invalid value for the 'results' parameter: no recording to total.")
    total = {}
    for level in LEVELS:
        parts = [r[level] for r in results]
        total[level] = scores_from_counts(
            sum(p["true_positives"] for p in parts),
            sum(p["false_positives"] for p in parts),
            sum(p["n_reference"] for p in parts),
            sum(p["duration_h"] for p in parts) * 3600.0,
        )
    evaluated_s = float(sum(r["evaluated_s"] for r in results))
    return {
        **total,
        "n_recordings": len(results),
        "evaluated_s": evaluated_s,
        "warnings": _rate_warning(evaluated_s, " (total)"),
    }
