"""Shared test fixtures."""

from __future__ import annotations

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


@pytest.fixture
def preprocess_config():
    """Factory: the default preprocessing config with ``--set`` style overrides."""
    from runtime.config import CONFIG_DIR, load_config

    def make(*overrides: str) -> dict:
        return load_config(CONFIG_DIR / "preprocess" / "m4cea.yaml", overrides=list(overrides))

    return make
