"""Seeding and random-number-generator state for reproducible, exactly resumable runs.

Library code never seeds anything globally: it takes an explicit ``torch.Generator`` or
``numpy.random.Generator``. Entry points call :func:`seed_everything` once, offset by rank
(nanoGPT's habit), derive stream seeds with :func:`derive_seed`, and store the global generators'
states in checkpoints with :func:`get_rng_state` / :func:`set_rng_state`.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch

__all__ = ["derive_seed", "get_rng_state", "seed_everything", "set_rng_state"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device).

    Parameters
    ----------
    seed : int
        A non-negative integer. Under DDP pass ``seed + rank`` so that dropout and drop-path
        differ between ranks.

    Raises
    ------
    ValueError
        If ``seed`` is negative or not an integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(
            "Invalid value for the 'seed' parameter. Allowed values are integers >= 0, "
            f"but got {seed!r} instead."
        )
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the global generator, on purpose)
    torch.manual_seed(seed)  # also seeds every CUDA device


def derive_seed(*keys: int | str) -> int:
    """Derive a 32-bit seed from a tuple of keys (e.g. ``(seed, "mask", step)``).

    A hash rather than ``seed + step``: distinct keys give unrelated seeds, and the result fits
    the 32 bits that torch's CPU Mersenne Twister actually uses from ``manual_seed``.

    Parameters
    ----------
    *keys : int | str
        The parts that identify a random stream.

    Returns
    -------
    seed : int
        In ``[0, 2**32)``; the same keys always give the same seed (across processes and runs).
    """
    text = "\x1f".join(str(k) for k in keys).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=4).digest(), "little")


def get_rng_state() -> dict:
    """Return the states of Python's, NumPy's and torch's global generators as plain values and tensors.

    Returns
    -------
    state : dict
        ``python`` (list), ``numpy`` (dict of tensors and ints), ``torch`` (uint8 tensor) and
        ``cuda`` (list holding the uint8 state of the current CUDA device; empty without CUDA: each
        rank uses one device). Every value is loadable by ``torch.load(weights_only=True)``.
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    return {
        "python": [version, list(internal), gauss],
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state()] if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore generator states saved by :func:`get_rng_state`.

    Raises
    ------
    ValueError
        If ``state`` lacks one of the expected entries.
    """
    missing = [k for k in ("python", "numpy", "torch", "cuda") if k not in state]
    if missing:
        raise ValueError(f"Invalid RNG state: the entries {missing} are missing.")
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"][0].cpu())
