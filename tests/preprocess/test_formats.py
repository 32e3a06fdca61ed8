"""Every vendor's format that can be written here (MNE's exporters, mffpy, documented layouts), read back
through the pipeline."""

import datetime
import struct
from pathlib import Path

import mne
import numpy as np
import pytest

from preprocess.batch import run_preprocessing
from preprocess.pipeline import PreprocessError, Preprocessor, find_recordings, read_recording
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


# -- every vendor's format: written here (MNE's exporters, mffpy, or the format's documented layout), read
# back through the pipeline; the windows must equal those of the same data saved as FIF. -------------------

_RESOLUTION_UV = 0.05  # quantisation step of the hand-written integer formats


def _write_persyst(raw, path):
    """A Persyst recording: ``.lay`` header (INI) and interleaved int32 ``.dat`` in steps of 0.05 uV."""
    counts = np.round(raw.get_data(units="uV") / _RESOLUTION_UV).astype("<i4")
    lines = [
        "[FileInfo]",
        f"File={path.stem}.dat",
        "FileType=Interleaved",
        f"SamplingRate={raw.info['sfreq']:g}",
        "HeaderLength=0",
        f"Calibration={_RESOLUTION_UV}",
        f"WaveformCount={len(raw.ch_names)}",
        "DataType=7",
        "[ChannelMap]",
        *(f"{name}-Ref={i + 1}" for i, name in enumerate(raw.ch_names)),
        "[Patient]",
        "BirthDate=01/01/20",  # MNE's reader needs these five
        "Sex=F",
        "Hand=R",
        "TestDate=01/02/2024",
        "TestTime=10:00:00",
    ]
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".dat").write_bytes(counts.T.tobytes())


def _write_neuroscan(raw, path):
    """An old Neuroscan ``.cnt`` (int16, 0.05 uV steps) whose header's event-table offset is wrong, as in
    files that MNE can only read with ``data_format`` given (Neuroscan SETUP layout, MNE's cnt/_utils.py)."""
    counts = np.round(raw.get_data(units="uV") / _RESOLUTION_UV).astype("<i2")
    n_chans, n_times = counts.shape
    header = bytearray(900 + 75 * n_chans)
    struct.pack_into("<H", header, 370, n_chans)
    struct.pack_into("<H", header, 376, round(raw.info["sfreq"]))
    struct.pack_into("<i", header, 864, n_times)
    struct.pack_into("<i", header, 886, 10**8)  # event table offset past the end of the file
    for i, name in enumerate(raw.ch_names):
        offset = 900 + 75 * i
        header[offset : offset + len(name)] = name.encode()
        struct.pack_into("<f", header, offset + 59, 204.8)  # sensitivity: cal * sensitivity / 204.8 uV
        struct.pack_into("<f", header, offset + 71, _RESOLUTION_UV)
    path.write_bytes(bytes(header) + counts.T.tobytes() + struct.pack("<Bll", 1, 0, 0))  # + empty TEEG


def _write_mne_export(fmt):
    def write(raw, path):
        mne.export.export_raw(path, raw, fmt=fmt, verbose="error")

    return write


def _write_vamp(raw, path):
    """A V-Amp recording: a BrainVision header named ``.ahdr`` whose data file holds one more channel
    than the header lists (the amplifier's, last; MNE's brainvision.py drops it)."""
    extra = mne.io.RawArray(np.zeros((1, raw.n_times)), mne.create_info(["AMP"], raw.info["sfreq"], "eeg"))
    with_extra = raw.copy().add_channels([extra], force_update_info=True)
    mne.export.export_raw(path.with_suffix(".vhdr"), with_extra, fmt="brainvision", verbose="error")
    n_chans = len(raw.ch_names)
    header = path.with_suffix(".vhdr").read_text().splitlines()
    header = [
        f"NumberOfChannels={n_chans}" if line.startswith("NumberOfChannels=") else line
        for line in header
        if not line.startswith(f"Ch{n_chans + 1}=")
    ]
    path.write_text("\n".join(header) + "\n")
    path.with_suffix(".vhdr").unlink()


def _write_curry(raw, path):
    """A Curry 8 recording: float32 ``.cdt`` (uV, sample-major) and its ``.cdt.dpa`` parameters, with the
    keys MNE's curry.py and curryreader read."""
    data = raw.get_data(units="uV").astype("<f4")
    n_chans, n_times = data.shape
    sensors = [f"{np.cos(i):.3f} {np.sin(i):.3f} 50.000" for i in range(n_chans)]
    parameters = [
        "DEVICE_PARAMETERS START",
        "FileVersion = 804",
        f"NumSamples = {n_times}",
        f"NumChannels = {n_chans}",
        "NumTrials = 1",
        f"SampleFreqHz = {raw.info['sfreq']:g}",
        f"SampleTimeUsec = {1e6 / raw.info['sfreq']:g}",
        "TriggerOffsetUsec = 0",
        "DataFormat = BINARY",
        "DataByteOrder = LITTLE_ENDIAN",
        "DataSampOrder = SAMPLE",
        *(f"Start{key} = {value}" for key, value in zip(("Year", "Month", "Day"), (2024, 1, 2), strict=True)),
        *(f"Start{key} = 0" for key in ("Hour", "Min", "Sec", "Millisec")),
        "AmplifierInfo = ",
        f"NumChanThisGroup = {n_chans}",
        "DataUnit = uV",
        "DEVICE_PARAMETERS END",
        *("LABELS START", "LABELS END", "LABELS START_LIST", *raw.ch_names, "LABELS END_LIST"),
        *("SENSORS START", "SENSORS END", "SENSORS START_LIST", *sensors, "SENSORS END_LIST"),
    ]
    Path(f"{path}.dpa").write_text("\n".join(parameters) + "\n")
    path.write_bytes(data.T.tobytes())


def _windows(preprocessor, path):
    return np.concatenate([windows for _, windows, _ in preprocessor.iter_windows(path)])


@pytest.mark.parametrize(
    "name, write, overrides, atol_uv",
    [
        ("rec.edf", _write_mne_export("edf"), (), 0.05),
        ("rec.bdf", _write_mne_export("bdf"), (), 0.01),
        ("rec.vhdr", _write_mne_export("brainvision"), (), 0.05),
        ("rec.ahdr", _write_vamp, (), 0.05),
        ("rec.set", _write_mne_export("eeglab"), (), 0.01),
        # 0.05 uV steps: +-0.025 uV per channel, +-0.05 uV per bipolar pair, a little more after the filters
        ("rec.cdt", _write_curry, (), 1e-3),
        ("rec.lay", _write_persyst, (), 0.1),
        ("rec.cnt", _write_neuroscan, ("reader.data_format=int16",), 0.1),
    ],
)
def test_vendor_formats_give_the_windows_of_fif(
    name, write, overrides, atol_uv, referential, tmp_path, preprocess_config
):
    write(referential, tmp_path / name)
    referential.save(tmp_path / "rec_raw.fif", verbose="error")
    preprocessor = Preprocessor(preprocess_config(*overrides))
    assert [p.name for p in find_recordings([tmp_path])] == sorted([name, "rec_raw.fif"])  # no companion
    windows, windows_fif = (
        _windows(preprocessor, tmp_path / name),
        _windows(preprocessor, tmp_path / "rec_raw.fif"),
    )
    assert windows.shape == windows_fif.shape == (3, 16, 4000)
    np.testing.assert_allclose(windows, windows_fif, atol=atol_uv)


def test_neuroscan_needs_data_format_and_its_reader_says_so(referential, tmp_path):
    # Before: "Could not read file using any of the possible readers" hid MNE's advice.
    _write_neuroscan(referential, tmp_path / "old.cnt")
    with pytest.raises(PreprocessError) as info:
        read_recording(tmp_path / "old.cnt")
    message = str(info.value)
    assert "mne.io.read_raw_cnt (CNT)" in message and "mne.io.read_raw_ant (ANT)" in message
    assert "data_format='int16' or 'int32'" in message and "--set reader.data_format=..." in message
    raw = read_recording(tmp_path / "old.cnt", {"data_format": "int16"})
    np.testing.assert_allclose(raw.get_data(units="uV"), referential.get_data(units="uV"), atol=0.026)


def test_egi_mff_folder_is_read_with_mffpy(tmp_path, preprocess_config):
    mffpy = pytest.importorskip("mffpy")
    from mffpy.bin_writer import BinWriter

    names = [f"E{i}" for i in range(1, 33)]
    raw = synthetic_raw(names + ["Vertex Reference"], sfreq=250.0, duration_s=12.0, seed=3)
    writer = mffpy.Writer(str(tmp_path / "in" / "rec.mff"))
    writer.create_directory()
    writer.addxml("fileInfo", recordTime=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
    block = BinWriter(sampling_rate=250)
    block.add_block(raw.get_data(units="uV").astype(np.float32))
    writer.addbin(block)
    writer.add_coordinates_and_sensor_layout(device="HydroCel GSN 32 1.0")
    writer.write()
    raw.save(tmp_path / "rec_raw.fif", verbose="error")
    assert find_recordings([tmp_path / "in"]) == [tmp_path / "in" / "rec.mff"]  # the folder, not its files
    config = preprocess_config()
    config["montage"] = [f"E{i}-E{i + 1}" for i in range(1, 32, 2)]  # EGI names; 16 pairs
    preprocessor = Preprocessor(config)
    np.testing.assert_allclose(
        _windows(preprocessor, tmp_path / "in" / "rec.mff"),
        _windows(preprocessor, tmp_path / "rec_raw.fif"),
        atol=1e-3,
    )


def test_nexstim_nxe_is_read_with_its_ten_ten_channels(tmp_path, preprocess_config):
    # eXimia .nxe: headerless int16, 64 channels at 1450 Hz (MNE's reader knows the layout).
    counts = np.random.default_rng(0).integers(-100, 100, (64, 1450 * 8), dtype="<i2")
    (tmp_path / "rec.nxe").write_bytes(counts.T.tobytes())
    assert find_recordings([tmp_path]) == [tmp_path / "rec.nxe"]  # before: not searched for
    raw = read_recording(tmp_path / "rec.nxe")  # before: "unsupported file type"
    assert len(raw.ch_names) == 60 and raw.info["sfreq"] == 1450.0
    rec = Preprocessor(preprocess_config()).open(tmp_path / "rec.nxe")
    assert rec.filled_channels == [] and rec.duration_s == 8.0


def test_reader_option_on_the_command_line(referential, tmp_path, capsys):
    from preprocess.preprocess_main import main

    (tmp_path / "in").mkdir()
    _write_neuroscan(referential, tmp_path / "in" / "old.cnt")
    assert main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--quiet"]) == 1
    assert "pass data_format='int16' or 'int32' explicitly" in capsys.readouterr().out
    argv = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out2"), "--quiet"]
    assert main([*argv, "--set", "reader.data_format=int16"]) == 0
    assert len(read_manifest(tmp_path / "out2")) == 3
