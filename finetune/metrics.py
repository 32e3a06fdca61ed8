"""Test metrics of a fine-tuned model at the task's unit of evaluation (scikit-learn, SciPy).

:func:`evaluate_predictions` is the one entry point: window class probabilities in, a mapping of metric
name to value out, with the confusion matrix at the task's unit. Metric names (:data:`METRIC_NAMES`):

- ``balanced_accuracy``: mean recall over the classes present in the true labels
  (:func:`sklearn.metrics.balanced_accuracy_score`);
- ``auroc``: area under the ROC curve of the positive-class probability
  (:func:`sklearn.metrics.roc_auc_score`); binary tasks;
- ``auprc``: area under the precision-recall curve as average precision, the step-wise sum
  sum_n (R_n - R_{n-1}) P_n (:func:`sklearn.metrics.average_precision_score`); binary tasks;
- ``cohen_kappa``: Cohen's kappa (:func:`sklearn.metrics.cohen_kappa_score`, unweighted);
- ``weighted_f1``: F1 per class averaged with weights = true support (:func:`sklearn.metrics.f1_score`
  ``average="weighted"``; a class never predicted has F1 0);
- ``event_sensitivity``, ``event_precision``, ``event_f1``, ``false_alarms_per_24h`` (and
  ``false_alarms_per_hour``): seizure events detected over time, scored against the annotated events by
  SzCORE event scoring (``timescoring``; :func:`event_metrics`, :mod:`finetune.event_evaluation`);
- ``swi_mae`` and ``swi_pearson_r``: spike-wave index per recording (:func:`swi_metrics`);
- ``kl_divergence``: mean over windows of KL(true || predicted) (:func:`kl_divergence`), the HMS
  competition's score, with the soft labels (``label_probs``) as the true distributions.

All of them but ``kl_divergence`` (always per window) are computed on the task's units (window
probabilities averaged per unit; see
:mod:`tasks`), except the event and SWI metrics, which follow windows over time.

**Undefined values are NaN, never a crash and never an invented number**, and the reason is returned
under the key ``"undefined"`` (and logged as a warning):

- AUROC and AUPRC when the true units hold only one class (no positive or no negative unit);
- Cohen's kappa when true and predicted labels hold a single, identical class (0 / 0);
- event sensitivity when there is no annotated event, precision when nothing was detected;
- SWI Pearson r with fewer than two recordings or when the true or the predicted SWI is the same for
  every recording (the correlation divides by a zero standard deviation).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from finetune.event_evaluation import RecordingEvents, events_of_class, score_recordings
from tasks import (
    METRIC_NAMES,
    Task,
    aggregate,
    check_probabilities,
    encode_label_probs,
    encode_labels,
    predict,
    recording_timelines,
    window_durations,
)

__all__ = [
    "METRIC_NAMES",
    "classification_metrics",
    "evaluate_predictions",
    "event_metrics",
    "find_events",
    "kl_divergence",
    "positive_runs",
    "smooth_k_of_n",
    "swi_metrics",
    "swi_per_recording",
]

logger = logging.getLogger(__name__)

_EVENT_METRICS = (
    "event_sensitivity",
    "event_precision",
    "event_f1",
    "false_alarms_per_24h",
    "false_alarms_per_hour",
)
_SWI_METRICS = ("swi_mae", "swi_pearson_r")


def classification_metrics(
    task: Task, labels: np.ndarray, probabilities: np.ndarray, metrics: Sequence[str] | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """Classification metrics of units (or windows).

    Parameters
    ----------
    task : Task
    labels : ndarray of int, shape (n,)
        True class indices.
    probabilities : ndarray, shape (n, n_classes)
        Class probabilities, columns in ``task.classes`` order.
    metrics : sequence of str | None
        Which of ``balanced_accuracy``, ``auroc``, ``auprc``, ``cohen_kappa``, ``weighted_f1`` to compute;
        None: those of ``task.metrics``. Other names are ignored.

    Returns
    -------
    values : dict
        Metric name -> float (NaN when undefined).
    undefined : dict
        Metric name -> why it is NaN.
    """
    metrics = task.metrics if metrics is None else metrics
    labels = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    predicted = predict(task, p)
    values: dict[str, float] = {}
    undefined: dict[str, str] = {}
    present = [task.classes[c] for c in np.unique(labels)]
    with warnings.catch_warnings():
        # Recalls of classes absent from y_true, 0/0 kappa: handled and explained below.
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        for name in metrics:
            if name == "balanced_accuracy":
                values[name] = float(skm.balanced_accuracy_score(labels, predicted))
            elif name in ("auroc", "auprc"):
                if len(present) < 2:
                    values[name] = float("nan")
                    undefined[name] = (
                        f"only one class ({present[0]}) among the {len(labels)} true units: "
                        f"{name} needs both classes"
                    )
                    continue
                positive = (labels == task.positive_index).astype(np.int64)
                score = p[:, task.positive_index]
                metric = skm.roc_auc_score if name == "auroc" else skm.average_precision_score
                values[name] = float(metric(positive, score))
            elif name == "cohen_kappa":
                kappa = skm.cohen_kappa_score(labels, predicted, labels=list(range(task.n_classes)))
                values[name] = float(kappa)
                if not np.isfinite(kappa):
                    undefined[name] = (
                        f"true and predicted labels are all {present[0]}: chance agreement "
                        "is 1 and kappa is 0 / 0"
                    )
            elif name == "weighted_f1":
                values[name] = float(
                    skm.f1_score(
                        labels,
                        predicted,
                        labels=list(range(task.n_classes)),
                        average="weighted",
                        zero_division=0,
                    )
                )
    return values, undefined


def smooth_k_of_n(positive: np.ndarray, segment: np.ndarray, k: int, n: int) -> np.ndarray:
    """Causal k-of-n smoothing of binary window decisions within contiguous runs.

    Parameters
    ----------
    positive : ndarray of bool, shape (n_windows,)
        Raw decisions of one recording's windows in time order.
    segment : ndarray of int, shape (n_windows,)
        Contiguous-run index of each window (:func:`tasks.contiguous_segments`); the look-back
        does not cross a gap.
    k, n : int
        A window is positive when at least ``k`` of the last ``n`` windows of its run (itself included;
        fewer at the start of a run) are positive. ``k = n = 1`` returns ``positive``.

    Returns
    -------
    smoothed : ndarray of bool, shape (n_windows,)
    """
    positive = np.asarray(positive, dtype=bool)
    segment = np.asarray(segment)
    if positive.size == 0:
        return positive
    csum = np.concatenate([[0], np.cumsum(positive)])
    j = np.arange(positive.size)
    new_run = np.concatenate([[True], np.diff(segment) != 0])
    run_start = np.maximum.accumulate(np.where(new_run, j, 0))
    first = np.maximum(j - n + 1, run_start)  # first window of the look-back, inside the run
    return (csum[j + 1] - csum[first]) >= k


def positive_runs(positive: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """The maximal runs of positive windows of one recording that cross no gap.

    The one implementation of "runs of positive windows": the event metrics (:func:`find_events`) and
    prediction's event detection (:func:`finetune.postprocess.detect_events`) both use it.

    Parameters
    ----------
    positive : ndarray of bool, shape (n_windows,)
        Window decisions (or true labels == positive class), in time order.
    segment : ndarray of int, shape (n_windows,)
        Contiguous-run index of each window (:func:`tasks.contiguous_segments`); a gap ends a run.

    Returns
    -------
    runs : ndarray of int64, shape (n_runs, 2)
        ``(first, last)`` window index of each run (both included), in time order.
    """
    positive = np.asarray(positive, dtype=bool)
    if not positive.any():
        return np.zeros((0, 2), dtype=np.int64)
    segment = np.asarray(segment)
    edges = np.diff(np.concatenate([[False], positive, [False]]).astype(np.int8))
    # A gap inside a positive stretch also splits it.
    breaks = np.flatnonzero(positive[1:] & positive[:-1] & (np.diff(segment) != 0)) + 1
    first = np.sort(np.concatenate([np.flatnonzero(edges == 1), breaks]))
    last = np.sort(np.concatenate([np.flatnonzero(edges == -1) - 1, breaks - 1]))
    return np.stack([first, last], axis=1).astype(np.int64)


def find_events(positive: np.ndarray, segment: np.ndarray, starts_s: np.ndarray, durations_s: np.ndarray):
    """Events: maximal runs of contiguous positive windows of one recording.

    Parameters
    ----------
    positive : ndarray of bool, shape (n_windows,)
        Window decisions (or true labels == positive class), in time order.
    segment : ndarray of int, shape (n_windows,)
        Contiguous-run index of each window; a gap ends an event.
    starts_s, durations_s : ndarray, shape (n_windows,)
        Window starts and lengths in s.

    Returns
    -------
    events : ndarray of float64, shape (n_events, 2)
        ``[onset_s, offset_s)`` of each event: the first window's start, the last window's end.
    """
    runs = positive_runs(positive, segment)
    if not len(runs):
        return np.zeros((0, 2))
    first, last = runs[:, 0], runs[:, 1]
    starts_s, durations_s = np.asarray(starts_s, float), np.asarray(durations_s, float)
    return np.stack([starts_s[first], starts_s[last] + durations_s[last]], axis=1)


def event_metrics(
    task: Task,
    rows: Sequence[Mapping],
    probabilities: np.ndarray,
    labels: np.ndarray | None = None,
    events: Mapping | None = None,
) -> tuple[dict, dict[str, str]]:
    """Seizure events detected per recording, scored against the annotated events the SzCORE way.

    The rule (:mod:`finetune.event_evaluation`):

    1. Each recording's windows are put in time order and split into contiguous runs
       (:func:`tasks.recording_timelines`); the time evaluated is the union of its windows.
    2. A window is positive when ``P(positive_class) >= task.threshold``, then k-of-n smoothed
       (:func:`smooth_k_of_n`, ``task.events.smoothing_k`` / ``smoothing_n``; 1 of 1 by default).
    3. Hypothesis events are runs of positive windows (:func:`find_events`), each spanning ``[first
       start, last start + window length)``.
    4. Reference events are the recording's annotated events of the positive class (``events``, read
       from the data folder's ``events.csv`` by :func:`finetune.event_evaluation.read_events_table`);
       without them, runs of windows labelled with the positive class (a fallback, with a warning).
    5. :func:`finetune.event_scoring.score_events` (``timescoring`` defaults: SzCORE event and sample
       scoring) per recording; totals sum the counts, rates are per total evaluated time.

    Parameters
    ----------
    task : Task
        A binary task.
    rows : sequence of dict
        Manifest rows, one per window (``recording``, ``start_s``, ``label``, ``n_times``, ``sfreq``).
    probabilities : ndarray, shape (n_rows, 2)
        Window class probabilities.
    labels : ndarray of int, shape (n_rows,) | None
        True class indices (None: :func:`tasks.encode_labels`).
    events : mapping | None
        Annotated events per recording, ``(onset_s, duration_s, label)``
        (:func:`finetune.event_evaluation.read_events_table`); those of the positive class are the
        reference. None: rebuilt from the window labels.

    Returns
    -------
    values : dict
        ``event_sensitivity``, ``event_precision``, ``event_f1`` (fractions, NaN when undefined),
        ``false_alarms_per_24h`` and ``false_alarms_per_hour`` (SzCORE event scoring totals), and
        ``event_scoring``: the full result of :func:`finetune.event_evaluation.score_recordings` (event
        and sample scores, per-recording rows, warnings).
    undefined : dict
        Metric name -> why it is NaN.

    References
    ----------
    Dan et al., "SzCORE", Epilepsia 2024, doi:10.1111/epi.18113 (event scoring with tolerances, merging and
    splitting; ``timescoring``). ``task.events.strict_any_overlap`` adds plain any-overlap scoring (Shah
    et al., IEEE SPMB 2020) to ``event_scoring``.
    """
    if not task.is_binary:
        raise ValueError(f"Event metrics need a binary task; '{task.name}' has classes {list(task.classes)}.")
    labels = encode_labels(rows, task) if labels is None else np.asarray(labels)
    p_pos = np.asarray(probabilities, dtype=np.float64)[:, task.positive_index]
    timelines = recording_timelines(rows, task)
    durations = window_durations(rows, task)
    starts = np.array([float(row["start_s"]) for row in rows])
    recordings = []
    for recording, (order, segment) in timelines.items():
        s, d = starts[order], durations[order]
        raw = p_pos[order] >= task.threshold
        smoothed = smooth_k_of_n(raw, segment, task.smoothing_k, task.smoothing_n)
        recordings.append(
            RecordingEvents(
                recording=recording,
                windows=np.stack([s, s + d], axis=1),
                hypothesis=find_events(smoothed, segment, s, d),
                from_labels=find_events(labels[order] == task.positive_index, segment, s, d),
            )
        )
    annotated = events_of_class(events, task.positive_class)
    scoring = score_recordings(recordings, annotated, task.strict_any_overlap)
    event = scoring["event"]
    values = {
        "event_sensitivity": event["sensitivity"],
        "event_precision": event["precision"],
        "event_f1": event["f1"],
        "false_alarms_per_24h": event["false_alarms_per_24h"],
        "false_alarms_per_hour": event["false_alarms_per_24h"] / 24.0,
        "event_scoring": scoring,
    }
    undefined = {}
    if not event["n_reference"]:
        undefined["event_sensitivity"] = f"no {task.positive_class} event in the evaluated time"
    if not event["true_positives"] + event["false_positives"]:
        undefined["event_precision"] = f"no detected {task.positive_class} event"
    if math.isnan(event["f1"]):
        undefined["event_f1"] = f"no {task.positive_class} event and no false alarm"
    return values, undefined


def swi_per_recording(
    task: Task, rows: Sequence[Mapping], probabilities: np.ndarray, labels: np.ndarray | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Spike-wave index (SWI) of each recording, predicted and true.

    The SWI is the percentage of a recording's windows that show spike-waves: predicted, the windows
    with ``P(positive_class) >= task.threshold``; true, the windows labelled ``positive_class``. Windows
    stand in for the seconds of the clinical definition (percent of NREM-sleep time with spike-wave
    discharges): restrict the manifest to NREM windows to get the clinical index.

    Parameters
    ----------
    task : Task
        A binary task (``swi_quantification``: positive class ``spike_wave``).
    rows : sequence of dict
        Manifest rows with ``recording`` and ``label``.
    probabilities : ndarray, shape (n_rows, 2)
    labels : ndarray of int, shape (n_rows,) | None
        True class indices (None: :func:`tasks.encode_labels`).

    Returns
    -------
    recordings : list of str
        Sorted recording ids.
    swi_predicted, swi_true : ndarray of float64, shape (n_recordings,)
        In percent (0-100).
    """
    if not task.is_binary:
        raise ValueError(f"SWI metrics need a binary task; '{task.name}' has classes {list(task.classes)}.")
    labels = encode_labels(rows, task) if labels is None else np.asarray(labels)
    positive_pred = np.asarray(probabilities, dtype=np.float64)[:, task.positive_index] >= task.threshold
    positive_true = labels == task.positive_index
    recordings = sorted({str(row["recording"]) for row in rows})
    position = {r: i for i, r in enumerate(recordings)}
    index = np.array([position[str(row["recording"])] for row in rows])
    n = np.bincount(index, minlength=len(recordings))
    swi_pred = 100.0 * np.bincount(index, weights=positive_pred, minlength=len(recordings)) / n
    swi_true = 100.0 * np.bincount(index, weights=positive_true, minlength=len(recordings)) / n
    return recordings, swi_pred, swi_true


def swi_metrics(swi_true: np.ndarray, swi_predicted: np.ndarray) -> tuple[dict[str, float], dict[str, str]]:
    """Agreement of predicted and true SWI over recordings.

    Parameters
    ----------
    swi_true, swi_predicted : ndarray, shape (n_recordings,)
        SWI in percent.

    Returns
    -------
    values : dict
        ``swi_mae``: mean absolute error in percentage points; ``swi_pearson_r``: Pearson correlation
        (:func:`scipy.stats.pearsonr`), NaN with fewer than 2 recordings or a constant input.
    undefined : dict
        Metric name -> why it is NaN.
    """
    swi_true = np.asarray(swi_true, dtype=np.float64)
    swi_predicted = np.asarray(swi_predicted, dtype=np.float64)
    values = {"swi_mae": float(np.mean(np.abs(swi_predicted - swi_true)))}
    undefined = {}
    if swi_true.size < 2:
        reason = f"{swi_true.size} recording: Pearson r needs at least 2"
    elif np.ptp(swi_true) == 0 or np.ptp(swi_predicted) == 0:
        which = "true" if np.ptp(swi_true) == 0 else "predicted"
        reason = f"the {which} SWI is the same for every recording: Pearson r divides by a zero std"
    else:
        reason = None
    if reason is None:
        values["swi_pearson_r"] = float(stats.pearsonr(swi_true, swi_predicted).statistic)
    else:
        values["swi_pearson_r"] = float("nan")
        undefined["swi_pearson_r"] = reason
    return values, undefined


def kl_divergence(true_probs: np.ndarray, predicted_probs: np.ndarray, eps: float = 1e-15) -> float:
    """Mean over windows of the KL divergence KL(true || predicted), in nats (the HMS competition's score).

    Parameters
    ----------
    true_probs : ndarray, shape (n_windows, n_classes)
        True class distributions (rows sum to 1); classes with probability 0 contribute 0.
    predicted_probs : ndarray, shape (n_windows, n_classes)
        Predicted distributions, clipped to ``[eps, 1 - eps]`` as the competition's metric does, so a
        predicted 0 gives a large finite penalty instead of infinity.
    eps : float
        The clip.

    Returns
    -------
    kl : float
        ``mean_i sum_k p_ik log(p_ik / q_ik)`` (:func:`scipy.special.rel_entr` summed per row).

    Raises
    ------
    ValueError
        If the arrays differ in shape or are not two-dimensional.

    References
    ----------
    Kaggle "HMS - Harmful Brain Activity Classification" (2024), evaluation metric ``kl_divergence``
    (micro average over rows, predictions clipped at 1e-15).
    """
    p = np.asarray(true_probs, dtype=np.float64)
    q = np.asarray(predicted_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape != q.shape:
        raise ValueError(
            f"Invalid shapes for kl_divergence: true {p.shape} and predicted {q.shape} must be "
            "equal (n_windows, n_classes)."
        )
    q = np.clip(q, eps, 1.0 - eps)
    terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / q), 0.0)
    return float(terms.sum(axis=1).mean())


def evaluate_predictions(
    task: Task, rows: Sequence[Mapping], probabilities: np.ndarray, events: Mapping | None = None
) -> dict:
    """Every metric of ``task.metrics`` for window predictions, at the task's unit.

    Parameters
    ----------
    task : Task
        From :func:`tasks.get_task`.
    rows : sequence of dict
        Labelled manifest rows, one per window (see :mod:`tasks`).
    probabilities : ndarray, shape (n_rows, n_classes)
        Window class probabilities (softmax of the logits), columns in ``task.classes`` order, rows in
        the order of ``rows``.
    events : mapping | None
        The annotated events of the data folder (:func:`finetune.event_evaluation.read_events_table`):
        the reference of the event metrics and the ``event`` units (:func:`tasks.aggregate`); None:
        rebuilt from the window labels (see :func:`event_metrics`).

    Returns
    -------
    results : dict
        Each metric of ``task.metrics`` -> float (NaN when undefined), and

        - ``"confusion_matrix"``: list of lists of int, shape (n_classes, n_classes), at the task's unit:
          rows are true classes, columns predicted classes, both in ``task.classes`` order;
        - ``"n_units"``: number of units evaluated (int);
        - ``"undefined"``: metric name -> why it is NaN (empty when all are defined);
        - ``"event_scoring"`` (tasks with event metrics): SzCORE event and sample scores, per recording and
          in total (:func:`event_metrics`).

    Raises
    ------
    ValueError
        On no rows, probabilities of the wrong shape or not probabilities, a label outside the task, a
        window listed twice, a recording/subject with mixed labels (:func:`tasks.aggregate`).

    Examples
    --------
    >>> from tasks import get_task
    >>> task = get_task("hie_grading")
    >>> rows = [dict(path=f"w{i}.pkl", subject=f"s{i // 2}", recording=f"r{i // 2}", start_s=4.0 * (i % 2),
    ...              label=("normal_mild", "severe")[i // 2], n_chans=16, n_times=4000, sfreq=1000.0)
    ...         for i in range(4)]
    >>> probabilities = [[0.7, 0.1, 0.1, 0.1], [0.3, 0.3, 0.3, 0.1],
    ...                  [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.7, 0.1]]
    >>> results = evaluate_predictions(task, rows, probabilities)
    >>> results["balanced_accuracy"], results["n_units"]
    (1.0, 2)
    """
    probabilities = check_probabilities(probabilities, len(rows), task)
    units = aggregate(task, rows, probabilities, events)
    values, undefined = classification_metrics(task, units.labels, units.probabilities)
    if any(m in task.metrics for m in _EVENT_METRICS):
        labels = encode_labels(rows, task)
        ev_values, ev_undefined = event_metrics(task, rows, probabilities, labels, events)
        values.update({m: ev_values[m] for m in _EVENT_METRICS if m in task.metrics})
        undefined.update({m: r for m, r in ev_undefined.items() if m in task.metrics})
        event_scoring = ev_values["event_scoring"]
    if any(m in task.metrics for m in _SWI_METRICS):
        _, swi_pred, swi_true = swi_per_recording(task, rows, probabilities)
        swi_values, swi_undefined = swi_metrics(swi_true, swi_pred)
        values.update({m: swi_values[m] for m in _SWI_METRICS if m in task.metrics})
        undefined.update({m: r for m, r in swi_undefined.items() if m in task.metrics})
    if "kl_divergence" in task.metrics:
        values["kl_divergence"] = kl_divergence(encode_label_probs(rows, task), probabilities)
    for name, reason in undefined.items():
        logger.warning("%s is undefined for the task '%s' (NaN): %s.", name, task.name, reason)
    confusion = skm.confusion_matrix(
        units.labels, predict(task, units.probabilities), labels=list(range(task.n_classes))
    )
    results: dict = {name: float(values[name]) for name in task.metrics}
    results["confusion_matrix"] = confusion.astype(int).tolist()
    results["n_units"] = len(units.keys)
    results["undefined"] = undefined
    if any(m in task.metrics for m in _EVENT_METRICS):
        results["event_scoring"] = event_scoring
    return results
