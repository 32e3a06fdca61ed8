"""The window adapter: stored windows (1000 Hz, uV) to each model family's input contract."""

from __future__ import annotations

import numpy as np
import pytest

from models import get_input_contract
from preprocess.adapt import WindowAdapter
from preprocess.segments import scale_window
from runtime.config import UsageError

SFREQ = 1000.0


def _sine(freq_hz: float, n_chans: int = 3, n_times: int = 4000, amplitude_uv: float = 50.0) -> np.ndarray:
    t = np.arange(n_times) / SFREQ
    return np.stack([amplitude_uv * np.sin(2 * np.pi * freq_hz * t + k) for k in range(n_chans)]).astype(
        np.float32
    )


def test_a_10_hz_sine_stays_10_hz_at_200_hz_in_labram_units():
    adapter = WindowAdapter(get_input_contract("labram_base"), sfreq_in=SFREQ, n_times_in=4000)
    assert (adapter.up, adapter.down, adapter.n_times) == (1, 5, 800)
    x = adapter(_sine(10.0))
    assert x.shape == (3, 800) and x.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(x, axis=-1))
    freqs = np.fft.rfftfreq(800, d=1 / 200.0)
    np.testing.assert_array_equal(freqs[spectrum.argmax(axis=-1)], [10.0, 10.0, 10.0])
    # uV / 100: a 50-uV sine has amplitude 0.5 away from the window's edges (filter transients).
    np.testing.assert_allclose(np.abs(x[:, 100:-100]).max(axis=-1), 0.5, atol=0.01)
    # Samples equal the analytic sine at 200 Hz in the middle of the window.
    t = np.arange(800) / 200.0
    expected = 0.5 * np.sin(2 * np.pi * 10.0 * t + np.arange(3)[:, None])
    np.testing.assert_allclose(x[:, 100:-100], expected[:, 100:-100], atol=2e-3)


def test_frequencies_above_the_new_nyquist_are_removed():
    adapter = WindowAdapter(get_input_contract("labram_base"), sfreq_in=SFREQ, n_times_in=4000)
    x = adapter(_sine(150.0))  # would alias to 50 Hz without the anti-aliasing filter
    assert np.abs(x[:, 100:-100]).max() < 0.01 * 0.5


def test_m4cea_windows_pass_unchanged_in_rate_with_the_official_scaling():
    adapter = WindowAdapter(get_input_contract("m4cea_base"), sfreq_in=SFREQ, n_times_in=4000)
    assert adapter.identity_rate and adapter.n_times == 4000
    window = np.random.default_rng(0).normal(scale=30.0, size=(16, 4000)).astype(np.float32)
    np.testing.assert_array_equal(adapter(window), scale_window(window))


def test_channel_order_is_kept_and_stacks_are_adapted_alike():
    adapter = WindowAdapter(get_input_contract("labram_base"), sfreq_in=SFREQ, n_times_in=4000)
    windows = np.stack([_sine(5.0), _sine(20.0)])
    adapted = adapter(windows)
    np.testing.assert_allclose(adapted[1], adapter(windows[1]), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(adapter(windows[0][::-1].copy()), adapted[0][::-1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("name", "n_times_in", "match"),
    [
        ("labram_base", 4500, r"4\.5 s .* 1 to 16 patches of 200 samples"),  # 900 samples: not whole patches
        ("labram_base", 20_000, r"20 s .* 1 to 16 patches"),  # 20 patches: too many
        ("m4cea_base", 2000, r"exactly 20 patches"),  # a fixed positional table
        ("labram_base", 4001, r"no whole number of samples at 200 Hz"),
    ],
)
def test_windows_that_do_not_fit_are_refused_with_the_setting(name, n_times_in, match):
    with pytest.raises(UsageError, match=match) as err:
        WindowAdapter(get_input_contract(name), sfreq_in=SFREQ, n_times_in=n_times_in)
    assert "window_s" in str(err.value)
