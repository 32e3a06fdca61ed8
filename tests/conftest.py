"""Shared test fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture
def preprocess_config():
    """Factory: the default preprocessing config with ``--set`` style overrides."""
    from runtime.config import CONFIG_DIR, load_config

    def make(*overrides: str) -> dict:
        return load_config(CONFIG_DIR / "preprocess" / "m4cea.yaml", overrides=list(overrides))

    return make
