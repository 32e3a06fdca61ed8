"""Preprocessing on real recordings from ../shared/data and on synthetic MNE recordings."""

import threading

import numpy as np
import pytest

from preprocess.batch import run_preprocessing
from preprocess.channels import load_montage
from preprocess.mfde import knowledge_weights
from preprocess.pipeline import Preprocessor
from preprocess.segments import load_segment, read_manifest
from preprocess.synthetic import TEN_TWENTY, synthetic_raw, write_edf
from tests.helpers import shared_path

SEIZURE_CROP = "chb01_03_seizure_2995-3036s"
NONSEIZURE_CROP = "chb01_03_nonseizure_0-41s"


@pytest.fixture(scope="module")
def chbmit_output(tmp_path_factory):
    """Both CHB-MIT crops preprocessed with the paper's defaults and their events."""
    edf = shared_path("data", "chbmit", "edf")
    from runtime.config import CONFIG_DIR, load_config

    config = load_config(CONFIG_DIR / "preprocess" / "m4cea.yaml")
    out = tmp_path_factory.mktemp("chbmit")
    summary = run_preprocessing([edf], out, config, events=edf / "events.csv", progress=False)
    assert summary.failed == []
    return out, summary


def test_chbmit_window_counts_shapes_labels(chbmit_output):
    out, summary = chbmit_output
    rows = read_manifest(out)
    # 41 s -> windows at 0, 4, ..., 36 s; the seizure crop's first window straddles background and seizure
    # (dropped).
    assert summary.n_windows == 19 and summary.rejected == {"straddle": 1}
    by_recording = {}
    for row in rows:
        by_recording.setdefault(row["recording"], []).append(row)
    seizure = by_recording[f"{SEIZURE_CROP}.edf"]
    assert [r["start_s"] for r in seizure] == [4.0 * k for k in range(1, 10)]
    assert {r["label"] for r in seizure} == {"seizure"}
    background = by_recording[f"{NONSEIZURE_CROP}.edf"]
    assert [r["start_s"] for r in background] == [4.0 * k for k in range(10)]
    assert {r["label"] for r in background} == {"background"}
    assert {r["subject"] for r in rows} == {"chb01"}
    segment = load_segment(out / seizure[0]["path"])
    assert segment["data"].shape == (16, 4000) and segment["data"].dtype == np.float32
    assert segment["mfde"].shape == (320,) and segment["mfde"].sum() == pytest.approx(1.0, abs=1e-12)
    assert segment["ch_names"] == load_montage("double_banana").ch_names
    assert segment["sfreq"] == 1000.0 and segment["start_s"] == 4.0 and segment["label"] == "seizure"
    assert segment["recording"] == f"{SEIZURE_CROP}.edf" and segment["filled_channels"] == []


def test_chbmit_windows_and_mfde_match_the_official_reference(chbmit_output):
    """uV, channel order, filters, resampling and MFDE equal the official pipeline's outputs."""
    out, _ = chbmit_output
    reference = np.load(shared_path("reference", "mfde_reference_chb01.npz"))
    for i, source in enumerate(reference["source"]):
        name, start = str(source).split("@")
        rec_id = name.removesuffix(".edf")
        segment = load_segment(out / "segments" / rec_id / f"{rec_id}_{int(start[:-1]) * 1000:09d}ms.pkl")
        np.testing.assert_allclose(segment["data"], reference["windows"][i], rtol=0, atol=1e-3)
        np.testing.assert_allclose(segment["mfde"], reference["mfde_weights"][i], rtol=0, atol=1e-9)


def test_chbmit_majority_rule_keeps_the_straddling_window(tmp_path, preprocess_config):
    edf = shared_path("data", "chbmit", "edf")
    config = preprocess_config("labels.straddle=majority")
    events = edf / "events.csv"  # covers more recordings than this run: events_partial
    summary = run_preprocessing(
        [edf / f"{SEIZURE_CROP}.edf"], tmp_path, config, events=events, progress=False, events_partial=True
    )
    rows = read_manifest(tmp_path)
    assert summary.n_windows == 10 and rows[0]["start_s"] == 0.0 and rows[0]["label"] == "seizure"  # 3 s of 4


def test_neonatal_recording_with_old_names(tmp_path, preprocess_config):
    path = shared_path("data", "neonatal_examples", "demo.edf")
    summary = run_preprocessing([path], tmp_path, preprocess_config("montage=neonatal_8ch"), progress=False)
    rows = read_manifest(tmp_path)
    assert summary.n_windows == 165 == len(rows)  # 661 s -> 165 whole 4-s windows
    segment = load_segment(tmp_path / rows[-1]["path"])
    assert segment["data"].shape == (8, 4000) and segment["mfde"].shape == (160,)
    assert segment["ch_names"] == ["F7-C3", "C3-P7", "F7-T7", "T7-P7", "F8-C4", "C4-P8", "F8-T8", "T8-P8"]
    assert rows[-1]["start_s"] == 656.0 and rows[-1]["label"] is None
    assert 1.0 < np.std(segment["data"]) < 500.0  # microvolts, not volts


def _bipolar_from_referential(raw):
    """The double-banana channels computed by hand from a referential recording (names as a bipolar file)."""
    import mne

    names = {
        normalize: raw_name
        for raw_name in raw.ch_names
        for normalize in [raw_name.replace("EEG ", "").replace("-REF", "").upper()]
    }
    old = {"T7": "T3", "T8": "T4", "P7": "T5", "P8": "T6"}
    montage = load_montage("double_banana")
    data = raw.get_data()
    rows = [
        data[raw.ch_names.index(names[old.get(a, a)])] - data[raw.ch_names.index(names[old.get(b, b)])]
        for a, b in montage.pairs
    ]
    info = mne.create_info(montage.ch_names, raw.info["sfreq"], "eeg")
    return mne.io.RawArray(np.array(rows), info, verbose="error")


def test_referential_recording_is_rereferenced(tmp_path, preprocess_config):
    referential = synthetic_raw(
        [f"EEG {name}-REF" for name in TEN_TWENTY], sfreq=250.0, duration_s=30.0, seed=3
    )
    write_edf(referential, tmp_path / "in" / "ref.edf")
    write_edf(_bipolar_from_referential(referential), tmp_path / "in" / "bip.edf")
    run_preprocessing([tmp_path / "in"], tmp_path / "out", preprocess_config(), progress=False)
    rows = read_manifest(tmp_path / "out")
    assert len(rows) == 2 * 7
    for start in range(7):
        ref = load_segment(tmp_path / "out" / "segments" / "ref" / f"ref_{start * 4000:09d}ms.pkl")
        bip = load_segment(tmp_path / "out" / "segments" / "bip" / f"bip_{start * 4000:09d}ms.pkl")
        # EDF stores 16-bit values per channel range: the two files differ by their quantisation only.
        np.testing.assert_allclose(ref["data"], bip["data"], atol=0.05)
        assert np.std(ref["data"]) > 5.0


def test_blocks_equal_the_whole_recording(tmp_path, preprocess_config):
    """Processing in blocks with margins gives what processing the whole recording gives."""
    raw = synthetic_raw(duration_s=200.0, seed=1)
    raw.save(tmp_path / "rec_raw.fif", verbose="error")
    windows = {}
    for block_s in (1000.0, 40.0):
        out = tmp_path / f"out{block_s:g}"
        run_preprocessing(
            [tmp_path / "rec_raw.fif"], out, preprocess_config(f"block_s={block_s}"), progress=False
        )
        rows = read_manifest(out)
        windows[block_s] = np.stack([load_segment(out / row["path"])["data"] for row in rows])
    assert windows[40.0].shape == (50, 16, 4000)
    assert np.abs(windows[40.0] - windows[1000.0]).max() < 0.01  # uV, against a std of ~10 uV
    assert np.std(windows[1000.0]) > 5.0


def test_mfde_in_segments_is_knowledge_weights_of_the_data(chbmit_output):
    out, _ = chbmit_output
    row = read_manifest(out)[3]
    segment = load_segment(out / row["path"])
    np.testing.assert_allclose(
        segment["mfde"], knowledge_weights(segment["data"].astype(np.float64)), atol=1e-12
    )


def test_nan_and_flat_windows_are_rejected_and_counted(tmp_path, preprocess_config):
    raw = synthetic_raw(duration_s=40.0, seed=2)
    data = raw.get_data()
    data[:, int(10.5 * 256) : int(11.0 * 256)] = np.nan  # inside the window 8-12 s
    data[3, 16 * 256 : 32 * 256] = (
        1e-6  # a disconnected channel from 16 to 32 s (filter transients 16-20, 28-32)
    )
    raw._data[:] = data
    raw.save(tmp_path / "bad_raw.fif", verbose="error")
    summary = run_preprocessing(
        [tmp_path / "bad_raw.fif"], tmp_path / "out", preprocess_config(), progress=False
    )
    starts = [row["start_s"] for row in read_manifest(tmp_path / "out")]
    assert summary.rejected == {"nan": 1, "flat": 2}
    assert 8.0 not in starts and 20.0 not in starts and 24.0 not in starts and len(starts) == 7


def test_infinite_samples_reject_only_the_windows_they_touch(tmp_path, preprocess_config):
    """+/-inf is treated like NaN: the windows it touches are rejected as 'inf', the others are kept."""
    raw = synthetic_raw(duration_s=40.0, seed=2)
    raw._data[2, int(5.0 * 256)] = np.inf  # window 4-8 s
    raw._data[7, int(29.0 * 256) : int(29.1 * 256)] = -np.inf  # window 28-32 s
    raw._data[:, int(17.0 * 256)] = np.nan  # window 16-20 s
    raw.save(tmp_path / "inf_raw.fif", verbose="error")
    config = preprocess_config()
    summary = run_preprocessing([tmp_path / "inf_raw.fif"], tmp_path / "out", config, progress=False)
    assert summary.failed == [] and summary.rejected == {"inf": 2, "nan": 1} and summary.n_windows == 7
    starts = sorted(row["start_s"] for row in read_manifest(tmp_path / "out"))
    assert starts == [0.0, 8.0, 12.0, 20.0, 24.0, 32.0, 36.0]
    # The same reasons through the in-memory API (finetune/predict.py), and the kept windows are finite.
    ((starts_s, windows, reasons),) = list(Preprocessor(config).iter_windows(tmp_path / "inf_raw.fif"))
    assert list(reasons) == ["", "inf", "", "", "nan", "", "", "inf", "", ""]
    assert np.isfinite(windows).all()


def test_low_voltage_eeg_is_not_flat(tmp_path, preprocess_config):
    """Inactive EEG (HIE grade 4, about 2-5 uV) is data, not a broken channel."""
    raw = synthetic_raw(duration_s=20.0, seed=4)
    raw._data *= 0.1  # ~1-3 uV
    raw.save(tmp_path / "quiet_raw.fif", verbose="error")
    summary = run_preprocessing(
        [tmp_path / "quiet_raw.fif"], tmp_path / "out", preprocess_config(), progress=False
    )
    assert summary.n_windows == 5 and not summary.rejected


def test_missing_channels_filled_with_zeros(tmp_path, preprocess_config):
    names = [f"EEG {name}-REF" for name in TEN_TWENTY if name != "O1"]
    synthetic_raw(names, duration_s=12.0).save(tmp_path / "no_o1_raw.fif", verbose="error")
    run_preprocessing(
        [tmp_path / "no_o1_raw.fif"],
        tmp_path / "out",
        preprocess_config("missing_channels=zeros"),
        progress=False,
    )
    rows = read_manifest(tmp_path / "out")
    segment = load_segment(tmp_path / "out" / rows[0]["path"])
    assert segment["filled_channels"] == ["P7-O1", "P3-O1"]
    montage = load_montage("double_banana").ch_names
    assert not segment["data"][montage.index("P7-O1")].any() and segment["data"][0].any()


def test_events_from_the_recordings_annotations(tmp_path, preprocess_config):
    import mne

    raw = synthetic_raw(duration_s=20.0)
    raw.set_annotations(mne.Annotations([8.0], [8.0], ["seizure"]))
    raw.save(tmp_path / "ann_raw.fif", verbose="error")
    run_preprocessing(
        [tmp_path / "ann_raw.fif"],
        tmp_path / "out",
        preprocess_config("labels.default=background"),
        events="annotations",
        progress=False,
    )
    assert [row["label"] for row in read_manifest(tmp_path / "out")] == [
        "background",
        "background",
        "seizure",
        "seizure",
        "background",
    ]


def test_preprocessor_rejects_bad_config_values(preprocess_config):
    with pytest.raises(ValueError, match="patch"):
        Preprocessor(preprocess_config("patch_s=0.3"))
    with pytest.raises(ValueError, match="h_freq"):
        Preprocessor(preprocess_config("sfreq=100.0"))
    with pytest.raises(ValueError, match="labels.straddle"):
        Preprocessor(preprocess_config("labels.straddle=first"))
    with pytest.raises(ValueError, match="labels.default"):
        Preprocessor(preprocess_config("labels.default=spike"))
    with pytest.raises(ValueError, match="mfde.variant"):
        Preprocessor(preprocess_config("mfde.variant=fast"))
    with pytest.raises(ValueError, match="'max_filled_channels' parameter.*integers >= 0.*-1"):
        Preprocessor(preprocess_config("max_filled_channels=-1"))


def test_iter_windows_yields_the_windows_process_writes(tmp_path, preprocess_config):
    """The in-memory windows (finetune/predict.py) are the pickled ones, with the rejection reasons."""
    raw = synthetic_raw(duration_s=60.0, seed=5)
    raw._data[:, int(21.0 * 256) : int(21.5 * 256)] = np.nan  # inside the window 20-24 s
    raw.save(tmp_path / "rec_raw.fif", verbose="error")
    config = preprocess_config()
    run_preprocessing([tmp_path / "rec_raw.fif"], tmp_path / "out", config, progress=False)
    written = {
        row["start_s"]: load_segment(tmp_path / "out" / row["path"])["data"]
        for row in read_manifest(tmp_path / "out")
    }
    preprocessor = Preprocessor(config)
    ((starts, windows, reasons),) = list(preprocessor.iter_windows(tmp_path / "rec_raw.fif"))
    np.testing.assert_array_equal(starts, 4.0 * np.arange(15))
    assert windows.shape == (15, 16, 4000) and windows.dtype == np.float32
    assert list(reasons) == [""] * 5 + ["nan"] + [""] * 9
    assert sorted(written) == [s for s, r in zip(starts, reasons, strict=True) if r == ""]
    for start, data in written.items():
        np.testing.assert_array_equal(windows[list(starts).index(start)], data)
    # Another stride, and explicit starts (a few windows around a time): the same signal.
    ((starts2, windows2, _),) = list(preprocessor.iter_windows(tmp_path / "rec_raw.fif", stride_s=2.0))
    np.testing.assert_array_equal(starts2, 2.0 * np.arange(29))
    np.testing.assert_array_equal(windows2[::2], windows)
    recording = preprocessor.open(tmp_path / "rec_raw.fif")
    blocks = list(preprocessor.iter_windows(recording, starts_s=[40.0, 44.0]))
    assert len(blocks) == 1 and list(blocks[0][0]) == [40.0, 44.0]
    assert np.abs(blocks[0][1] - windows[10:12]).max() < 0.01  # uV: a shorter block, the same margins
    with pytest.raises(ValueError, match="starts_s"):
        list(preprocessor.iter_windows(recording, starts_s=[58.0]))
    # block_s=12 s: 3 windows per block; memory is bounded by the block, not by the recording.
    small = Preprocessor(preprocess_config("block_s=12.0"))
    sizes = [len(w) for _, w, _ in small.iter_windows(recording, stride_s=4.0)]
    assert sizes == [3, 3, 3, 3, 3]
    # Blocks preprocessed in threads: the same blocks, in order, with the same windows and reasons.
    one = list(small.iter_windows(recording))
    for n_threads in (2, 3, 8):
        threaded = list(small.iter_windows(recording, n_threads=n_threads))
        assert len(threaded) == len(one) == 5
        for (s1, w1, r1), (s2, w2, r2) in zip(one, threaded, strict=True):
            np.testing.assert_array_equal(s1, s2)
            np.testing.assert_array_equal(w1, w2)
            assert list(r1) == list(r2)
    assert [r for _, _, reasons in one for r in reasons] == list(reasons)
    first_only = small.iter_windows(recording, n_threads=3)
    np.testing.assert_array_equal(next(first_only)[1], one[0][1])
    first_only.close()  # stopping early leaves no thread behind
    assert not [t for t in threading.enumerate() if t.name.startswith("m4cea-block")]
    with pytest.raises(ValueError, match="'n_threads'"):
        list(small.iter_windows(recording, n_threads=0))
