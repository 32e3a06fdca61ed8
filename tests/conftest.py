"""Shared test fixtures."""

from __future__ import annotations

import os

import pytest

from tests.helpers import one_torch_thread


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread for each test module, its module fixtures included (restored after it).

    Small models run fastest on one thread and stay fast when other jobs load the CPU, and results that
    tests compare exactly depend on the thread count.
    """
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def chbmit_preprocessed(tmp_path_factory):
    """The two real CHB-MIT crops preprocessed with their events (``labelled_data.preprocess_chbmit``),
    once per test run: the pytest-xdist workers share one folder, made by the first that needs it. Read
    it only (fine-tuning and prediction tests train and predict from it)."""
    from filelock import FileLock

    from tests.finetune.labelled_data import preprocess_chbmit
    from tests.helpers import shared_path

    edf_dir = shared_path("data", "chbmit", "edf")
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # this run's folder, above the workers' own
    output = base / "chbmit_preprocessed"
    with FileLock(str(base / "chbmit_preprocessed.lock")):
        if not (output / "manifest.csv").is_file():
            preprocess_chbmit(edf_dir, output)
    return output


@pytest.fixture
def preprocess_config():
    """Factory: the default preprocessing config with ``--set`` style overrides."""
    from runtime.config import CONFIG_DIR, load_config

    def make(*overrides: str) -> dict:
        return load_config(CONFIG_DIR / "preprocess" / "m4cea.yaml", overrides=list(overrides))

    return make


@pytest.fixture
def make_rows():
    """Factory: manifest rows from ``(recording, start_s, label)`` or
    ``(subject, recording, start_s, label)`` tuples.

    Windows are 4 s (4000 samples at 1000 Hz) unless ``window_s`` is given.
    """

    def make(windows, window_s: float = 4.0):
        rows = []
        for item in windows:
            subject, recording, start_s, label = item if len(item) == 4 else (item[0], *item)
            rows.append(
                dict(
                    path=f"segments/{recording}/{recording}_{int(start_s * 1000)}ms.pkl",
                    subject=subject,
                    recording=recording,
                    start_s=float(start_s),
                    label=label,
                    n_chans=16,
                    n_times=int(round(window_s * 1000)),
                    sfreq=1000.0,
                )
            )
        return rows

    return make
