"""finetune.event_scoring against timescoring itself (SzCORE defaults) on edge cases, the evaluated-time
rules, the totals over recordings and the bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from timescoring import scoring
from timescoring.annotations import Annotation

from finetune.event_scoring import (
    is_seizure_label,
    read_events_tsv,
    recording_duration_s,
    score_events,
    scores_from_counts,
    total_scores,
)

HOUR_S = 3600.0
DAY_S = 24 * HOUR_S


def _timescoring(reference, hypothesis, duration_s, params=None, fs=10):
    """The SzCORE figures computed by timescoring directly (events sorted and disjoint)."""
    n = round(duration_s * fs)
    ref = Annotation([(on, on + d) for on, d in reference], fs, n)
    hyp = Annotation([(on, on + d) for on, d in hypothesis], fs, n)
    event = scoring.EventScoring(ref, hyp) if params is None else scoring.EventScoring(ref, hyp, params)
    return event, scoring.SampleScoring(ref, hyp)


def _assert_equal(level, ts):
    for ours, theirs in (
        ("sensitivity", ts.sensitivity),
        ("precision", ts.precision),
        ("f1", ts.f1),
        ("false_alarms_per_24h", ts.fpRate),
    ):
        if math.isnan(theirs):
            assert math.isnan(level[ours]), ours
        else:
            assert level[ours] == pytest.approx(theirs, rel=1e-12), ours
    assert (level["true_positives"], level["false_positives"], level["n_reference"]) == (
        ts.tp,
        ts.fp,
        ts.refTrue,
    )
    assert level["duration_h"] == pytest.approx(ts.numSamples / ts.fs / HOUR_S)


CASES = {
    # seizures at the very start and end of the recording, detected partly
    "edges": ([(0.0, 20.0), (HOUR_S - 30, 30.0)], [(0.0, 10.0), (HOUR_S - 10, 10.0)], HOUR_S),
    # one seizure detected in three pieces (merged: one detection, no false alarm)
    "split_detection": ([(1000.0, 60.0)], [(1000.0, 10.0), (1020.0, 10.0), (1045.0, 5.0)], HOUR_S),
    # seizures 60 s apart (merged into one) and 200 s apart (two); a false alarm far away
    "gaps": ([(500.0, 20.0), (580.0, 20.0), (800.0, 30.0)], [(505.0, 5.0), (2500.0, 8.0)], HOUR_S),
    # a whole day without seizures and two false alarms: 2 per 24 h, sensitivity undefined
    "day_without_seizures": ([], [(5000.0, 10.0), (20000.0, 20.0)], DAY_S),
    # a day without seizures nor detections: everything undefined but the rate (0)
    "nothing": ([], [], DAY_S),
    # a missed seizure, a detection 20 s before another one (inside the 30 s tolerance)
    "tolerance": ([(1000.0, 30.0), (2000.0, 30.0)], [(975.0, 4.0)], HOUR_S),
    # a seizure longer than 5 min is split into two reference events
    "long_seizure": ([(100.0, 420.0)], [(110.0, 20.0)], HOUR_S),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_szcore_scores_equal_timescoring(name):
    reference, hypothesis, duration_s = CASES[name]
    result = score_events(reference, hypothesis, duration_s)
    event, sample = _timescoring(reference, hypothesis, duration_s)
    _assert_equal(result["event"], event)
    _assert_equal(result["sample"], sample)
    assert result["evaluated_s"] == duration_s and result["strict"] is False


def test_known_values_of_the_edge_cases():
    """The figures themselves, so that a change of timescoring's defaults is seen too."""
    split = score_events(*CASES["split_detection"])["event"]
    assert (split["true_positives"], split["false_positives"], split["n_reference"]) == (1, 0, 1)
    gaps = score_events(*CASES["gaps"])["event"]
    assert (gaps["n_reference"], gaps["true_positives"], gaps["false_positives"]) == (2, 1, 1)
    day = score_events(*CASES["day_without_seizures"])
    assert day["event"]["false_alarms_per_24h"] == pytest.approx(2.0)
    assert math.isnan(day["event"]["sensitivity"]) and day["event"]["precision"] == 0.0
    assert day["sample"]["false_positives"] == 30 and day["warnings"] == []
    long = score_events(*CASES["long_seizure"])["event"]
    assert (long["n_reference"], long["true_positives"]) == (2, 1)


def test_strict_any_overlap_equals_timescoring_without_tolerances():
    reference, hypothesis = [(100.0, 10.0), (400.0, 10.0)], [(115.0, 5.0), (405.0, 1.0)]
    params = scoring.EventScoring.Parameters(0, 0, 0, math.inf, 0)
    strict = score_events(reference, hypothesis, HOUR_S, strict=True)
    event, sample = _timescoring(reference, hypothesis, HOUR_S, params)
    _assert_equal(strict["event"], event)
    _assert_equal(strict["sample"], sample)
    assert (strict["event"]["true_positives"], strict["event"]["false_positives"]) == (1, 1)
    szcore = score_events(reference, hypothesis, HOUR_S)["event"]  # 115 s is within 60 s after 110 s
    assert (szcore["true_positives"], szcore["false_positives"]) == (2, 0)


def test_unsorted_and_overlapping_events_are_one_timeline():
    reference = [(800.0, 30.0), (500.0, 20.0), (510.0, 20.0)]  # unsorted, two overlapping
    hypothesis = [(2500.0, 8.0), (505.0, 5.0)]
    result = score_events(reference, hypothesis, HOUR_S)
    event, sample = _timescoring([(500.0, 30.0), (800.0, 30.0)], sorted(hypothesis), HOUR_S)
    _assert_equal(result["event"], event)
    _assert_equal(result["sample"], sample)


def test_events_shorter_than_a_second_count_in_events_and_vanish_from_samples():
    reference, hypothesis = [(1000.0, 0.4)], [(2000.2, 0.3), (3000.0, 2.0)]
    result = score_events(reference, hypothesis, HOUR_S)
    event, sample = _timescoring(reference, hypothesis, HOUR_S)
    _assert_equal(result["event"], event)
    _assert_equal(result["sample"], sample)
    assert (result["event"]["n_reference"], result["event"]["false_positives"]) == (1, 2)
    assert (result["sample"]["n_reference"], result["sample"]["false_positives"]) == (0, 2)
    assert any("1 reference event(s) shorter" in w for w in result["warnings"])
    assert any("1 hypothesis event(s) shorter" in w for w in result["warnings"])


def test_short_recordings_flag_the_extrapolated_rate():
    short = score_events([(10.0, 20.0)], [(100.0, 5.0)], 300.0)
    assert short["event"]["false_alarms_per_24h"] == pytest.approx(288.0)  # 1 FA in 5 min
    assert len(short["warnings"]) == 1 and "300 s" in short["warnings"][0]
    assert score_events([], [], 600.0)["warnings"] == []


def test_evaluated_time_keeps_a_cut_seizure_whole_and_rates_per_evaluated_time():
    # a 4-s window rejected inside the seizure (100-160 s): still one seizure, detected once
    evaluated = [(0.0, 120.0), (124.0, HOUR_S)]
    result = score_events([(100.0, 60.0)], [(100.0, 20.0), (124.0, 36.0), (3000.0, 5.0)], HOUR_S, evaluated)
    assert (result["event"]["n_reference"], result["event"]["true_positives"]) == (1, 1)
    assert result["event"]["false_positives"] == 1
    assert result["evaluated_s"] == HOUR_S - 4
    assert result["event"]["false_alarms_per_24h"] == pytest.approx(DAY_S / (HOUR_S - 4))
    # sample scoring over the evaluated seconds only: 56 reference seconds, all detected
    assert (result["sample"]["n_reference"], result["sample"]["true_positives"]) == (56, 56)
    assert result["sample"]["duration_h"] == pytest.approx((HOUR_S - 4) / HOUR_S)
    assert result["warnings"] == []


def test_evaluated_time_ignores_what_lies_outside_it():
    evaluated = [(0.0, 1800.0)]
    result = score_events([(2000.0, 30.0), (100.0, 10.0)], [(2000.0, 30.0), (100.0, 5.0)], HOUR_S, evaluated)
    assert (result["event"]["n_reference"], result["event"]["true_positives"]) == (1, 1)
    assert result["event"]["false_positives"] == 0
    assert any("30 s of hypothesis events outside" in w for w in result["warnings"])
    assert any("1 reference event(s) wholly outside" in w for w in result["warnings"])


def test_totals_sum_counts_and_take_rates_over_the_total_time():
    a = score_events(*CASES["gaps"])
    b = score_events(*CASES["day_without_seizures"])
    total = total_scores([a, b])
    event = total["event"]
    assert (event["n_reference"], event["true_positives"], event["false_positives"]) == (2, 1, 3)
    assert event["sensitivity"] == 0.5 and event["precision"] == 0.25
    assert event["f1"] == pytest.approx(2 / (2 + 3 + 1))
    assert event["false_alarms_per_24h"] == pytest.approx(3 / ((HOUR_S + DAY_S) / DAY_S))
    assert event["duration_h"] == pytest.approx(25.0)
    assert total["n_recordings"] == 2 and total["warnings"] == []
    assert total["sample"]["false_positives"] == a["sample"]["false_positives"] + 30
    with pytest.raises(ValueError, match="no recording"):
        total_scores([])


def test_scores_from_counts_follow_timescoring_formulas():
    scores = scores_from_counts(3, 1, 4, DAY_S / 2)
    assert scores["sensitivity"] == 0.75 and scores["precision"] == 0.75
    assert scores["f1"] == pytest.approx(0.75) and scores["false_alarms_per_24h"] == 2.0
    empty = scores_from_counts(0, 0, 0, DAY_S)
    assert all(math.isnan(empty[k]) for k in ("sensitivity", "precision", "f1"))


@pytest.mark.parametrize(
    "reference, hypothesis, duration_s, error, match",
    [
        ([(10.0, -1.0)], [], HOUR_S, ValueError, "'reference'.*non-negative"),
        ([], [(-5.0, 1.0)], HOUR_S, ValueError, "'hypothesis'.*non-negative"),
        ([], [(3590.0, 20.0)], HOUR_S, ValueError, "'hypothesis'.*ends at 3610.0 s, past"),
        ([(1.0, float("nan"))], [], HOUR_S, ValueError, "finite"),
        ([(1.0,)], [], HOUR_S, TypeError, "pairs"),
        ([], [], 0.0, ValueError, "'duration_s'"),
        ([], [], "1h", TypeError, "'duration_s'"),
    ],
)
def test_bad_events_are_errors(reference, hypothesis, duration_s, error, match):
    with pytest.raises(error, match=match):
        score_events(reference, hypothesis, duration_s)


def test_bad_evaluated_time_is_an_error():
    with pytest.raises(ValueError, match="'evaluated'.*Interval 0"):
        score_events([], [], 100.0, evaluated=[(50.0, 150.0)])
    with pytest.raises(ValueError, match="holds no whole second"):
        score_events([], [], 100.0, evaluated=[(10.0, 10.2)])


def test_read_events_tsv(tmp_path):
    path = tmp_path / "sub-01_events.tsv"
    path.write_text(
        "onset\tduration\ttrial_type\tchannels\n"
        "10.5\t20\tsz_foc_ia\tall\n30\t5\tbckg\tn/a\n50\t7\tseizure\tall\n70\t1\tspike_wave\tall\n"
    )
    assert read_events_tsv(path) == [(10.5, 20.0), (50.0, 7.0)]
    assert read_events_tsv(path, labels=["spike_wave"]) == [(70.0, 1.0)]
    assert recording_duration_s(path) is None
    assert is_seizure_label("SZ_gen") and not is_seizure_label("size")


def test_read_events_tsv_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        read_events_tsv(tmp_path / "nope.tsv")
    missing = tmp_path / "missing.tsv"
    missing.write_text("onset\ttrial_type\n1\tsz\n")
    with pytest.raises(ValueError, match=r"missing.tsv lacks the column\(s\) \['duration'\]"):
        read_events_tsv(missing)
    negative = tmp_path / "negative.tsv"
    negative.write_text("onset\tduration\ttrial_type\n1\t2\tsz\n5\t-3\tsz\n")
    with pytest.raises(ValueError, match="negative.tsv, line 3: the duration"):
        read_events_tsv(negative)
    text = tmp_path / "text.tsv"
    text.write_text("onset\tduration\ttrial_type\nsoon\t2\tsz\n")
    with pytest.raises(ValueError, match="line 2: the onset 'soon' is not a number"):
        read_events_tsv(text)
    duration = tmp_path / "duration.tsv"
    duration.write_text("onset\tduration\teventType\trecordingDuration\n1\t2\tsz\t3600\n")
    assert recording_duration_s(duration) == 3600.0
    assert read_events_tsv(duration, label_column="eventType") == [(1.0, 2.0)]
    np.testing.assert_equal(read_events_tsv(duration, labels=["bckg"], label_column="eventType"), [])
