"""Compiled MFDE kernel (numba), imported by :mod:`preprocess.mfde` on first use.

One pass per patch, in float64, with the operations of the official per-patch code in the same order
(``mfde`` documents how classes are found). The normal CDF and its inverse are scipy's own
(``scipy.special.cython_special.ndtr`` and ``ndtri``), called from the compiled code, so that every CDF
value equals :func:`scipy.special.ndtr` to the bit. The compiled code is cached on disk (numba's
``cache=True``: ``__pycache__`` beside this file, or the user's cache directory when that is read-only),
so only the first call on a machine compiles (about 10 s per input dtype).
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
#: Thresholds are counted 16 at a time by an unrolled loop when there are at most 15 (c <= 8).
FAST_EDGES = 16

# scipy's ndtr and ndtri, linked by name so that the cached machine code stays valid in a new process.
_SYMBOLS = {
    "m4cea_scipy_ndtr": "__pyx_fuse_1ndtr",  # the float64 specialisation of the fused ndtr
    "m4cea_scipy_ndtri": "ndtri",
}
for _symbol, _name in _SYMBOLS.items():
    llvm.add_symbol(_symbol, get_cython_function_address("scipy.special.cython_special", _name))


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
def _count_at_most(values, n, edges, counts):
    """``counts[i] = sum_k(edges[k] <= values[i])`` for ``i < n`` (edges padded with +inf)."""
    if edges.shape[0] == FAST_EDGES:
        for i in range(n):
            value = values[i]
            count = 0
            for k in range(FAST_EDGES):
                count += edges[k] <= value
            counts[i] = count
    else:
        for i in range(n):
            counts[i] = 0
        for k in range(edges.shape[0]):
            edge = edges[k]
            for i in range(n):
                counts[i] += edge <= values[i]


@numba.njit(nogil=True, inline="always")
def _z_scores(values, n, mean, std):
    for i in range(n):
        values[i] = (values[i] - mean) / std


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


@numba.njit(cache=True, nogil=True)
def mfde_rows(rows, official, c, n_classes, m, tau, n_scales, y_bounds, z_edges, z_map, band, counted,
              count_log_count, out):
    """MFDE of each row of ``rows`` (n_rows, n_times) into ``out`` (n_rows, n_scales).

    ``official``: scale 1 as the official code (min-max rescaled CDF, classes from per-patch bands around
    the boundaries ``y_bounds`` of the class map, exact inside them), scales 2 and up z-scored with the
    patch's mean and std; otherwise (textbook) every scale z-scored with its own mean and std. Classes of
    z-scores: ``z_map[sum(z_edges <= z)]``. ``n_classes`` sets the pattern radix ``2 * n_classes + 1``.
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
    x = np.empty(n_times)
    z = np.empty(n_times)
    series = np.empty(n_times)
    counts = np.empty(n_times, np.int64)
    classes = np.empty(starts[n_scales], np.int64)
    radix = 2 * n_classes + 1
    n_patterns = radix ** (m - 1)
    embedding_span = (m - 1) * tau
    histogram = np.zeros(n_patterns, np.int64)
    # Scale 1 (official): the band ends, upper end of band k at 2k, lower end at 2k - 1 (band 0 has no
    # lower end: the patch minimum is in it), padded with +inf; an odd number of ends below a value is a
    # class, an even number a band.
    n_ends = 2 * c - 1
    n_padded = FAST_EDGES if n_ends < FAST_EDGES else n_ends + 1
    ends = np.full(n_padded, np.inf)
    end_class = np.full(n_padded + 1, -1, np.int64)
    for r in range(1, n_ends + 1, 2):
        end_class[r] = (r + 1) // 2
    for p in range(n_rows):
        for i in range(n_times):
            x[i] = rows[p, i]
        mean, std = _mean_std(x, n_times, z)
        if not (math.isfinite(mean) and math.isfinite(std)):
            return p
        if std == 0.0:
            std = 1.0  # a flat series: one class whatever its z-scores
        z_low = np.inf
        z_high = -np.inf
        for i in range(n_times):
            value = z[i] / std  # (x - mean) / std
            z[i] = value
            z_low = min(z_low, value)
            z_high = max(z_high, value)
        constant = False
        if official:
            t_low = _ndtr(z_low)
            span = _ndtr(z_high) - t_low
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
                    _count_at_most(z, n_times, ends, counts)
                    for i in range(n_times):
                        classes[i] = end_class[counts[i]]
                else:
                    for i in range(n_times):
                        classes[i] = -1
                for i in range(n_times):
                    if classes[i] < 0:  # in a band: the official formula itself
                        classes[i] = int(_official_class((_ndtr(z[i]) - t_low) / span, c))
        else:
            _count_at_most(z, n_times, z_edges, counts)
            for i in range(n_times):
                classes[i] = z_map[counts[i]]
        for s in range(2, n_scales + 1):
            length = lengths[s - 1]
            scale = float(s)
            for b in range(length):
                total = x[b * s] + x[b * s + 1]
                for j in range(2, s):
                    total += x[b * s + j]
                series[b] = total / scale
            if official:
                _z_scores(series, length, mean, std)
            else:
                series_mean, series_std = _mean_std(series, length, z)
                if series_std == 0.0:
                    series_std = 1.0
                for b in range(length):
                    series[b] = z[b] / series_std
            _count_at_most(series, length, z_edges, counts)
            a = starts[s - 1]
            for b in range(length):
                classes[a + b] = z_map[counts[b]]
        for s in range(n_scales):
            a = starts[s]
            n_vectors = lengths[s] - embedding_span
            if m == 2:
                for j in range(a, a + n_vectors):
                    histogram[classes[j + tau] - classes[j] + n_classes] += 1
            else:
                for j in range(a, a + n_vectors):
                    code = 0
                    weight = 1
                    for i in range(m - 1):
                        code += (classes[j + (i + 1) * tau] - classes[j + i * tau] + n_classes) * weight
                        weight *= radix
                    histogram[code] += 1
            # -sum(p log p) with p = count / n: (sum(count) log n - sum(count log count)) / n.
            n_counted = 0
            sum_count_log_count = 0.0
            for code in range(n_patterns):
                count = histogram[code]
                if counted[code]:
                    n_counted += count
                    sum_count_log_count += count_log_count[count]
                histogram[code] = 0
            out[p, s] = (n_counted * math.log(n_vectors) - sum_count_log_count) / n_vectors
        if constant:
            out[p, 0] = 0.0
    return -1
