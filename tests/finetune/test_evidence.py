"""n, bootstrap intervals and warnings of a run's test split (issue #11, section 3)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from finetune.evidence import (
    N_RESAMPLES,
    _confusion_metrics,
    _level_sums,
    _ranking_metrics,
    bootstrap_ci,
    evidence_warnings,
    split_sizes,
)
from finetune.metrics import evaluate_predictions
from tasks import aggregate, get_task

ONSET = get_task("onset_detection")
HIE = get_task("hie_grading")


def _cohort(make_rows, n_subjects, windows_per_subject, seed=0, p_seizure=0.3):
    """Binary windows of several subjects with noisy, informative probabilities."""
    rng = np.random.default_rng(seed)
    items, labels = [], []
    for s in range(n_subjects):
        for w in range(windows_per_subject):
            label = "seizure" if rng.random() < p_seizure else "background"
            items.append((f"s{s}", f"s{s}_r0", 4.0 * w, label))
            labels.append(label == "seizure")
    labels = np.array(labels)
    p = np.clip(0.5 + 0.3 * (labels - 0.5) + 0.25 * rng.standard_normal(labels.size), 0.01, 0.99)
    p = np.round(p, 2)  # ties between scores, as with real probabilities of few distinct values
    return make_rows(items), np.stack([1 - p, p], axis=1)


def test_weighted_statistics_equal_sklearn_on_duplicated_units():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 60)
    predicted = np.where(rng.random(60) < 0.6, labels, rng.integers(0, 4, 60))
    weights = rng.integers(0, 4, (5, 60)).astype(float)
    confusion = np.zeros((5, 4, 4))
    for b in range(5):
        np.add.at(confusion[b], (labels, predicted), weights[b])
    got = _confusion_metrics(HIE, confusion)
    for b in range(5):
        y, yhat = np.repeat(labels, weights[b].astype(int)), np.repeat(predicted, weights[b].astype(int))
        assert got["balanced_accuracy"][b] == pytest.approx(skm.balanced_accuracy_score(y, yhat), abs=1e-12)
        assert got["cohen_kappa"][b] == pytest.approx(skm.cohen_kappa_score(y, yhat), abs=1e-12)
        f1 = skm.f1_score(y, yhat, labels=[0, 1, 2, 3], average="weighted", zero_division=0)
        assert got["weighted_f1"][b] == pytest.approx(f1, abs=1e-12)

    positive = rng.random(80) < 0.4
    scores = np.round(rng.random(80), 1)  # many ties
    levels, group = np.unique(scores, return_inverse=True)
    weights = rng.integers(0, 3, (6, 80)).astype(float)
    # Per-unit weights (80 clusters of one unit: the reduceat path) and per-cluster (the product path).
    auroc, auprc = _ranking_metrics(*_level_sums(weights, np.arange(80), group, positive, levels.size, 0))
    cluster = np.arange(80) % 8
    counts = rng.integers(0, 3, (6, 8)).astype(float)
    auroc_c, auprc_c = _ranking_metrics(*_level_sums(counts, cluster, group, positive, levels.size))
    for b in range(6):
        keep = counts[b, cluster].astype(int)
        y, s = np.repeat(positive, keep), np.repeat(scores, keep)
        assert auroc_c[b] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
        assert auprc_c[b] == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    for b in range(6):
        keep = weights[b].astype(int)
        y, s = np.repeat(positive, keep), np.repeat(scores, keep)
        assert auroc[b] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
        assert auprc[b] == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


def test_bootstrap_resamples_subjects_and_matches_a_slow_reference(make_rows):
    rows, p = _cohort(make_rows, n_subjects=8, windows_per_subject=12)
    ci, info = bootstrap_ci(ONSET, rows, p, metrics=["balanced_accuracy", "auroc", "auprc"], n_resamples=100)
    assert info["resampled"] == dict.fromkeys(["balanced_accuracy", "auroc", "auprc"], "subject")
    assert info["n_clusters"]["auroc"] == 8 and info["method"] == "percentile"
    # Slow reference: the same draws (seed 0, 8 subjects drawn with replacement), each resample built by
    # duplicating the subjects' windows and scored by scikit-learn.
    draws = np.random.default_rng(0).integers(0, 8, size=(100, 8))
    counts = np.stack([np.bincount(d, minlength=8) for d in draws])
    units = aggregate(ONSET, rows, p)
    subject = np.array([int(r["subject"][1:]) for r in rows])  # window units: one row per unit, in row order
    assert units.index.tolist() == list(range(len(rows)))  # rows already in (recording, start) order
    reference = {"balanced_accuracy": [], "auroc": [], "auprc": []}
    y_all = units.labels
    score_all = units.probabilities[:, 1]
    subject_of_unit = subject
    for c in counts:
        w = c[subject_of_unit].astype(int)
        y, s = np.repeat(y_all, w), np.repeat(score_all, w)
        reference["balanced_accuracy"].append(skm.balanced_accuracy_score(y, (s >= 0.5).astype(int)))
        if 0 < y.sum() < y.size:
            reference["auroc"].append(skm.roc_auc_score(y, s))
            reference["auprc"].append(skm.average_precision_score(y, s))
    for metric, values in reference.items():
        assert ci[metric] == pytest.approx(np.percentile(values, [2.5, 97.5]), abs=1e-12)
    point = evaluate_predictions(ONSET, rows, p)
    for metric in ci:
        assert ci[metric][0] <= point[metric] <= ci[metric][1]


def test_one_subject_resamples_units_and_is_reproducible(make_rows):
    rows, p = _cohort(make_rows, n_subjects=1, windows_per_subject=40)
    ci, info = bootstrap_ci(ONSET, rows, p, metrics=["balanced_accuracy", "auroc"])
    assert info["resampled"]["auroc"] == "unit" and info["n_clusters"]["auroc"] == 40
    assert info["n_resamples"] == N_RESAMPLES and info["seed"] == 0
    assert bootstrap_ci(ONSET, rows, p, metrics=["balanced_accuracy", "auroc"])[0] == ci
    assert ci["auroc"][0] < ci["auroc"][1]


def test_event_and_swi_intervals_resample_recordings_by_subject(make_rows):
    task = get_task("swi_quantification")
    rows, p = _cohort(make_rows, n_subjects=5, windows_per_subject=10)
    for r in rows:
        r["label"] = {"seizure": "spike_wave", "background": "background"}[r["label"]]
    ci, info = bootstrap_ci(task, rows, p, metrics=["swi_mae", "swi_pearson_r"], n_resamples=500)
    assert info["resampled"]["swi_mae"] == "subject" and info["n_clusters"]["swi_mae"] == 5
    point = evaluate_predictions(task, rows, p)
    assert ci["swi_mae"][0] <= point["swi_mae"] <= ci["swi_mae"][1]
    assert -1 <= ci["swi_pearson_r"][0] <= ci["swi_pearson_r"][1] <= 1

    rows, p = _cohort(make_rows, n_subjects=4, windows_per_subject=30, p_seizure=0.2)
    metrics = ["event_sensitivity", "event_precision", "false_alarms_per_24h"]
    ci, info = bootstrap_ci(ONSET, rows, p, metrics=metrics)
    point = evaluate_predictions(ONSET, rows, p)
    assert "unsupported" not in info and info["n_clusters"]["false_alarms_per_24h"] == 4
    assert ci["false_alarms_per_24h"][0] <= point["false_alarms_per_24h"] <= ci["false_alarms_per_24h"][1]
    assert 0 <= ci["event_precision"][0] <= point["event_precision"] <= ci["event_precision"][1] <= 1
    assert 0 <= ci["event_sensitivity"][0] <= point["event_sensitivity"] <= ci["event_sensitivity"][1] <= 1


def test_undefined_resamples_are_counted_not_invented(make_rows):
    # 3 subjects, only one with seizures: resamples without it have no positive unit (AUROC undefined).
    rows = make_rows(
        [
            (f"s{s}", f"r{s}", 4.0 * w, "seizure" if s == 0 and w < 2 else "background")
            for s in range(3)
            for w in range(4)
        ]
    )
    p = np.tile([[0.4, 0.6]], (12, 1))
    ci, info = bootstrap_ci(ONSET, rows, p, metrics=["auroc"], n_resamples=1000)
    # P(subject 0 absent from a resample of 3) = (2/3)^3 = 0.296.
    assert info["n_undefined"]["auroc"] == pytest.approx(296, abs=50)
    assert ci["auroc"] == [0.5, 0.5]


def test_sizes_and_warnings(make_rows):
    rows, p = _cohort(make_rows, n_subjects=2, windows_per_subject=5)
    n = split_sizes(ONSET, rows)
    labels = [r["label"] for r in rows]
    assert n == {
        "units": 10,
        "subjects": 2,
        "recordings": 2,
        "windows": 10,
        "per_class": {"background": labels.count("background"), "seizure": labels.count("seizure")},
        "duration_s": 40.0,
    }
    warnings = evidence_warnings(ONSET, n)
    assert len(warnings) == 4
    assert "2 subject(s), fewer than 3" in warnings[0] and "10 window unit(s), fewer than 30" in warnings[1]
    assert "fewer than 5 window units of some class" in warnings[2]
    assert "false_alarms_per_24h extrapolate(s) to a longer time from 40 s" in warnings[3]
    big = {
        "units": 400,
        "subjects": 5,
        "recordings": 5,
        "windows": 400,
        "per_class": {"background": 300, "seizure": 100},
        "duration_s": 1600.0,
    }
    assert evidence_warnings(ONSET, big) == []
    assert evidence_warnings(HIE, {**big, "per_class": dict.fromkeys(HIE.classes, 100)}) == []
