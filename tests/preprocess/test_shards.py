"""HDF5 shards (``output.format: hdf5``): equal to pickles, resumable, read by every loader."""

import numpy as np
import pytest

import preprocess.pipeline as pipeline
from finetune.data import FinetuneDataset
from models import get_input_contract
from preprocess.batch import run_preprocessing
from preprocess.segments import load_window, read_manifest, save_shard, scale_window
from preprocess.synthetic import synthetic_raw, write_edf
from pretrain.data import PretrainDataset
from tasks.vocabulary import get_task
from tests.preprocess.test_batch import _files

PROVENANCE = ("ch_names", "sfreq", "recording", "subject", "start_s", "label", "filled_channels")


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Two synthetic recordings (20 s, 256 Hz: 5 windows each)."""
    folder = tmp_path_factory.mktemp("in")
    for i in range(2):
        write_edf(synthetic_raw(duration_s=20.0, seed=i), folder / f"rec{i}.edf")
    return folder


@pytest.fixture(scope="module")
def outputs(recordings, tmp_path_factory):
    """The recordings preprocessed as pickles and as float32 and float16 shards of 2 windows."""
    from runtime.config import CONFIG_DIR, load_config

    def config(*overrides):
        return load_config(CONFIG_DIR / "preprocess" / "m4cea.yaml", overrides=list(overrides))

    out = {}
    for name, overrides in {
        "pickle": (),
        "float32": ("output.format=hdf5", "output.shard_size=2"),
        "float16": ("output.format=hdf5", "output.shard_size=2", "output.dtype=float16"),
    }.items():
        out[name] = tmp_path_factory.mktemp(name)
        run_preprocessing([recordings], out[name], config(*overrides), progress=False)
    return out


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_shards_hold_the_windows_of_the_pickles(outputs, dtype):
    pickles, shards = read_manifest(outputs["pickle"]), read_manifest(outputs[dtype])
    assert len(shards) == len(pickles) == 10
    # 5 windows per recording in shards of 2: three shards, indices 0, 1, 0, 1, 0
    assert [row["shard_index"] for row in shards[:5]] == [0, 1, 0, 1, 0]
    assert [row["path"] for row in shards[:5:2]] == [f"segments/rec0/rec0_shard{i:05d}.h5" for i in range(3)]
    assert all(row["shard_index"] is None for row in pickles)
    for p_row, s_row in zip(pickles, shards, strict=True):
        for key in ("subject", "recording", "start_s", "label", "n_chans", "n_times", "sfreq"):
            assert p_row[key] == s_row[key]
        want, got = load_window(outputs["pickle"], p_row), load_window(outputs[dtype], s_row)
        assert got["data"].dtype == np.float32
        if dtype == "float32":
            np.testing.assert_array_equal(got["data"], want["data"])
        else:
            np.testing.assert_allclose(got["data"], want["data"], rtol=1e-3, atol=1e-3)
            assert not np.array_equal(got["data"], want["data"])  # really stored as float16
        np.testing.assert_array_equal(got["mfde"], want["mfde"])
        assert {k: got[k] for k in PROVENANCE} == {k: want[k] for k in PROVENANCE}


def test_shard_labels_and_provenance_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    segments = [
        {
            "data": rng.standard_normal((2, 400)).astype(np.float32),
            "mfde": rng.dirichlet(np.ones(4)),
            "ch_names": ["FP1-F7", "F7-T7"],
            "sfreq": 100.0,
            "recording": "r1.edf",
            "subject": "sub-ü",
            "start_s": 4.0 * k,
            "label": label,
            "filled_channels": ["F7-T7"],
        }
        for k, label in enumerate(["seizure", None, "background"])
    ]
    save_shard(segments, tmp_path / "s.h5")
    for k, want in enumerate(segments):
        got = load_window(tmp_path, {"path": "s.h5", "shard_index": k})
        assert {key: got[key] for key in PROVENANCE} == {key: want[key] for key in PROVENANCE}
        np.testing.assert_array_equal(got["data"], want["data"])
        np.testing.assert_array_equal(got["mfde"], want["mfde"])


def test_float16_shards_are_half_the_size(outputs):
    def size(name):
        return sum(p.stat().st_size for p in (outputs[name] / "segments").rglob("*.h5"))

    assert 0.45 < size("float16") / size("float32") < 0.6


def test_loaders_read_both_formats_alike(outputs):
    pickled = PretrainDataset(
        outputs["pickle"], get_input_contract("m4cea_base"), n_chans=16, n_times=4000, n_tokens=320
    )
    sharded = PretrainDataset(
        outputs["float32"], get_input_contract("m4cea_base"), n_chans=16, n_times=4000, n_tokens=320
    )
    for i in (0, 4, 9):
        for a, b in zip(pickled[i], sharded[i], strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    task = get_task("onset_detection")
    datasets = []
    for name in ("pickle", "float32"):
        rows = [{**row, "label": "seizure"} for row in read_manifest(outputs[name])]
        datasets.append(FinetuneDataset(outputs[name], rows, task, 16, 4000))
    for i in (1, 8):
        for a, b in zip(datasets[0][i], datasets[1][i], strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_resume_with_shards(recordings, outputs, tmp_path, preprocess_config, monkeypatch):
    config = preprocess_config("output.format=hdf5", "output.shard_size=2")
    reference = outputs["float32"]

    calls = {"n": 0}
    original = pipeline.save_shard

    def save_then_interrupt(segments, path, dtype):
        calls["n"] += 1
        if calls["n"] == 3 + 2:  # 3 shards per recording: inside the second recording
            raise KeyboardInterrupt
        original(segments, path, dtype)

    out = tmp_path / "resumed"
    monkeypatch.setattr(pipeline, "save_shard", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_preprocessing([recordings], out, config, progress=False)
    assert sorted(p.name for p in (out / "parts").glob("*.csv")) == ["rec0.csv"]
    assert sorted(p.name for p in (out / "segments").iterdir()) == ["rec0"]
    assert not list((out / ".tmp").iterdir())

    monkeypatch.setattr(pipeline, "save_shard", original)
    summary = run_preprocessing([recordings], out, config, progress=False)
    assert [p.rsplit("/", 1)[-1] for p in summary.skipped] == ["rec0.edf"]
    files = _files(out)
    files.pop(".tmp", None)
    assert files == _files(reference)  # byte for byte: shards carry no time stamps


def test_workers_and_shards_write_the_same_shards(recordings, outputs, tmp_path, preprocess_config):
    config = preprocess_config("output.format=hdf5", "output.shard_size=2")
    parallel = tmp_path / "parallel"
    run_preprocessing([recordings], parallel, config, shard=(0, 2), workers=2, progress=False)
    run_preprocessing([recordings], parallel, config, shard=(1, 2), progress=False)
    assert _files(parallel) == _files(outputs["float32"])


def test_bad_shard_settings_and_files(outputs, preprocess_config, tmp_path):
    for override, name in [
        ("output.format=zarr", "output.format"),
        ("output.dtype=int16", "output.dtype"),
        ("output.shard_size=0", "output.shard_size"),
    ]:
        with pytest.raises(ValueError, match=name):
            pipeline.Preprocessor(preprocess_config(override))
    row = dict(read_manifest(outputs["float32"])[0])
    with pytest.raises(ValueError, match="has 2 windows, but the manifest asks for index 7"):
        load_window(outputs["float32"], {**row, "shard_index": 7})
    with pytest.raises(FileNotFoundError, match="nowhere.h5"):
        load_window(outputs["float32"], {**row, "path": "segments/nowhere.h5"})
    with pytest.raises(ValueError, match="no window"):
        save_shard([], tmp_path / "empty.h5")
    assert not list(tmp_path.glob("*.h5*"))


@pytest.mark.parametrize("n_times", [4000, 1, 2, 37])
def test_scale_window_equals_numpy_quantile(n_times):
    data = np.random.default_rng(n_times).standard_normal((3, 16, n_times)).astype(np.float32) * 40
    want = data / (np.quantile(np.abs(data), 0.95, axis=-1, keepdims=True) + 1e-8)
    np.testing.assert_array_equal(scale_window(data), want.astype(np.float32))
    one = data[0, 0].astype(np.float64)
    np.testing.assert_array_equal(scale_window(one), one / (np.quantile(np.abs(one), 0.95) + 1e-8))
