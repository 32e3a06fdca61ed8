"""Window probabilities of one recording -> events, hypnograms, spike-wave index, the recording's class.

Pure functions of the window probabilities (times in seconds of the recording):
:func:`detect_events` (threshold -> smoothing -> runs -> merge gap -> minimum duration),
:func:`hypnogram` (30-s epochs), :func:`spike_wave_index`, :func:`recording_class`. Runs of positive
windows are :func:`finetune.metrics.positive_runs`, the same as the event metrics use.

What each task gets (DESIGN.md section 5):

============================================================== ==========================================
task                                                           outputs besides the window probabilities
============================================================== ==========================================
onset_detection, artifact_detection, epileptiform_detection    events (TSV, MNE and EDF+ annotations)
swi_quantification                                             events and the spike-wave index (percent)
sleep_staging                                                  hypnogram of 30-s epochs (CSV, events, figure)
hie_grading, syndrome_classification, seizure_type             the recording's class and probabilities
============================================================== ==========================================

Every task also gets the recording-level mean of the window probabilities in its summary.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from finetune.metrics import positive_runs, smooth_k_of_n
from finetune.predict_config import (
    SMOOTHING_METHODS,
)
from tasks import Task, contiguous_segments, predict
from tasks.units import TIME_TOL_S

__all__ = [
    "DetectedEvent",
    "detect_events",
    "hypnogram",
    "recording_class",
    "spike_wave_index",
]

logger = logging.getLogger("finetune.postprocess")


@dataclass(frozen=True)
class DetectedEvent:
    """One detected event.

    Attributes
    ----------
    onset_s : float
        Start in s of the recording (the first window's start).
    duration_s : float
        Length in s (to the end of the last window).
    trial_type : str
        The class detected (BIDS ``trial_type``), e.g. ``seizure``.
    probability : float
        Mean probability of ``trial_type`` over the event's classified windows.
    peak_probability : float
        Its largest window probability.
    peak_s : float
        Start in s of the window with ``peak_probability``.
    """

    onset_s: float
    duration_s: float
    trial_type: str
    probability: float
    peak_probability: float
    peak_s: float

    @property
    def offset_s(self) -> float:
        """End in s of the recording."""
        return self.onset_s + self.duration_s


def _centred_mean(values: np.ndarray, segment: np.ndarray, n: int) -> np.ndarray:
    """Mean over ``n`` windows centred on each window, within its contiguous run (shorter at run edges)."""
    m = len(values)
    if m == 0 or n <= 1:
        return values.copy()
    j = np.arange(m)
    new_run = np.concatenate([[True], np.diff(segment) != 0])
    run_start = np.maximum.accumulate(np.where(new_run, j, 0))  # first index of each window's run
    last = np.where(np.concatenate([np.diff(segment) != 0, [True]]), j, m)
    run_end = np.minimum.accumulate(last[::-1])[::-1]  # last index of each window's run
    lo = np.maximum(j - (n - 1) // 2, run_start)
    hi = np.minimum(j + n // 2, run_end) + 1
    csum = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(values, axis=0)])
    counts = (hi - lo).reshape((-1,) + (1,) * (values.ndim - 1))
    return (csum[hi] - csum[lo]) / counts


def detect_events(
    starts_s: np.ndarray,
    probabilities: np.ndarray,
    task: Task,
    window_s: float,
    stride_s: float,
    *,
    threshold: float | None = None,
    smoothing: str = "k_of_n",
    k: int | None = None,
    n: int | None = None,
    average_s: float = 12.0,
    merge_gap_s: float = 0.0,
    min_duration_s: float = 0.0,
) -> list[DetectedEvent]:
    """Events from window probabilities: threshold, smoothing, runs, merge gap, minimum duration.

    The rule, per class detected (binary tasks: the positive class; multi-class tasks, e.g. artefact types:
    every class but the first, which is the background):

    1. Windows with NaN probabilities (rejected) are left out; the classified windows are split into
       contiguous runs where consecutive starts differ by at most ``stride_s``
       (:func:`tasks.contiguous_segments`): a rejected stretch is a gap.
    2. Smoothing: ``"moving_average"`` first averages the probabilities over ``round(average_s /
       stride_s)`` windows centred on each window, within its run; ``"none"`` and ``"k_of_n"`` keep them.
    3. Decision: binary tasks, ``P(positive) >= threshold``; multi-class tasks, the class of highest
       (averaged) probability. ``"k_of_n"`` then makes a window positive when at least ``k`` of the last
       ``n`` windows of its run are (:func:`finetune.metrics.smooth_k_of_n`, causal).
    4. Events are maximal runs of positive windows, from the first window's start to the last window's end
       (the rule of :func:`finetune.metrics.find_events`, used by the event metrics).
    5. Events of one class separated by at most ``merge_gap_s`` seconds are merged.
    6. Events shorter than ``min_duration_s`` seconds are dropped.

    Parameters
    ----------
    starts_s : ndarray, shape (n_windows,)
        Window starts in s, increasing.
    probabilities : ndarray, shape (n_windows, n_classes)
        Window class probabilities in ``task.classes`` order; NaN rows for rejected windows.
    task : Task
    window_s, stride_s : float
        Window length and step in s.
    threshold : float | None
        Binary tasks; None: ``task.threshold``.
    smoothing : {"none", "k_of_n", "moving_average"}
    k, n : int | None
        ``k_of_n`` parameters in windows; None: ``task.smoothing_k`` / ``task.smoothing_n``.
    average_s : float
        ``moving_average`` length in s.
    merge_gap_s, min_duration_s : float
        In s, >= 0.

    Returns
    -------
    events : list of DetectedEvent
        Sorted by onset, then class. ``probability`` is the mean raw (unsmoothed) window probability of the
        class over the classified windows inside the event (after merging).

    Raises
    ------
    ValueError
        On mismatched shapes or an invalid smoothing setting.
    """
    starts_s = np.asarray(starts_s, dtype=np.float64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != (len(starts_s), task.n_classes):
        raise ValueError(
            f"Invalid value for the 'probabilities' parameter: expected shape ({len(starts_s)}, "
            f"{task.n_classes}), but got {probabilities.shape}."
        )
    if smoothing not in SMOOTHING_METHODS:
        raise ValueError(
            f"Invalid value for the 'smoothing' parameter. Allowed values are {list(SMOOTHING_METHODS)}, "
            f"but got {smoothing!r} instead."
        )
    k = task.smoothing_k if k is None else k
    n = task.smoothing_n if n is None else n
    if not 1 <= k <= n:
        raise ValueError(
            f"Invalid values for the 'k' and 'n' parameters: 1 <= k <= n is needed, but got k={k}, n={n}."
        )
    threshold = task.threshold if threshold is None else threshold
    valid = np.isfinite(probabilities).all(axis=1)
    idx = np.flatnonzero(valid)
    s, p = starts_s[idx], probabilities[idx]
    if len(s) == 0:
        return []
    segment = contiguous_segments(s, np.full(len(s), float(stride_s)))
    scores = p
    if smoothing == "moving_average":
        scores = _centred_mean(p, segment, max(1, int(round(average_s / stride_s))))
    if task.is_binary:
        targets = [task.positive_index]
        decisions = {task.positive_index: scores[:, task.positive_index] >= threshold}
    else:
        targets = list(range(1, task.n_classes))
        best = scores.argmax(axis=1)
        decisions = {c: best == c for c in targets}
    events = []
    for c in targets:
        positive = decisions[c]
        if smoothing == "k_of_n":
            positive = smooth_k_of_n(positive, segment, k, n)
        spans = []  # [first index, last index, onset_s, offset_s]
        for first, last in positive_runs(positive, segment).tolist():
            onset, offset = s[first], s[last] + window_s
            if spans and onset - spans[-1][3] <= merge_gap_s + TIME_TOL_S:
                spans[-1][1], spans[-1][3] = last, max(spans[-1][3], offset)
            else:
                spans.append([first, last, onset, offset])
        for first, last, onset, offset in spans:
            if offset - onset < min_duration_s - TIME_TOL_S:
                continue
            values = p[first : last + 1, c]
            peak = int(np.argmax(values))
            events.append(
                DetectedEvent(
                    float(onset),
                    float(offset - onset),
                    task.classes[c],
                    float(values.mean()),
                    float(values[peak]),
                    float(s[first + peak]),
                )
            )
    return sorted(events, key=lambda e: (e.onset_s, task.classes.index(e.trial_type)))


def hypnogram(starts_s: np.ndarray, probabilities: np.ndarray, task: Task, duration_s: float) -> dict:
    """Sleep stages of 30-s epochs (``task.epoch_s``) from window probabilities.

    A window belongs to the epoch ``floor(start_s / epoch_s)`` (as :func:`tasks.unit_index`); an
    epoch's probabilities are the mean of its classified windows', its stage the most probable class.

    Parameters
    ----------
    starts_s : ndarray, shape (n_windows,)
    probabilities : ndarray, shape (n_windows, n_classes)
        NaN rows for rejected windows.
    task : Task
        ``sleep_staging`` (or any multi-class task with epochs).
    duration_s : float
        Recording length in s (the last epoch is cut at the end).

    Returns
    -------
    hypnogram : dict
        ``onset_s`` (n_epochs,), ``duration_s`` (n_epochs,), ``stage`` (list of str, ``""`` for an epoch
        without a classified window), ``probabilities`` (n_epochs, n_classes; NaN rows without a window),
        ``n_windows`` (n_epochs,) classified windows per epoch. Epochs are those holding at least one window
        start, in time order.
    """
    starts_s = np.asarray(starts_s, dtype=np.float64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    epoch_s = float(task.epoch_s)
    epoch = np.floor(starts_s / epoch_s + TIME_TOL_S).astype(np.int64)
    epochs = np.unique(epoch)
    position = np.searchsorted(epochs, epoch)
    valid = np.isfinite(probabilities).all(axis=1)
    sums = np.zeros((len(epochs), task.n_classes))
    np.add.at(sums, position[valid], probabilities[valid])
    counts = np.bincount(position[valid], minlength=len(epochs))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts[:, None]
    mean[counts == 0] = np.nan
    stage = [task.classes[int(np.argmax(row))] if c else "" for row, c in zip(mean, counts, strict=True)]
    onset = epochs * epoch_s
    return {
        "onset_s": onset.astype(np.float64),
        "duration_s": np.minimum(epoch_s, duration_s - onset),
        "stage": stage,
        "probabilities": mean,
        "n_windows": counts.astype(np.int64),
    }


def spike_wave_index(probabilities: np.ndarray, task: Task, threshold: float | None = None) -> float:
    """Spike-wave index in percent: classified windows with ``P(positive_class) >= threshold`` / all.

    The rule of :func:`finetune.metrics.swi_per_recording` (windows stand in for seconds); rejected windows
    (NaN) are left out. NaN when no window was classified.

    Parameters
    ----------
    probabilities : ndarray, shape (n_windows, 2)
    task : Task
        A binary task (``swi_quantification``).
    threshold : float | None
        None: ``task.threshold``.

    Returns
    -------
    swi : float
        In percent (0-100).
    """
    if not task.is_binary:
        raise ValueError(
            f"The spike-wave index needs a binary task; '{task.name}' has classes {list(task.classes)}."
        )
    p = np.asarray(probabilities, dtype=np.float64)[:, task.positive_index]
    p = p[np.isfinite(p)]
    if p.size == 0:
        return float("nan")
    return float(100.0 * np.mean(p >= (task.threshold if threshold is None else threshold)))


def recording_class(
    probabilities: np.ndarray, task: Task, threshold: float | None = None
) -> tuple[str, np.ndarray]:
    """The recording's class: mean of its classified windows' probabilities, then the task's decision.

    As :func:`tasks.aggregate` for the ``recording`` unit, and :func:`tasks.predict`
    (binary tasks: the positive class when its mean probability reaches ``threshold``).

    Parameters
    ----------
    probabilities : ndarray, shape (n_windows, n_classes)
        NaN rows for rejected windows.
    task : Task
    threshold : float | None
        Binary tasks; None: ``task.threshold``.

    Returns
    -------
    name : str
        The class (``""`` when no window was classified).
    mean : ndarray of float64, shape (n_classes,)
        Mean class probabilities (NaN when no window was classified).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    p = p[np.isfinite(p).all(axis=1)]
    if len(p) == 0:
        return "", np.full(task.n_classes, np.nan)
    mean = p.mean(axis=0)
    if threshold is not None and task.is_binary:
        task = dataclasses.replace(task, threshold=float(threshold))
    return task.classes[int(predict(task, mean[None])[0])], mean


# -- provenance ------------------------------------------------------------------------------------------
