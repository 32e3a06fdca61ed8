"""HMS harmful brain activity: train.csv + train_eegs/<eeg_id>.parquet, soft labels into pickles, manifest."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest

from preprocess.datasets import get_adapter
from preprocess.datasets.base import AnnotationError, LayoutError
from preprocess.datasets.hms import HMS_COLUMNS, read_hms_table
from preprocess.parquet import HMS_EEG_COLUMNS, ParquetLayoutError, read_parquet_eeg
from preprocess.segments import load_segment, read_manifest
from preprocess.synthetic import synthetic_eeg

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

HEADER = [
    "eeg_id",
    "eeg_sub_id",
    "eeg_label_offset_seconds",
    "spectrogram_id",
    "spectrogram_sub_id",
    "spectrogram_label_offset_seconds",
    "label_id",
    "patient_id",
    "expert_consensus",
    "seizure_vote",
    "lpd_vote",
    "gpd_vote",
    "lrda_vote",
    "grda_vote",
    "other_vote",
]


def _write_eeg(path, duration_s=60.0, seed=0, columns=(*HMS_EEG_COLUMNS, "EKG")):
    """A parquet EEG table in the HMS layout: one column per electrode, 200 Hz, uV (float32)."""
    data = synthetic_eeg(len(columns), round(duration_s * 200), 200.0, seed=seed).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(data.T, columns=list(columns)).to_parquet(path)
    return data


def _write_table(path, rows):
    """train.csv rows: (eeg_id, offset_s, patient_id, consensus, votes of the six classes)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for k, (eeg_id, offset, patient, consensus, votes) in enumerate(rows):
            writer.writerow([eeg_id, k, offset, 9, k, offset, 1000 + k, patient, consensus, *votes])


def _hms_root(root, rows, eeg_ids=(11, 22)):
    for seed, eeg_id in enumerate(eeg_ids):
        _write_eeg(root / "train_eegs" / f"{eeg_id}.parquet", seed=seed)
    _write_table(root / "train.csv", rows)
    return root


ROWS = [
    (11, 0, "p1", "Seizure", (3, 1, 0, 0, 0, 0)),  # labels [20, 30) s
    (11, 12, "p1", "GRDA", (0, 0, 0, 0, 2, 2)),  # [32, 42) s: GRDA wins the tie in the file
    (22, 4, "p2", "LPD", (0, 5, 0, 0, 0, 0)),  # [24, 34) s
]


def test_parquet_table_becomes_a_raw_in_volts(tmp_path):
    data = _write_eeg(tmp_path / "1.parquet", duration_s=5.0)
    raw = read_parquet_eeg(tmp_path / "1.parquet")
    assert raw.info["sfreq"] == 200.0 and raw.n_times == 1000
    assert raw.ch_names == [*HMS_EEG_COLUMNS, "EKG"]
    assert raw.get_channel_types()[-1] == "ecg"
    np.testing.assert_allclose(raw.get_data() * 1e6, data, rtol=1e-6)
    _write_eeg(tmp_path / "2.parquet", duration_s=1.0, columns=HMS_EEG_COLUMNS[1:])
    with pytest.raises(ParquetLayoutError, match=r"2.parquet lacks the electrode columns \['Fp1'\]"):
        read_parquet_eeg(tmp_path / "2.parquet")


def test_votes_become_the_distribution_of_the_central_10_s(tmp_path):
    _write_table(tmp_path / "train.csv", ROWS)
    table = read_hms_table(tmp_path / "train.csv")
    assert set(table) == {"11.parquet", "22.parquet"} and table["22.parquet"]["subject"] == "p2"
    first = table["11.parquet"]["events"][0]
    assert (first.onset_s, first.duration_s, first.label) == (20.0, 10.0, "seizure")
    assert first.probs == {"seizure": 0.75, "lpd": 0.25, "gpd": 0.0, "lrda": 0.0, "grda": 0.0, "other": 0.0}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"expert_consensus": "Spike"}, r"line 3: invalid expert_consensus 'Spike'"),
        ({"lpd_vote": "-1"}, r"line 3: invalid votes"),
        (
            {
                "seizure_vote": "0",
                "lpd_vote": "0",
                "gpd_vote": "0",
                "lrda_vote": "0",
                "grda_vote": "0",
                "other_vote": "0",
            },
            r"line 3: invalid votes",
        ),
        ({"eeg_label_offset_seconds": "abc"}, r"line 3: eeg_label_offset_seconds 'abc'"),
        ({"patient_id": "p9"}, r"line 3: eeg_id 11 has two patients"),
    ],
)
def test_bad_rows_are_named(tmp_path, change, message):
    _write_table(tmp_path / "train.csv", ROWS)
    frame = pd.read_csv(tmp_path / "train.csv", dtype=str)
    for key, value in change.items():
        frame.loc[1, key] = value
    frame.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(AnnotationError, match=message):
        read_hms_table(tmp_path / "train.csv")


def test_bad_layouts_are_named(tmp_path):
    adapter = get_adapter("hms")
    with pytest.raises(LayoutError, match="No EEG folder train_eegs"):
        adapter.find_recordings(tmp_path)
    _write_eeg(tmp_path / "train_eegs" / "11.parquet", duration_s=1.0)
    with pytest.raises(LayoutError, match="No label table train.csv"):
        adapter.events(tmp_path, "harmful_brain_activity")
    pd.DataFrame({"eeg_id": [11]}).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(AnnotationError, match="lacks the columns"):
        get_adapter("hms").events(tmp_path, "harmful_brain_activity")
    _write_table(tmp_path / "train.csv", ROWS)  # lists 22, absent from the folder
    with pytest.raises(LayoutError, match="absent from the hms root"):
        get_adapter("hms").events(tmp_path, "harmful_brain_activity")
    assert set(get_adapter("hms", partial=True).events(tmp_path, "harmful_brain_activity")) == {"11.parquet"}
    assert set(HMS_COLUMNS) <= set(HEADER)


def test_soft_labels_through_preprocessing_into_pickles_and_manifest(tmp_path, capsys, run_cli):
    root = _hms_root(tmp_path / "root", ROWS)
    out = tmp_path / "out"
    status, text = run_cli(
        capsys, "--dataset", "hms", "--task", "harmful_brain_activity", "--input", root, "--output", out
    )
    assert status == 0, text
    rows = read_manifest(out)
    labelled = Counter((r["recording"], r["subject"], r["start_s"], r["label"]) for r in rows if r["label"])
    # 4-s windows from 0 s: [20, 28) seizure; [28, 32) straddles seizure and nothing: dropped; [32, 40)
    # GRDA; 22: [24, 32) LPD.
    assert labelled == {
        ("11.parquet", "p1", 20.0, "seizure"): 1,
        ("11.parquet", "p1", 24.0, "seizure"): 1,
        ("11.parquet", "p1", 32.0, "grda"): 1,
        ("11.parquet", "p1", 36.0, "grda"): 1,
        ("22.parquet", "p2", 24.0, "lpd"): 1,
        ("22.parquet", "p2", 28.0, "lpd"): 1,
    }
    by_start = {(r["recording"], r["start_s"]): r for r in rows}
    seizure = by_start[("11.parquet", 20.0)]
    want = {"seizure": 0.75, "lpd": 0.25, "gpd": 0.0, "lrda": 0.0, "grda": 0.0, "other": 0.0}
    assert seizure["label_probs"] == want
    assert load_segment(out / seizure["path"])["label_probs"] == want
    assert by_start[("11.parquet", 32.0)]["label_probs"]["grda"] == 0.5
    assert "label_probs" not in by_start[("11.parquet", 0.0)]  # unlabelled: no soft label
    segment = load_segment(out / seizure["path"])
    assert segment["data"].shape == (16, 4000) and segment["ch_names"][1] == "F7-T7"
    events = (out / "events.csv").read_text().splitlines()
    assert events[0].endswith("label,p_seizure,p_lpd,p_gpd,p_lrda,p_grda,p_other")
    assert events[1] == "11.parquet,p1,20.0,10.0,seizure,0.75,0.25,0.0,0.0,0.0,0.0"
