"""Benchmark the vectorised bootstrap of :mod:`finetune.evidence` against a per-resample scikit-learn loop.

Usage (from the repository root)::

    .venv/bin/python scripts/bench_evidence.py                         # 20 subjects x 250 windows
    .venv/bin/python scripts/bench_evidence.py --subjects 1 --windows 2000

Builds a synthetic binary test split (onset_detection, window units, scores with ties), then prints the
time of :func:`finetune.evidence.bootstrap_ci` for 2000 resamples of balanced accuracy, AUROC and AUPRC,
the time per resample of the obvious loop (duplicate the resampled subjects' windows, call
``balanced_accuracy_score``, ``roc_auc_score``, ``average_precision_score``) over ``--loop`` resamples,
and the ratio loop / vectorised per resample, measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None):
    import numpy as np
    from sklearn import metrics as skm

    from finetune.evidence import N_RESAMPLES, bootstrap_ci
    from tasks import get_task

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=20, help="subjects in the test split (default 20)")
    parser.add_argument("--windows", type=int, default=250, help="windows per subject (default 250)")
    parser.add_argument("--loop", type=int, default=100, help="resamples timed in the loop (default 100)")
    args = parser.parse_args(argv)

    task = get_task("onset_detection")
    rng = np.random.default_rng(0)
    rows = [
        dict(
            path=f"s{s}_{w}.pkl",
            subject=f"s{s}",
            recording=f"s{s}_r0",
            start_s=4.0 * w,
            n_chans=16,
            n_times=4000,
            sfreq=1000.0,
            label="seizure" if rng.random() < 0.3 else "background",
        )
        for s in range(args.subjects)
        for w in range(args.windows)
    ]
    positive = np.array([r["label"] == "seizure" for r in rows])
    p = np.round(np.clip(0.5 + 0.3 * (positive - 0.5) + 0.25 * rng.standard_normal(positive.size), 0, 1), 3)
    probabilities = np.stack([1 - p, p], axis=1)
    metrics = ["balanced_accuracy", "auroc", "auprc"]

    start = time.perf_counter()
    bootstrap_ci(task, rows, probabilities, metrics=metrics)
    vectorised_s = time.perf_counter() - start

    n_clusters = args.subjects if args.subjects > 1 else len(rows)
    cluster = np.array([int(r["subject"][1:]) for r in rows]) if args.subjects > 1 else np.arange(len(rows))
    counts = rng.multinomial(n_clusters, np.full(n_clusters, 1 / n_clusters), size=args.loop)
    start = time.perf_counter()
    for c in counts:
        keep = c[cluster]
        y, s = np.repeat(positive, keep), np.repeat(p, keep)
        skm.balanced_accuracy_score(y, s >= 0.5)
        if 0 < y.sum() < y.size:
            skm.roc_auc_score(y, s)
            skm.average_precision_score(y, s)
    loop_s = (time.perf_counter() - start) / args.loop

    print(f"test split: {args.subjects} subject(s) x {args.windows} windows, {len(rows)} window units")
    print(
        f"vectorised bootstrap_ci, {N_RESAMPLES} resamples: {vectorised_s:.3f} s "
        f"({1e3 * vectorised_s / N_RESAMPLES:.3f} ms per resample)"
    )
    print(
        f"scikit-learn loop: {1e3 * loop_s:.3f} ms per resample ({N_RESAMPLES} resamples: "
        f"{loop_s * N_RESAMPLES:.1f} s)"
    )
    print(f"ratio loop / vectorised per resample: {loop_s * N_RESAMPLES / vectorised_s:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
