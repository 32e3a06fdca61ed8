"""Compiled MFDE kernel (numba), imported by :mod:`preprocess.mfde` on first use.

One pass per patch, in float64, with the operations of the official per-patch code in the same order
(``mfde`` documents how classes are found). The normal CDF and its inverse are scipy's own
(``scipy.special.cython_special.ndtr`` and ``ndtri``), called from the compiled code, so that every CDF
value equals :func:`scipy.special.ndtr` to the bit. The compiled code is cached on disk (numba's
``cache=True``: ``__pycache__`` beside this file, or the user's cache directory when that is read-only),
so only the first call on a machine compiles (10-60 s per input dtype, float32 or float64).
"""

from __future__ import annotations

import math

import llvmlite.binding as llvm
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

#: CDF values of exactly 0 or 1 are moved this far inside (0, 1) by the official code (as mfde.NUDGE).
NUDGE = 1e-10


def _cython_special_address(names):
    """Address of the first of ``names`` in scipy.special.cython_special taking and returning a double."""
    import scipy.special.cython_special as cython_special

    for name in names:
        capsule = cython_special.__pyx_capi__.get(name)
        if capsule is not None and "double (double" in repr(capsule):
            return get_cython_function_address("scipy.special.cython_special", name)
    raise ImportError(f"scipy.special.cython_special has none of {names} as double f(double): update scipy")


# scipy's ndtr and ndtri, linked by name so that the cached machine code stays valid in a new process.
# ndtr is a fused function (complex and double specialisations); ndtri is not.
llvm.add_symbol("m4cea_scipy_ndtr", _cython_special_address(["__pyx_fuse_1ndtr", "__pyx_fuse_0ndtr", "ndtr"]))
llvm.add_symbol("m4cea_scipy_ndtri", _cython_special_address(["ndtri", "__pyx_fuse_1ndtri"]))


def _scipy_function(symbol):
    """A numba intrinsic calling the cython_special function ``double f(double, int skip_dispatch)``."""

    @intrinsic
    def call(typingctx, x):
        def codegen(context, builder, signature, args):
            function_type = ir.FunctionType(ir.DoubleType(), [ir.DoubleType(), ir.IntType(32)])
            function = cgutils.get_or_insert_function(builder.module, function_type, symbol)
            return builder.call(function, [args[0], ir.Constant(ir.IntType(32), 0)])

        return types.float64(types.float64), codegen

    return call


_ndtr = _scipy_function("m4cea_scipy_ndtr")
_ndtri = _scipy_function("m4cea_scipy_ndtri")


@numba.njit(cache=True, nogil=True)
def scipy_ndtr(values):
    """``scipy.special.ndtr`` through the compiled kernel's binding (for the tests)."""
    out = np.empty_like(values)
    for i in range(values.shape[0]):
        out[i] = _ndtr(values[i])
    return out


@numba.njit(nogil=True, inline="always")
def _official_class(y, c):
    """Class of a CDF value: nudge exact 0 and 1, then ``round(c * y + 0.5)`` (half to even)."""
    if y == 0.0:
        y = NUDGE
    elif y == 1.0:
        y = 1.0 - NUDGE
    return np.rint(y * c + 0.5)


@numba.njit(nogil=True, inline="always")
def _count_at_most(values, n, edges, extra_below, counts):
    """``counts[i] = sum_k(edges[k] <= values[i]) + (values[i] < extra_below)`` for ``i < n``.

    ``edges`` is padded with +inf to 8 or 16 entries (an unrolled loop that the compiler vectorises over
    values) or longer (a loop per edge).
    """
    if edges.shape[0] == 8:
        for i in range(n):
            value = values[i]
            count = np.int64(value < extra_below)
            for k in range(8):
                count += edges[k] <= value
            counts[i] = count
    elif edges.shape[0] == 16:
        for i in range(n):
            value = values[i]
            count = np.int64(value < extra_below)
            for k in range(16):
                count += edges[k] <= value
            counts[i] = count
    else:
        for i in range(n):
            counts[i] = values[i] < extra_below
        for k in range(edges.shape[0]):
            edge = edges[k]
            for i in range(n):
                counts[i] += edge <= values[i]


@numba.njit(nogil=True, inline="always")
def _mean_std(values, n, deviation):
    """Mean and population std of ``values[:n]``, sums left to right; ``deviation = values - mean``."""
    total = 0.0
    for i in range(n):
        total += values[i]
    mean = total / n
    square = 0.0
    for i in range(n):
        d = values[i] - mean
        deviation[i] = d
        square += d * d
    return mean, math.sqrt(square / n)


@numba.njit(nogil=True, inline="always")
def _moments(rows, p, n_times, x, deviation, stats):
    """Row ``p`` of ``rows`` as float64 into ``x[0]``, ``deviation[0] = x - mean``, and in ``stats[0]``
    its mean, population std and smallest and largest deviation (sums left to right)."""
    total = 0.0
    for i in range(n_times):
        value = np.float64(rows[p, i])
        x[0, i] = value
        total += value
    mean = total / n_times
    square = 0.0
    low = np.inf
    high = -np.inf
    for i in range(n_times):
        d = x[0, i] - mean
        deviation[0, i] = d
        square += d * d
        low = min(low, d)
        high = max(high, d)
    stats[0, 0], stats[0, 1], stats[0, 2], stats[0, 3] = mean, math.sqrt(square / n_times), low, high


@numba.njit(nogil=True, inline="always")
def _moments_4(rows, p, n_times, x, deviation, stats):
    """:func:`_moments` of rows ``p .. p + 3`` into ``x[0 .. 3]``, ``deviation[0 .. 3]``, ``stats[0 .. 3]``.

    The same sums, left to right within each row; the four rows are interleaved so that the additions
    of one row do not wait for each other.
    """
    t0 = t1 = t2 = t3 = 0.0
    for i in range(n_times):
        a0, a1 = np.float64(rows[p, i]), np.float64(rows[p + 1, i])
        a2, a3 = np.float64(rows[p + 2, i]), np.float64(rows[p + 3, i])
        x[0, i], x[1, i], x[2, i], x[3, i] = a0, a1, a2, a3
        t0 += a0
        t1 += a1
        t2 += a2
        t3 += a3
    m0, m1, m2, m3 = t0 / n_times, t1 / n_times, t2 / n_times, t3 / n_times
    s0 = s1 = s2 = s3 = 0.0
    low0 = low1 = low2 = low3 = np.inf
    high0 = high1 = high2 = high3 = -np.inf
    for i in range(n_times):
        d0, d1, d2, d3 = x[0, i] - m0, x[1, i] - m1, x[2, i] - m2, x[3, i] - m3
        deviation[0, i], deviation[1, i], deviation[2, i], deviation[3, i] = d0, d1, d2, d3
        s0 += d0 * d0
        s1 += d1 * d1
        s2 += d2 * d2
        s3 += d3 * d3
        low0, low1, low2, low3 = min(low0, d0), min(low1, d1), min(low2, d2), min(low3, d3)
        high0, high1, high2, high3 = max(high0, d0), max(high1, d1), max(high2, d2), max(high3, d3)
    stats[0, 0], stats[0, 1], stats[0, 2], stats[0, 3] = m0, math.sqrt(s0 / n_times), low0, high0
    stats[1, 0], stats[1, 1], stats[1, 2], stats[1, 3] = m1, math.sqrt(s1 / n_times), low1, high1
    stats[2, 0], stats[2, 1], stats[2, 2], stats[2, 3] = m2, math.sqrt(s2 / n_times), low2, high2
    stats[3, 0], stats[3, 1], stats[3, 2], stats[3, 3] = m3, math.sqrt(s3 / n_times), low3, high3


@numba.njit(cache=True, nogil=True)
def mfde_rows(
    rows,
    official,
    c,
    n_classes,
    m,
    tau,
    n_scales,
    y_bounds,
    z_edges,
    z_zero,
    band,
    counted,
    count_log_count,
    out,
):
    """MFDE of each row of ``rows`` (n_rows, n_times) into ``out`` (n_rows, n_scales).

    ``official``: scale 1 as the official code (min-max rescaled CDF, classes from per-patch bands around
    the boundaries ``y_bounds`` of the class map, exact inside them), scales 2 and up z-scored with the
    patch's mean and std; otherwise (textbook) every scale z-scored with its own mean and std. Classes of
    z-scores: ``sum(z_edges <= z) + (z < z_zero)``. ``n_classes`` sets the pattern radix
    ``2 * n_classes + 1``.
    Returns -1, or the index of the first row whose mean or standard deviation is not finite (``out`` is
    then incomplete).
    """
    n_rows, n_times = rows.shape
    lengths = np.empty(n_scales, np.int64)
    starts = np.empty(n_scales + 1, np.int64)
    starts[0] = 0
    for s in range(n_scales):
        lengths[s] = n_times // (s + 1)
        starts[s + 1] = starts[s] + lengths[s]
    x = np.empty((4, n_times))
    deviation = np.empty((4, n_times))
    stats = np.empty((4, 4))
    z = np.empty(n_times)
    series = np.empty(n_times)
    counts = np.empty(n_times, np.int64)
    classes = np.empty(starts[n_scales], np.int64)
    radix = 2 * n_classes + 1
    n_patterns = radix ** (m - 1)
    embedding_span = (m - 1) * tau
    # Pattern counts of each scale, plus a slot for the embedding vectors that straddle two scales of
    # the concatenated class series, four times: vector j counts in copy j % 4, so that consecutive
    # vectors with the same pattern (common in smooth EEG) increment different counters.
    split = (n_scales + 1) * n_patterns
    histogram = np.zeros(4 * split, np.int64)
    n_codes = starts[n_scales] - embedding_span
    base = np.empty(n_codes, np.int64)  # for m = 2: the bin of difference 0 of vector j
    for j in range(n_codes):
        slot = n_scales
        for s in range(n_scales):
            if starts[s] <= j < starts[s + 1] - embedding_span:
                slot = s
        base[j] = (j & 3) * split + slot * n_patterns + n_classes
    # Scale 1 (official): the band ends, upper end of band k at 2k, lower end at 2k - 1 (band 0 has no
    # lower end: the patch minimum is in it), padded with +inf; an odd number of ends below a value is a
    # class, an even number a band.
    n_ends = 2 * c - 1
    n_padded = 8 if n_ends < 8 else (16 if n_ends < 16 else n_ends + 1)
    ends = np.full(n_padded, np.inf)
    log_n_vectors = np.empty(n_scales)
    for s in range(n_scales):
        log_n_vectors[s] = math.log(lengths[s] - embedding_span)
    for p0 in range(0, n_rows, 4):
        if p0 + 4 <= n_rows:
            _moments_4(rows, p0, n_times, x, deviation, stats)
        for q in range(min(4, n_rows - p0)):
            p = p0 + q
            if p0 + 4 > n_rows:
                _moments(rows, p, n_times, x[q:], deviation[q:], stats[q:])
            mean, std = stats[q, 0], stats[q, 1]
            if not (math.isfinite(mean) and math.isfinite(std)):
                return p
            if std == 0.0:
                std = 1.0  # a flat series: one class whatever its z-scores
            for i in range(n_times):
                z[i] = deviation[q, i] / std  # (x - mean) / std
            constant = False
            if official:
                # min(d / std) == min(d) / std: division by std > 0 keeps the order.
                t_low = _ndtr(stats[q, 2] / std)
                span = _ndtr(stats[q, 3] / std) - t_low
                constant = span == 0.0
                if constant:  # a flat patch: its CDF values are all equal, class 1
                    for i in range(n_times):
                        classes[i] = 1
                else:
                    checked = True
                    for k in range(c):
                        estimate = _ndtri(min(max(t_low + y_bounds[k] * span, 0.0), 1.0))
                        margin = band * (1.0 + abs(estimate))
                        ends[2 * k] = estimate + margin
                        if k > 0:
                            ends[2 * k - 1] = estimate - margin
                    for j in range(n_ends):
                        if not math.isfinite(ends[j]) or (j > 0 and ends[j] < ends[j - 1]):
                            checked = False
                    if checked:  # the band ends are on the right sides of the exact boundaries
                        for k in range(c):
                            if _official_class((_ndtr(ends[2 * k]) - t_low) / span, c) < k + 1:
                                checked = False
                            if k > 0 and _official_class((_ndtr(ends[2 * k - 1]) - t_low) / span, c) >= k + 1:
                                checked = False
                    if checked:
                        _count_at_most(z, n_times, ends, -np.inf, counts)
                    else:
                        counts[:n_times] = 0
                    for i in range(n_times):
                        classes[i] = (counts[i] + 1) >> 1
                    for i in range(n_times):
                        if counts[i] & 1 == 0:  # in a band: the official formula itself
                            classes[i] = int(_official_class((_ndtr(z[i]) - t_low) / span, c))
            else:
                _count_at_most(z, n_times, z_edges, z_zero, classes)
            for s in range(2, n_scales + 1):
                length = lengths[s - 1]
                for b in range(length):
                    total = x[q, b * s] + x[q, b * s + 1]
                    for j in range(2, s):
                        total += x[q, b * s + j]
                    series[b] = total
                scale = float(s)
                if official:
                    for b in range(length):
                        series[b] = (series[b] / scale - mean) / std
                else:
                    for b in range(length):
                        series[b] = series[b] / scale
                    series_mean, series_std = _mean_std(series, length, z)
                    if series_std == 0.0:
                        series_std = 1.0
                    for b in range(length):
                        series[b] = z[b] / series_std
                _count_at_most(series, length, z_edges, z_zero, classes[starts[s - 1] :])
            if m == 2:  # all scales in one loop: bin = base (split, scale, centre) + class difference
                for j in range(n_codes):
                    histogram[base[j] + classes[j + tau] - classes[j]] += 1
            for s in range(n_scales):
                n_vectors = lengths[s] - embedding_span
                if m != 2:
                    a = starts[s]
                    for j in range(n_vectors):
                        code = 0
                        weight = 1
                        for i in range(m - 1):
                            left = classes[a + j + i * tau]
                            code += (classes[a + j + (i + 1) * tau] - left + n_classes) * weight
                            weight *= radix
                        histogram[(j & 3) * split + s * n_patterns + code] += 1
                # -sum(p log p) with p = count / n: (sum(count) log n - sum(count log count)) / n.
                n_counted = 0
                sum_count_log_count = 0.0
                for code in range(n_patterns):
                    i = s * n_patterns + code
                    count = (
                        histogram[i]
                        + histogram[i + split]
                        + histogram[i + 2 * split]
                        + histogram[i + 3 * split]
                    )
                    if counted[code]:
                        n_counted += count
                        sum_count_log_count += count_log_count[count]
                out[p, s] = (n_counted * log_n_vectors[s] - sum_count_log_count) / n_vectors
            histogram[:] = 0
            if constant:
                out[p, 0] = 0.0
    return -1
