"""Wall time and peak memory of preprocessing a synthetic 1-hour and a 24-hour recording on one core.

Usage::

    python scripts/bench_preprocess.py [--hours 1 24] [--workdir DIR]

Each recording is a synthetic 23-channel, 256 Hz EDF (CHB-MIT channel names) made with MNE; it is
preprocessed with the default config by ``preprocess/preprocess_main.py`` in a child process limited
to one thread, whose wall time and peak resident memory (ru_maxrss) are printed.
Goals (issue 2): one hour in at most 30 s; peak memory below 1.5 GB for the 24-hour file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ONE_THREAD = {
    k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
}


def make_edf(path: Path, hours: float, sfreq: float = 256.0) -> None:
    """Write a synthetic EDF of ``hours`` hours (:func:`preprocess.synthetic.write_long_edf`)."""
    from preprocess.synthetic import write_long_edf

    write_long_edf(path, hours * 3600.0, sfreq)


def run_once(edf: Path, out: Path) -> tuple[float, float, int]:
    """Preprocess ``edf`` in a one-thread child; returns (wall s, peak RSS GB, windows written)."""
    shutil.rmtree(out, ignore_errors=True)
    code = (
        "import resource, sys, time;"
        f"sys.path.insert(0, {str(ROOT)!r});"
        "from preprocess.preprocess_main import main;"
        "t = time.perf_counter();"
        f"rc = main(['--input', {str(edf)!r}, '--output', {str(out)!r}, '--quiet']);"
        "print('WALL', time.perf_counter() - t);"
        "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss);"
        "sys.exit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **ONE_THREAD}
    )
    if result.returncode != 0:
        raise RuntimeError(f"preprocessing failed:\n{result.stdout}\n{result.stderr}")
    values = dict(
        line.split(" ", 1) for line in result.stdout.splitlines() if line.startswith(("WALL", "RSS"))
    )
    windows = int(
        next(line for line in result.stdout.splitlines() if "windows written" in line)
        .split("windows written: ")[1]
        .split(";")[0]
    )
    return float(values["WALL"]), int(values["RSS"]) / 1024**2, windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 24.0])
    parser.add_argument(
        "--workdir", help="folder for the synthetic EDFs and outputs (default: a temporary one)"
    )
    parser.add_argument("--make-edf", nargs=2, metavar=("PATH", "HOURS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_edf:
        make_edf(Path(args.make_edf[0]), float(args.make_edf[1]))
        return
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="m4cea_bench_"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"{'recording':>12} {'windows':>8} {'wall s':>8} {'s per h':>8} {'peak GB':>8}")
    for hours in args.hours:
        edf = workdir / f"synthetic_{hours:g}h.edf"
        if not edf.exists():
            t = time.perf_counter()
            # In a child process: Linux keeps a process's peak RSS across fork and exec, so a parent grown
            # by making the file would inflate the peak memory measured in the preprocessing child.
            subprocess.run([sys.executable, __file__, "--make-edf", str(edf), str(hours)], check=True)
            print(f"(made {edf.name} in {time.perf_counter() - t:.0f} s)", file=sys.stderr)
        wall, peak_gb, windows = run_once(edf, workdir / f"out_{hours:g}h")
        print(f"{hours:>10g} h {windows:>8d} {wall:>8.1f} {wall / hours:>8.1f} {peak_gb:>8.2f}", flush=True)
        shutil.rmtree(workdir / f"out_{hours:g}h", ignore_errors=True)
    print("goals: <= 30 s per hour of EEG on one core; peak < 1.5 GB for 24 h")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
