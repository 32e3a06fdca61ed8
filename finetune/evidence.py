"""The evidence beside every number of a fine-tuning run: n, bootstrap intervals and warnings.

:func:`split_sizes` counts what each split holds (``results.json["n"]``), :func:`bootstrap_ci` gives a
95% interval for every test metric (``results.json["ci95"]``) and :func:`evidence_warnings` says when
the test split is too small to be a result (``results.json["warnings"]``, also printed at the end of a
run).

Bootstrap (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13; percentile method):

- **What is resampled**: subjects, with replacement (a cluster bootstrap: the windows, units and
  recordings of one child are not independent, so the interval reflects how the metric varies from one
  group of children to another). When the test split holds one subject, its units are resampled instead
  (the interval is then about those units of that child only), and for the metrics computed per
  recording (event and SWI metrics) its recordings.
- **How many**: :data:`N_RESAMPLES` = 2000 resamples drawn from a generator seeded with
  :data:`BOOTSTRAP_SEED` = 0 (the same interval every time for the same predictions).
- **Interval**: the 2.5th and 97.5th percentiles of the metric over the resamples where it is defined
  (``numpy.percentile``, linear interpolation). A resample can leave the metric undefined (AUROC of a
  resample without positive units): such resamples are left out and counted in
  ``results.json["bootstrap"]["n_undefined"]``; no defined resample gives ``[null, null]``.
- **Exact and vectorised**: a resample is a vector of counts per subject (draws with replacement); each
  metric is computed from count-weighted sufficient statistics (confusion matrices, per-score-level
  positives and negatives, per-recording event counts), which equals the metric of the resampled data set
  with duplicated units. ``scripts/bench_evidence.py`` (balanced accuracy, AUROC, AUPRC, 2000 resamples),
  on this project's 2-core CPU shared with other jobs (load 6-10): 0.4-0.8 s for 20 subjects x 250
  windows (130-190x faster than a scikit-learn loop in the same run), 1.4-2.1 s for one subject's 2000
  windows (40-55x).
- The loss (a training figure, with class weights and label smoothing) has no interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from finetune.event_scoring import MIN_RATE_DURATION_S
from finetune.metrics import event_metrics, swi_per_recording
from tasks import Task, aggregate, predict, window_durations

__all__ = [
    "BOOTSTRAP_SEED",
    "MIN_TEST_PER_CLASS",
    "MIN_TEST_SUBJECTS",
    "MIN_TEST_UNITS",
    "MIN_RATE_DURATION_S",
    "N_RESAMPLES",
    "bootstrap_ci",
    "evidence_warnings",
    "split_sizes",
]

#: Bootstrap resamples of every interval.
N_RESAMPLES = 2000
#: Seed of the bootstrap's generator (fixed: the interval is reproducible).
BOOTSTRAP_SEED = 0
#: Below these, the test split is too small to be a result (issue #11): subjects, units, units of a class.
MIN_TEST_SUBJECTS = 3
MIN_TEST_UNITS = 30
MIN_TEST_PER_CLASS = 5

_CLASSIFICATION = ("balanced_accuracy", "cohen_kappa", "weighted_f1", "auroc", "auprc")
#: Event metrics (SzCORE event scoring, finetune.metrics.event_metrics), resampled from per-recording counts.
_EVENT = {"event_sensitivity", "event_precision", "event_f1", "false_alarms_per_24h", "false_alarms_per_hour"}
_SWI = ("swi_mae", "swi_pearson_r")
_RATE_METRICS = ("false_alarms_per_hour", "false_alarms_per_24h")
# Resample x element chunks: keeps the (resamples, units) arrays near 32 MB.
_CHUNK_ELEMENTS = 4_000_000


def split_sizes(task: Task, rows: Sequence[Mapping]) -> dict:
    """What one split holds, at the task's unit.

    Parameters
    ----------
    task : Task
    rows : sequence of dict
        The split's manifest rows (labelled).

    Returns
    -------
    n : dict
        ``units`` (int, at ``task.unit``), ``subjects``, ``recordings``, ``windows`` (ints),
        ``per_class`` (class name -> units, every class of the task, in ``task.classes`` order) and
        ``duration_s`` (sum of the windows' lengths in s).
    """
    if not rows:
        return {
            "units": 0,
            "subjects": 0,
            "recordings": 0,
            "windows": 0,
            "per_class": dict.fromkeys(task.classes, 0),
            "duration_s": 0.0,
        }
    units = aggregate(task, rows, np.full((len(rows), task.n_classes), 1.0 / task.n_classes))
    per_class = np.bincount(units.labels, minlength=task.n_classes)
    return {
        "units": len(units.keys),
        "subjects": len({str(r["subject"]) for r in rows}),
        "recordings": len({str(r["recording"]) for r in rows}),
        "windows": len(rows),
        "per_class": {name: int(per_class[c]) for c, name in enumerate(task.classes)},
        "duration_s": float(window_durations(rows, task).sum()),
    }


def evidence_warnings(task: Task, n_test: Mapping, split_protocol: str | None = None) -> list[str]:
    """Why the test figures are not (yet) a result, in words; empty when the test split is large enough.

    Parameters
    ----------
    task : Task
    n_test : mapping
        :func:`split_sizes` of the test split.
    split_protocol : str | None
        Unused in the thresholds; named in the subject warning for ``patient_specific`` runs.

    Returns
    -------
    warnings : list of str
        One sentence per problem: fewer than :data:`MIN_TEST_SUBJECTS` subjects, fewer than
        :data:`MIN_TEST_UNITS` units, fewer than :data:`MIN_TEST_PER_CLASS` units of a class, and
        per-hour rates from less than :data:`MIN_RATE_DURATION_S` of EEG.
    """
    out = []
    unit = task.unit
    if n_test["subjects"] < MIN_TEST_SUBJECTS:
        what = (
            " (a patient-specific split: the figures hold for this child only)"
            if (split_protocol == "patient_specific")
            else ""
        )
        out.append(
            f"The test split holds {n_test['subjects']} subject(s), fewer than {MIN_TEST_SUBJECTS}: "
            f"the figures say nothing about other children{what}."
        )
    if n_test["units"] < MIN_TEST_UNITS:
        out.append(
            f"The test split holds {n_test['units']} {unit} unit(s), fewer than {MIN_TEST_UNITS}: "
            f"too few to be a result (see ci95)."
        )
    small = {name: k for name, k in n_test["per_class"].items() if k < MIN_TEST_PER_CLASS}
    if small:
        listed = ", ".join(f"{name} {k}" for name, k in small.items())
        out.append(
            f"The test split holds fewer than {MIN_TEST_PER_CLASS} {unit} units of some class "
            f"({listed}): per-class figures (recall, balanced accuracy, AUROC) rest on too few."
        )
    rates = [m for m in task.metrics if m in _RATE_METRICS]
    if rates and n_test.get("duration_s", 0.0) < MIN_RATE_DURATION_S:
        out.append(
            f"{', '.join(rates)} extrapolate(s) to a longer time from {n_test['duration_s']:.0f} s of test "
            f"EEG (less than {MIN_RATE_DURATION_S / 60:.0f} min): not a measured rate."
        )
    return out


# -- bootstrap -----------------------------------------------------------------------------------------


def _resample_counts(n_clusters: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n_clusters) float counts: how often each cluster is drawn in each resample.

    Each resample draws ``n_clusters`` cluster indices uniformly with replacement
    (``rng.integers``), counted per resample with one ``bincount``.
    """
    draws = rng.integers(0, n_clusters, size=(n_resamples, n_clusters))
    flat = (draws + n_clusters * np.arange(n_resamples)[:, None]).ravel()
    return (
        np.bincount(flat, minlength=n_resamples * n_clusters)
        .reshape(n_resamples, n_clusters)
        .astype(np.float64)
    )


def _chunks(n_resamples: int, width: int):
    step = max(1, _CHUNK_ELEMENTS // max(width, 1))
    for start in range(0, n_resamples, step):
        yield slice(start, min(start + step, n_resamples))


def _confusion_metrics(task: Task, confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Balanced accuracy, Cohen's kappa, weighted F1 of weighted confusion matrices (b, K, K), as sklearn."""
    support = confusion.sum(axis=2)  # true class totals (b, K)
    predicted = confusion.sum(axis=1)
    diag = np.diagonal(confusion, axis1=1, axis2=2)
    total = support.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, diag / support, np.nan)
        out = {"balanced_accuracy": np.nanmean(np.where(support > 0, recall, np.nan), axis=1)}
        po = diag.sum(axis=1) / total
        pe = (support * predicted).sum(axis=1) / total**2
        out["cohen_kappa"] = np.where(pe < 1, (po - pe) / (1 - pe), np.nan)
        denominator = support + predicted
        f1 = np.where(denominator > 0, 2 * diag / np.where(denominator > 0, denominator, 1), 0.0)
        out["weighted_f1"] = (f1 * support).sum(axis=1) / total
    return out


def _level_sums(
    counts: np.ndarray,
    cluster: np.ndarray,
    group: np.ndarray,
    positive: np.ndarray,
    n_groups: int,
    max_product_clusters: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weight per score level in each resample, each (b, n_groups).

    Few clusters (subjects, at most ``max_product_clusters``): a (b, clusters) @ (clusters, levels)
    product of per-cluster level counts, O(b x clusters x levels) in BLAS. Many (the units of one
    subject): the units' weights summed per level over sorted units (``reduceat``), O(b x units).
    """
    n_clusters = counts.shape[1]
    if n_clusters <= max_product_clusters:
        per_cluster = np.zeros((2, n_clusters, n_groups))
        np.add.at(per_cluster, (positive.astype(np.int64), cluster, group), 1.0)
        return counts @ per_cluster[1], counts @ per_cluster[0]
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
    sorted_weights = counts[:, cluster[order]]
    pos = np.add.reduceat(sorted_weights * positive[order], starts, axis=1)
    return pos, np.add.reduceat(sorted_weights, starts, axis=1) - pos


def _ranking_metrics(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and average precision from positive and negative weights per score level (b, G), ascending.

    Equal to :func:`sklearn.metrics.roc_auc_score` and :func:`sklearn.metrics.average_precision_score`
    on the units duplicated by their weights (ties: half a pair for AUROC, one threshold for AP).
    """
    cum_pos, cum_neg = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    n_pos, n_neg = cum_pos[:, -1], cum_neg[:, -1]
    defined = (n_pos > 0) & (n_neg > 0)
    # AUROC: each positive beats the negatives strictly below its level and ties half of those at it.
    auroc = np.einsum("bg,bg->b", pos, cum_neg - 0.5 * neg)
    # AP: at the threshold of each level, tp and fp count the units at or above it (descending scan).
    tp = n_pos[:, None] - cum_pos + pos
    predicted = tp + (n_neg[:, None] - cum_neg + neg)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=pos > 0)
    auprc = np.einsum("bg,bg->b", pos, precision)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(defined, auroc / (n_pos * n_neg), np.nan), np.where(defined, auprc / n_pos, np.nan))


def _weighted_pearson(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    total = w.sum(axis=1, keepdims=True)
    mx, my = (w * x).sum(axis=1, keepdims=True) / total, (w * y).sum(axis=1, keepdims=True) / total
    cov = (w * (x - mx) * (y - my)).sum(axis=1)
    vx, vy = (w * (x - mx) ** 2).sum(axis=1), (w * (y - my) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(vx * vy)
    tiny_x, tiny_y = 1e-12 * (w * x**2).sum(axis=1), 1e-12 * (w * y**2).sum(axis=1)
    return np.where((vx > tiny_x) & (vy > tiny_y), r, np.nan)


def _clusters(keys: Sequence[str], subject_of: Mapping[str, str], n_subjects: int):
    """Cluster index of each key (its subject's; itself with one subject) and the cluster count."""
    if n_subjects > 1:
        names = sorted({subject_of[k] for k in keys})
        position = {s: i for i, s in enumerate(names)}
        return np.array([position[subject_of[k]] for k in keys], dtype=np.int64), len(names), "subject"
    return np.arange(len(keys), dtype=np.int64), len(keys), None


def bootstrap_ci(
    task: Task,
    rows: Sequence[Mapping],
    probabilities: np.ndarray,
    metrics: Sequence[str] | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
    events: Mapping | None = None,
) -> tuple[dict[str, list], dict]:
    """Percentile bootstrap intervals of the test metrics, resampling subjects (see the module docstring).

    Parameters
    ----------
    task : Task
    rows : sequence of dict
        The test split's manifest rows (with ``subject``, ``recording``, ``label``...).
    probabilities : ndarray, shape (n_rows, n_classes)
        Window class probabilities, in the order of ``rows``.
    metrics : sequence of str | None
        Metrics to bracket (None: ``task.metrics``); names from :data:`tasks.METRIC_NAMES`.
    n_resamples : int
        Bootstrap resamples.
    seed : int
        Seed of the generator (:func:`numpy.random.default_rng`).
    level : float
        Coverage of the interval, in (0, 1).
    events : mapping | None
        The annotated events of the data folder (:func:`finetune.event_evaluation.read_events_table`),
        the reference of the event metrics, as in :func:`finetune.metrics.evaluate_predictions`.

    Returns
    -------
    ci : dict
        Metric -> ``[low, high]`` (floats; ``[nan, nan]`` when no resample defines it).
    info : dict
        ``method`` ("percentile"), ``n_resamples``, ``seed``, ``level``, ``resampled`` (metric ->
        ``"subject"``, ``"unit"`` or ``"recording"``), ``n_clusters`` (metric -> clusters resampled),
        ``n_undefined`` (metric -> resamples where it is undefined) and, when some metric has no
        resampling rule here, ``unsupported`` (its interval is ``[nan, nan]``).

    Raises
    ------
    ValueError
        If ``n_resamples < 1`` or ``level`` is not in (0, 1).
    """
    if n_resamples < 1 or not 0 < level < 1:
        raise ValueError(
            f"Invalid bootstrap settings: n_resamples={n_resamples} (>= 1) and level={level} "
            f"(in (0, 1)) are needed."
        )
    metrics = list(task.metrics if metrics is None else metrics)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    rng = np.random.default_rng(seed)
    subject_of_recording = {str(r["recording"]): str(r["subject"]) for r in rows}
    n_subjects = len(set(subject_of_recording.values()))
    values: dict[str, np.ndarray] = {}
    info = {
        "method": "percentile",
        "n_resamples": n_resamples,
        "seed": seed,
        "level": level,
        "resampled": {},
        "n_clusters": {},
        "n_undefined": {},
    }

    unit_metrics = [m for m in metrics if m in _CLASSIFICATION]
    if unit_metrics:
        units = aggregate(task, rows, probabilities)
        first_row = np.zeros(len(units.keys), dtype=np.int64)
        first_row[units.index[::-1]] = np.arange(len(rows))[::-1]
        unit_subject = [str(rows[i]["subject"]) for i in first_row]
        cluster, n_clusters, kind = _clusters(unit_subject, {s: s for s in unit_subject}, n_subjects)
        counts = _resample_counts(n_clusters, n_resamples, rng)
        predicted = predict(task, units.probabilities)
        k = task.n_classes
        cell = np.zeros((n_clusters, k * k))
        np.add.at(cell, (cluster, units.labels * k + predicted), 1.0)
        confusion = (counts @ cell).reshape(n_resamples, k, k)
        values.update({m: v for m, v in _confusion_metrics(task, confusion).items() if m in unit_metrics})
        if "auroc" in unit_metrics or "auprc" in unit_metrics:
            scores = units.probabilities[:, task.positive_index]
            levels, group = np.unique(scores, return_inverse=True)
            positive = units.labels == task.positive_index
            auroc, auprc = np.empty(n_resamples), np.empty(n_resamples)
            for part in _chunks(n_resamples, len(units.keys) + levels.size):
                level_sums = _level_sums(counts[part], cluster, group, positive, levels.size)
                auroc[part], auprc[part] = _ranking_metrics(*level_sums)
            values.update({m: v for m, v in (("auroc", auroc), ("auprc", auprc)) if m in unit_metrics})
        for m in unit_metrics:
            info["resampled"][m], info["n_clusters"][m] = kind or "unit", n_clusters

    recording_metrics = [m for m in metrics if m in _EVENT or m in _SWI]
    if recording_metrics:
        recordings = sorted(subject_of_recording)
        cluster, n_clusters, kind = _clusters(recordings, subject_of_recording, n_subjects)
        counts = _resample_counts(n_clusters, n_resamples, rng)
        weights = counts[:, cluster]  # (b, n_recordings)
        by_recording = {r: [] for r in recordings}
        for i, row in enumerate(rows):
            by_recording[str(row["recording"])].append(i)
        if any(m in _EVENT for m in recording_metrics):
            # SzCORE event-scoring counts per recording (true positives, false positives, reference events,
            # evaluated hours), from one scoring of the split against its annotated events; resampled sums.
            scoring = event_metrics(task, rows, probabilities, events=events)[0]["event_scoring"]
            per_recording = {r["recording"]: r["event"] for r in scoring["recordings"]}
            keys = ("true_positives", "false_positives", "n_reference")
            stats = np.array(
                [[per_recording[r][k] for k in keys] + [per_recording[r]["duration_h"]] for r in recordings]
                if all(r in per_recording for r in recordings)
                else np.zeros((0, 4))
            )
            if stats.size:
                tp, fp, n_ref, hours = (weights @ stats).T
                with np.errstate(invalid="ignore", divide="ignore"):
                    sensitivity = np.where(n_ref > 0, tp / n_ref, np.nan)
                    values["event_sensitivity"] = sensitivity
                    values["event_precision"] = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
                    values["event_f1"] = np.where(
                        n_ref + fp > 0, 2 * tp / (2 * tp + fp + (n_ref - tp)), np.nan
                    )
                    values["false_alarms_per_hour"] = np.where(hours > 0, fp / hours, np.nan)
                    values["false_alarms_per_24h"] = np.where(hours > 0, 24 * fp / hours, np.nan)
        if any(m in _SWI for m in recording_metrics):
            _, swi_pred, swi_true = swi_per_recording(task, rows, probabilities)
            values["swi_mae"] = (weights * np.abs(swi_pred - swi_true)).sum(axis=1) / weights.sum(axis=1)
            values["swi_pearson_r"] = _weighted_pearson(weights, swi_true[None, :], swi_pred[None, :])
        for m in recording_metrics:
            info["resampled"][m], info["n_clusters"][m] = kind or "recording", n_clusters

    ci = {}
    tail = 100 * (1 - level) / 2
    for m in metrics:
        if m not in values:  # a metric this module cannot resample (yet): said, not skipped silently
            ci[m] = [float("nan"), float("nan")]
            info.setdefault("unsupported", []).append(m)
            continue
        v = values[m]
        finite = v[np.isfinite(v)]
        info["n_undefined"][m] = int(v.size - finite.size)
        ci[m] = (
            [float(x) for x in np.percentile(finite, [tail, 100 - tail])]
            if finite.size
            else [float("nan"), float("nan")]
        )
    return ci, info
