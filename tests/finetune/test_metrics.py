"""Metrics at each task's unit against values computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from finetune.metrics import (
    evaluate_predictions,
    event_metrics,
    find_events,
    smooth_k_of_n,
    swi_metrics,
    swi_per_recording,
)
from tasks import get_task, load_task_config


def test_hie_grading_per_recording(make_rows):
    task = get_task("hie_grading")
    rows = make_rows(
        [
            ("A", 0, "normal_mild"),
            ("A", 4, "normal_mild"),
            ("B", 0, "moderate"),
            ("B", 4, "moderate"),
            ("C", 0, "severe"),
            ("D", 0, "inactive"),
            ("D", 4, "inactive"),
            ("D", 8, "inactive"),
        ]
    )
    p = np.array(
        [
            [0.6, 0.2, 0.1, 0.1],
            [0.2, 0.5, 0.2, 0.1],  # A: mean (0.4, 0.35, 0.15, 0.1) -> normal_mild
            [0.1, 0.4, 0.4, 0.1],
            [0.1, 0.6, 0.2, 0.1],  # B: mean (0.1, 0.5, 0.3, 0.1) -> moderate
            [0.1, 0.6, 0.2, 0.1],  # C: moderate (wrong)
            [0.0, 0.0, 0.2, 0.8],
            [0.0, 0.0, 0.2, 0.8],
            [0.0, 0.0, 0.2, 0.8],  # D: inactive
        ]
    )
    results = evaluate_predictions(task, rows, p)
    # true (0, 1, 2, 3), predicted (0, 1, 1, 3): recalls 1, 1, 0, 1.
    assert results["balanced_accuracy"] == pytest.approx(0.75)
    # p_o = 3/4; p_e = (1*1 + 1*2 + 1*0 + 1*1) / 16 = 1/4; kappa = (3/4 - 1/4) / (3/4) = 2/3.
    assert results["cohen_kappa"] == pytest.approx(2 / 3)
    # F1: 1, 2/3 (P 1/2, R 1), 0, 1; each class weighs 1/4 -> 2/3.
    assert results["weighted_f1"] == pytest.approx(2 / 3)
    assert results["confusion_matrix"] == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
    assert results["n_units"] == 4
    assert results["undefined"] == {}
    assert set(results) == {
        "balanced_accuracy",
        "cohen_kappa",
        "weighted_f1",
        "confusion_matrix",
        "n_units",
        "undefined",
    }


def test_syndrome_per_subject_over_recordings(make_rows):
    task = get_task("syndrome_classification")
    rows = make_rows(
        [
            ("s1", "r1", 0, "CAE"),
            ("s1", "r2", 0, "CAE"),
            ("s2", "r3", 0, "LGS"),
            ("s3", "r4", 0, "LGS"),
            ("s3", "r4", 4, "LGS"),
        ]
    )
    p = np.array(
        [
            [0.9, 0.05, 0.03, 0.02],
            [0.3, 0.1, 0.1, 0.5],  # s1: (0.6, .075, .065, .26) -> CAE (r2 alone: LGS)
            [0.7, 0.1, 0.1, 0.1],  # s2: CAE (wrong)
            [0.1, 0.1, 0.1, 0.7],
            [0.2, 0.1, 0.1, 0.6],  # s3: LGS
        ]
    )
    results = evaluate_predictions(task, rows, p)
    # true (CAE, LGS, LGS), predicted (CAE, CAE, LGS): recalls CAE 1, LGS 1/2.
    assert results["balanced_accuracy"] == pytest.approx(0.75)
    # p_o = 2/3; p_e = 1/3 * 2/3 + 2/3 * 1/3 = 4/9; kappa = (2/9) / (5/9) = 0.4.
    assert results["cohen_kappa"] == pytest.approx(0.4)
    # F1 CAE: P 1/2, R 1 -> 2/3; LGS: P 1, R 1/2 -> 2/3; weights 1/3, 2/3 -> 2/3.
    assert results["weighted_f1"] == pytest.approx(2 / 3)
    assert results["confusion_matrix"] == [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 1]]
    assert results["n_units"] == 3


def test_sleep_staging_per_30_s_epoch(make_rows):
    task = get_task("sleep_staging")
    rows = make_rows(
        [
            ("n1", 0, "W"),
            ("n1", 10, "W"),
            ("n1", 20, "N1"),
            ("n1", 30, "N2"),
            ("n1", 40, "N2"),
            ("n1", 50, "N2"),
            ("n1", 60, "REM"),
            ("n2", 0, "N2"),
            ("n2", 10, "N1"),
        ],
        window_s=10.0,
    )
    p = np.array(
        [
            [0.5, 0.3, 0.1, 0.05, 0.05],
            [0.3, 0.5, 0.1, 0.05, 0.05],
            [0.5, 0.3, 0.1, 0.05, 0.05],  # n1/0 -> W
            [0.0, 0.0, 0.3, 0.7, 0.0],
            [0.0, 0.0, 0.3, 0.7, 0.0],
            [0.0, 0.0, 0.3, 0.7, 0.0],  # n1/1 -> N3
            [0.0, 0.0, 0.0, 0.0, 1.0],  # n1/2 -> REM
            [0.1, 0.7, 0.1, 0.05, 0.05],
            [0.1, 0.5, 0.3, 0.05, 0.05],  # n2/0 -> N1
        ]
    )
    results = evaluate_predictions(task, rows, p)
    # Epoch labels: n1/0 W (2 of 3), n1/1 N2, n1/2 REM, n2/0 N1 (tie N2/N1 -> N1, listed first).
    # true (W, N2, REM, N1), predicted (W, N3, REM, N1): recalls W 1, N1 1, N2 0, REM 1 -> 0.75.
    assert results["balanced_accuracy"] == pytest.approx(0.75)
    # p_o = 3/4; p_e = (1 + 1 + 0 + 0 + 1) / 16 = 3/16; kappa = (9/16) / (13/16) = 9/13.
    assert results["cohen_kappa"] == pytest.approx(9 / 13)
    # F1 W 1, N1 1, N2 0, REM 1, N3 has no support: (1 + 1 + 0 + 1) / 4.
    assert results["weighted_f1"] == pytest.approx(0.75)
    cm = np.zeros((5, 5), dtype=int)
    cm[0, 0] = cm[1, 1] = cm[2, 3] = cm[4, 4] = 1
    assert results["confusion_matrix"] == cm.tolist()
    assert results["n_units"] == 4


def test_seizure_type_per_event(make_rows):
    task = get_task("seizure_type")
    rows = make_rows(
        [
            ("r1", 0, "ABSZ"),
            ("r1", 4, "ABSZ"),
            ("r1", 8, "ABSZ"),
            ("r1", 12, "FNSZ"),
            ("r1", 16, "FNSZ"),
            ("r1", 28, "FNSZ"),
            ("r1", 32, "FNSZ"),
            ("r2", 0, "TCSZ"),
            ("r2", 4, "TCSZ"),
        ]
    )
    p = np.array(
        [[0.7, 0.1, 0.1, 0.1]] * 3
        + [  # event r1/0 (ABSZ) -> ABSZ
            [0.2, 0.5, 0.1, 0.2],
            [0.6, 0.2, 0.1, 0.1],  # r1/1 (FNSZ): mean (0.4, 0.35, 0.1, 0.15) -> ABSZ
            [0.1, 0.8, 0.05, 0.05],
            [0.1, 0.8, 0.05, 0.05],  # r1/2 (FNSZ, after a gap) -> FNSZ
            [0.1, 0.1, 0.1, 0.7],
            [0.1, 0.1, 0.5, 0.3],  # r2/0 (TCSZ): mean (0.1, 0.1, 0.3, 0.5) -> TCSZ
        ]
    )
    results = evaluate_predictions(task, rows, p)
    # true (ABSZ, FNSZ, FNSZ, TCSZ), predicted (ABSZ, ABSZ, FNSZ, TCSZ): recalls 1, 1/2, 1 -> 5/6.
    assert results["balanced_accuracy"] == pytest.approx(5 / 6)
    # p_o = 3/4; p_e = (1*2 + 2*1 + 1*1) / 16 = 5/16; kappa = (7/16) / (11/16) = 7/11.
    assert results["cohen_kappa"] == pytest.approx(7 / 11)
    # F1 ABSZ 2/3 (weight 1/4), FNSZ 2/3 (weight 1/2), TCSZ 1 (weight 1/4) -> 1/6 + 1/3 + 1/4 = 3/4.
    assert results["weighted_f1"] == pytest.approx(0.75)
    assert results["confusion_matrix"] == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    assert results["n_units"] == 4


def _artefact_rows(make_rows, task_labels):
    return make_rows([("r1", 4 * i, label) for i, label in enumerate(task_labels)])


def test_artifact_detection_per_window(make_rows):
    task = get_task("artifact_detection")
    rows = _artefact_rows(make_rows, ["clean", "clean", "clean", "artefact", "artefact", "clean"])
    score = np.array([0.1, 0.6, 0.3, 0.9, 0.4, 0.2])  # P(artefact)
    p = np.stack([1 - score, score], axis=1)
    results = evaluate_predictions(task, rows, p)
    # Positives 0.9, 0.4 vs negatives 0.1, 0.6, 0.3, 0.2: 4 + 3 of 8 pairs ranked right.
    assert results["auroc"] == pytest.approx(7 / 8)
    # Ranked: 0.9 (P: precision 1, recall 1/2), 0.6 (N), 0.4 (P: precision 2/3, recall 1) -> 1/2 + 1/3.
    assert results["auprc"] == pytest.approx(5 / 6)
    # Threshold 0.5: artefact recall 1/2 (0.9), clean recall 3/4 (0.6 is a false alarm).
    assert results["balanced_accuracy"] == pytest.approx(0.625)
    assert results["confusion_matrix"] == [[3, 1], [1, 1]]
    assert results["n_units"] == 6
    # A lower threshold catches 0.4 too.
    cfg = load_task_config("artifact_detection", overrides=["task.threshold=0.35"])
    assert evaluate_predictions(get_task("artifact_detection", cfg), rows, p)[
        "balanced_accuracy"
    ] == pytest.approx((1 + 3 / 4) / 2)


def test_single_class_makes_auroc_and_auprc_nan_with_a_reason(make_rows, caplog):
    task = get_task("epileptiform_detection")
    rows = make_rows([("r1", 0, "background"), ("r1", 4, "background"), ("r1", 8, "background")])
    p = np.array([[0.8, 0.2], [0.3, 0.7], [0.9, 0.1]])
    with caplog.at_level(logging.WARNING, logger="finetune.metrics"):
        results = evaluate_predictions(task, rows, p)
    assert math.isnan(results["auroc"]) and math.isnan(results["auprc"])
    assert "only one class (background)" in results["undefined"]["auroc"]
    assert set(results["undefined"]) == {"auroc", "auprc"}
    assert "auroc is undefined" in caplog.text
    # Balanced accuracy is the recall of the only class: 2 of 3.
    assert results["balanced_accuracy"] == pytest.approx(2 / 3)
    assert results["confusion_matrix"] == [[2, 1], [0, 0]]


def test_kappa_of_one_class_everywhere_is_nan_with_a_reason(make_rows):
    task = get_task("hie_grading")
    rows = make_rows([("A", 0, "severe"), ("B", 0, "severe")])
    results = evaluate_predictions(task, rows, np.array([[0.1, 0.1, 0.7, 0.1]] * 2))
    assert math.isnan(results["cohen_kappa"])
    assert "0 / 0" in results["undefined"]["cohen_kappa"]
    assert results["balanced_accuracy"] == 1.0 and results["weighted_f1"] == 1.0


def _onset_timeline(make_rows):
    """r1: 20 windows of 4 s, seizures at windows 5-7 (20-32 s) and 14-15 (56-64 s).
    r2: windows at 0-12 s and 40-60 s (a gap), seizure windows at 12 s and 40 s (two events)."""
    r1 = ["seizure" if i in (5, 6, 7, 14, 15) else "background" for i in range(20)]
    rows = [("r1", 4 * i, label) for i, label in enumerate(r1)]
    r2_starts = [0, 4, 8, 12, 40, 44, 48, 52, 56, 60]
    rows += [("r2", s, "seizure" if s in (12, 40) else "background") for s in r2_starts]
    score = np.full(len(rows), 0.1)
    for i in (6, 10, 11, 18):  # r1: hits event 1, a false alarm over windows 10-11, one at window 18
        score[i] = 0.9
    score[20 + 3] = score[20 + 4] = 0.8  # r2: both windows of its two events
    return make_rows(rows), np.stack([1 - score, score], axis=1)


def _strict_task(*overrides):
    """onset_detection with the plain any-overlap figures (task.events.strict_any_overlap) and events/hour."""
    cfg = load_task_config(
        "onset_detection",
        overrides=[
            "task.events.strict_any_overlap=true",
            "task.metrics=[balanced_accuracy,auroc,auprc,event_sensitivity,event_precision,event_f1,"
            "false_alarms_per_24h,false_alarms_per_hour]",
            *overrides,
        ],
    )
    return get_task("onset_detection", cfg)


def test_onset_event_sensitivity_and_false_alarms_per_hour(make_rows):
    task = _strict_task()
    rows, p = _onset_timeline(make_rows)
    values, undefined = event_metrics(task, rows, p)  # no annotated events: the label runs are the reference
    strict = values["event_scoring"]["strict_any_overlap"]["event"]
    # True events: r1 2, r2 2 (the gap splits them); detected: r1 1 (event 1), r2 2 -> 3/4.
    assert strict["n_reference"] == 4 and strict["true_positives"] == 3
    assert strict["sensitivity"] == pytest.approx(0.75)
    # False alarms: r1 windows 10-11 (one event) and window 18 = 2 over 80 s + 40 s = 1/30 h -> 60 per hour.
    assert strict["false_positives"] == 2
    assert strict["duration_h"] == pytest.approx(120 / 3600)
    assert strict["false_alarms_per_24h"] == pytest.approx(60.0 * 24)
    # SzCORE (the metrics): r1's detections are merged into one event that overlaps both (merged) seizures
    # of r1, r2's two seizures 24 s apart are merged and detected -> 2 of 2, no false alarm.
    event = values["event_scoring"]["event"]
    assert (event["n_reference"], event["true_positives"], event["false_positives"]) == (2, 2, 0)
    assert values["event_sensitivity"] == 1.0 and values["false_alarms_per_hour"] == 0.0
    assert undefined == {}
    results = evaluate_predictions(task, rows, p)
    assert results["event_sensitivity"] == 1.0
    assert results["false_alarms_per_hour"] == 0.0
    assert list(results)[:8] == [
        "balanced_accuracy",
        "auroc",
        "auprc",
        "event_sensitivity",
        "event_precision",
        "event_f1",
        "false_alarms_per_24h",
        "false_alarms_per_hour",
    ]
    assert results["event_scoring"]["reference"] == "window_labels"


def test_onset_events_with_2_of_3_smoothing(make_rows):
    rows, p = _onset_timeline(make_rows)
    task = _strict_task("task.events.smoothing_k=2", "task.events.smoothing_n=3")
    values, _ = event_metrics(task, rows, p)
    # r1 raw positives 6, 10, 11, 18 -> smoothed positives 11 and 12 (2 of 10, 11, 12): one event at 44-52 s,
    # overlapping no seizure -> 1 false alarm; window 6 alone is dropped; r2's isolated windows are dropped.
    strict = values["event_scoring"]["strict_any_overlap"]["event"]
    assert strict["sensitivity"] == 0.0
    assert strict["false_positives"] == 1
    assert strict["false_alarms_per_24h"] / 24 == pytest.approx(30.0)


def test_adjacent_events_do_not_overlap(make_rows):
    rows = make_rows([("r1", 0, "background"), ("r1", 4, "seizure"), ("r1", 8, "background")])
    p = np.array([[0.1, 0.9], [0.9, 0.1], [0.9, 0.1]])
    values, _ = event_metrics(_strict_task(), rows, p)
    # Predicted [0, 4) s and true [4, 8) s touch but share no time: missed, and a false alarm in 12 s.
    strict = values["event_scoring"]["strict_any_overlap"]["event"]
    assert strict["sensitivity"] == 0.0
    assert strict["false_alarms_per_24h"] / 24 == pytest.approx(1 / (12 / 3600))
    # SzCORE widens the seizure by 30 s before it: detected, no false alarm.
    assert values["event_sensitivity"] == 1.0 and values["false_alarms_per_24h"] == 0.0


def test_no_true_event_gives_nan_sensitivity(make_rows):
    rows = make_rows([("r1", 0, "background"), ("r1", 4, "background")])
    values, undefined = event_metrics(get_task("onset_detection"), rows, np.array([[0.9, 0.1], [0.9, 0.1]]))
    assert math.isnan(values["event_sensitivity"]) and math.isnan(values["event_precision"])
    assert "no seizure event" in undefined["event_sensitivity"]
    assert values["false_alarms_per_hour"] == 0.0


def test_find_events_and_smoothing():
    positive = np.array([0, 1, 1, 0, 1, 1, 1, 0], dtype=bool)
    segment = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    starts = np.arange(8) * 4.0
    # The gap between windows 4 and 5 splits the second run.
    np.testing.assert_allclose(
        find_events(positive, segment, starts, np.full(8, 4.0)), [[4, 12], [16, 20], [20, 28]]
    )
    assert find_events(np.zeros(3, bool), np.zeros(3, int), starts[:3], np.full(3, 4.0)).shape == (0, 2)
    np.testing.assert_array_equal(smooth_k_of_n(positive, segment, 2, 3), [0, 0, 1, 1, 1, 0, 1, 1])
    np.testing.assert_array_equal(smooth_k_of_n(positive, segment, 1, 1), positive)


def _swi_rows(make_rows):
    true = {"rA": [1, 1, 1, 1, 1, 0, 0, 0, 0, 0], "rB": [1, 0, 0, 0], "rC": [0, 0, 0, 0, 0]}
    pred = {"rA": [1, 1, 1, 0, 0, 1, 0, 0, 0, 0], "rB": [1, 1, 0, 0], "rC": [0, 0, 0, 0, 0]}
    items, score = [], []
    for rec in true:
        for i, (t, q) in enumerate(zip(true[rec], pred[rec], strict=True)):
            items.append((rec, 4 * i, "spike_wave" if t else "background"))
            score.append(0.8 if q else 0.2)
    score = np.array(score)
    return make_rows(items), np.stack([1 - score, score], axis=1)


def test_swi_per_recording_mae_and_pearson_r(make_rows):
    task = get_task("swi_quantification")
    rows, p = _swi_rows(make_rows)
    recordings, swi_pred, swi_true = swi_per_recording(task, rows, p)
    assert recordings == ["rA", "rB", "rC"]
    np.testing.assert_allclose(swi_true, [50.0, 25.0, 0.0])
    np.testing.assert_allclose(swi_pred, [40.0, 50.0, 0.0])
    results = evaluate_predictions(task, rows, p)
    # MAE = (10 + 25 + 0) / 3 percentage points.
    assert results["swi_mae"] == pytest.approx(35 / 3)
    # Deviations from the means (25, 30): (25, 0, -25) and (10, 20, -30):
    # r = 1000 / sqrt(1250 * 1400) = 2 / sqrt(7).
    assert results["swi_pearson_r"] == pytest.approx(2 / math.sqrt(7))
    # Windows: spike-wave recall 4/6, background recall 11/13 -> 59/78; with two score levels AUROC is the
    # same:
    # (4*11 + (4*2 + 2*11) / 2) / 78 = 59/78.
    assert results["balanced_accuracy"] == pytest.approx(59 / 78)
    assert results["auroc"] == pytest.approx(59 / 78)
    assert results["undefined"] == {}


def test_swi_pearson_r_undefined_cases():
    values, undefined = swi_metrics(np.array([30.0]), np.array([20.0]))
    assert values["swi_mae"] == pytest.approx(10.0) and math.isnan(values["swi_pearson_r"])
    assert "at least 2" in undefined["swi_pearson_r"]
    values, undefined = swi_metrics(np.array([30.0, 30.0]), np.array([20.0, 40.0]))
    assert values["swi_mae"] == pytest.approx(10.0) and math.isnan(values["swi_pearson_r"])
    assert "true SWI is the same" in undefined["swi_pearson_r"]
    values, undefined = swi_metrics(np.array([10.0, 30.0]), np.array([0.0, 0.0]))
    assert "predicted SWI is the same" in undefined["swi_pearson_r"]
    values, undefined = swi_metrics(np.array([10.0, 30.0]), np.array([5.0, 25.0]))
    assert values["swi_pearson_r"] == pytest.approx(1.0) and undefined == {}


def test_evaluate_refuses_labels_outside_the_task(make_rows):
    rows = make_rows([("r1", 0, "seizure"), ("r1", 4, "spike_wave")])
    with pytest.raises(ValueError, match="'spike_wave'.*Allowed values are \\['background', 'seizure'\\]"):
        evaluate_predictions(get_task("onset_detection"), rows, np.full((2, 2), 0.5))


def test_positive_runs_split_at_gaps_and_match_find_events():
    from finetune.metrics import find_events, positive_runs

    positive = np.array([1, 1, 0, 1, 1, 1, 0, 0, 1], dtype=bool)
    segment = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(positive_runs(positive, segment), [[0, 1], [3, 3], [4, 5], [8, 8]])
    assert positive_runs(np.zeros(3, bool), np.zeros(3, int)).shape == (0, 2)
    starts = np.arange(9) * 4.0
    events = find_events(positive, segment, starts, np.full(9, 4.0))
    np.testing.assert_array_equal(events, [[0, 8], [12, 16], [16, 24], [32, 36]])
