"""Seizure events of the fine-tuning evaluation scored against the annotated events (SzCORE, timescoring).

Fake window predictions through :func:`finetune.metrics.evaluate_predictions` (no training), compared
with ``timescoring`` run directly on the same events; the two defects of scoring against events rebuilt
from window labels; the fallback for data folders without ``events.csv``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from finetune.event_evaluation import read_annotated_events
from finetune.metrics import evaluate_predictions
from tasks import get_task, load_task_config
from tests.finetune.test_event_scoring import _assert_equal, _timescoring


def _rows_and_probabilities(make_rows, recording, starts_s, seizure_starts, positive_starts, window_s=4.0):
    """Manifest rows of the windows at ``starts_s``; P(seizure) 0.9 on ``positive_starts``, else 0.1."""
    rows = make_rows(
        [(recording, s, "seizure" if s in seizure_starts else "background") for s in starts_s], window_s
    )
    score = np.array([0.9 if s in positive_starts else 0.1 for s in starts_s])
    return rows, np.stack([1 - score, score], axis=1)


def _window_starts(duration_s, window_s=4.0, skip=()):
    return [float(s) for s in np.arange(0.0, duration_s, window_s) if s not in skip]


def test_dropped_edge_windows_do_not_split_a_detection_into_false_alarms(make_rows):
    # Seizure annotated at 41-59 s; the windows 40-44 and 56-60 straddle its edges and were dropped
    # (labels.straddle: drop), so the window labels make a seizure of 44-56 s. The detector fires from
    # 36 s to 64 s: the gaps cut its detection into 36-40, 44-56 and 60-64 s. Against the label runs with
    # plain any-overlap (the old rule) that was 2 false alarms; against the annotated seizure, SzCORE
    # scoring (one detection: pieces closer than 90 s merge) finds the seizure and no false alarm.
    starts = _window_starts(100.0, skip=(40.0, 56.0))
    rows, p = _rows_and_probabilities(make_rows, "r1.edf", starts, (44.0, 48.0, 52.0), (36, 44, 48, 52, 60))
    task = get_task("onset_detection")
    results = evaluate_predictions(task, rows, p, events={"r1.edf": [(41.0, 18.0, "seizure")]})
    event = results["event_scoring"]["event"]
    assert (event["n_reference"], event["true_positives"], event["false_positives"]) == (1, 1, 0)
    assert results["event_sensitivity"] == 1.0 and results["event_precision"] == 1.0
    assert results["false_alarms_per_24h"] == 0.0 and results["event_f1"] == 1.0
    assert results["event_scoring"]["reference"] == "annotated"
    assert results["event_scoring"]["evaluated_s"] == pytest.approx(92.0)  # 25 windows - 2 dropped


def test_a_rejected_window_inside_a_seizure_leaves_one_seizure(make_rows):
    # Seizure annotated at 40-72 s; the window 52-56 was rejected (an artefact), so the window labels make
    # two seizures (40-52, 56-72 s). The detector fires at 60-68 s only. Old rule: sensitivity 1/2; the
    # annotated seizure is one, and it is detected: 1.0, with SzCORE and with strict any-overlap alike.
    starts = _window_starts(100.0, skip=(52.0,))
    seizure = (40.0, 44.0, 48.0, 56.0, 60.0, 64.0, 68.0)
    rows, p = _rows_and_probabilities(make_rows, "r1.edf", starts, seizure, (60.0, 64.0))
    cfg = load_task_config("onset_detection", overrides=["task.events.strict_any_overlap=true"])
    task = get_task("onset_detection", cfg)
    results = evaluate_predictions(task, rows, p, events={"r1.edf": [(40.0, 32.0, "seizure")]})
    scoring = results["event_scoring"]
    assert results["event_sensitivity"] == 1.0
    assert (scoring["event"]["n_reference"], scoring["event"]["true_positives"]) == (1, 1)
    strict = scoring["strict_any_overlap"]["event"]
    assert (strict["n_reference"], strict["true_positives"], strict["false_positives"]) == (1, 1, 0)
    # sample scoring: 8 of the 28 evaluated seizure seconds (52-56 s not evaluated) are detected
    assert (scoring["sample"]["n_reference"], scoring["sample"]["true_positives"]) == (28, 8)
    assert scoring["sample"]["sensitivity"] == pytest.approx(8 / 28)


HOUR_S = 3600.0
# (annotated seizures (onset_s, duration_s), detected windows (start_s), window_s, duration_s)
CASES = {
    # seizures at the very start and end of the recording, detected by their first and last windows
    "edges": ([(0.0, 20.0), (HOUR_S - 30, 30.0)], [0.0, 4.0, HOUR_S - 8, HOUR_S - 4], 4.0, HOUR_S),
    # one seizure detected in three pieces (merged: one detection, no false alarm)
    "split_detection": ([(1000.0, 60.0)], [1000.0, 1004.0, 1020.0, 1044.0], 4.0, HOUR_S),
    # seizures 60 s apart (merged into one) and 200 s apart (two), a false alarm far away
    "gaps": ([(500.0, 20.0), (580.0, 20.0), (800.0, 30.0)], [504.0, 2500.0], 4.0, HOUR_S),
    # a day without seizures and two false detections (60-s windows)
    "day_without_seizures": ([], [6000.0, 6060.0, 60000.0], 60.0, 24 * HOUR_S),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_evaluation_equals_timescoring(make_rows, name):
    reference, positive_starts, window_s, duration_s = CASES[name]
    starts = _window_starts(duration_s, window_s)
    rows, p = _rows_and_probabilities(make_rows, "r1.edf", starts, (), set(positive_starts), window_s)
    task = get_task("onset_detection")
    # the window labels do not matter: the reference is the annotated events
    events = {"r1.edf": [(on, d, "seizure") for on, d in reference]}
    results = evaluate_predictions(task, rows, p, events=events)
    hypothesis = []
    for s in sorted(positive_starts):  # runs of detected windows
        if hypothesis and math.isclose(hypothesis[-1][0] + hypothesis[-1][1], s):
            hypothesis[-1] = (hypothesis[-1][0], hypothesis[-1][1] + window_s)
        else:
            hypothesis.append((s, window_s))
    event, sample = _timescoring(reference, hypothesis, duration_s)
    _assert_equal(results["event_scoring"]["event"], event)
    _assert_equal(results["event_scoring"]["sample"], sample)
    assert results["event_sensitivity"] == pytest.approx(event.sensitivity, nan_ok=True)
    assert results["false_alarms_per_24h"] == pytest.approx(event.fpRate)
    if name == "day_without_seizures":
        assert results["false_alarms_per_24h"] == 2.0  # 6000-6120 s is one detection
        assert math.isnan(results["event_sensitivity"]) and results["event_precision"] == 0.0
        assert "event_sensitivity" in results["undefined"]


def test_totals_over_recordings_sum_counts_and_rates_over_the_evaluated_time(make_rows):
    rows_a, p_a = _rows_and_probabilities(make_rows, "a.edf", _window_starts(HOUR_S), (), {1000.0, 3000.0})
    rows_b, p_b = _rows_and_probabilities(make_rows, "b.edf", _window_starts(HOUR_S / 2), (), {100.0})
    events = {"a.edf": [(1001.0, 10.0, "seizure")], "b.edf": [(1000.0, 20.0, "seizure")]}
    cfg = load_task_config(
        "onset_detection", overrides=["task.metrics=[balanced_accuracy,false_alarms_per_hour]"]
    )
    task = get_task("onset_detection", cfg)
    results = evaluate_predictions(task, rows_a + rows_b, np.vstack([p_a, p_b]), events)
    scoring = results["event_scoring"]
    # a: seizure detected, a false alarm at 3000 s; b: seizure missed, a false alarm at 100 s
    event = scoring["event"]
    assert (event["n_reference"], event["true_positives"], event["false_positives"]) == (2, 1, 2)
    assert event["false_alarms_per_24h"] == pytest.approx(2 / (1.5 * HOUR_S / 86400))
    assert results["false_alarms_per_hour"] == pytest.approx(2 / 1.5)
    assert [r["recording"] for r in scoring["recordings"]] == ["a.edf", "b.edf"]
    assert scoring["n_recordings"] == 2 and scoring["evaluated_s"] == pytest.approx(1.5 * HOUR_S)


def test_without_annotated_events_the_labels_are_the_reference_with_a_warning(make_rows):
    starts = _window_starts(100.0, skip=(52.0,))
    seizure = (40.0, 44.0, 48.0, 56.0, 60.0, 64.0, 68.0)
    rows, p = _rows_and_probabilities(make_rows, "r1.edf", starts, seizure, (60.0, 64.0))
    task = get_task("onset_detection")
    results = evaluate_predictions(task, rows, p)  # an old data folder: no events.csv
    scoring = results["event_scoring"]
    assert scoring["reference"] == "window_labels"
    assert any("rebuilt from the window labels" in w for w in scoring["warnings"])
    # the two label runs 4 s apart merge under SzCORE (closer than 90 s): one seizure, detected
    assert (scoring["event"]["n_reference"], scoring["event"]["true_positives"]) == (1, 1)
    # a recording missing from events.csv falls back too, and is named
    results = evaluate_predictions(task, rows, p, events={"other.edf": []})
    assert results["event_scoring"]["recordings"][0]["reference"] == "window_labels"
    assert any("r1.edf" in w for w in results["event_scoring"]["warnings"])


def test_read_annotated_events(tmp_path):
    assert read_annotated_events(tmp_path, "seizure") is None
    (tmp_path / "events.csv").write_text(
        "recording,subject,onset_s,duration_s,label\n"
        "chb01_03.edf,chb01,2996.0,40.0,seizure\n"
        "chb01_03.edf,chb01,0.0,10.0,background\n"
        "chb01_01.edf,chb01,,0.0,background\n"
        "Rec2.EDF,s2,,0.0,seizure\n"
    )
    events = read_annotated_events(tmp_path, "seizure")
    assert events == {"chb01_03.edf": [(2996.0, 40.0)], "chb01_01.edf": [], "rec2.edf": [(None, 0.0)]}
    (tmp_path / "events.csv").write_text("recording,onset_s,duration_s,label\nr.edf,-1,2,seizure\n")
    with pytest.raises(ValueError, match="row 1"):
        read_annotated_events(tmp_path, "seizure")


def test_recording_level_seizure_and_stem_match(make_rows):
    rows, p = _rows_and_probabilities(make_rows, "r1.edf", _window_starts(40.0), (), {8.0})
    # events.csv written by hand may name the recording without its extension
    events = {"r1": [(None, 0.0, "seizure")]}
    results = evaluate_predictions(get_task("onset_detection"), rows, p, events=events)
    event = results["event_scoring"]["event"]
    assert (event["n_reference"], event["true_positives"], event["false_positives"]) == (1, 1, 0)


def test_event_units_are_the_annotated_events(make_rows):
    # seizure_type: r1's focal seizure (annotated 8-28 s) lost its window 16-20 s (rejected): the window
    # labels make two runs, i.e. two seizures to classify; the annotated event keeps it one unit.
    task = get_task("seizure_type")
    rows = make_rows([("r1.edf", s, "FNSZ") for s in (8.0, 12.0, 20.0, 24.0)] + [("r2.edf", 0.0, "ABSZ")])
    # r1: two windows confidently FNSZ, two weakly ABSZ: the event's mean is FNSZ (0.5 vs 0.3)
    p = np.array([[0.0, 0.9, 0.05, 0.05]] * 2 + [[0.6, 0.1, 0.15, 0.15]] * 2 + [[0.7, 0.1, 0.1, 0.1]])
    old = evaluate_predictions(task, rows, p)
    assert old["n_units"] == 3 and old["confusion_matrix"][1] == [1, 1, 0, 0]  # half of it "misclassified"
    events = {"r1.edf": [(8.0, 20.0, "FNSZ")], "r2.edf": [(0.0, 4.0, "ABSZ")]}
    new = evaluate_predictions(task, rows, p, events=events)
    assert new["n_units"] == 2 and new["confusion_matrix"][1] == [0, 1, 0, 0]
    assert new["balanced_accuracy"] == 1.0
