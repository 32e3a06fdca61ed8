"""Tests of preprocess.mfde: official reference outputs, EntropyHub, the per-patch loop, edge cases."""

from __future__ import annotations

import contextlib
import io
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.special import ndtr

from preprocess import mfde as mfde_module
from preprocess.mfde import knowledge_weights, mfde, mfde_reference

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference" / "mfde_reference_chb01.npz"


@pytest.fixture(scope="module")
def reference():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (shared test data beside the repository) is absent")
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} (official MFDE outputs) is absent")
    with np.load(REFERENCE) as data:
        return {key: data[key] for key in ("windows", "mfde_scales", "mfde_weights")}


def _two_point_entropy(a, b):
    """Entropy in nats of two patterns seen a and b times."""
    n = a + b
    return -(a / n) * math.log(a / n) - (b / n) * math.log(b / n)


def _eeg_like(rng, shape):
    """Random walks with noise: smooth like EEG, with runs of equal classes."""
    return np.cumsum(rng.standard_normal(shape), axis=-1) + 0.3 * rng.standard_normal(shape)


# --------------------------------------------------------------------------------------------------
# Official reference outputs (M4CEA MFDE on real CHB-MIT windows)
# --------------------------------------------------------------------------------------------------


def test_reference_scales(reference):
    windows = reference["windows"]  # (4, 16, 4000) float32, uV
    scales = mfde(windows.reshape(4, 16, 20, 200))
    assert scales.shape == (4, 16, 20, 5) and scales.dtype == np.float64
    np.testing.assert_allclose(scales.reshape(4, 320, 5), reference["mfde_scales"], rtol=0, atol=1e-12)


def test_reference_weights(reference):
    windows = reference["windows"]
    batched = knowledge_weights(windows)
    assert batched.shape == (4, 320)
    np.testing.assert_allclose(batched, reference["mfde_weights"], rtol=0, atol=1e-12)
    for window, expected in zip(windows, reference["mfde_weights"], strict=True):
        single = knowledge_weights(window, n_patches=20, m=2, c=6, tau=1, n_scales=5, variant="official")
        assert single.shape == (320,)
        np.testing.assert_allclose(single, expected, rtol=0, atol=1e-12)
        assert single.sum() == pytest.approx(1.0, abs=1e-12)


def test_reference_loop_matches_reference(reference):
    patches = reference["windows"].reshape(-1, 200)[::97]
    expected = reference["mfde_scales"].reshape(-1, 5)[::97]
    loop = np.array([mfde_reference(patch) for patch in patches])
    np.testing.assert_allclose(loop, expected, rtol=0, atol=1e-12)


def test_official_differs_from_textbook(reference):
    # The min-max step at scale 1 and the patch-level z-scores at coarser scales change the numbers.
    patches = reference["windows"].reshape(-1, 200)[:8]
    official, textbook = mfde(patches), mfde(patches, variant="textbook")
    assert np.abs(official[:, 0] - textbook[:, 0]).max() > 1e-3
    assert np.abs(official[:, 1:] - textbook[:, 1:]).max() > 1e-3


# --------------------------------------------------------------------------------------------------
# Values known by hand, the per-patch loop and EntropyHub
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["official", "textbook"])
def test_alternating_signal_by_hand(variant):
    # +1, -1, +1, ...: classes 1 and 6 alternate at scale 1 (199 vectors: 100 "-5", 99 "+5");
    # scales 2 and 4 are flat (entropy 0); scales 3 and 5 alternate +-1/3 and +-0.2, two classes.
    x = np.tile([1.0, -1.0], 100)
    expected = [
        _two_point_entropy(100, 99),
        0.0,
        _two_point_entropy(33, 32),
        0.0,
        _two_point_entropy(20, 19),
    ]
    np.testing.assert_allclose(mfde(x, variant=variant), expected, rtol=0, atol=1e-12)
    if variant == "official":
        np.testing.assert_allclose(mfde_reference(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("m", "c", "tau", "n_scales"), [(2, 6, 1, 5), (2, 3, 2, 4), (3, 4, 1, 5), (3, 6, 2, 3), (2, 2, 1, 1)]
)
def test_vectorised_equals_per_patch_loop(m, c, tau, n_scales):
    rng = np.random.default_rng(m * 100 + c * 10 + tau)
    patches = np.concatenate(
        [
            _eeg_like(rng, (12, 200)),
            rng.standard_normal((6, 200)),
            np.round(rng.standard_normal((4, 200))),  # many ties
            np.where(np.arange(200) == 77, 50.0, rng.standard_normal((2, 200)) * 1e-3),  # lone spike
        ]
    )
    expected = np.array([mfde_reference(patch, m, c, tau, n_scales) for patch in patches])
    got = mfde(patches, m=m, c=c, tau=tau, n_scales=n_scales)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert np.all(got[:, 0] > 0)


@pytest.mark.parametrize(("m", "c", "tau"), [(2, 6, 1), (3, 4, 2), (2, 49, 1)])
def test_textbook_matches_entropyhub(reference, m, c, tau):
    entropyhub = pytest.importorskip("EntropyHub")
    patches = reference["windows"].reshape(-1, 200)[[0, 333, 1279]].astype(np.float64)
    ms_object = entropyhub.MSobject("DispEn", m=m, tau=tau, c=c, Typex="ncdf", Fluct=True)
    with contextlib.redirect_stdout(io.StringIO()):  # MSEn prints progress dots
        expected = np.array([entropyhub.MSEn(patch, ms_object, Scales=5)[0] for patch in patches])
    got = mfde(patches, m=m, c=c, tau=tau, n_scales=5, variant="textbook")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_textbook_matches_entropyhub_on_noise():
    entropyhub = pytest.importorskip("EntropyHub")
    patches = _eeg_like(np.random.default_rng(7), (2, 200))
    ms_object = entropyhub.MSobject("DispEn", m=2, tau=1, c=6, Typex="ncdf", Fluct=True)
    with contextlib.redirect_stdout(io.StringIO()):
        expected = np.array([entropyhub.MSEn(patch, ms_object, Scales=5)[0] for patch in patches])
    np.testing.assert_allclose(mfde(patches, variant="textbook"), expected, rtol=0, atol=1e-9)


# --------------------------------------------------------------------------------------------------
# Exact class boundaries (the vectorised classes equal the direct CDF + rounding)
# --------------------------------------------------------------------------------------------------


def _around(bounds, n_ulps=300):
    """Every float64 within n_ulps of each finite bound."""
    bounds = bounds[np.isfinite(bounds)]
    keys = mfde_module._to_key(bounds)[:, None] + np.arange(-n_ulps, n_ulps + 1)[None, :]
    return mfde_module._from_key(keys).reshape(-1)


def _ulps_to_nearest(values, bounds):
    bounds = bounds[np.isfinite(bounds)]
    return np.abs(mfde_module._to_key(values)[:, None] - mfde_module._to_key(bounds)[None, :]).min(axis=1)


def _z_samples(bounds, seed):
    rng = np.random.default_rng(seed)
    tails = [-np.inf, -50.0, -38.5, -37.5, -20.0, -9.0, 0.0, 8.0, 9.0, 40.0, np.inf]
    return np.concatenate([_around(bounds), rng.standard_normal(3000) * 4, np.linspace(-40, -8, 500), tails])


@pytest.mark.parametrize("c", [2, 3, 4, 5, 6, 7, 11, 49])
def test_official_z_bounds(c):
    _, z_bounds, z_zero = mfde_module._official_bounds(c)
    z = _z_samples(z_bounds, c)
    rule = (z[:, None] >= z_bounds).sum(axis=1) + (z < z_zero)
    direct = mfde_module._official_class(ndtr(z), c)
    assert set(np.unique(direct)) == set(range(c + 1))  # class 0: CDF values in (0, ~1e-17)
    mismatch = rule != direct
    if c in (2, 3, 4, 6, 7):
        assert not mismatch.any()
    else:  # ndtr is not monotone within a few ulps of these boundaries
        assert np.all(_ulps_to_nearest(z[mismatch], z_bounds) <= 4)


@pytest.mark.parametrize("c", [2, 3, 5, 6, 11, 49])
def test_official_y_bounds_are_exact(c):
    y_bounds, _, _ = mfde_module._official_bounds(c)
    rng = np.random.default_rng(c)
    special = [0.0, 5e-324, 1e-300, 1e-18, 1e-16, 0.5, 1.0]
    y = np.concatenate([_around(y_bounds), rng.uniform(size=3000), special])
    y = y[(y >= 0) & (y <= 1)]
    rule = (y[:, None] >= y_bounds).sum(axis=1) + (y == 0)
    direct = mfde_module._official_class(y, c)
    np.testing.assert_array_equal(rule, direct)
    assert direct[y == 0].tolist() == [1] and direct[y == 1e-300].tolist() == [0]
    assert direct[y == 1].tolist() == [c]  # nudged: np.round(c + 0.5) would be c + 1 for odd c


@pytest.mark.parametrize("c", [3, 6, 49])
def test_textbook_bounds(c):
    z_bounds = mfde_module._textbook_bounds(c)
    z = _z_samples(z_bounds, c)
    rule = (z[:, None] >= z_bounds).sum(axis=1)
    direct = np.digitize(ndtr(z), np.arange(0, 1, 1 / c))
    mismatch = rule != direct
    if c in (3, 6):
        assert not mismatch.any()
    else:
        assert np.all(_ulps_to_nearest(z[mismatch], z_bounds) <= 4)


def test_class_zero_and_uncounted_patterns_match_loop():
    # Patch 0, two far negative outliers: the second lowest has a rescaled CDF value in (0, 1e-17), so
    # class 0 at scale 1; next to the positive outlier (class 6) it makes a difference of 6, a pattern
    # the official code does not count. Patch 1, an adjacent pair of outliers: a coarse value at scale 2
    # has a CDF value of about 1e-23, class 0. Patch 2: patch 0 with many ties.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 200)) * 1e-3
    x[0, 60], x[0, 61], x[0, 90] = -100.0, 100.0, -100.001
    x[1, 50:52] = -100.0
    x[2] = np.round(x[0], 3)
    coarse = x[1].reshape(100, 2).sum(axis=1) / 2
    assert mfde_module._official_class(ndtr((coarse - x[1].mean()) / x[1].std()), 6).min() == 0
    z = (x[0] - x[0].mean()) / x[0].std()
    cdf = ndtr(z)
    classes = mfde_module._official_class((cdf - cdf.min()) / (cdf.max() - cdf.min()), 6)
    assert classes[60] == 0 and classes[61] == 6 and classes[90] == 1
    expected = np.array([mfde_reference(patch) for patch in x])
    np.testing.assert_allclose(mfde(x), expected, rtol=0, atol=1e-12)
    # Scale 1 by hand from the classes: the (0 -> 6) vector is left out of the counts, not out of n.
    steps = np.diff(classes)
    assert np.sum(np.abs(steps) == 6) == 1
    _, counts = np.unique(steps[np.abs(steps) < 6], return_counts=True)
    p = counts / steps.size
    assert mfde(x[0])[0] == pytest.approx(-np.sum(p * np.log(p)), abs=1e-12)
    p_all = np.unique(steps, return_counts=True)[1] / steps.size
    assert abs(-np.sum(p_all * np.log(p_all)) - mfde(x[0])[0]) > 1e-3


# --------------------------------------------------------------------------------------------------
# Shapes, batching, degenerate input
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["official", "textbook"])
def test_leading_dimensions_and_batching(variant):
    rng = np.random.default_rng(1)
    x = _eeg_like(rng, (3, 2, 1100 // 6 + 1, 200)).astype(np.float32)  # > one chunk of patches
    out = mfde(x, variant=variant)
    assert out.shape == (3, 2, 184, 5) and out.dtype == np.float64
    flat = mfde(x.reshape(-1, 200), variant=variant)
    np.testing.assert_array_equal(out.reshape(-1, 5), flat)
    for index in [(0, 0, 0), (1, 1, 57), (2, 1, 183)]:
        np.testing.assert_array_equal(mfde(x[index], variant=variant), out[index])
    np.testing.assert_array_equal(mfde(x.astype(np.float64), variant=variant), out)
    assert mfde(x[0, 0, 0], variant=variant).shape == (5,)
    assert mfde(np.zeros((0, 4, 200)), variant=variant).shape == (0, 4, 5)


@pytest.mark.parametrize("variant", ["official", "textbook"])
def test_flat_patches_give_zero_without_warnings(variant):
    rng = np.random.default_rng(2)
    flat = np.stack(
        [
            np.zeros(200),
            np.full(200, 0.3),
            np.full(200, -3e6),
            np.full(200, 1e-300),
            np.full(200, 123.456, dtype=np.float32).astype(np.float64),
        ]
    )
    x = np.concatenate([flat, _eeg_like(rng, (3, 200))])
    assert np.std(np.full(200, 0.3)) > 0  # rounding: a flat patch need not have std 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = mfde(x, variant=variant)
        weights = knowledge_weights(np.zeros((2, 16, 4000), dtype=np.float32), variant=variant)
    np.testing.assert_array_equal(out[:5], 0.0)
    assert np.all(out[5:] > 0)
    np.testing.assert_array_equal(weights, np.full((2, 320), 1 / 320))


def test_knowledge_weights_token_order_and_partly_flat_window():
    rng = np.random.default_rng(3)
    window = _eeg_like(rng, (3, 800))
    window[1] = 5.0  # channel 1 flat: its 4 tokens get weight 0
    weights = knowledge_weights(window, n_patches=4)
    assert weights.shape == (12,)
    np.testing.assert_array_equal(weights[4:8], 0.0)
    entropy = mfde(window.reshape(3, 4, 200)).mean(axis=-1).reshape(-1)  # token = channel * 4 + patch
    np.testing.assert_allclose(weights, entropy / entropy.sum(), rtol=0, atol=1e-15)
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)


# --------------------------------------------------------------------------------------------------
# Compiled kernel: CDF binding, every dtype and layout, groups of four rows, degenerate patches
# --------------------------------------------------------------------------------------------------


def test_kernel_ndtr_is_scipy_ndtr_to_the_bit():
    # The exactness of the classes rests on the kernel's CDF being scipy's own ndtr.
    from preprocess import _mfde_kernel

    rng = np.random.default_rng(11)
    z = np.concatenate(
        [
            rng.standard_normal(20000) * 5,
            np.linspace(-40, 40, 20001),
            mfde_module._official_bounds(6)[1],
            [-np.inf, np.inf, 0.0, -0.0, -38.5, -37.5, 8.3, 9.0, 1e-300, -1e-300, 5e-324],
        ]
    )
    np.testing.assert_array_equal(_mfde_kernel.scipy_ndtr(z), ndtr(z))


def _mixed_patches(rng, n_each):
    """EEG-like walks, white noise, many ties, lone spikes and outliers, 200 samples each."""
    spikes = rng.standard_normal((n_each, 200)) * 1e-3
    spikes[:, 77] = 50.0
    outliers = rng.standard_normal((n_each, 200))
    outliers[:, 10], outliers[:, 150] = -40.0, 40.0
    return np.concatenate(
        [
            _eeg_like(rng, (n_each, 200)),
            rng.standard_normal((n_each, 200)),
            np.round(rng.standard_normal((n_each, 200))),
            spikes,
            outliers,
        ]
    )


@pytest.mark.parametrize(
    ("m", "c", "tau", "n_scales"), [(2, 6, 1, 5), (2, 5, 1, 5), (3, 3, 1, 4), (2, 9, 2, 5)]
)
def test_kernel_equals_per_patch_loop_to_1e12(m, c, tau, n_scales):
    # Odd c (nudge of 1), c > 8 (more than 15 band ends: the kernel's general counting loop), m = 3.
    patches = _mixed_patches(np.random.default_rng(c * 10 + m), 4)
    expected = np.array([mfde_reference(patch, m, c, tau, n_scales) for patch in patches])
    got = mfde(patches, m=m, c=c, tau=tau, n_scales=n_scales)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_near_flat_patch_is_not_constant_at_scale_1():
    # A patch flat but for one value one ulp higher: sigma is about 1e-17 and the patch is not constant.
    # At scale 1 the min-max step gives class 1 to the 199 equal values and c to the other: one jump up,
    # one down. (Coarser scales compare block means with a mean rounded at the same 1e-17 scale: there
    # the result depends on the order of the additions, in the official code as here.)
    x = np.full(200, 0.3)
    x[5] = np.nextafter(0.3, 1.0)
    expected = -(197 / 199) * math.log(197 / 199) - 2 * (1 / 199) * math.log(1 / 199)
    assert mfde(x)[0] == pytest.approx(expected, abs=1e-12)
    assert mfde_reference(x)[0] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("variant", ["official", "textbook"])
def test_dtypes_and_layouts_give_the_same_values(variant):
    rng = np.random.default_rng(12)
    x32 = _eeg_like(rng, (6, 200)).astype(np.float32)
    expected = mfde(x32.astype(np.float64), variant=variant)
    np.testing.assert_array_equal(mfde(x32, variant=variant), expected)  # float32 kernel = float64 kernel
    np.testing.assert_array_equal(mfde(x32.astype(np.longdouble), variant=variant), expected)
    x16 = x32.astype(np.float16)
    np.testing.assert_array_equal(mfde(x16, variant=variant), mfde(x16.astype(np.float64), variant=variant))
    # Non-contiguous views: every other patch, and patches along the first axis of a transposed array.
    wide = np.repeat(x32, 2, axis=0)
    np.testing.assert_array_equal(mfde(wide[::2], variant=variant), expected)
    np.testing.assert_array_equal(mfde(np.asfortranarray(x32), variant=variant), expected)
    np.testing.assert_array_equal(mfde(x32.T.copy().T, variant=variant), expected)


@pytest.mark.parametrize("n_rows", [1, 2, 3, 4, 5, 7, 8, 9])
def test_groups_of_four_rows_equal_single_rows(n_rows):
    # The kernel sums four rows at a time and the remainder row by row: every row must come out alike.
    rng = np.random.default_rng(n_rows)
    x = np.concatenate([_eeg_like(rng, (n_rows, 200))[:-1], np.zeros((1, 200))])  # the last row flat
    together = mfde(x)
    for row in range(n_rows):
        np.testing.assert_array_equal(mfde(x[row]), together[row])
    np.testing.assert_array_equal(together[-1], 0.0)


@pytest.mark.parametrize("bad_row", [0, 3, 5, 6])
def test_non_finite_row_raises_in_any_position(bad_row):
    x = np.random.default_rng(0).standard_normal((7, 200))  # one group of four, three single rows
    x[bad_row, 17] = np.nan
    with pytest.raises(ValueError, match="'x'.*NaN"):
        mfde(x)
    x[bad_row] = np.tile([1e308, -1e308], 100)
    with pytest.raises(ValueError, match="too large"):
        mfde(x)


def test_released_code_skips_only_the_nudge_of_one_at_scale_1():
    # The official FDispEn_NCDF builds y as a Python list: `np.where(y == 1, ...)` compares the list with
    # 1 (False) and leaves it as it is; `np.where(y == 0, ...)` then sees an array and nudges the zero.
    y = [0.0, 0.25, 1.0]
    y = np.where(y == 1, 1 - 1e-10, y)
    assert y.tolist() == [0.0, 0.25, 1.0]
    y = np.where(y == 0, 1e-10, y)
    assert y[0] == 1e-10 and y[2] == 1.0
    # The unnudged maximum: class c for even c (half to even), c + 1 for odd c; the minimum is class 1.
    assert np.round(y * 6 + 0.5).tolist() == [1.0, 2.0, 6.0]
    assert np.round(y * 5 + 0.5).tolist() == [1.0, 2.0, 6.0]  # c + 1 = 6: the nudge of 1 matters here
    assert mfde_module._official_class(np.array([0.0, 1.0]), 5).tolist() == [1.0, 5.0]
    assert "skips the nudge of 1 at scale 1" in mfde_module.mfde.__doc__


# --------------------------------------------------------------------------------------------------
# Invalid input
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"m": 1}, "'m'"),
        ({"m": 2.0}, "'m'"),
        ({"m": True}, "'m'"),
        ({"c": 1}, "'c'"),
        ({"c": "6"}, "'c'"),
        ({"tau": 0}, "'tau'"),
        ({"n_scales": 0}, "'n_scales'"),
        ({"variant": "azami"}, "'variant'"),
        ({"m": 6, "c": 30}, "'c'"),
        ({"n_scales": 101}, "'x'"),
        ({"m": 3, "tau": 34}, "'x'"),
    ],
)
def test_invalid_parameters_raise(kwargs, name):
    x = np.random.default_rng(0).standard_normal((2, 200))
    with pytest.raises(ValueError, match=name):
        mfde(x, **kwargs)
    with pytest.raises(ValueError, match="'window'" if name == "'x'" else name):
        knowledge_weights(x.reshape(1, 2, 200), n_patches=1, **kwargs)


def test_shortest_valid_patch():
    x = np.random.default_rng(0).standard_normal((2, 10))
    assert mfde(x).shape == (2, 5)  # 10 // 5 = 2 samples at scale 5: one embedding vector
    np.testing.assert_array_equal(mfde(x)[:, 4], 0.0)
    with pytest.raises(ValueError, match="n_times"):
        mfde(x[:, :9])


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.arange(200), "floating"),
        (np.ones(200, dtype=bool), "floating"),
        (np.ones(200, dtype=complex), "floating"),
        (np.float64(1.0), "0-d"),
        (np.where(np.arange(200) == 3, np.nan, 1.0 * np.arange(200)), "NaN"),
        (np.where(np.arange(200) == 3, np.inf, 1.0 * np.arange(200)), "NaN or infinite"),
        (np.tile([1e308, -1e308], 100), "too large"),
    ],
)
def test_invalid_signal_raises(x, match):
    for variant in ("official", "textbook"):
        with pytest.raises(ValueError, match=match):
            mfde(x, variant=variant)


def test_knowledge_weights_invalid_input():
    window = np.random.default_rng(0).standard_normal((2, 400))
    with pytest.raises(ValueError, match="'n_patches'"):
        knowledge_weights(window, n_patches=3)
    with pytest.raises(ValueError, match="'n_patches'"):
        knowledge_weights(window, n_patches=0)
    with pytest.raises(ValueError, match="'window'"):
        knowledge_weights(window[0], n_patches=2)
    with pytest.raises(ValueError, match="'window'"):
        knowledge_weights(window.astype(int), n_patches=2)
    with pytest.raises(ValueError, match="'window'.*NaN"):
        knowledge_weights(np.where(window > 2, np.nan, window), n_patches=2)
    with pytest.raises(TypeError):
        knowledge_weights(window, n_patches=2, scales=5)


# --------------------------------------------------------------------------------------------------
# Benchmark script
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow  # the benchmark script in a child process
def test_bench_script_runs():
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "bench_mfde.py"),
            "--n-patches",
            "3000",
            "--loop-patches",
            "5",
            "--repeat",
            "1",
            "--data",
            "synthetic",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "us/patch" in result.stdout and "speed-up" in result.stdout
    difference = float(result.stdout.split("max |loop - vectorised|:")[1].split()[0])
    assert difference <= 1e-9


@pytest.mark.parametrize("band", [0.0, 1e-3])
def test_scale_1_bands_do_not_change_results(reference, monkeypatch, band):
    # Band 0: every per-patch check fails and every value is classed by direct evaluation; a wide band:
    # many values fall in a band. Both must give the official numbers.
    patches = reference["windows"].reshape(-1, 200)[::5]
    expected = reference["mfde_scales"].reshape(-1, 5)[::5]
    monkeypatch.setattr(mfde_module, "_BAND", band)
    np.testing.assert_allclose(mfde(patches), expected, rtol=0, atol=1e-12)
    noise = _eeg_like(np.random.default_rng(5), (6, 200))
    loop = np.array([mfde_reference(patch) for patch in noise])
    np.testing.assert_allclose(mfde(noise), loop, rtol=0, atol=1e-12)
