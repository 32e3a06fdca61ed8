"""runtime.seeding: derived seeds, RNG state capture and restore (also through a weights-only checkpoint)."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch

from runtime.seeding import derive_seed, get_rng_state, seed_everything, set_rng_state


def _draw():
    return random.random(), float(np.random.random())  # noqa: NPY002 (the global generator is under test), float(torch.rand(()))


def test_seed_everything_is_reproducible():
    seed_everything(7)
    a = _draw()
    seed_everything(7)
    assert _draw() == a
    seed_everything(8)
    assert _draw() != a


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3"])
def test_seed_everything_rejects_invalid(seed):
    with pytest.raises(ValueError, match="'seed'"):
        seed_everything(seed)


def test_derive_seed():
    assert derive_seed(0, "mask", 5) == derive_seed(0, "mask", 5)  # stable across calls and processes
    seeds = {derive_seed(s, "mask", step) for s in range(4) for step in range(50)}
    assert len(seeds) == 200  # distinct keys, distinct seeds
    assert all(0 <= s < 2**32 for s in seeds)
    # Known value: the hash is part of the reproducibility contract (same masks on every machine).
    assert derive_seed(0, "mask", 0) == int.from_bytes(
        __import__("hashlib").blake2b(b"0\x1fmask\x1f0", digest_size=4).digest(), "little"
    )


def test_rng_state_round_trip_through_weights_only_load():
    seed_everything(3)
    _draw()
    state = get_rng_state()
    expected = [_draw() for _ in range(3)]
    buffer = io.BytesIO()
    torch.save({"rng": state}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["rng"]
    seed_everything(99)
    set_rng_state(loaded)
    assert [_draw() for _ in range(3)] == expected


def test_set_rng_state_rejects_incomplete():
    with pytest.raises(ValueError, match="missing"):
        set_rng_state({"torch": torch.get_rng_state()})
