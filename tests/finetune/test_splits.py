"""Splits without leakage: subject-wise, patient-specific (by recording, by time block), official."""

from __future__ import annotations

import numpy as np
import pytest

from finetune.splits import (
    SPLIT_NAMES,
    assigned_split,
    check_split_config,
    make_split,
    patient_specific_split,
    split_counts,
    subject_wise_split,
)
from tasks import load_task_config


def _rows(make_rows, n_subjects, recordings_per_subject=2, windows=3, label_of=lambda s, r, w: "background"):
    items = []
    for s in range(n_subjects):
        for r in range(recordings_per_subject):
            for w in range(windows):
                items.append((f"sub{s:02d}", f"sub{s:02d}_rec{r}", 4.0 * w, label_of(s, r, w)))
    return make_rows(items)


def _groups(rows, split, key):
    return {name: {rows[i][key] for i in split.indices[name]} for name in SPLIT_NAMES}


def test_split_counts_round_half_up_and_minimum_one():
    assert split_counts(10, 0.15, 0.15) == (6, 2, 2)  # 1.5 -> 2
    assert split_counts(20, 0.15, 0.15) == (14, 3, 3)
    assert split_counts(3, 0.1, 0.1) == (1, 1, 1)  # at least one each
    with pytest.raises(
        ValueError, match=r"Cannot split 2 subjects .* needs at least 3 subjects .* but got 2"
    ):
        split_counts(2, 0.15, 0.15)


def test_subject_wise_disjoint_complete_and_sized(make_rows):
    rows = _rows(make_rows, n_subjects=10)
    split = subject_wise_split(rows, 0.15, 0.15, seed=0)
    subjects = _groups(rows, split, "subject")
    assert [len(subjects[n]) for n in SPLIT_NAMES] == [6, 2, 2]
    assert not (
        subjects["train"] & subjects["val"]
        or subjects["train"] & subjects["test"]
        or subjects["val"] & subjects["test"]
    )
    assert sorted(np.concatenate([split.indices[n] for n in SPLIT_NAMES]).tolist()) == list(range(len(rows)))
    assert split.dropped.size == 0
    # All windows of a subject follow it: 2 recordings x 3 windows each.
    assert [split.indices[n].size for n in SPLIT_NAMES] == [36, 12, 12]
    summary = split.describe(rows)
    assert summary["protocol"] == "subject_wise" and summary["seed"] == 0
    assert summary["test"]["subjects"] == sorted(subjects["test"]) and summary["test"]["n_windows"] == 12
    assert summary["train"]["labels"] == {"background": 36}


def test_subject_wise_split_depends_on_split_seed_only(make_rows):
    rows = _rows(make_rows, n_subjects=12)
    a, b = subject_wise_split(rows, seed=0), subject_wise_split(rows, seed=0)
    assert all(np.array_equal(a.indices[n], b.indices[n]) for n in SPLIT_NAMES)
    tests = {
        tuple(sorted(_groups(rows, subject_wise_split(rows, seed=s), "subject")["test"])) for s in range(8)
    }
    assert len(tests) > 1  # the split seed does choose the subjects
    # The training seed (runtime.seed, --seed) is not an input of the split: the five paper seeds share it.
    configs = [load_task_config("onset_detection", overrides=[f"runtime.seed={seed}"]) for seed in (42, 2024)]
    splits = [make_split(rows, cfg["split"]) for cfg in configs]
    assert configs[0]["split"] == configs[1]["split"] and configs[0]["runtime"] != configs[1]["runtime"]
    assert all(np.array_equal(splits[0].indices[n], splits[1].indices[n]) for n in SPLIT_NAMES)


def test_subject_wise_spreads_label_strata(make_rows):
    """6 'moderate' and 6 'severe' subjects, 2 test and 2 val: each of test and val gets one of each."""
    rows = _rows(
        make_rows,
        n_subjects=12,
        recordings_per_subject=1,
        windows=2,
        label_of=lambda s, r, w: "moderate" if s % 2 else "severe",
    )
    for seed in range(20):
        split = subject_wise_split(rows, 1 / 6, 1 / 6, seed=seed)
        for name in ("val", "test"):
            labels = sorted(rows[i]["label"] for i in split.indices[name])
            assert labels == ["moderate", "moderate", "severe", "severe"], (seed, name)


def test_subject_wise_too_few_subjects_names_numbers(make_rows):
    rows = _rows(make_rows, n_subjects=2)
    with pytest.raises(
        ValueError, match=r"Cannot split 2 subjects into train, val and test.*val_fraction=0.15"
    ):
        subject_wise_split(rows, 0.15, 0.15)


def test_patient_specific_by_recording(make_rows):
    rows = _rows(make_rows, n_subjects=1, recordings_per_subject=7, windows=2)
    split = patient_specific_split(rows, 0.15, 0.15, by="recording", seed=3)
    recordings = _groups(rows, split, "recording")
    assert [len(recordings[n]) for n in SPLIT_NAMES] == [5, 1, 1]
    assert not (
        recordings["train"] & recordings["val"]
        or recordings["train"] & recordings["test"]
        or recordings["val"] & recordings["test"]
    )
    assert (
        split.describe(rows)["test"]["subjects"] == ["sub00"] and split.seed == 3 and split.by == "recording"
    )
    with pytest.raises(ValueError, match=r"Cannot split 2 recordings of the subject 'sub00'"):
        patient_specific_split(_rows(make_rows, n_subjects=1, recordings_per_subject=2), by="recording")


def test_patient_specific_time_blocks_are_chronological_and_disjoint(make_rows):
    rows = _rows(make_rows, n_subjects=1, recordings_per_subject=2, windows=10)
    split = patient_specific_split(rows, 0.2, 0.2, by="time_block", seed=0)
    again = patient_specific_split(rows, 0.2, 0.2, by="time_block", seed=99)
    assert all(np.array_equal(split.indices[n], again.indices[n]) for n in SPLIT_NAMES)  # no randomness
    assert split.seed is None and split.by == "time_block"
    for recording in ("sub00_rec0", "sub00_rec1"):
        starts = {
            n: sorted(rows[i]["start_s"] for i in split.indices[n] if rows[i]["recording"] == recording)
            for n in SPLIT_NAMES
        }
        assert starts == {
            "train": [0.0, 4.0, 8.0, 12.0, 16.0, 20.0],
            "val": [24.0, 28.0],
            "test": [32.0, 36.0],
        }


def test_time_blocks_drop_windows_that_overlap_another_block(make_rows):
    """Windows of 4 s every 2 s: the first window of val and of test overlaps the previous block."""
    items = [("sub00", "rec", 2.0 * k, "background") for k in range(10)]
    rows = make_rows(items)
    split = patient_specific_split(rows, 0.2, 0.2, by="time_block")
    starts = {n: [rows[i]["start_s"] for i in split.indices[n]] for n in SPLIT_NAMES}
    assert starts == {"train": [0.0, 2.0, 4.0, 6.0, 8.0, 10.0], "val": [14.0], "test": [18.0]}
    assert sorted(rows[i]["start_s"] for i in split.dropped) == [12.0, 16.0]
    assert split.describe(rows)["n_dropped"] == 2
    # No sample in two splits: the [start, start + 4 s) intervals of different splits do not intersect.
    for a in SPLIT_NAMES:
        for b in SPLIT_NAMES:
            if a < b:
                assert all(sa + 4.0 <= sb or sb + 4.0 <= sa for sa in starts[a] for sb in starts[b])


def test_patient_specific_on_several_subjects_splits_within_each(make_rows):
    rows = _rows(make_rows, n_subjects=2, recordings_per_subject=1, windows=10)
    split = patient_specific_split(rows, 0.2, 0.2, by="time_block")
    subjects = _groups(rows, split, "subject")
    assert all(subjects[n] == {"sub00", "sub01"} for n in SPLIT_NAMES)


def test_time_block_recording_too_short(make_rows):
    rows = make_rows([("s", "short", 0.0, "background"), ("s", "short", 4.0, "background")])
    with pytest.raises(ValueError, match=r"Cannot split 2 windows of the recording 'short'"):
        patient_specific_split(rows, 0.2, 0.2, by="time_block")


def test_assigned_split(make_rows):
    rows = _rows(make_rows, n_subjects=3, recordings_per_subject=1)
    mapping = {"sub00_rec0": "train", "sub01_rec0": "val", "sub02_rec0": "test", "rejected_rec": "test"}
    split = assigned_split(rows, mapping, key="recording")
    assert _groups(rows, split, "recording") == {
        "train": {"sub00_rec0"},
        "val": {"sub01_rec0"},
        "test": {"sub02_rec0"},
    }
    assert (
        make_split(rows, {}, assignment=mapping, assignment_key="recording").indices["test"].tolist()
        == split.indices["test"].tolist()
    )
    with pytest.raises(ValueError, match=r"gives no split for 1 recording\(s\).*sub02_rec0"):
        assigned_split(rows, {"sub00_rec0": "train", "sub01_rec0": "val"}, key="recording")
    with pytest.raises(ValueError, match=r"Invalid split names \['validation'\]"):
        assigned_split(rows, {**mapping, "sub01_rec0": "validation"}, key="recording")
    with pytest.raises(ValueError, match=r"leaves the split\(s\) \['val'\] without windows"):
        assigned_split(
            rows, {"sub00_rec0": "train", "sub01_rec0": "train", "sub02_rec0": "test"}, key="recording"
        )


def test_split_config_checks():
    good = load_task_config("onset_detection")["split"]
    check_split_config(good)
    with pytest.raises(ValueError, match=r"'split.protocol'.*'subject_wise', 'patient_specific'.*'random'"):
        check_split_config({**good, "protocol": "random"})
    with pytest.raises(ValueError, match=r"sum must be below 1.*0.5 \+ 0.5"):
        check_split_config({**good, "val_fraction": 0.5, "test_fraction": 0.5})
    with pytest.raises(ValueError, match=r"'split.test_fraction'.*\(0, 1\).*but got 0"):
        check_split_config({**good, "test_fraction": 0})
    with pytest.raises(ValueError, match=r"'split.patient_specific_by'.*'recording', 'time_block'"):
        check_split_config({**good, "patient_specific_by": "day"})


def test_rows_without_subject(make_rows):
    rows = _rows(make_rows, n_subjects=3)
    rows[4]["subject"] = ""
    with pytest.raises(ValueError, match=r"Manifest row 4 .* has an empty 'subject'"):
        subject_wise_split(rows)


def test_read_split_file(tmp_path):
    from finetune.splits import read_split_file

    path = tmp_path / "split.csv"
    path.write_text("subject,split\nchb01,train\nchb23,test\n")
    assert read_split_file(path) == ({"chb01": "train", "chb23": "test"}, "subject")
    path.write_text("recording,fold\nr1,train\n")
    with pytest.raises(ValueError, match=r"columns recording,split or subject,split"):
        read_split_file(path)
    path.write_text("recording,split\nr1,train\nr1,test\n")
    with pytest.raises(ValueError, match=r"line 3: the recording 'r1' is given twice"):
        read_split_file(path)
    with pytest.raises(FileNotFoundError, match="--dataset"):
        read_split_file(tmp_path / "absent.csv")


# -- subject disjointness (issue #11, section 2): every protocol except patient_specific -------------------


def _two_recordings_per_subject(make_rows):
    return _rows(make_rows, n_subjects=3, recordings_per_subject=2)


def test_official_split_by_recording_with_a_subject_in_two_splits_is_refused(make_rows):
    rows = _two_recordings_per_subject(make_rows)
    # sub00's first recording trains, its second tests: a leak that the old code accepted silently.
    mapping = {
        "sub00_rec0": "train",
        "sub00_rec1": "test",
        "sub01_rec0": "val",
        "sub01_rec1": "val",
        "sub02_rec0": "test",
        "sub02_rec1": "train",
    }
    section = {**load_task_config("onset_detection")["split"], "protocol": "official"}
    with pytest.raises(ValueError, match=r"2 subject\(s\).*sub00 in train and test; sub02 in train and test"):
        make_split(rows, section, assignment=mapping, assignment_key="recording")
    with pytest.raises(ValueError, match=r"split.allow_subject_overlap=true"):
        assigned_split(rows, mapping, key="recording")
    split = make_split(
        rows, {**section, "allow_subject_overlap": True}, assignment=mapping, assignment_key="recording"
    )
    assert split.subject_overlap == {"sub00": ["train", "test"], "sub02": ["train", "test"]}
    assert split.describe(rows)["subject_overlap"] == {"sub00": ["train", "test"], "sub02": ["train", "test"]}
    # A disjoint assignment by recording passes and records no overlap.
    disjoint = {**mapping, "sub00_rec1": "train", "sub02_rec1": "test"}
    split = make_split(rows, section, assignment=disjoint, assignment_key="recording")
    assert split.subject_overlap == {} and split.describe(rows)["subject_overlap"] == {}


def test_the_chbmit_biot_split_needs_allow_subject_overlap(make_rows):
    """chb21 is chb01 1.5 years later: the published split has the child in train and val."""
    from preprocess.datasets.chbmit import BIOT_SPLIT, subject_of

    cases = ["chb01", "chb02", "chb21", "chb22", "chb23", "chb24"]
    rows = make_rows([(subject_of(c), f"{c}_01", 0.0, "background") for c in cases])
    mapping = {f"{c}_01": BIOT_SPLIT.get(c, "train") for c in cases}
    section = {**load_task_config("onset_detection")["split"], "protocol": "official"}
    with pytest.raises(ValueError, match=r"1 subject\(s\).*chb01 in train and val"):
        make_split(rows, section, assignment=mapping, assignment_key="recording")
    split = make_split(
        rows, {**section, "allow_subject_overlap": True}, assignment=mapping, assignment_key="recording"
    )
    assert split.subject_overlap == {"chb01": ["train", "val"]}


def test_subject_wise_split_is_checked_for_subject_overlap(make_rows):
    rows = _two_recordings_per_subject(make_rows)
    split = make_split(
        rows, {**load_task_config("onset_detection")["split"], "val_fraction": 0.3, "test_fraction": 0.3}
    )
    assert split.protocol == "subject_wise" and split.subject_overlap == {}
    assert split.describe(rows)["subject_overlap"] == {}
    # The check itself, on a subject_wise split that leaks (built by hand): an error naming the subject.
    from finetune.splits import Split, check_subject_overlap

    leaky = Split(
        "subject_wise",
        {"train": np.arange(0, 3), "val": np.arange(3, 12), "test": np.arange(12, 18)},
    )
    with pytest.raises(ValueError, match=r"subject_wise split puts 1 subject\(s\).*sub00 in train and val"):
        check_subject_overlap(leaky, rows)
    assert check_subject_overlap(leaky, rows, allow=True).subject_overlap == {"sub00": ["train", "val"]}


def test_patient_specific_split_is_within_subjects_by_design(make_rows):
    rows = _rows(make_rows, n_subjects=2, recordings_per_subject=1, windows=10)
    section = {
        **load_task_config("onset_detection")["split"],
        "protocol": "patient_specific",
        "patient_specific_by": "time_block",
        "val_fraction": 0.2,
        "test_fraction": 0.2,
    }
    split = make_split(rows, section)
    assert _groups(rows, split, "subject") == {name: {"sub00", "sub01"} for name in SPLIT_NAMES}
    assert split.subject_overlap == {} and split.describe(rows)["subject_overlap"] == {}


def test_allow_subject_overlap_must_be_a_boolean():
    good = load_task_config("onset_detection")["split"]
    assert good["allow_subject_overlap"] is False
    with pytest.raises(ValueError, match=r"'split.allow_subject_overlap'.*but got 'yes'"):
        check_split_config({**good, "allow_subject_overlap": "yes"})
