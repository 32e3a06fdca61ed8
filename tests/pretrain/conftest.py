"""Fixtures for the pretraining tests: synthetic preprocessing outputs and a runner for the entry point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from preprocess.segments import save_segment, write_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO_ROOT / "configs" / "pretrain" / "m4cea_tiny.yaml"


def make_pretrain_data(
    folder: Path,
    n_windows: int = 32,
    n_chans: int = 16,
    n_patches: int = 20,
    patch_samples: int = 200,
    sfreq: float = 1000.0,
    seed: int = 0,
    zero_weights: int = 0,
    ch_names: list | None = None,
) -> Path:
    """Write a synthetic preprocessing output: EEG-like windows in uV, Dirichlet MFDE weights, a manifest.

    ``zero_weights`` tokens of every window get weight 0 (to test the masking of zero weights).
    ``ch_names``: the stored channel names (default ``C0``, ``C1``...; LaBraM needs 10-20 names).
    """
    ch_names = list(ch_names) if ch_names is not None else [f"C{c}" for c in range(n_chans)]
    rng = np.random.default_rng(seed)
    n_times = n_patches * patch_samples
    t = np.arange(n_times) / sfreq
    rows = []
    for i in range(n_windows):
        alpha = 20.0 * np.sin(
            2 * np.pi * rng.uniform(8, 12, size=(n_chans, 1)) * t + rng.uniform(0, 2 * np.pi, (n_chans, 1))
        )
        drift = np.cumsum(rng.standard_normal((n_chans, n_times)), axis=1) * 0.5
        data = (alpha + drift + 5.0 * rng.standard_normal((n_chans, n_times))).astype(np.float32)
        weights = rng.dirichlet(np.ones(n_chans * n_patches))
        if zero_weights:
            weights[rng.choice(weights.size, zero_weights, replace=False)] = 0.0
            weights /= weights.sum()
        rel = f"rec{i // 8:02d}/win{i:04d}.pkl"
        save_segment(
            {
                "data": data,
                "mfde": weights,
                "ch_names": ch_names,
                "sfreq": sfreq,
                "recording": f"rec{i // 8:02d}",
                "subject": f"sub{i // 16:02d}",
                "start_s": 4.0 * (i % 8),
                "label": None,
                "filled_channels": [],
            },
            folder / rel,
        )
        rows.append(
            {
                "path": rel,
                "subject": f"sub{i // 16:02d}",
                "recording": f"rec{i // 8:02d}",
                "start_s": 4.0 * (i % 8),
                "label": None,
                "n_chans": n_chans,
                "n_times": n_times,
                "sfreq": sfreq,
            }
        )
    write_manifest(rows, folder / "manifest.csv")
    return folder


@pytest.fixture(scope="session")
def pretrain_data(tmp_path_factory) -> Path:
    """32 synthetic windows of 16 x 4000 samples (the m4cea_tiny input), shared by the tests."""
    return make_pretrain_data(tmp_path_factory.mktemp("pretrain_data"), n_windows=32)


@pytest.fixture(scope="session")
def make_data():
    """The :func:`make_pretrain_data` builder, for tests that need data of their own."""
    return make_pretrain_data
