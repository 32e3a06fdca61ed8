"""The band-pass and notch as one convolution: what MNE's two filter calls give, to float64 rounding."""

import mne
import numpy as np
import pytest

from preprocess.filters import BandNotchFilter


def _mne_filters(x, sfreq, l_freq, h_freq, notch_freq):
    """The preprocessing's filters as they were: MNE's filter_data, then notch_filter."""
    x = mne.filter.filter_data(x, sfreq, l_freq, h_freq, verbose="error")
    if notch_freq is not None and notch_freq < sfreq / 2:
        x = mne.filter.notch_filter(x, sfreq, notch_freq, verbose="error")
    return x


@pytest.mark.parametrize(
    ("sfreq", "l_freq", "h_freq", "notch_freq", "n_times"),
    [
        (256.0, 0.5, 70.0, 50.0, 6000),  # the defaults, CHB-MIT's rate: the one convolution
        (500.0, 0.5, 70.0, 60.0, 8000),  # another rate and power line
        (256.0, None, 70.0, 50.0, 4000),  # low-pass only
        (256.0, 0.5, 70.0, None, 2500),  # no notch
        (200.0, 1.0, 70.0, 100.0, 3000),  # notch at the Nyquist frequency: skipped, as before
        (256.0, 0.5, 70.0, 50.0, 2000),  # shorter than the combined filter: MNE's own calls
    ],
)
def test_band_notch_filter_equals_mne_filter_calls(sfreq, l_freq, h_freq, notch_freq, n_times):
    rng = np.random.default_rng(0)
    t = np.arange(n_times) / sfreq
    # drift, EEG-like noise, power line and a step: edges and every band matter
    x = 40 * rng.standard_normal((3, n_times)) + 300 * t + 20 * np.sin(2 * np.pi * 50 * t)
    x[:, n_times // 3 :] += 100.0
    band_notch = BandNotchFilter(sfreq, l_freq, h_freq, notch_freq)
    expected = _mne_filters(x.copy(), sfreq, l_freq, h_freq, notch_freq)
    got = band_notch(x)
    assert got.shape == x.shape and got.dtype == np.float64
    # float64 rounding (the signals are ~100 uV): in float32, as the windows are stored, at most one unit
    # in the last place apart, and rarely that
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    got32, expected32 = got.astype(np.float32), expected.astype(np.float32)
    ulp = np.spacing(np.maximum(np.abs(expected32), np.float32(1.0)))  # of 1 uV near zero
    assert (np.abs(got32 - expected32) <= ulp).all()
    assert (got32 != expected32).mean() < 1e-3
    assert (n_times < band_notch.n_min) == (n_times == 2000)


def test_windows_equal_those_of_the_mne_filter_calls(tmp_path, preprocess_config, monkeypatch):
    """The windows (prediction and pickles) with the one convolution are those of MNE's two calls."""
    from preprocess.pipeline import Preprocessor
    from preprocess.synthetic import synthetic_raw

    synthetic_raw(duration_s=40.0, seed=3).save(tmp_path / "rec_raw.fif", verbose="error")
    config = preprocess_config("block_s=20.0")  # two blocks of 5 windows
    new = list(Preprocessor(config).iter_windows(tmp_path / "rec_raw.fif"))
    cfg = Preprocessor(config).config
    monkeypatch.setattr(
        Preprocessor,
        "_filter",
        lambda self, x, sfreq: _mne_filters(x, sfreq, cfg["l_freq"], cfg["h_freq"], cfg["notch_freq"]),
    )
    old = list(Preprocessor(config).iter_windows(tmp_path / "rec_raw.fif"))
    assert [len(w) for _, w, _ in new] == [len(w) for _, w, _ in old] == [5, 5]
    for (starts, windows, reasons), (old_starts, old_windows, old_reasons) in zip(new, old, strict=True):
        np.testing.assert_array_equal(starts, old_starts)
        np.testing.assert_array_equal(reasons, old_reasons)
        # uV, std ~10 uV: float32 rounding (one unit in the last place of 16 uV is 2e-6 uV)
        assert np.abs(windows - old_windows).max() <= 2e-6
        assert np.std(windows) > 5.0
