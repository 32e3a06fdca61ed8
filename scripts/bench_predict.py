"""Time to annotate a synthetic 1-hour and 24-hour recording with m4cea_base, on the CPU and on a GPU.

Usage::

    python scripts/bench_predict.py [--hours 1 24] [--devices cpu cuda] [--workdir DIR]
        [--amp-cpu auto|bf16|fp32] [--batch-size N] [--threads N] [--compile auto|always|never] [--profile]
        [--models m4cea_base [m4cea_tiny ...]]

Each recording is a synthetic 23-channel, 256 Hz EDF (CHB-MIT channel names,
:func:`preprocess.synthetic.write_long_edf`, as ``scripts/bench_preprocess.py``). The model is
``m4cea_base`` with a randomly initialised ``onset_detection`` head, saved as a fine-tuning checkpoint
with the default preprocessing config. ``finetune/predict.py`` runs in a child process (windows of 4 s,
no overlap: 21,600 windows for 24 h), whose wall time (everything: reading, filtering, resampling, model,
events, files, figure) and peak resident memory are printed, then where that time went: the time in the
model within that run (from the run's summary, ``runtime.model_s``; compilation apart) and the rest.
``--profile`` also times the preprocessing alone (:meth:`preprocess.pipeline.Preprocessor.iter_windows`
over the recording) with one thread and with one per CPU core (at most 8: config ``preprocess_threads``),
and the model alone on each device (:func:`model_only`). ``cuda`` is skipped when no GPU is present.

Before the recordings, the model's compute floor on this CPU is printed (:func:`compute_floor`): its
matrix-product FLOPs at the bf16 GEMM rate measured in the same run, plus its attention softmax at the
measured softmax rate (normalisations, GELU and data movement left out; a fused attention kernel can
beat the softmax term, which times the scores materialised). Each CPU line ends with its ratio to that
floor (wall time over floor x windows), measured in the same run. The floor is measured again after the
runs and every CPU figure is printed against both: this machine's rates drift within a run.
``--models`` benchmarks several sizes in one run (each against its own floor), e.g.
``--models m4cea_base m4cea_tiny`` for the choice of a CPU-only site.

Goals (issue 6): 24 h in under 2 minutes on the CPU, under 10 s on one H200.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_child(code: str) -> dict:
    """Run ``code`` in a child Python; it prints one JSON line prefixed ``RESULT``."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"child failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def predict_once(edf: Path, ckpt: Path, out: Path, device: str, args) -> dict:
    """Annotate ``edf`` in a child; returns wall s, peak RSS GB, windows and the autocast used."""
    shutil.rmtree(out, ignore_errors=True)
    overrides = [f"device={device}", f"amp_cpu={args.amp_cpu}", f"batch_size={args.batch_size}"]
    if args.threads:
        overrides.append(f"num_threads={args.threads}")
    overrides.append(f"compile={args.compile}")
    argv = [
        "--checkpoint",
        str(ckpt),
        "--input",
        str(edf),
        "--output",
        str(out),
        "--quiet",
        "--set",
        *overrides,
    ]
    code = (
        "import json, resource, sys, time;"
        f"sys.path.insert(0, {str(ROOT)!r});"
        "from finetune.predict import cli;"
        "t = time.perf_counter();"
        f"rc = cli({argv!r});"
        "wall = time.perf_counter() - t;"
        "assert rc == 0, rc;"
        f"s = json.load(open({str(out / edf.stem / (edf.stem + '_summary.json'))!r}));"
        "print('RESULT ' + json.dumps({'wall_s': wall,"
        " 'rss_gb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss"
        " / 1024**2, 'windows': s['windows']['n_windows'], 'amp': s['runtime']['amp'],"
        " 'device': s['runtime']['device'], 'events': len(s['events']),"
        " 'model_s': s['runtime']['model_s'], 'compile_s': s['runtime']['compile_s']}))"
    )
    return run_child(code)


def preprocess_only(edf: Path, threads: int | None, block_threads: int) -> float:
    """Seconds to window the recording (read, montage, filters, resampling, checks) without the model.

    ``block_threads`` blocks are preprocessed at once (config ``preprocess_threads`` of the predictor).
    """
    code = (
        "import json, sys, time;"
        f"sys.path.insert(0, {str(ROOT)!r});"
        "import torch;"
        + (f"torch.set_num_threads({threads});" if threads else "")
        + "from preprocess.pipeline import Preprocessor;"
        "from preprocess.segments import scale_window;"
        "from runtime.config import CONFIG_DIR, load_config;"
        "p = Preprocessor(load_config(CONFIG_DIR / 'preprocess' / 'm4cea.yaml'));"
        "t = time.perf_counter();"
        f"blocks = p.iter_windows({str(edf)!r}, n_threads={block_threads});"
        "n = sum(len(scale_window(w)) for _, w, _ in blocks);"
        "print('RESULT ' + json.dumps({'wall_s': time.perf_counter() - t, 'windows': n}))"
    )
    return run_child(code)["wall_s"]


def model_only(ckpt: Path, device: str, args, n_batches: int = 8) -> dict:
    """The model's own throughput on ``device`` as the 24-h prediction runs it (random scaled windows).

    :meth:`finetune.predictor.Predictor.classify` in a child, with the prediction's settings and the
    compilation a 24-h recording gets (``compile: auto``); one batch of warm-up (and compilation), then
    ``n_batches`` timed batches.
    """
    overrides = [f"device={device}", f"amp_cpu={args.amp_cpu}", f"batch_size={args.batch_size}"]
    overrides += [f"compile={args.compile}"] + ([f"num_threads={args.threads}"] if args.threads else [])
    code = (
        "import json, sys, time;"
        f"sys.path.insert(0, {str(ROOT)!r});"
        "import numpy as np, torch;"
        "from finetune.predict_config import load_predict_config;"
        "from finetune.predictor import Predictor, load_finetuned;"
        f"cfg = load_predict_config(overrides={overrides!r});"
        + (f"torch.set_num_threads({args.threads});" if args.threads else "")
        + f"p = Predictor(load_finetuned({str(ckpt)!r}), cfg);"
        "compiled = p.use_compiled(21600);"
        "m = p.model;"
        "x = np.random.default_rng(0).standard_normal("
        f"({args.batch_size}, m.n_chans, m.n_times), dtype=np.float32) * 0.3;"
        "p.classify(x, compiled=compiled, scaled=True);"
        "t = time.perf_counter();"
        f"[p.classify(x, compiled=compiled, scaled=True) for _ in range({n_batches})];"
        f"wps = {n_batches} * len(x) / (time.perf_counter() - t);"
        "print('RESULT ' + json.dumps({'windows_per_s': wps, 'compiled': compiled and not p._compile_failed,"
        " 'amp': p.amp}))"
    )
    return run_child(code)


def _seconds_per_call(fn, rounds: int = 9, calls: int = 5) -> float:
    """Best mean time per call over ``rounds`` rounds of ``calls`` calls, after two warm-up calls.

    The best round, not the mean of all: the rate the machine reaches, not that of a moment when another
    process took a core (one round of 5 calls gave floors 1.4x apart between quiet runs).
    """
    fn(), fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def compute_floor(batch_size: int, model_name: str = "m4cea_base") -> dict:
    """The model's lower bound per window on this CPU, from rates measured here and now.

    The model's matrix-product FLOPs per window (counted by ``torch.utils.flop_counter`` on a forward
    pass with explicit attention) at the bf16 rate measured on its largest product (the MLP's first layer
    at ``batch_size`` windows), plus its attention exponentials (``depth x heads x n_tokens^2`` per
    window) at the rate of a bf16 softmax of one layer's scores. Normalisations, GELU and the data
    movement are left out; a fused attention kernel, which never materialises the scores, can beat the
    softmax term (the model's own attention on this project's CPU: 0.5-0.7 ns per score against 1.4).
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from models import create_model
    from models.attention import configure_attention

    torch.manual_seed(0)
    model = create_model(model_name, head="classification", n_outputs=2).eval()
    configure_attention(model, fused=False)  # matmuls the counter sees
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, model.n_chans, model.n_times))
    flops = counter.get_total_flops()
    width, n_tokens, bf16 = model.embed_dim, model.n_tokens, torch.bfloat16
    with torch.inference_mode():
        tokens = torch.randn(batch_size * n_tokens, width, dtype=bf16)
        weight = torch.randn(4 * width, width, dtype=bf16)
        gemm_flops_per_s = (
            2 * tokens.shape[0] * width * 4 * width / _seconds_per_call(lambda: F.linear(tokens, weight))
        )
        scores = torch.randn(batch_size, model.num_heads, n_tokens, n_tokens, dtype=bf16)
        softmax_s_per_score = _seconds_per_call(lambda: scores.softmax(-1)) / scores.numel()
    n_scores = model.depth * model.num_heads * n_tokens**2
    return {
        "gflop": flops / 1e9,
        "gemm_gflop_s": gemm_flops_per_s / 1e9,
        "softmax_ns": softmax_s_per_score * 1e9,
        "floor_s_per_window": flops / gemm_flops_per_s + n_scores * softmax_s_per_score,
    }


def print_floor(name: str, floor: dict, when: str) -> None:
    """Print one :func:`compute_floor` result of model ``name``; ``when`` ends its first clause."""
    print(
        f"{name}{when}: {floor['gflop']:.2f} GFLOP per window in matrix products; this CPU: bf16 GEMM "
        f"{floor['gemm_gflop_s']:.0f} GFLOP/s, softmax {floor['softmax_ns']:.2f} ns per score -> "
        f"floor {floor['floor_s_per_window'] * 1e3:.1f} ms per window, "
        f"{floor['floor_s_per_window'] * 21600:.0f} s for 24 h (model only)",
        flush=True,
    )


def main() -> None:
    from finetune.checkpoints import save_untrained_checkpoint
    from finetune.predict_config import MAX_PREPROCESS_THREADS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 24.0])
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"])
    parser.add_argument(
        "--workdir", help="folder for the synthetic EDFs and outputs (default: a temporary one)"
    )
    parser.add_argument("--amp-cpu", default="auto", choices=["auto", "bf16", "fp32"], help="CPU autocast")
    parser.add_argument("--batch-size", type=int, default=64, help="windows per forward pass")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads on the CPU (default: torch's)"
    )
    parser.add_argument(
        "--compile",
        default="auto",
        choices=["auto", "always", "never"],
        help="torch.compile the model (config compile; auto: for recordings of >= 4 h, 3600 windows)",
    )
    parser.add_argument("--profile", action="store_true", help="also time the preprocessing alone")
    parser.add_argument(
        "--models", nargs="+", default=["m4cea_base"], help="model sizes, each against its own floor"
    )
    args = parser.parse_args()
    import torch

    devices = [d for d in args.devices if d == "cpu" or torch.cuda.is_available()]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="m4cea_bench_predict_"))
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoints = {}
    for name in args.models:
        checkpoints[name] = workdir / f"{name}_checkpoint-best.pth"
        if not checkpoints[name].exists():
            save_untrained_checkpoint(checkpoints[name], "onset_detection", [f"model.name={name}"])
    print(
        f"CPU threads: {args.threads or torch.get_num_threads()} of {os.cpu_count()}; models "
        f"{', '.join(args.models)}; batch {args.batch_size}; compile {args.compile}",
        flush=True,
    )
    floors = {}
    if "cpu" in devices:
        for name in args.models:
            floors[name] = compute_floor(args.batch_size, name)
            print_floor(name, floors[name], "")
    header = (
        f"{'model':>10} {'recording':>10} {'device':>7} {'amp':>5} {'windows':>8} {'wall s':>8} {'win/s':>7} "
        f"{'peak GB':>8} {'/floor':>6}"
    )
    block_threads = max(1, min(MAX_PREPROCESS_THREADS, os.cpu_count() or 1))
    timed = []  # (label, model, wall s per window) of the CPU figures, for the floor measured at the end
    profile_header = f"  preprocessing s: 1 thread, {block_threads} threads"
    print(header + (profile_header if args.profile else ""), flush=True)
    for hours in args.hours:
        edf = workdir / f"synthetic_{hours:g}h.edf"
        if not edf.exists():
            t = time.perf_counter()
            # A child process, so that the memory used to make the file does not count in the measured peaks.
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                    "from preprocess.synthetic import write_long_edf; "
                    f"write_long_edf({str(edf)!r}, {hours * 3600.0!r})",
                ],
                check=True,
            )
            print(f"(made {edf.name} in {time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
        pre_s = None
        if args.profile:
            pre_s = [preprocess_only(edf, args.threads, n) for n in sorted({1, block_threads})]
        for name in args.models:
            for device in devices:
                out = workdir / f"out_{name}_{hours:g}h_{device}"
                r = predict_once(edf, checkpoints[name], out, device, args)
                ratio = ""
                if device == "cpu":
                    ratio = f"{r['wall_s'] / (floors[name]['floor_s_per_window'] * r['windows']):>6.2f}"
                    timed.append((f"{name} {hours:g} h, whole prediction", name, r["wall_s"] / r["windows"]))
                line = (
                    f"{name:>10} {hours:>8g} h {device:>7} {r['amp']:>5} {r['windows']:>8d} "
                    f"{r['wall_s']:>8.1f} {r['windows'] / r['wall_s']:>7.1f} {r['rss_gb']:>8.2f} {ratio:>6}"
                )
                print(line + ("  " + ", ".join(f"{t:.1f}" for t in pre_s) if pre_s else ""), flush=True)
                model_s = r["model_s"] - r["compile_s"]
                rest_s = r["wall_s"] - r["model_s"]
                print(
                    f"{'':>12}in that run: the model {model_s:.1f} s ({r['windows'] / model_s:.1f} "
                    f"windows/s) + compiling {r['compile_s']:.1f} s; the rest {rest_s:.1f} s (reading, "
                    "preprocessing not overlapped with the model, events, files, figure)",
                    flush=True,
                )
                if device == "cpu":
                    timed.append((f"{name} {hours:g} h, the model in that run", name, model_s / r["windows"]))
                shutil.rmtree(out, ignore_errors=True)
    if args.profile:
        for name in args.models:
            for device in devices:
                r = model_only(checkpoints[name], device, args)
                ratio = ""
                if device == "cpu":
                    ratio = (
                        f", {1 / (r['windows_per_s'] * floors[name]['floor_s_per_window']):.2f} x the floor"
                    )
                    timed.append((f"{name} alone", name, 1 / r["windows_per_s"]))
                print(
                    f"{name} alone on {device} ({r['amp']}, "
                    f"{'compiled' if r['compiled'] else 'not compiled'}): "
                    f"{r['windows_per_s']:.1f} windows/s, {21600 / r['windows_per_s']:.0f} s for 24 h{ratio}",
                    flush=True,
                )
    if timed:
        # The floor again, at the end: this machine's rates drift within a run (a VM's neighbours), so
        # each CPU figure is also put against the floor measured after it; both ratios are printed.
        after = {name: compute_floor(args.batch_size, name) for name in args.models}
        for name in args.models:
            print_floor(name, after[name], " (measured again after the runs)")
        for label, name, s_per_window in timed:
            before_ratio = s_per_window / floors[name]["floor_s_per_window"]
            after_ratio = s_per_window / after[name]["floor_s_per_window"]
            print(f"{label}: {before_ratio:.2f} x the floor before, {after_ratio:.2f} x the floor after")
    print("goals: 24 h in < 120 s on the CPU, < 10 s on one H200; within 1.3 x the floor (issue 16)")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
