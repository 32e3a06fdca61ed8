"""Benchmark :func:`preprocess.mfde.mfde` against a per-patch Python loop, on one core.

Usage (from the repository root)::

    .venv/bin/python scripts/bench_mfde.py                    # 288000 patches = 1 h of 16-ch EEG
    .venv/bin/python scripts/bench_mfde.py --n-patches 20000 --data synthetic --variant textbook

Prints the microseconds per 200-sample patch of :func:`~preprocess.mfde.mfde` (its compiled kernel), of
the per-patch loop :func:`~preprocess.mfde.mfde_reference` (a plain transcription of the official
algorithm, timed on ``--loop-patches`` patches), and their ratio; it also checks that both give the same
values on the looped patches. Both are timed ``--repeat`` times, alternately, and the medians (and the
fastest runs) are compared, so that a busy machine slows both alike. The thread count of numpy's
BLAS/OpenMP pools and of numba is fixed by setting the usual environment variables before numpy is
imported (and with threadpoolctl when installed); the MFDE kernel itself is single-threaded either way,
so the ratio is per core. The first call compiles the kernel (or loads it from numba's cache); it is
done before timing.

Data: ``reference`` tiles the real EEG windows of ``../shared/reference/mfde_reference_chb01.npz``
(beside the repository); ``synthetic`` draws EEG-like signals (a random mix of 1/f noise and alpha-band
oscillations, in uV) from a seeded generator. ``auto`` uses the reference when present.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference" / "mfde_reference_chb01.npz"
_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n-patches",
        type=int,
        default=288_000,
        help="patches for the vectorised mfde (default: 288000 = 1 h of 16-channel EEG "
        "cut into 0.2 s patches)",
    )
    parser.add_argument(
        "--loop-patches",
        type=int,
        default=200,
        help="patches for the per-patch loop reference (default: 200)",
    )
    parser.add_argument("--patch-samples", type=int, default=200, help="samples per patch (default: 200)")
    parser.add_argument("--threads", type=int, default=1, help="numpy/BLAS/OpenMP threads (default: 1)")
    parser.add_argument("--variant", choices=("official", "textbook"), default="official")
    parser.add_argument("--data", choices=("auto", "reference", "synthetic"), default="auto")
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="timed runs of each; medians and fastest runs are reported (default: 5)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default: 0)")
    args = parser.parse_args(argv)
    for name in ("n_patches", "loop_patches", "threads", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.data == "reference" and not REFERENCE.is_file():
        parser.error(f"--data reference needs {REFERENCE}, which does not exist")
    if args.data != "synthetic" and REFERENCE.is_file() and args.patch_samples != 200:
        parser.error("--patch-samples other than 200 needs --data synthetic")
    return args


def make_patches(n_patches, patch_samples, data, seed):
    """EEG patches (n_patches, patch_samples) float32 in uV, and a description of where they come from."""
    import numpy as np

    if data == "reference" or (data == "auto" and REFERENCE.is_file()):
        with np.load(REFERENCE) as reference:
            windows = reference["windows"]
        patches = windows.reshape(-1, patch_samples)
        reps = -(-n_patches // len(patches))
        source = f"real EEG, the {len(patches)} patches of {REFERENCE.name} tiled"
        return np.tile(patches, (reps, 1))[:n_patches], source
    rng = np.random.default_rng(seed)
    n_times = n_patches * patch_samples
    # 1/f ("pink") noise by spectral shaping, plus a drifting 8-12 Hz oscillation at 1000 Hz.
    spectrum = rng.standard_normal(n_times // 2 + 1) + 1j * rng.standard_normal(n_times // 2 + 1)
    frequency = np.fft.rfftfreq(n_times, d=1e-3)
    spectrum /= np.sqrt(np.maximum(frequency, 0.5))
    pink = np.fft.irfft(spectrum, n=n_times)
    pink *= 20.0 / pink.std()
    t = np.arange(n_times) * 1e-3
    alpha = 15.0 * np.sin(2 * np.pi * (10.0 * t + 0.3 * np.cumsum(rng.standard_normal(n_times)) * 1e-3))
    signal = (pink + alpha + rng.standard_normal(n_times)).astype(np.float32)
    return signal.reshape(n_patches, patch_samples), "synthetic EEG-like (1/f noise + alpha), seeded"


def main(argv=None):
    args = parse_args(argv)
    for name in _THREAD_VARIABLES:
        os.environ[name] = str(args.threads)
    import numpy as np

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the environment variables above already apply
        threadpool_limits = None
    if threadpool_limits is not None:
        limiter = threadpool_limits(limits=args.threads)  # noqa: F841 (kept for the whole run)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from preprocess.mfde import mfde, mfde_reference

    patches, source = make_patches(args.n_patches, args.patch_samples, args.data, args.seed)
    print(f"data: {source}; {len(patches)} patches x {args.patch_samples} samples, float32")
    print(f"variant: {args.variant}; threads: {args.threads}")

    start = time.perf_counter()
    mfde(patches[:1000], variant=args.variant)  # compiles the kernel or loads it from numba's cache
    print(f"first call (compile or cache load): {time.perf_counter() - start:.1f} s")
    loop_patches = patches[: args.loop_patches] if args.variant == "official" else None
    wall, cpu, loop_wall, loop_cpu = [], [], [], []
    for _ in range(args.repeat):  # alternately, so that a change of load hits both
        start, cpu_start = time.perf_counter(), time.process_time()
        values = mfde(patches, variant=args.variant)
        wall.append((time.perf_counter() - start) / len(patches) * 1e6)
        cpu.append((time.process_time() - cpu_start) / len(patches) * 1e6)
        if loop_patches is not None:
            start, cpu_start = time.perf_counter(), time.process_time()
            loop_values = np.array([mfde_reference(patch) for patch in loop_patches])
            loop_wall.append((time.perf_counter() - start) / len(loop_patches) * 1e6)
            loop_cpu.append((time.process_time() - cpu_start) / len(loop_patches) * 1e6)
    median = statistics.median
    print(
        f"mfde (compiled kernel):  {median(wall):8.3f} us/patch wall, {median(cpu):.3f} us/patch CPU "
        f"(median of {args.repeat}; fastest {min(wall):.3f} wall; {len(patches)} patches)"
    )
    if loop_patches is None:
        print("per-patch loop: only for --variant official (test the textbook variant against EntropyHub)")
        return 0
    print(
        f"per-patch loop:          {median(loop_wall):8.1f} us/patch wall, {median(loop_cpu):.1f} us/patch "
        f"CPU (median of {args.repeat}; fastest {min(loop_wall):.1f} wall; {len(loop_patches)} patches)"
    )
    print(
        f"speed-up:                {median(loop_wall) / median(wall):8.0f} x wall, "
        f"{median(loop_cpu) / median(cpu):.0f} x CPU (medians); "
        f"{min(loop_wall) / min(wall):.0f} x wall (fastest runs)"
    )
    max_difference = float(np.abs(loop_values - values[: len(loop_patches)]).max())
    print(f"max |loop - vectorised|: {max_difference:.1e}")
    if max_difference > 1e-12:
        print("ERROR: the compiled and per-patch results differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
