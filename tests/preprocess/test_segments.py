import os
import pickle

import numpy as np
import pytest

from preprocess.segments import (
    UnsafePickleError,
    load_segment,
    read_manifest,
    save_segment,
    scale_window,
    write_manifest,
)


def _segment():
    rng = np.random.default_rng(0)
    return {
        "data": rng.standard_normal((16, 4000)).astype(np.float32),
        "mfde": np.full(320, 1 / 320),
        "ch_names": ["FP1-F7"] * 16,
        "sfreq": 1000.0,
        "recording": "r.edf",
        "subject": "s1",
        "start_s": 4.0,
        "label": None,
        "filled_channels": [],
        "numpy_scalar": np.float64(2.5),
    }


def test_segment_round_trip(tmp_path):
    segment = _segment()
    save_segment(segment, tmp_path / "a" / "seg.pkl")
    loaded = load_segment(tmp_path / "a" / "seg.pkl")
    assert loaded.keys() == segment.keys()
    np.testing.assert_array_equal(loaded["data"], segment["data"])
    assert loaded["data"].dtype == np.float32 and loaded["numpy_scalar"] == 2.5
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["seg.pkl"]  # no temporary file left


def test_protocol_5_and_plain_pickles_load(tmp_path):
    """Segments written by other code (the official one uses plain pickle.dump) load too."""
    for protocol in (2, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(_segment(), protocol=protocol))
        np.testing.assert_array_equal(load_segment(path)["data"], _segment()["data"])


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo owned > /tmp/m4cea_owned",))


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"data": _Exploit(), "mfde": None}))
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl.*refused to load the global 'posix\.system'"):
        load_segment(path)
    path.write_bytes(pickle.dumps({"data": np.zeros(2), "mfde": pickle.loads}))
    with pytest.raises(UnsafePickleError, match="_pickle.loads|pickle.loads"):
        load_segment(path)


def test_not_a_segment(tmp_path):
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match=r"junk\.pkl is not a readable segment pickle"):
        load_segment(tmp_path / "junk.pkl")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="does not hold a dict with 'data' and 'mfde'"):
        load_segment(tmp_path / "list.pkl")
    data = pickle.dumps(_segment())
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.pkl"):
        load_segment(tmp_path / "cut.pkl")


def test_manifest_round_trip(tmp_path):
    rows = [
        {
            "path": "segments/r/a.pkl",
            "subject": "s1",
            "recording": "r.edf",
            "start_s": 4.0,
            "label": None,
            "n_chans": 16,
            "n_times": 4000,
            "sfreq": 1000.0,
            "filled_channels": [],
        },
        {
            "path": "segments/r/b.pkl",
            "subject": "s1",
            "recording": "r.edf",
            "start_s": 8.0,
            "label": "seizure",
            "n_chans": 16,
            "n_times": 4000,
            "sfreq": 1000.0,
            "filled_channels": ["P7-O1", "P8-O2"],
        },
    ]
    rows.append({**rows[1], "path": "segments/r/r_shard00000.h5", "shard_index": 3})
    write_manifest(rows, tmp_path / "manifest.csv")
    assert read_manifest(tmp_path) == [{"shard_index": None, **row} for row in rows]
    with pytest.raises(FileNotFoundError, match="No manifest"):
        read_manifest(tmp_path / "elsewhere")


def test_scale_window_is_the_official_95th_percentile_scaling():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 16, 4000)).astype(np.float32) * 50
    scaled = scale_window(x)
    expected = x / (np.quantile(np.abs(x), 0.95, axis=-1, keepdims=True) + 1e-8)
    np.testing.assert_allclose(scaled, expected, rtol=1e-6)
    np.testing.assert_allclose(np.quantile(np.abs(scaled), 0.95, axis=-1), 1.0, rtol=1e-5)
    assert np.isfinite(scale_window(np.zeros((16, 4000), np.float32))).all()
