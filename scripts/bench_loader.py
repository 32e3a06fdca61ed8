"""Benchmark the pretraining loader on pickles and on HDF5 shards of the same windows, in one run.

Usage (from the repository root)::

    .venv/bin/python scripts/bench_loader.py                         # 2048 windows, 1 and 4 workers
    .venv/bin/python scripts/bench_loader.py --windows 8192 --workers 8 --dtype float16

Writes ``--windows`` synthetic windows (16 x 4000 float32, uV, with MFDE weights) once as one pickle
per window and once as shards of ``--shard-size`` windows (``output.format: hdf5``), with their
manifests, into a temporary folder. Then, for each format, it times the second epoch of the pretraining
loader (:class:`pretrain.data.PretrainDataset` + :func:`pretrain.data.build_pretrain_loader`: shuffled
micro-batches read whole, per-channel scaling; the first epoch starts the persistent workers and is not
timed) with one worker process and with ``--workers`` processes, the loader's work in this process
(``PretrainDataset.__getitems__`` of shuffled micro-batches: what a worker does, without the processes)
and the bare reads (:func:`preprocess.segments.load_window`, in this process, shuffled order). Shards
hold each channel's 95th percentile of ``|x|`` (``abs_q95``), so their windows are scaled with one
division; pickles need the partition of every channel (the values are the same). Each is run
``--repeat`` times, formats alternately, and the best windows/s is reported with the ratio
shards / pickles. The files are read after being written, so they sit in the page cache: the ratios are
those of a warm cache (a cold network file system favours shards more: one open per 128 windows).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models import get_input_contract  # noqa: E402
from preprocess.segments import load_window, read_manifest, save_segment, save_shard, write_manifest  # noqa: E402
from preprocess.synthetic import synthetic_eeg  # noqa: E402
from pretrain.data import PretrainDataset, build_pretrain_loader  # noqa: E402

N_CHANS, N_TIMES, N_TOKENS, SFREQ = 16, 4000, 320, 1000.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=2048, help="windows in the corpus (default: 2048)")
    parser.add_argument("--shard-size", type=int, default=128, help="windows per shard (default: 128)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="shard data type")
    parser.add_argument("--workers", type=int, default=4, help="loader worker processes (default: 4)")
    parser.add_argument("--batch", type=int, default=64, help="micro-batch size (default: 64)")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each (default: 2)")
    parser.add_argument("--recordings", type=int, default=8, help="recordings of the corpus (default: 8)")
    args = parser.parse_args(argv)
    for name in ("windows", "shard_size", "workers", "batch", "repeat", "recordings"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def write_corpus(root: Path, n_windows: int, n_recordings: int, shard_size: int, dtype: str) -> None:
    """The same synthetic windows as pickles (``root/pickle``) and as shards (``root/hdf5``)."""
    rng = np.random.default_rng(0)
    base = synthetic_eeg(N_CHANS, N_TIMES * 8, SFREQ, seed=0).astype(np.float32)
    rows = {"pickle": [], "hdf5": []}
    per_recording = -(-n_windows // n_recordings)
    for r in range(n_recordings):
        rec = f"rec{r:03d}"
        segments = []
        for k in range(min(per_recording, n_windows - r * per_recording)):
            offset = int(rng.integers(0, base.shape[1] - N_TIMES))
            segments.append(
                {
                    "data": base[:, offset : offset + N_TIMES] * rng.uniform(0.5, 2.0),
                    "mfde": rng.dirichlet(np.ones(N_TOKENS)),
                    "ch_names": [f"C{c}" for c in range(N_CHANS)],
                    "sfreq": SFREQ,
                    "recording": f"{rec}.edf",
                    "subject": rec,
                    "start_s": 4.0 * k,
                    "label": None,
                    "filled_channels": [],
                }
            )
        for k, segment in enumerate(segments):
            name = f"segments/{rec}/{rec}_{k * 4000:09d}ms.pkl"
            save_segment(segment, root / "pickle" / name)
            rows["pickle"].append({**segment, "path": name, "n_chans": N_CHANS, "n_times": N_TIMES})
        for first in range(0, len(segments), shard_size):
            name = f"segments/{rec}/{rec}_shard{first // shard_size:05d}.h5"
            (root / "hdf5" / name).parent.mkdir(parents=True, exist_ok=True)
            part = segments[first : first + shard_size]
            save_shard(part, root / "hdf5" / name, dtype)
            for i, segment in enumerate(part):
                rows["hdf5"].append(
                    {**segment, "path": name, "shard_index": i, "n_chans": N_CHANS, "n_times": N_TIMES}
                )
    for fmt, fmt_rows in rows.items():
        write_manifest(fmt_rows, root / fmt / "manifest.csv")


def loader_rate(folder: Path, workers: int, batch: int) -> float:
    """Windows/s of the pretraining loader in a steady state: the second epoch, its workers started."""
    dataset = PretrainDataset(folder, get_input_contract("m4cea_base"), N_CHANS, N_TIMES, N_TOKENS)
    loader, sampler = build_pretrain_loader(dataset, micro_batch_size=batch, num_workers=workers, seed=0)
    rate = 0.0
    for epoch in range(2):  # epoch 0 starts the (persistent) workers and maps the files: not timed
        sampler.set_epoch(epoch)
        start = time.perf_counter()
        n = sum(x.shape[0] for x, _ in loader)
        rate = n / (time.perf_counter() - start)
    del loader
    return rate


def batch_rate(folder: Path, batch: int) -> float:
    """Windows/s of the loader's work without worker processes: ``__getitems__`` of shuffled micro-batches."""
    dataset = PretrainDataset(folder, get_input_contract("m4cea_base"), N_CHANS, N_TIMES, N_TOKENS)
    order = np.random.default_rng(1).permutation(len(dataset))
    start = time.perf_counter()
    for first in range(0, len(order) - batch + 1, batch):
        dataset.__getitems__(order[first : first + batch].tolist())
    return (len(order) // batch * batch) / (time.perf_counter() - start)


def read_rate(folder: Path) -> float:
    """Windows/s of bare :func:`load_window` calls in shuffled order, in this process."""
    rows = read_manifest(folder)
    order = np.random.default_rng(1).permutation(len(rows))
    start = time.perf_counter()
    for i in order:
        load_window(folder, rows[i])
    return len(rows) / (time.perf_counter() - start)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_corpus(root, args.windows, args.recordings, args.shard_size, args.dtype)
        print(
            f"corpus: {args.windows} windows of {N_CHANS} x {N_TIMES}, shards of {args.shard_size} "
            f"({args.dtype}), written in {time.perf_counter() - start:.1f} s"
        )
        cases = [
            ("bare reads (this process)", read_rate, ()),
            ("micro-batches (this process)", batch_rate, (args.batch,)),
        ]
        cases += [(f"loader, {w} worker(s)", loader_rate, (w, args.batch)) for w in sorted({1, args.workers})]
        for title, function, extra in cases:
            best = {"pickle": 0.0, "hdf5": 0.0}
            for _ in range(args.repeat):
                for fmt in best:
                    best[fmt] = max(best[fmt], function(root / fmt, *extra))
            print(
                f"{title:28s} pickles {best['pickle']:9.0f} windows/s   shards {best['hdf5']:9.0f} windows/s"
                f"   shards/pickles {best['hdf5'] / best['pickle']:.2f}x"
            )


if __name__ == "__main__":
    main()
