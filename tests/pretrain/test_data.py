"""Pretraining dataset and loader: scaling, shape checks up front, the sampler's interleaving."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import resample_poly

from models import get_input_contract
from preprocess.segments import load_segment, read_manifest, save_segment, scale_window, write_manifest
from pretrain.data import PretrainDataset, build_pretrain_loader

M4CEA = get_input_contract("m4cea_base")


def test_items_are_scaled_windows_and_weights(pretrain_data):
    dataset = PretrainDataset(pretrain_data, M4CEA, n_chans=16, n_times=4000, n_tokens=320)
    assert len(dataset) == 32
    x, w = dataset[5]
    segment = load_segment(pretrain_data / read_manifest(pretrain_data)[5]["path"])
    assert x.dtype == torch.float32 and x.shape == (16, 4000)
    np.testing.assert_array_equal(x.numpy(), scale_window(segment["data"]))
    # The official scaling: 95th percentile of |x| per channel becomes 1.
    np.testing.assert_allclose(np.quantile(np.abs(x.numpy()), 0.95, axis=-1), 1.0, rtol=1e-4)
    assert w.dtype == torch.float32 and w.shape == (320,)
    np.testing.assert_allclose(w.numpy(), segment["mfde"], rtol=1e-6)


def test_missing_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="No manifest at .*manifest.csv"):
        PretrainDataset(tmp_path, M4CEA, n_chans=16, n_times=4000, n_tokens=320)
    with pytest.raises(FileNotFoundError, match="Data folder not found"):
        PretrainDataset(tmp_path / "absent", M4CEA, n_chans=16, n_times=4000, n_tokens=320)


def test_empty_manifest(tmp_path):
    write_manifest([], tmp_path / "manifest.csv")
    with pytest.raises(ValueError, match="lists no window"):
        PretrainDataset(tmp_path, M4CEA, n_chans=16, n_times=4000, n_tokens=320)


def test_other_shape_in_manifest(tmp_path, make_data):
    folder = make_data(tmp_path / "short", n_windows=2, n_patches=10)  # 2000 samples
    with pytest.raises(ValueError, match=r"n_times=\[2000\] .*win0000.pkl.*model expects n_times=4000"):
        PretrainDataset(folder, M4CEA, n_chans=16, n_times=4000, n_tokens=320)
    folder = make_data(tmp_path / "eight", n_windows=2, n_chans=8)
    with pytest.raises(ValueError, match=r"n_chans=\[8\].*model expects n_chans=16"):
        PretrainDataset(folder, M4CEA, n_chans=16, n_times=4000, n_tokens=320)


def test_other_shape_without_manifest_columns(tmp_path, make_data):
    """A manifest without n_chans/n_times: the first window is read and checked up front."""
    folder = make_data(tmp_path / "short", n_windows=2, n_patches=10)
    rows = read_manifest(folder)
    for row in rows:
        row["n_chans"] = row["n_times"] = None
    write_manifest(rows, folder / "manifest.csv")
    with pytest.raises(ValueError, match=r"win0000.pkl has shape \(16, 2000\).*expects \(16, 4000\)"):
        PretrainDataset(folder, M4CEA, n_chans=16, n_times=4000, n_tokens=320)


def test_bad_weights_name_the_file(tmp_path, make_data):
    folder = make_data(tmp_path / "d", n_windows=2)
    path = folder / read_manifest(folder)[0]["path"]
    segment = load_segment(path)
    segment["mfde"] = segment["mfde"][:100]
    save_segment(segment, path)
    with pytest.raises(ValueError, match=r"win0000.pkl must be 320 finite non-negative"):
        PretrainDataset(folder, M4CEA, n_chans=16, n_times=4000, n_tokens=320)


def test_sampler_interleaves_one_permutation(pretrain_data):
    """Rank r gets positions r, r + world, ... of the permutation of one process (the engine relies on it)."""
    dataset = PretrainDataset(pretrain_data, M4CEA, n_chans=16, n_times=4000, n_tokens=320)
    single, sampler = build_pretrain_loader(dataset, micro_batch_size=4, seed=3)
    sampler.set_epoch(2)
    order = list(iter(sampler))
    assert sorted(order) == list(range(32))
    for world in (2, 4):
        for rank in range(world):
            _, s = build_pretrain_loader(dataset, micro_batch_size=4, rank=rank, world_size=world, seed=3)
            s.set_epoch(2)
            assert list(iter(s)) == order[rank::world]
    sampler.set_epoch(3)
    assert list(iter(sampler)) != order  # a new order every epoch
    x, w = next(iter(single))
    assert x.shape == (4, 16, 4000) and w.shape == (4, 320)


def test_labram_gets_200_hz_windows_in_uv_over_100_and_weights_per_1_s_patch(pretrain_data):
    """The same folder serves LaBraM: 4000 samples at 1000 Hz -> 800 at 200 Hz, uV / 100, 64 weights."""
    dataset = PretrainDataset(pretrain_data, get_input_contract("labram_tiny"), n_chans=16, n_tokens=64)
    segment = load_segment(pretrain_data / read_manifest(pretrain_data)[5]["path"])
    x, w = dataset[5]
    assert dataset.n_times == 800 and x.shape == (16, 800) and w.shape == (64,)
    expected = resample_poly(segment["data"], 1, 5, axis=-1) / 100
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-6)
    # each 1-s LaBraM patch weighs the five 0.2-s patches it holds
    np.testing.assert_allclose(w.numpy(), segment["mfde"].reshape(64, 5).sum(-1), rtol=1e-6)
    assert w.sum().item() == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match=r"model expects n_times=1000 at 200 Hz \(5000 samples at 1000 Hz\)"):
        PretrainDataset(pretrain_data, get_input_contract("labram_tiny"), n_chans=16, n_times=1000)
