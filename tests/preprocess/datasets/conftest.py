"""Fixtures for the dataset adapter tests: small synthetic recordings in a dataset's layout."""

from __future__ import annotations

import pytest

from preprocess.synthetic import TEN_TWENTY, synthetic_raw, write_edf


@pytest.fixture
def make_edf():
    """Factory: write a synthetic EDF with the given channel names (default: 19 referential electrodes)."""

    def make(path, ch_names=TEN_TWENTY, duration_s=40.0, sfreq=256.0, seed=0):
        return write_edf(synthetic_raw(list(ch_names), sfreq=sfreq, duration_s=duration_s, seed=seed), path)

    return make


@pytest.fixture
def run_cli():
    """Run ``preprocess_main.py`` in-process; returns (exit status, stdout + stderr)."""
    from preprocess.preprocess_main import main

    def run(capsys, *args):
        status = main([*map(str, args), "--quiet"])
        captured = capsys.readouterr()
        return status, captured.out + captured.err

    return run
