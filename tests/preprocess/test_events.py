import numpy as np
import pytest

from preprocess.events import (
    Event,
    EventsError,
    check_events,
    events_for,
    events_from_annotations,
    label_windows,
    read_events_csv,
)
from tests.helpers import shared_path

CLASSES = ["background", "seizure", "normal_mild", "moderate"]


def test_read_real_chbmit_events():
    events, subjects = read_events_csv(shared_path("data", "chbmit", "edf", "events.csv"), CLASSES)
    seizure = events_for(events, "/any/folder/chb01_03_seizure_2995-3036s.edf")
    assert seizure == [Event(0.0, 1.0, "background"), Event(1.0, 40.0, "seizure")]
    assert events_for(events, "chb01_03_nonseizure_0-41s.edf") == [Event(0.0, 41.0, "background")]
    assert subjects["chb01_03_seizure_2995-3036s.edf"] == "chb01"


def _write(tmp_path, text):
    path = tmp_path / "events.csv"
    path.write_text(text)
    return path


def test_recording_level_label_and_stem_match(tmp_path):
    path = _write(tmp_path, "recording,onset_s,duration_s,label\nbaby1,,,moderate\n")
    events, subjects = read_events_csv(path, CLASSES)
    assert events_for(events, "data/baby1.edf") == [Event(None, 0.0, "moderate")]
    assert subjects == {}
    labels, dropped = label_windows(np.arange(0, 20, 4.0), 4.0, events["baby1"], CLASSES, duration_s=20.0)
    assert labels == ["moderate"] * 5 and not dropped.any()


@pytest.mark.parametrize(
    "text, match",
    [
        ("recording,onset_s,label\nr1,0,seizure\n", "lacks the columns"),
        ("recording,onset_s,duration_s,label\nr1,0,4,spike\n", r"Invalid label 'spike'.*row 1"),
        ("recording,onset_s,duration_s,label\nr1,0,4,seizure\nr1,abc,4,seizure\n", r"Invalid time.*row 2"),
        ("recording,onset_s,duration_s,label\nr1,-1,4,seizure\n", "must be >= 0"),
        (
            "recording,subject,onset_s,duration_s,label\nr1,s1,0,4,seizure\nr1,s2,4,4,seizure\n",
            "two subjects",
        ),
    ],
)
def test_bad_events_files(tmp_path, text, match):
    with pytest.raises(EventsError, match=match) as info:
        read_events_csv(_write(tmp_path, text), CLASSES)
    assert "events.csv" in str(info.value)


def test_overlap_rule_drop_and_majority():
    events = [Event(5.0, 10.0, "seizure")]  # seizure from 5 s to 15 s
    starts = np.arange(0.0, 20.0, 4.0)  # windows 0-4, 4-8, 8-12, 12-16, 16-20
    labels, dropped = label_windows(starts, 4.0, events, CLASSES, default="background", straddle="drop")
    assert labels == ["background", None, "seizure", None, "background"]
    np.testing.assert_array_equal(dropped, [False, True, False, True, False])
    labels, dropped = label_windows(starts, 4.0, events, CLASSES, default="background", straddle="majority")
    # 4-8 holds 3 s of seizure, 12-16 holds 3 s of seizure
    assert labels == ["background", "seizure", "seizure", "seizure", "background"] and not dropped.any()
    labels, _ = label_windows(
        starts, 4.0, [Event(6.0, 8.0, "seizure")], CLASSES, default="background", straddle="majority"
    )
    assert labels == ["background", "background", "seizure", "background", "background"]  # 2 s vs 2 s ties


def test_uncovered_time_without_default_is_unlabelled():
    starts = np.arange(0.0, 12.0, 4.0)
    labels, dropped = label_windows(starts, 4.0, [Event(3.0, 5.0, "seizure")], CLASSES, straddle="majority")
    assert labels == [None, "seizure", None]  # 1 s of seizure in 0-4 loses to 3 s unlabelled
    labels, dropped = label_windows(starts, 4.0, [Event(3.0, 5.0, "seizure")], CLASSES, straddle="drop")
    assert labels == [None, "seizure", None] and dropped.tolist() == [True, False, False]


def test_events_outside_the_recording():
    check_events([Event(0.0, 41.0, "seizure")], 41.0, "r.edf")
    with pytest.raises(EventsError, match=r"outside the recording r\.edf"):
        check_events([Event(40.0, 5.0, "seizure")], 41.0, "r.edf")
    with pytest.raises(EventsError, match="outside"):
        check_events([Event(50.0, 1.0, "seizure")], 41.0, "r.edf")


def test_events_from_annotations():
    import mne

    annotations = mne.Annotations([2.0, 10.0, 12.0], [4.0, 1.0, 0.0], ["seizure", "Eyes closed", "BAD_x"])
    events = events_from_annotations(
        annotations, {"Eyes closed": None, "BAD_x": None}, CLASSES, False, "r.edf"
    )
    assert events == [Event(2.0, 4.0, "seizure")]
    with pytest.raises(EventsError, match=r"unknown labels in r\.edf: \['BAD_x', 'Eyes closed'\]"):
        events_from_annotations(annotations, {}, CLASSES, False, "r.edf")
    assert len(events_from_annotations(annotations, {}, CLASSES, True, "r.edf")) == 1
    with pytest.raises(EventsError, match="not in labels.classes"):
        events_from_annotations(annotations, {"Eyes closed": "eyes"}, CLASSES, True, "r.edf")


def test_soft_labels_from_p_columns_and_their_windows(tmp_path):
    """p_<class> columns give Event.probs (normalised); windows get the overlap-weighted distribution."""
    from preprocess.events import Event, EventsError, read_events_csv, window_label_probs

    classes = ["seizure", "lpd", "other"]
    path = tmp_path / "events.csv"
    path.write_text(
        "recording,onset_s,duration_s,label,p_seizure,p_lpd,p_other\n"
        "r1.edf,0,8,seizure,3,1,0\n"  # vote counts: normalised
        "r1.edf,8,8,lpd,0.0,1.0,0.0\n"
        "r1.edf,16,4,other,,,\n"
    )  # no soft label
    events = read_events_csv(path, classes)[0]["r1.edf"]
    assert events[0].probs == {"seizure": 0.75, "lpd": 0.25, "other": 0.0} and events[2].probs is None
    labels = ["seizure", "seizure", "lpd", None, "other"]
    probs = window_label_probs([0.0, 4.0, 10.0, 6.0, 16.0], 4.0, events, classes, labels)
    assert probs[0] == {"seizure": 0.75, "lpd": 0.25, "other": 0.0}
    assert probs[2] == {"seizure": 0.0, "lpd": 1.0, "other": 0.0}
    assert probs[3] is None  # unlabelled (straddles), no soft label
    assert probs[4] is None  # only a hard event: no soft label (the loader uses one-hot)
    # Majority windows across two soft events: the overlap-weighted mean (2 s of each).
    mixed = window_label_probs([6.0], 4.0, events, classes, ["seizure"])[0]
    assert mixed == pytest.approx({"seizure": 0.375, "lpd": 0.625, "other": 0.0})
    # Recordings without soft labels get none.
    assert window_label_probs([0.0], 4.0, [Event(0.0, 4.0, "lpd")], classes, ["lpd"]) == [None]
    for header, row, message in [
        ("p_spike", "1", r"soft-label columns \['p_spike'\]"),
        ("p_seizure,p_lpd", "1,", "must all be numbers"),
        ("p_seizure,p_lpd", "0,0", "positive sum"),
        ("p_seizure,p_lpd", "-1,2", ">= 0"),
    ]:
        path.write_text(f"recording,onset_s,duration_s,label,{header}\nr1.edf,0,8,seizure,{row}\n")
        with pytest.raises(EventsError, match=message):
            read_events_csv(path, classes)
