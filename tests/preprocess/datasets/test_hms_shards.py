"""HMS soft labels through preprocessing into HDF5 shards: stored in the shard itself, read back."""

from __future__ import annotations

import h5py
import pytest

from preprocess.segments import load_window, read_manifest
from tests.preprocess.datasets.test_hms import ROWS, _hms_root

pytest.importorskip("pandas")
pytest.importorskip("pyarrow")


def test_soft_labels_through_preprocessing_into_shards(tmp_path, capsys, run_cli):
    """The shard alone (its manifest row without ``label_probs``) gives the soft labels of the manifest,
    which test_hms checks against the pickles and the votes."""
    root, out = _hms_root(tmp_path / "root", ROWS), tmp_path / "out"
    args = ("--dataset", "hms", "--task", "harmful_brain_activity", "--input", root, "--output", out)
    status, text = run_cli(capsys, *args, "--set", "output.format=hdf5")
    assert status == 0, text
    rows = read_manifest(out)
    soft = 0
    for row in rows:
        assert row["shard_index"] is not None
        bare = {key: value for key, value in row.items() if key != "label_probs"}
        assert load_window(out, bare).get("label_probs") == row.get("label_probs")
        soft += "label_probs" in row
    assert soft == 6
    with h5py.File(out / rows[0]["path"], "r") as f:
        assert list(f["label_probs"].attrs["classes"]) == ["seizure", "lpd", "gpd", "lrda", "grda", "other"]
