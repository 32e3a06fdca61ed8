"""Benchmark the verified checkpoint loader against a plain ``torch.load(weights_only=True)``.

Usage (from the repository root)::

    .venv/bin/python scripts/bench_checkpoint.py                  # m4cea_base with its AdamW state
    .venv/bin/python scripts/bench_checkpoint.py --model m4cea_tiny --repeats 5

Writes a pretraining checkpoint of the model (weights, AdamW moments after one step, config, RNG
states) with :func:`runtime.checkpoint.save_checkpoint` into a temporary folder, then prints the best
of ``--repeats`` times of: a plain ``torch.load(weights_only=True)``,
:func:`runtime.checkpoint.load_checkpoint` (zip CRC-32 of every member, bounds on the plain values,
payload sha256), and each part of the check alone, with the ratio verified / plain. The file is read
from the page cache in every case.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="m4cea_base", help="registered model name (default m4cea_base)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions, best kept (default 3)")
    args = parser.parse_args(argv)

    import torch

    from models import create_model
    from runtime.checkpoint import load_checkpoint, payload_sha256, save_checkpoint, verify_zip_archive
    from runtime.config import CONFIG_DIR, load_config
    from runtime.seeding import get_rng_state

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model(args.model, head="pretrain")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    config = load_config(CONFIG_DIR / "pretrain" / "m4cea_base.yaml")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "checkpoint-0001.pth"
        start = time.perf_counter()
        save_checkpoint(
            path,
            model=model,
            optimizer=optimizer,
            scaler=None,
            epoch=0,
            step=1,
            config=config,
            rng=[get_rng_state()],
        )
        save_s = time.perf_counter() - start
        plain_s = _best(lambda: torch.load(path, map_location="cpu", weights_only=True), args.repeats)
        verified_s = _best(lambda: load_checkpoint(path), args.repeats)
        crc_s = _best(lambda: verify_zip_archive(path), args.repeats)
        state = torch.load(path, map_location="cpu", weights_only=True)
        hash_s = _best(lambda: payload_sha256(state), args.repeats)
        size_mb = path.stat().st_size / 1e6
    print(f"{args.model}: checkpoint of {size_mb:.1f} MB, saved (with its sha256) in {save_s:.3f} s")
    print(f"  torch.load(weights_only=True)  {plain_s:.3f} s")
    print(f"  load_checkpoint (verified)     {verified_s:.3f} s  ratio {verified_s / plain_s:.2f}")
    print(f"    zip CRC-32 of every member   {crc_s:.3f} s")
    print(f"    payload sha256               {hash_s:.3f} s")


if __name__ == "__main__":
    main()
