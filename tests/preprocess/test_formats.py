"""Formats other than EDF and FIF, written with MNE's exporters, read back through the pipeline."""

import mne
import numpy as np
import pytest

from preprocess.batch import run_preprocessing
from preprocess.pipeline import find_recordings, read_recording
from preprocess.segments import load_segment, read_manifest
from preprocess.synthetic import TEN_TWENTY, synthetic_raw


@pytest.fixture
def referential():
    return synthetic_raw(TEN_TWENTY, sfreq=250.0, duration_s=12.0, seed=5)


@pytest.mark.parametrize("fmt, name", [("brainvision", "rec.vhdr"), ("eeglab", "rec.set")])
def test_exported_formats_give_the_same_windows_as_fif(fmt, name, referential, tmp_path, preprocess_config):
    (tmp_path / "in").mkdir()
    (tmp_path / "fif").mkdir()
    mne.export.export_raw(tmp_path / "in" / name, referential, fmt=fmt, verbose="error")
    referential.save(tmp_path / "fif" / "rec_raw.fif", verbose="error")
    assert [p.name for p in find_recordings([tmp_path / "in"])] == [
        name
    ]  # BrainVision's .eeg is not a recording
    config = preprocess_config()
    run_preprocessing([tmp_path / "in"], tmp_path / "out", config, progress=False)
    run_preprocessing([tmp_path / "fif"], tmp_path / "out_fif", config, progress=False)
    rows, rows_fif = read_manifest(tmp_path / "out"), read_manifest(tmp_path / "out_fif")
    assert len(rows) == len(rows_fif) == 3
    for row, row_fif in zip(rows, rows_fif, strict=True):
        a = load_segment(tmp_path / "out" / row["path"])["data"]
        b = load_segment(tmp_path / "out_fif" / row_fif["path"])["data"]
        np.testing.assert_allclose(a, b, atol=0.05)  # export quantisation only


def test_only_eeg_channels_are_kept(tmp_path):
    raw = synthetic_raw(["Fp1", "F7", "ECG", "STI 014"], duration_s=5.0)
    raw.set_channel_types({"ECG": "ecg", "STI 014": "stim"})
    raw.save(tmp_path / "mixed_raw.fif", verbose="error")
    assert read_recording(tmp_path / "mixed_raw.fif").ch_names == ["Fp1", "F7"]
    raw.pick(["ECG"]).save(tmp_path / "ecg_raw.fif", verbose="error")
    with pytest.raises(ValueError, match=r"ecg_raw\.fif is not EEG"):
        read_recording(tmp_path / "ecg_raw.fif")
    (tmp_path / "notes.xyz").write_text("hello")
    with pytest.raises(ValueError, match="unsupported file type 'notes.xyz': mne.io.read_raw reads"):
        read_recording(tmp_path / "notes.xyz")
    (tmp_path / "notes.txt").write_text("hello")  # .txt is MNE's BOXY (fNIRS) reader: its failure is named
    with pytest.raises(ValueError, match=r"unreadable recording notes\.txt: mne\.io\.read_raw_boxy \(BOXY\)"):
        read_recording(tmp_path / "notes.txt")
