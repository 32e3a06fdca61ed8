"""Private cohorts: BIDS (mne-bids) and a folder with an events CSV."""

import json
from collections import Counter

import pytest

from preprocess.datasets import get_adapter
from preprocess.datasets.base import AnnotationError, LayoutError
from preprocess.segments import read_manifest
from preprocess.synthetic import TEN_TWENTY


@pytest.fixture
def bids_root(tmp_path, make_edf):
    root = tmp_path / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps({"Name": "cohort", "BIDSVersion": "1.8.0"}))
    (root / "participants.tsv").write_text(
        "participant_id\tsyndrome\tsplit\nsub-01\tCAE\ttrain\nsub-02\tLGS\tval\nsub-03\tCAE\ttest\n"
    )
    for i in (1, 2, 3):
        eeg = root / f"sub-0{i}" / "ses-1" / "eeg"
        make_edf(eeg / f"sub-0{i}_ses-1_task-sleep_eeg.edf", TEN_TWENTY, duration_s=24.0, seed=i)
        (eeg / f"sub-0{i}_ses-1_task-sleep_events.tsv").write_text(
            "onset\tduration\ttrial_type\n4.0\t8.0\tspike_wave\n16.0\t4.0\tblink\n"
        )
    return root


def test_bids_participant_labels_and_split(bids_root, tmp_path, capsys, run_cli):
    out = tmp_path / "out"
    status, text = run_cli(
        capsys,
        "--dataset",
        "bids",
        "--task",
        "syndrome_classification",
        "--input",
        bids_root,
        "--output",
        out,
        "--dataset-option",
        "participant_column=syndrome",
        "--dataset-option",
        "label_column=null",
    )
    assert status == 0, text
    rows = read_manifest(out)
    assert Counter((r["subject"], r["label"]) for r in rows) == {
        ("sub-01", "CAE"): 6,
        ("sub-02", "LGS"): 6,
        ("sub-03", "CAE"): 6,
    }
    assert (out / "split.csv").read_text().splitlines()[1:] == [
        "sub-01_ses-1_task-sleep_eeg.edf,train",
        "sub-02_ses-1_task-sleep_eeg.edf,val",
        "sub-03_ses-1_task-sleep_eeg.edf,test",
    ]
    summary = json.loads((out / "dataset_summary.json").read_text())
    assert summary["events_per_class"] == {"CAE": 2, "LGS": 1} and summary["subjects"] == 3


def test_bids_events_with_a_label_map(bids_root, tmp_path, capsys, run_cli):
    label_map = tmp_path / "map.yaml"
    label_map.write_text("blink: null\n")
    out = tmp_path / "out"
    status, text = run_cli(
        capsys,
        "--dataset",
        "bids",
        "--task",
        "swi_quantification",
        "--input",
        bids_root,
        "--output",
        out,
        "--dataset-option",
        f"label_map={label_map}",
        "--set",
        "labels.default=background",
    )
    assert status == 0, text
    labels = [r["label"] for r in read_manifest(out) if r["subject"] == "sub-01"]
    assert labels == ["background", "spike_wave", "spike_wave", "background", "background", "background"]
    with pytest.raises(
        AnnotationError, match=r"Unknown label 'blink' in .*sub-01_ses-1_task-sleep_events.tsv, line 3"
    ):
        get_adapter("bids").events(bids_root, "swi_quantification")


def test_bids_wrong_layout(tmp_path, make_edf):
    make_edf(tmp_path / "rec.edf", TEN_TWENTY, duration_s=8.0)
    with pytest.raises(LayoutError, match=r"No EEG recording .*Expected layout: a BIDS dataset"):
        get_adapter("bids").find_recordings(tmp_path)


def test_csv_cohort_with_recording_level_labels(tmp_path, make_edf, capsys, run_cli):
    root = tmp_path / "cohort"
    for name in ("p1_night", "p2_night"):
        make_edf(root / f"{name}.edf", TEN_TWENTY, duration_s=12.0)
    events = tmp_path / "labels.csv"
    events.write_text(
        "recording,subject,onset_s,duration_s,label\np1_night.edf,p1,,,SeLECTS\np2_night,p2,,,IESS\n"
    )
    out = tmp_path / "out"
    status, text = run_cli(
        capsys,
        "--dataset",
        "csv",
        "--task",
        "syndrome_classification",
        "--input",
        root,
        "--output",
        out,
        "--events",
        events,
    )
    assert status == 0, text
    labels = Counter((r["subject"], r["label"]) for r in read_manifest(out))
    assert labels == {("p1", "SeLECTS"): 3, ("p2", "IESS"): 3}
    events.write_text("recording,subject,onset_s,duration_s,label\np1_night.edf,p1,,,SeLECTS\n")
    with pytest.raises(LayoutError, match=r"missing from the label file .*labels.csv: p2_night.edf"):
        get_adapter("csv", events=str(events)).events(root, "syndrome_classification")
    status, text = run_cli(
        capsys,
        "--dataset",
        "chbmit",
        "--task",
        "onset_detection",
        "--input",
        root,
        "--output",
        out,
        "--events",
        events,
    )
    assert status == 2 and "--events cannot be combined with --dataset" in text


def test_a_second_dataset_run_is_refused_before_it_rewrites_events_and_split(
    tmp_path, make_edf, capsys, run_cli
):
    from preprocess.locks import run_lock

    root = tmp_path / "cohort"
    make_edf(root / "p1_night.edf", TEN_TWENTY, duration_s=12.0)
    events = tmp_path / "labels.csv"
    events.write_text("recording,subject,onset_s,duration_s,label\np1_night.edf,p1,,,SeLECTS\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "events.csv").write_text("the first run's events\n")
    with run_lock(out):  # a first run (here: this process) holds the folder
        status, text = run_cli(
            capsys,
            "--dataset",
            "csv",
            "--task",
            "syndrome_classification",
            "--input",
            root,
            "--output",
            out,
            "--events",
            events,
        )
    assert status == 2 and "is in use by another preprocessing run" in text
    assert (out / "events.csv").read_text() == "the first run's events\n"
    assert not (out / "split.csv").exists() and not (out / "config.yaml").exists()


def test_dataset_usage_errors_exit_2(tmp_path, make_edf, capsys, run_cli):
    root = tmp_path / "cohort"
    make_edf(root / "p1_night.edf", TEN_TWENTY, duration_s=12.0)
    events = tmp_path / "labels.csv"
    events.write_text("recording,subject,onset_s,duration_s,label\np1_night.edf,p1,,,SeLECTS\n")
    common = ["--task", "syndrome_classification", "--input", root, "--output", tmp_path / "out"]
    for extra, message in [
        (["--dataset", "csv", "--events", events, "--dataset-option", "novalue"], "expected key=value"),
        (["--dataset", "csv", "--events", events, "--dataset-option", "nope=1"], "Invalid option(s)"),
        (["--dataset", "no_such_dataset"], "no_such_dataset"),
    ]:
        status, text = run_cli(capsys, *extra, *common)
        assert status == 2 and message in text, text
    assert not (tmp_path / "out").exists()
