"""Sleep-EDF: the real SC4001 hypnogram, R&K to AASM, PSG/hypnogram pairing, a labelled 30-s-epoch run."""

import json

import mne
import pytest

from preprocess.datasets import get_adapter, sleep_edf
from preprocess.datasets.base import AnnotationError, LayoutError, load_label_map
from preprocess.segments import load_segment, read_manifest
from preprocess.synthetic import synthetic_raw, write_edf
from tests.helpers import shared_path


def test_real_hypnogram_epochs_per_stage():
    path = shared_path("data", "sleep_edf", "SC4001EC-Hypnogram.edf")
    assert len(sleep_edf.read_hypnogram(path)) == 154
    # 2880 scored 30-s epochs (24 h): R&K stages 3 (101) and 4 (119) become N3 (220).
    assert sleep_edf.hypnogram_epochs(path) == {
        "W": 1997,
        "N1": 58,
        "N2": 250,
        "N3": 220,
        "REM": 125,
        "dropped: Sleep stage ?": 230,
    }


def test_wake_edges_and_the_end_of_the_recording():
    annotations = sleep_edf.read_hypnogram(shared_path("data", "sleep_edf", "SC4001EC-Hypnogram.edf"))
    stage_map = load_label_map("sleep_edf")["stages"]
    # SC4001E0-PSG lasts 79500 s: only the unscored tail (dropped anyway) lies past it.
    events, counts = sleep_edf.stage_events(
        annotations, stage_map, "SC4001EC", end_s=79500.0, wake_edge_min=30
    )
    # DeepSleepNet's 30-minute wake edges leave 841 epochs of SC4001 (W 188).
    assert counts == {
        "W": 188,
        "N1": 58,
        "N2": 250,
        "N3": 220,
        "REM": 125,
        "dropped: Sleep stage ?": 230,
        "cut: wake edges": 1809,
    }
    assert (events[0].onset_s, events[0].label) == (28830.0, "W")
    _, counts = sleep_edf.stage_events(annotations, stage_map, "SC4001EC", end_s=30000.0)
    assert counts["W"] == 1000 and counts["cut: past the recording"] == 1650  # 997 W and all 653 sleep epochs


def _hypnogram(path, stages):
    """An EDF+ hypnogram: a 1-channel 10 Hz placeholder signal carrying the stage annotations."""
    end = max(onset + duration for onset, duration, _ in stages)
    raw = synthetic_raw(["Event marker"], sfreq=10.0, duration_s=end + 10.0)
    onsets, durations, descriptions = zip(*stages, strict=True)
    raw.set_annotations(mne.Annotations(onsets, durations, descriptions))
    return write_edf(raw, path)


STAGES = [
    (0, 60, "Sleep stage W"),
    (60, 30, "Sleep stage 1"),
    (90, 60, "Sleep stage 2"),
    (150, 30, "Sleep stage 3"),
    (180, 30, "Sleep stage 4"),
    (210, 30, "Sleep stage R"),
    (240, 30, "Movement time"),
    (270, 60, "Sleep stage W"),
    (330, 60, "Sleep stage ?"),
]


def test_labelled_run_in_30_s_epochs(tmp_path, capsys, run_cli):
    root = tmp_path / "sleep-cassette"
    write_edf(
        synthetic_raw(["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal"], sfreq=100.0, duration_s=300.0),
        root / "SC4011E0-PSG.edf",
    )
    _hypnogram(root / "SC4011EH-Hypnogram.edf", STAGES)
    out = tmp_path / "out"
    status, text = run_cli(
        capsys, "--dataset", "sleep_edf", "--task", "sleep_staging", "--input", root, "--output", out
    )
    assert status == 0, text
    rows = read_manifest(out)
    assert [r["label"] for r in rows] == ["W", "W", "N1", "N2", "N2", "N3", "N3", "REM", None, "W"]
    assert [r["start_s"] for r in rows] == [30.0 * k for k in range(10)]
    segment = load_segment(out / rows[0]["path"])
    assert segment["data"].shape == (2, 30000) and segment["ch_names"] == ["FPZ-CZ", "PZ-OZ"]
    assert segment["subject"] == "SC01" and len(segment["mfde"]) == 2 * 150
    summary = json.loads((out / "dataset_summary.json").read_text())
    assert summary["notes"]["epochs"] == {
        "N1": 1,
        "N2": 2,
        "N3": 2,
        "REM": 1,
        "W": 3,
        "cut: past the recording": 1,
        "dropped: Movement time": 1,
        "dropped: Sleep stage ?": 2,
    }
    assert summary["windows_per_class"] == {"W": 3, "N1": 1, "N2": 2, "N3": 2, "REM": 1, "unlabelled": 1}
    config = (out / "config.yaml").read_text()
    assert "window_s: 30.0" in config and "h_freq: 40.0" in config and "notch_freq: null" in config


def test_pairing_and_unknown_labels(tmp_path, make_edf):
    root = tmp_path / "root"
    make_edf(root / "SC4011E0-PSG.edf", ["EEG Fpz-Cz", "EEG Pz-Oz"], duration_s=60.0, sfreq=100.0)
    adapter = get_adapter("sleep_edf")
    assert adapter.subjects(root) == {"SC4011E0-PSG.edf": "SC01"}
    with pytest.raises(LayoutError, match=r"missing from the label file the \*-Hypnogram.edf files: SC4011"):
        adapter.events(root, "sleep_staging")
    _hypnogram(root / "SC4011EH-Hypnogram.edf", [(0, 30, "Sleep stage W"), (30, 30, "Sleep stage X")])
    with pytest.raises(AnnotationError, match=r"SC4011EH-Hypnogram.edf: unknown hypnogram label 'Sleep stag"):
        get_adapter("sleep_edf").events(root, "sleep_staging")
    _hypnogram(root / "SC4022EJ-Hypnogram.edf", [(0, 30, "Sleep stage W")])  # its PSG is absent
    with pytest.raises(LayoutError, match=r"lists 1 recording\(s\) absent .*SC4022"):
        get_adapter("sleep_edf").events(root, "sleep_staging")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LayoutError, match=r"No PSG file .*Expected layout: SC4ssNE0-PSG.edf with its"):
        get_adapter("sleep_edf").find_recordings(empty)


def test_stage_events_need_whole_epochs():
    with pytest.raises(AnnotationError, match=r"x: 'Sleep stage W' at 0 s for 45 s is not whole 30-s epochs"):
        sleep_edf.stage_events([(0.0, 45.0, "Sleep stage W")], load_label_map("sleep_edf")["stages"], "x")
