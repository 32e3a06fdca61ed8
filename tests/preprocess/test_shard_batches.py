"""Micro-batches read whole from pickles and shards: the same tensors as reading window by window.

The loaders read a micro-batch at a time (``__getitems__``, :func:`preprocess.segments.load_windows_into`)
and shards store each channel's 95th percentile of ``|x|`` (``abs_q95``) and the soft labels: what the
model receives must be unchanged, equal between formats and to the official per-window scaling.
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import torch

from finetune.data import FinetuneDataset, build_eval_loader, build_train_loader
from models import get_input_contract
from preprocess.adapt import WindowAdapter
from preprocess.segments import (
    abs_quantile,
    load_segment,
    load_window,
    load_windows_into,
    read_manifest,
    save_segment,
    save_shard,
    scale_window,
    write_manifest,
)
from preprocess.synthetic import synthetic_eeg
from pretrain.data import PretrainDataset, build_pretrain_loader
from tasks.vocabulary import get_task

N_CHANS, N_TIMES, N_TOKENS = 16, 4000, 320
HMS = ("seizure", "lpd", "gpd", "lrda", "grda", "other")


def _official(data: np.ndarray) -> np.ndarray:
    """The official loader's scaling, window by window (what the loaders gave before batching)."""
    data = np.asarray(data, np.float32)
    return (data / (np.quantile(np.abs(data), 0.95, axis=-1, keepdims=True) + 1e-8)).astype(np.float32)


def _segments(n_windows: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    base = synthetic_eeg(N_CHANS, N_TIMES * 3, 1000.0, seed=seed).astype(np.float32)
    segments = []
    for k in range(n_windows):
        offset = int(rng.integers(0, base.shape[1] - N_TIMES))
        probs = rng.dirichlet(np.ones(len(HMS))) if k % 3 else None
        segments.append(
            {
                "data": base[:, offset : offset + N_TIMES] * np.float32(rng.uniform(0.5, 2.0)),
                "mfde": rng.dirichlet(np.ones(N_TOKENS)),
                "ch_names": [f"C{c}" for c in range(N_CHANS)],
                "sfreq": 1000.0,
                "recording": f"rec{k // 6}.edf",
                "subject": f"rec{k // 6}",
                "start_s": 4.0 * (k % 6),
                "label": HMS[int(np.argmax(probs))] if probs is not None else "other",
                "filled_channels": [],
                **({"label_probs": dict(zip(HMS, probs.tolist(), strict=True))} if probs is not None else {}),
            }
        )
    return segments


def _write(root, segments, fmt: str, shard_size: int = 4) -> None:
    rows = []
    for k, segment in enumerate(segments):
        extra = {"n_chans": N_CHANS, "n_times": N_TIMES}
        if fmt == "pickle":
            name = f"segments/win{k:03d}.pkl"
            save_segment(segment, root / name)
            rows.append({**segment, **extra, "path": name})
    if fmt != "pickle":
        (root / "segments").mkdir(parents=True)
        for first in range(0, len(segments), shard_size):
            name = f"segments/shard{first // shard_size:03d}.h5"
            part = segments[first : first + shard_size]
            save_shard(part, root / name, fmt)
            rows += [{**s, **extra, "path": name, "shard_index": i} for i, s in enumerate(part)]
    write_manifest(rows, root / "manifest.csv")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """12 windows (4 of them hard-labelled) as pickles, float32 shards and float16 shards of 4."""
    segments = _segments(12)
    folders = {}
    for fmt in ("pickle", "float32", "float16"):
        folders[fmt] = tmp_path_factory.mktemp(fmt)
        _write(folders[fmt], segments, fmt)
    return folders


def test_stored_percentiles_scale_like_the_official_loader():
    """Per-channel percentiles over a batch axis, stored or not, give the per-window scaling to the bit."""
    rng = np.random.default_rng(3)
    windows = (rng.standard_normal((5, N_CHANS, N_TIMES)) * rng.uniform(1, 80, (5, N_CHANS, 1))).astype(
        np.float32
    )
    windows[1, 2] = 0.0  # a flat channel
    windows[2, 3, :3900] = 7.0  # ties at the order statistics
    windows[3] = windows[3].astype(np.float16).astype(np.float32)  # as a float16 shard gives it back
    want = np.stack([_official(w) for w in windows])
    magnitudes = abs_quantile(windows)
    np.testing.assert_array_equal(magnitudes, np.stack([abs_quantile(w) for w in windows]))
    np.testing.assert_array_equal(scale_window(windows, magnitude=magnitudes), want)
    adapter = WindowAdapter(get_input_contract("m4cea_base"), 1000.0, N_TIMES)
    np.testing.assert_array_equal(adapter.adapt_batch(windows.copy(), magnitudes), want)
    np.testing.assert_array_equal(adapter.adapt_batch(windows.copy()), want)
    labram = WindowAdapter(get_input_contract("labram_tiny"), 1000.0, N_TIMES)
    batch = labram.adapt_batch(windows.copy())
    np.testing.assert_array_equal(batch, np.stack([labram(w) for w in windows]))


@pytest.mark.parametrize("model", ["m4cea_base", "labram_tiny"])  # kept rate (in place) and resampled
def test_read_batch_equals_adapting_each_window(corpus, model):
    adapter = WindowAdapter(get_input_contract(model), 1000.0, N_TIMES)
    for fmt in ("pickle", "float32", "float16"):
        rows = read_manifest(corpus[fmt])
        picked = [rows[i] for i in (7, 0, 5, 11)]  # shards and windows in any order
        out = np.full((len(picked), N_CHANS, adapter.n_times), np.nan, np.float32)
        mfde = adapter.read_batch(corpus[fmt], picked, out)
        for got, weights, row in zip(out, mfde, picked, strict=True):
            window = load_window(corpus[fmt], row)
            np.testing.assert_array_equal(got, adapter(window["data"]))
            np.testing.assert_array_equal(weights, window["mfde"])


def test_shards_store_the_percentiles_of_what_loaders_read(corpus):
    for fmt in ("float32", "float16"):
        rows = read_manifest(corpus[fmt])
        with h5py.File(corpus[fmt] / rows[0]["path"], "r") as f:
            stored = f["abs_q95"][()]
            data = f["data"][()].astype(np.float32)
        assert stored.dtype == np.float32 and stored.shape == (4, N_CHANS)
        np.testing.assert_array_equal(stored, abs_quantile(data)[..., 0])


@pytest.mark.parametrize("fmt", ["float32", "float16"])
def test_pretraining_batches_equal_pickles_and_the_per_window_path(corpus, fmt):
    """Same sampler, same micro-batches: shards give the tensors of pickles (float16: of their own data)."""
    contract = get_input_contract("m4cea_base")
    loaders = {}
    for name in ("pickle", fmt):
        dataset = PretrainDataset(corpus[name], contract, N_CHANS, N_TIMES, N_TOKENS)
        loaders[name], sampler = build_pretrain_loader(dataset, micro_batch_size=4, seed=5)
        sampler.set_epoch(1)
        order = list(iter(sampler))
    rows = read_manifest(corpus[fmt])
    batches = 0
    for k, ((x_p, w_p), (x_s, w_s)) in enumerate(zip(loaders["pickle"], loaders[fmt], strict=True)):
        indices = order[4 * k : 4 * k + 4]
        want = np.stack([_official(load_window(corpus[fmt], rows[i])["data"]) for i in indices])
        np.testing.assert_array_equal(x_s.numpy(), want)
        if fmt == "float32":
            np.testing.assert_array_equal(x_s.numpy(), x_p.numpy())
        mfde = [load_segment(corpus["pickle"] / f"segments/win{i:03d}.pkl")["mfde"] for i in indices]
        np.testing.assert_array_equal(w_s.numpy(), np.asarray(mfde, np.float32))
        np.testing.assert_array_equal(w_p.numpy(), w_s.numpy())
        assert x_s.dtype == torch.float32 and x_s.shape == (4, N_CHANS, N_TIMES)
        batches += 1
    assert batches == 3


def test_finetuning_batches_equal_between_formats(corpus):
    task = get_task("harmful_brain_activity")
    out = {}
    for name in ("pickle", "float32"):
        dataset = FinetuneDataset(corpus[name], read_manifest(corpus[name]), task, N_CHANS, N_TIMES)
        loader, sampler = build_train_loader(dataset, micro_batch_size=4, seed=2, sampler="balanced")
        sampler.set_epoch(0)
        out[name] = [list(batch) for batch in loader] + [
            list(b) for b in build_eval_loader(dataset, batch_size=5)
        ]
        assert dataset.label_probs is not None
        x, target, position = out[name][0]
        single = [dataset[int(i)] for i in position]
        np.testing.assert_array_equal(x.numpy(), np.stack([item[0].numpy() for item in single]))
        np.testing.assert_array_equal(target.numpy(), np.stack([item[1].numpy() for item in single]))
    for (x_p, t_p, i_p), (x_s, t_s, i_s) in zip(out["pickle"], out["float32"], strict=True):
        np.testing.assert_array_equal(i_p.numpy(), i_s.numpy())
        np.testing.assert_array_equal(t_p.numpy(), t_s.numpy())
        np.testing.assert_array_equal(x_s.numpy(), x_p.numpy())
    x, _, positions = out["float32"][-1]
    rows = read_manifest(corpus["pickle"])
    want = [_official(load_segment(corpus["pickle"] / rows[int(i)]["path"])["data"]) for i in positions]
    np.testing.assert_array_equal(x.numpy(), np.stack(want))


def test_soft_labels_round_trip_through_shards(corpus):
    pickles, shards = read_manifest(corpus["pickle"]), read_manifest(corpus["float32"])
    soft = 0
    for p_row, s_row in zip(pickles, shards, strict=True):
        bare = {k: v for k, v in s_row.items() if k != "label_probs"}  # the shard alone, not the manifest
        want, got = load_window(corpus["pickle"], p_row), load_window(corpus["float32"], bare)
        assert got.get("label_probs") == want.get("label_probs")
        soft += "label_probs" in got
    assert soft == 8
    with h5py.File(corpus["float32"] / shards[0]["path"], "r") as f:
        assert list(f["label_probs"].attrs["classes"]) == list(HMS)
        assert np.isnan(f["label_probs"][0]).all()  # window 0 has a hard label


def test_shards_without_percentiles_or_soft_labels_still_read(corpus, tmp_path):
    """Shards written before ``abs_q95`` and ``label_probs``: same batches, soft labels from the manifest."""
    old = tmp_path / "old"
    _write(old, _segments(12), "float32")
    for path in (old / "segments").glob("*.h5"):
        with h5py.File(path, "a") as f:
            del f["abs_q95"], f["label_probs"]
    rows = read_manifest(old)
    pickled = read_manifest(corpus["pickle"])[1]
    assert load_window(old, rows[1])["label_probs"] == load_window(corpus["pickle"], pickled)["label_probs"]
    assert "label_probs" not in load_window(old, rows[0])
    contract = get_input_contract("m4cea_base")
    new = PretrainDataset(corpus["float32"], contract, N_CHANS, N_TIMES, N_TOKENS)
    older = PretrainDataset(old, contract, N_CHANS, N_TIMES, N_TOKENS)
    indices = [7, 0, 11, 3, 7]
    for a, b in zip(new.__getitems__(indices), older.__getitems__(indices), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_batched_reads_of_h5py_shards_duplicates_and_bad_shapes(corpus, tmp_path):
    """A chunked shard (not memory-mapped) read in one selection; repeated rows; a wrong shape named."""
    rows = read_manifest(corpus["float32"])
    chunked = tmp_path / "chunked"
    (chunked / "segments").mkdir(parents=True)
    for name in sorted({row["path"] for row in rows}):
        with h5py.File(corpus["float32"] / name, "r") as src, h5py.File(chunked / name, "w") as dst:
            for key in src:
                dst.create_dataset(key, data=src[key][()], chunks=key == "data" or None)
                dst[key].attrs.update(src[key].attrs)
            dst.attrs.update(src.attrs)
    picked = [rows[i] for i in (5, 1, 5, 0, 9)]
    got, want = (np.empty((5, N_CHANS, N_TIMES), np.float32) for _ in range(2))
    mfde_got, q_got = load_windows_into(chunked, picked, got)
    mfde_want, q_want = load_windows_into(corpus["float32"], picked, want)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(q_got, q_want)
    np.testing.assert_array_equal(np.asarray(mfde_got), np.asarray(mfde_want))
    np.testing.assert_array_equal(got[0], load_window(corpus["float32"], rows[5])["data"])
    beside = os.path.relpath(corpus["float32"] / rows[2]["path"], corpus["pickle"])
    mixed = [read_manifest(corpus["pickle"])[2], {**rows[2], "path": beside}]  # no stored percentiles
    both = np.empty((2, N_CHANS, N_TIMES), np.float32)
    _, magnitudes = load_windows_into(corpus["pickle"], mixed, both)
    assert magnitudes is None
    np.testing.assert_array_equal(both[0], both[1])
    for bad in mixed:
        with pytest.raises(ValueError, match=r"has shape \(16, 4000\).*windows are \(16, 3000\)"):
            load_windows_into(corpus["pickle"], [bad], np.empty((1, N_CHANS, 3000), np.float32))


def test_worker_batches_in_shared_memory_equal_in_process_batches(corpus):
    contract = get_input_contract("m4cea_base")
    dataset = PretrainDataset(corpus["float32"], contract, N_CHANS, N_TIMES, N_TOKENS)
    batches = []
    for workers in (0, 1):
        loader, sampler = build_pretrain_loader(dataset, micro_batch_size=4, seed=1, num_workers=workers)
        sampler.set_epoch(0)
        batches.append([(x.numpy().copy(), w.numpy().copy()) for x, w in loader])
    for (x0, w0), (x1, w1) in zip(*batches, strict=True):
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(w0, w1)
    assert len(batches[1]) == 3


def test_a_bad_window_of_a_batch_is_named(tmp_path):
    segments = _segments(3)
    segments[2]["mfde"] = segments[2]["mfde"] * np.nan
    _write(tmp_path, segments, "pickle")
    dataset = PretrainDataset(tmp_path, get_input_contract("m4cea_base"), N_CHANS, N_TIMES, N_TOKENS)
    with pytest.raises(ValueError, match=r"MFDE weights of .*win002.pkl must be 320 finite non-negative"):
        dataset.__getitems__([0, 1, 2])
    x, w = dataset.__getitems__([1, 0])
    np.testing.assert_array_equal(w.numpy(), np.asarray([s["mfde"] for s in segments[1::-1]], np.float32))
