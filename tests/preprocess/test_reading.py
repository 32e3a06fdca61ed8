"""Finding recordings in folders, reader options, and the errors that name the file and the setting."""

import os
from pathlib import Path

import edfio
import mne
import numpy as np
import pytest

from preprocess.channels import load_montage, normalize_channel_names
from preprocess.pipeline import PreprocessError, Preprocessor
from preprocess.reading import (
    check_reader_options,
    find_recordings,
    read_recording,
    recording_id,
    recording_id_clashes,
    recording_suffix,
)
from preprocess.synthetic import TEN_TWENTY, synthetic_raw, write_edf
from tests.helpers import shared_path


def _touch(folder, *names, content=b"\0" * 64):
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def _annotation_only_edf(path):
    edfio.Edf([], annotations=[edfio.EdfAnnotation(0.0, 30.0, "W")]).write(path)


def test_folder_scan_finds_every_vendor_format_and_no_companion(tmp_path):
    root = tmp_path / "in"
    _touch(root, "edf/a.edf", "bdf/b.BDF", "gdf/c.gdf", "set/d.set", "set/d.fdt", "nexstim/e.nxe")
    _touch(root, "neuroscan/f.cnt", "nk/PATIENT1.EEG", "nk/PATIENT1.PNT", "nk/PATIENT1.LOG")
    _touch(root, "fif/g_raw.fif", "fif/g_raw-1.fif", "fif/h_eeg.fif.gz", "fif/g-epo.fif", "fif/g-ave.fif")
    _touch(root, "bids/sub-1_split-01_eeg.fif", "bids/sub-1_split-02_eeg.fif", "fif/patient-2.fif")
    # BrainVision: the data and marker files are the header's companions, also under another name (V-Amp)
    _touch(root, "bv/h.vhdr", content=b"Brain Vision Data Exchange Header File Version 1.0\nDataFile=h.eeg\n")
    _touch(root, "bv/h.eeg", "bv/h.vmrk", "bv/v.amrk", "bv/v_data.eeg")
    _touch(root, "bv/v.ahdr", content=b"[Common Infos]\nDataFile=v_data.eeg\nMarkerFile=v.amrk\n")
    _touch(root, "persyst/p.lay", content=b"[FileInfo]\nFile=p.dat\n")
    _touch(root, "persyst/p.dat")
    _touch(root, "curry8/k.cdt", "curry8/k.cdt.dpa", "curry8/k.cdt.cef")
    _touch(root, "curry7/m.dat", "curry7/m.dap", "curry7/m.rs3")
    _touch(root, "bci2000/run1.dat", content=b"HeaderLen= 1234 SourceCh= 16 StatevectorLen= 4\n")
    _touch(root, "egi/n.mff/signal1.bin", "egi/n.mff/info.xml")  # a recording stored as a folder
    # Not recordings: generic suffixes of MNE's non-EEG readers, stray .dat, hidden files, annotation-only EDF
    _touch(root, "notes.txt", "labels.mat", "nirs.hdr", "meg.bin", "eyes.asc", "other.dat")
    _touch(root, ".tmp/x.1234/x.edf", "edf/._a.edf", "README.md", "events.csv")
    _annotation_only_edf(root / "SC4001EC-Hypnogram.edf")
    found = [p.relative_to(root).as_posix() for p in find_recordings([root])]
    assert found == [
        "bci2000/run1.dat",
        "bdf/b.BDF",
        "bids/sub-1_split-01_eeg.fif",
        "bv/h.vhdr",
        "bv/v.ahdr",
        "curry7/m.dat",
        "curry8/k.cdt",
        "edf/a.edf",
        "egi/n.mff",
        "fif/g_raw.fif",
        "fif/h_eeg.fif.gz",
        "fif/patient-2.fif",  # no patient.fif: not a split part
        "gdf/c.gdf",
        "neuroscan/f.cnt",
        "nexstim/e.nxe",
        "nk/PATIENT1.EEG",
        "persyst/p.lay",
        "set/d.set",
    ]
    assert recording_id(root / "fif/h_eeg.fif.gz") == "h_eeg" and recording_id(root / "curry8/k.cdt") == "k"
    assert recording_id(root / "egi/n.mff") == "n" and recording_suffix("x.cdt.dpa") == ".cdt.dpa"
    # A file or recording folder named explicitly is taken as it is.
    assert find_recordings([root / "notes.txt", root / "egi/n.mff"]) == [
        root / "egi/n.mff",
        root / "notes.txt",
    ]
    # One file named twice is one recording (not a clash of two recordings with one id).
    relative = Path(os.path.relpath(root / "edf/a.edf"))
    assert find_recordings([root / "edf", relative]) == [min(root / "edf/a.edf", relative)]


def test_predict_outputs_inside_the_input_folder_are_not_recordings(tmp_path):
    from finetune.postprocess import DetectedEvent
    from finetune.predict_outputs import write_annotations_edf, write_annotations_fif

    raw = synthetic_raw(TEN_TWENTY, sfreq=250.0, duration_s=12.0)
    write_edf(raw, tmp_path / "in" / "rec.edf")
    out = tmp_path / "in" / "predictions" / "rec"  # predict --input in --output in/predictions
    out.mkdir(parents=True)
    events = [
        DetectedEvent(
            onset_s=4.0,
            duration_s=4.0,
            trial_type="seizure",
            probability=0.9,
            peak_probability=0.95,
            peak_s=5.0,
        )
    ]
    write_annotations_edf(out / "rec_annotations.edf", events, raw)
    write_annotations_fif(out / "rec_annot.fif", events, raw)
    (out / "rec_probabilities.csv").write_text("start_s\n0\n")
    # Before: the next run (or one with another --output) read both annotation files as recordings.
    assert find_recordings([tmp_path / "in"]) == [tmp_path / "in" / "rec.edf"]


def test_reader_options_reach_the_reader_and_bad_keys_are_refused(tmp_path, preprocess_config):
    raw = synthetic_raw(["Fp1", "F7"], sfreq=250.0, duration_s=5.0)
    mne.export.export_raw(tmp_path / "rec.vhdr", raw, fmt="brainvision", verbose="error")
    write_edf(raw, tmp_path / "rec.edf")
    config = preprocess_config("reader.scale=2.0")
    assert config["reader"] == {"scale": 2.0}
    scaled = read_recording(tmp_path / "rec.vhdr", config["reader"]).get_data()
    np.testing.assert_allclose(scaled, 2 * read_recording(tmp_path / "rec.vhdr").get_data())
    # An option of another format's reader is not passed to this one (a batch may mix formats).
    assert read_recording(tmp_path / "rec.edf", {"data_format": "int16"}).ch_names == ["Fp1", "F7"]
    with pytest.raises(ValueError, match=r"\['data_fromat'\] for the 'reader' parameter.*data_format"):
        Preprocessor(preprocess_config("reader.data_fromat=int16"))
    with pytest.raises(ValueError, match="preload and verbose are set by the pipeline"):
        check_reader_options({"preload": True})


def test_brainvision_data_file_given_instead_of_its_header(tmp_path):
    raw = synthetic_raw(["Fp1", "F7"], sfreq=250.0, duration_s=5.0)
    mne.export.export_raw(tmp_path / "rec.vhdr", raw, fmt="brainvision", verbose="error")
    with pytest.raises(
        PreprocessError, match=r"rec\.eeg is the data file of the BrainVision recording rec\.vhdr"
    ):
        read_recording(tmp_path / "rec.eeg")
    with pytest.raises(PreprocessError, match=r"rec\.vmrk is the marker file .* give its \.vhdr file"):
        read_recording(tmp_path / "rec.vmrk")


def test_sampling_rate_too_low_for_h_freq_names_the_setting(tmp_path, preprocess_config):
    write_edf(synthetic_raw(TEN_TWENTY, sfreq=100.0, duration_s=10.0), tmp_path / "slow.edf")
    with pytest.raises(PreprocessError, match=r"slow\.edf: sfreq 100 Hz .* --set h_freq=40"):
        Preprocessor(preprocess_config()).open(tmp_path / "slow.edf")
    assert Preprocessor(preprocess_config("h_freq=40")).open(tmp_path / "slow.edf").sfreq_in == 100.0


def test_epoched_eeglab_file_says_to_export_the_continuous_data(tmp_path):
    info = mne.create_info(["Fp1", "F7"], 250.0, "eeg")
    epochs = mne.EpochsArray(
        np.random.default_rng(0).standard_normal((3, 2, 250)) * 1e-5, info, verbose=False
    )
    mne.export.export_epochs(tmp_path / "ep.set", epochs, verbose="error")
    with pytest.raises(PreprocessError, match=r"ep\.set is an epoched EEGLAB dataset: .* continuous dataset"):
        read_recording(tmp_path / "ep.set")


def test_two_exports_of_one_recording_are_named_per_recording(tmp_path):
    paths = [tmp_path / "rec.edf", tmp_path / "rec.fif", tmp_path / "other.edf"]
    clashes = recording_id_clashes(paths)
    assert sorted(clashes) == paths[:2]
    assert clashes[paths[0]].startswith(f"rec.edf and {paths[1]} are both recording 'rec'")


def test_real_recordings_are_found_and_read(preprocess_config):
    fif = shared_path("data", "yasa_sleep_snippets", "data_resting_EO_200Hz_raw.fif")
    edf = shared_path("data", "neonatal_examples", "demo.edf")
    assert find_recordings([fif.parent]) == [fif]  # the .txt and .npz snippets are not recordings
    raw = read_recording(fif)
    assert raw.ch_names == ["F4-A1", "CZ-A2"] and raw.info["sfreq"] == 200.0
    assert normalize_channel_names(raw.ch_names) == ["F4-A1", "CZ-A2"]  # two ear references: kept
    rec = Preprocessor(preprocess_config("missing_channels=zeros", "max_filled_channels=12")).open(edf)
    built = {"F7-T7", "T7-P7", "F8-T8", "T8-P8"}  # from F7-T3, T3-T5, F8-T4, T4-T6 of the 8 bipolar channels
    assert set(rec.filled_channels) == set(load_montage("double_banana").ch_names) - built


def test_hypnograms_are_not_recordings():
    hypnogram = shared_path("data", "sleep_edf", "SC4001EC-Hypnogram.edf")
    assert find_recordings([hypnogram.parent]) == []  # before: the hypnogram, which then failed as not EEG


def test_real_folder_of_recordings_and_their_notes():
    root = shared_path("data", "chbmit")  # EDF crops beside CSVs, summaries, RECORDS, *.edf.seizures
    assert [p.name for p in find_recordings([root])] == [
        "chb01_03_nonseizure_0-41s.edf",
        "chb01_03_seizure_2995-3036s.edf",
    ]
