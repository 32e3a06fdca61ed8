"""The labelled fine-tuning dataset and its loaders: values, shape and label checks, seeded samplers."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from scipy.signal import resample_poly

from finetune.data import (
    BalancedSampler,
    FinetuneDataset,
    balanced_window_weights,
    build_eval_loader,
    build_train_loader,
)
from models import get_input_contract
from preprocess.segments import load_segment, read_manifest, scale_window
from runtime.seeding import derive_seed
from tasks import get_task
from tests.finetune.labelled_data import make_labelled_data

ONSET = get_task("onset_detection")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """2 subjects, 12 windows (16 x 1000 samples): 4 seizure, 8 background."""
    labels = ["background"] * 4 + ["seizure"] * 2
    return make_labelled_data(
        tmp_path_factory.mktemp("labelled"), [("s0", "r0", labels), ("s1", "r1", labels)]
    )


def test_item_is_the_scaled_window_its_label_and_position(data):
    rows = read_manifest(data)
    dataset = FinetuneDataset(data, rows, ONSET, n_chans=16, n_times=1000)
    assert len(dataset) == 12
    assert dataset.labels.tolist() == [0, 0, 0, 0, 1, 1] * 2
    x, label, position = dataset[5]
    expected = scale_window(load_segment(data / rows[5]["path"])["data"])
    assert x.dtype == torch.float32 and tuple(x.shape) == (16, 1000)
    np.testing.assert_array_equal(x.numpy(), expected)
    assert np.allclose(np.quantile(np.abs(x.numpy()), 0.95, axis=-1), 1.0, atol=1e-5)  # the official scaling
    assert label.item() == 1 and label.dtype == torch.int64 and position.item() == 5


def test_shape_mismatch_is_an_error_before_training(data):
    rows = read_manifest(data)
    with pytest.raises(ValueError, match=r"windows with n_times=\[1000\] .* model expects n_times=4000"):
        FinetuneDataset(data, rows, ONSET, n_chans=16, n_times=4000)
    for row in rows:  # a manifest without the shape columns: the first window is read
        row.pop("n_times")
    with pytest.raises(ValueError, match=r"has shape \(16, 1000\) .* model expects \(16, 4000\)"):
        FinetuneDataset(data, rows, ONSET, n_chans=16, n_times=4000)


def test_label_outside_the_task(data):
    rows = read_manifest(data)
    with pytest.raises(ValueError, match=r"'background'.*Allowed values are \['clean', 'artefact'\]"):
        FinetuneDataset(data, rows, get_task("artifact_detection"), n_chans=16, n_times=1000)
    rows[3]["label"] = None
    with pytest.raises(ValueError, match=r"None.*unlabelled windows \(None\) cannot be used"):
        FinetuneDataset(data, rows, ONSET, n_chans=16, n_times=1000)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Data folder not found: .*nowhere"):
        FinetuneDataset(tmp_path / "nowhere", [{"path": "x.pkl"}], ONSET, 16, 1000)


def test_balanced_sampler_is_seeded_balanced_and_sharded():
    labels = np.array([0] * 90 + [1] * 10)
    weights = balanced_window_weights(labels, 2)
    assert weights[0] == pytest.approx(1 / 90) and weights[-1] == pytest.approx(1 / 10)
    assert weights.sum() == pytest.approx(2.0)

    def draw(epoch, rank=0, world=1, seed=7):
        sampler = BalancedSampler(labels, 2, rank=rank, world_size=world, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert draw(0) == draw(0) and draw(0) != draw(1) and draw(0) != draw(0, seed=8)
    many = [i for epoch in range(50) for i in draw(epoch)]
    share = Counter(labels[many].tolist())[1] / len(many)
    assert 0.45 < share < 0.55  # the 10 % class is drawn half of the time
    shards = [draw(3, rank=r, world=3) for r in range(3)]
    assert (
        [len(s) for s in shards] == [34, 34, 34] == [len(BalancedSampler(labels, 2, r, 3)) for r in range(3)]
    )
    full = BalancedSampler(labels, 2, 0, 3, seed=7)
    full.set_epoch(3)
    # One draw of ceil(100 / 3) * 3 = 102 shared by the ranks, rank r taking positions r, r + 3, ...
    generator = torch.Generator().manual_seed(derive_seed(7, "balanced", 3))
    drawn = list(
        torch.utils.data.WeightedRandomSampler(full.weights, 102, replacement=True, generator=generator)
    )
    assert [drawn[r::3] for r in range(3)] == shards


def test_train_loader_shuffles_per_epoch_and_shards_over_ranks(data):
    dataset = FinetuneDataset(data, read_manifest(data), ONSET, 16, 1000)

    def epoch_positions(rank, world, epoch, sampler="shuffle"):
        loader, chosen = build_train_loader(
            dataset, micro_batch_size=2, rank=rank, world_size=world, seed=3, sampler=sampler
        )
        chosen.set_epoch(epoch)
        return [p for _, _, positions in loader for p in positions.tolist()]

    one = epoch_positions(0, 1, 0)
    assert (
        sorted(one) == list(range(12)) and one == epoch_positions(0, 1, 0) and one != epoch_positions(0, 1, 1)
    )
    ranks = [epoch_positions(r, 2, 0) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 6 and not set(ranks[0]) & set(ranks[1])
    # 12 windows over 5 ranks: 2 per rank, the 2 that do not divide evenly left out.
    assert sum(len(epoch_positions(r, 5, 0)) for r in range(5)) == 10
    balanced = epoch_positions(0, 1, 0, sampler="balanced")
    assert len(balanced) == 12
    with pytest.raises(ValueError, match=r"'data.sampler'.*'shuffle', 'balanced'.*'weighted'"):
        build_train_loader(dataset, micro_batch_size=2, sampler="weighted")


def test_eval_loader_covers_every_window_once_over_ranks(data):
    dataset = FinetuneDataset(data, read_manifest(data), ONSET, 16, 1000)
    positions = [
        [
            p
            for _, _, pos in build_eval_loader(dataset, batch_size=4, rank=r, world_size=5)
            for p in pos.tolist()
        ]
        for r in range(5)
    ]
    assert sorted(set().union(*map(set, positions))) == list(range(12))
    assert sum(map(len, positions)) == 15  # padded with 3 repeats so that every rank has 3
    assert [p for _, _, pos in build_eval_loader(dataset, batch_size=5) for p in pos.tolist()] == list(
        range(12)
    )


def test_a_10_hz_window_stays_10_hz_through_the_labram_dataset(tmp_path):
    """The same stored folder (1000 Hz, uV) is fed to LaBraM at 200 Hz in uV / 100, channel order kept."""
    folder = make_labelled_data(tmp_path / "d", [("s0", "r0", ["background", "seizure"])], n_times=4000)
    rows = read_manifest(folder)
    dataset = FinetuneDataset(folder, rows, ONSET, 16, None, get_input_contract("labram_tiny"))
    assert dataset.n_times == 800 and (dataset.adapter.up, dataset.adapter.down) == (1, 5)
    x, label, _ = dataset[0]  # background: a 30-uV 10-Hz rhythm + 5-uV noise
    assert tuple(x.shape) == (16, 800) and label.item() == 0
    spectrum = np.abs(np.fft.rfft(x.numpy(), axis=-1))
    peak_hz = np.fft.rfftfreq(800, d=1 / 200.0)[spectrum.argmax(axis=-1)]
    np.testing.assert_array_equal(peak_hz, np.full(16, 10.0))
    stored = load_segment(folder / rows[0]["path"])["data"]
    np.testing.assert_allclose(x.numpy(), resample_poly(stored, 1, 5, axis=-1) / 100, rtol=1e-5, atol=1e-6)
    # the 30-uV rhythm is 0.3 in LaBraM's units (not the M4CEA scaling, whose 95th percentile is 1)
    assert 0.25 < np.abs(x.numpy()[:, 100:-100]).max(axis=-1).mean() < 0.5
    m4cea = FinetuneDataset(folder, rows, ONSET, 16, 4000, get_input_contract("m4cea_base"))
    np.testing.assert_array_equal(m4cea[0][0].numpy(), scale_window(stored))
    with pytest.raises(ValueError, match=r"n_times=\[4000\] .* model expects n_times=2000 at 1000 Hz"):
        FinetuneDataset(folder, rows, ONSET, 16, 2000, get_input_contract("m4cea_base"))
