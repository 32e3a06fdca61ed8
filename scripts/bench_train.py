"""Training-step throughput (samples/s) and peak memory of M4CEA pretraining and LaBraM fine-tuning.

Usage::

    python scripts/bench_train.py                      # CPU (2 threads) and, when present, the GPU
    python scripts/bench_train.py --model labram_base  # LaBraM fine-tuning step vs the official-style one
    python scripts/bench_train.py --device cpu --threads 2 --batch-size 16 --steps 6
    python scripts/bench_train.py --device cuda --gpu-batch-size 256

One training step is what :func:`pretrain.engine.train_one_epoch` does per optimiser step:
knowledge-guided masking (Gumbel top-k), rFFT targets, forward, loss, backward, gradient clipping,
AdamW. With ``--model labram_base`` the step is LaBraM's fine-tuning step (:func:`labram_finetune_step`:
forward, label-smoothed cross-entropy, backward, AdamW with layer decay). Data come from memory (no
loader), so the figure is the step itself.

Variants, each measured in its own process (so that the CPU peak resident memory is its own):

- ``*-reference``: an official-style step, as the official M4CEA code runs it: fp32, explicit
  attention (softmax of q k^T), masks drawn per sample on the host with
  ``np.random.choice(n_tokens, k, p=w, replace=False)``, torch's default AdamW;
- ``cpu-fp32``: this project's step in fp32 (device-side masks, fused AdamW, explicit attention,
  which is faster than ``scaled_dot_product_attention`` on CPU for 25-dimensional heads);
- ``cpu-bf16``: the same with bf16 autocast (``runtime.amp_cpu: true``);
- ``cpu-bf16-compile``: the same under ``torch.compile`` (``runtime.compile: true``); the
  compilation (about 30 s) happens in the warm-up steps, which are not timed;
- ``cuda-bf16``, ``cuda-bf16-compile``: fused attention and bf16 autocast on a GPU, when present.

The figure is the median over the timed steps. Peak memory: the process's peak resident set size
on CPU (``ru_maxrss``, which includes the Python and torch runtime), ``torch.cuda.max_memory_allocated``
on GPU. On GPU the model FLOPs utilisation is also printed, from the analytic count of
:func:`model_flops_per_sample` against ``--peak-tflops`` (default: H200/H100 dense bf16, 989).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: repo root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

VARIANTS = {
    "cpu-reference": dict(device="cpu", amp=None, fused_attn=False, compile=False, official=True),
    "cpu-fp32": dict(device="cpu", amp=None, fused_attn=False, compile=False, official=False),
    "cpu-bf16": dict(device="cpu", amp=torch.bfloat16, fused_attn=False, compile=False, official=False),
    "cpu-bf16-compile": dict(
        device="cpu", amp=torch.bfloat16, fused_attn=False, compile=True, official=False
    ),
    "cuda-reference": dict(device="cuda", amp=None, fused_attn=False, compile=False, official=True),
    "cuda-bf16": dict(device="cuda", amp=torch.bfloat16, fused_attn=True, compile=False, official=False),
    "cuda-bf16-compile": dict(
        device="cuda", amp=torch.bfloat16, fused_attn=True, compile=True, official=False
    ),
}

#: The official implementation's throughput on the project's CPU machines (issue 3): batch 16, 2 threads.
OFFICIAL_CPU_SAMPLES_PER_S = 7.4


def model_flops_per_sample(model: torch.nn.Module) -> float:
    """Training FLOPs per window: 3 x the forward's (backward = 2 x forward), matmuls and convolutions.

    The forward counts 2 FLOPs per multiply-add of every ``Linear`` and ``Conv2d`` (measured with
    forward hooks on one window) plus the attention products, ``2 * 2 * n_tokens**2 * embed_dim`` per
    block. Elementwise work (norms, GELU, softmax, the optimiser) is left out, as usual for MFU.
    """
    counted = [0]

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Linear):
            counted[0] += 2 * module.in_features * output.numel()
        else:
            fan_in = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            counted[0] += 2 * fan_in * output.numel()

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
    ]
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model(torch.zeros(1, model.n_chans, model.n_times, device=device),
                  torch.zeros(1, model.n_tokens, dtype=torch.bool, device=device))  # fmt: skip
    finally:
        for handle in handles:
            handle.remove()
    attention = model.depth * 4 * model.n_tokens**2 * model.embed_dim
    return 3.0 * (counted[0] + attention)


def _official_masks(weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Per-sample host-side draw as in the official code (the loop is the point of the reference)."""
    mask = np.zeros(weights.shape, dtype=bool)
    for i, w in enumerate(weights):
        mask[i, rng.choice(w.size, k, p=w / w.sum(), replace=False)] = True
    return mask


def _explicit_labram_attention(self, x: torch.Tensor) -> torch.Tensor:
    """The official LaBraM ``Attention.forward`` (modeling_finetune.py): ``softmax(q k^T / sqrt(d)) v``
    written out, in place of :class:`models.labram.Attention`'s ``scaled_dot_product_attention``."""
    batch, n_tokens, dim = x.shape
    bias = None
    if self.q_bias is not None:
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
    qkv = torch.nn.functional.linear(x, self.qkv.weight, bias).reshape(batch, n_tokens, 3, self.num_heads, -1)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    q, k = self.q_norm(q).type_as(v), self.k_norm(k).type_as(v)
    attn = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
    return self.proj_drop(self.proj((attn @ v).transpose(1, 2).reshape(batch, n_tokens, dim)))


def labram_finetune_step(variant: dict, model_name: str, batch_size: int, device: torch.device):
    """One LaBraM fine-tuning step (``finetune.engine``'s work per optimiser step) and its model.

    Classification of 4-s windows at 200 Hz (16 x 800, LaBraM's units), label-smoothed (0.1)
    cross-entropy, backward, AdamW with LaBraM's layer decay (0.65, timm groups by
    ``LaBraM.group_matcher``). The ``*-reference`` variants run it as the official run_class_finetuning.py
    / engine_for_finetuning.py does: explicit softmax attention, torch's default AdamW, fp32 on the CPU
    and fp16 autocast with a gradient scaler on a GPU.
    """
    import types

    from timm.optim import create_optimizer_v2

    from models import create_model
    from models.labram import Attention

    torch.manual_seed(0)
    model = create_model(model_name, head="classification", n_outputs=2).to(device)
    if variant["official"]:
        for module in model.modules():
            if isinstance(module, Attention):
                module.forward = types.MethodType(_explicit_labram_attention, module)
    optimizer = create_optimizer_v2(
        model, opt="adamw", lr=5e-4, weight_decay=0.05, layer_decay=0.65, foreach=None,
        **({} if variant["official"] else {"fused": True}),
    )  # fmt: skip
    step_model = torch.compile(model) if variant["compile"] else model
    amp_dtype = torch.float16 if variant["official"] and device.type == "cuda" else variant["amp"]
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(batch_size, model.n_chans, 800, generator=generator) * 0.3).to(device)
    y = torch.randint(0, 2, (batch_size,), generator=generator).to(device)

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = step_model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y, label_smoothing=0.1)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return model, step


def labram_flops_per_sample(model: torch.nn.Module, n_times: int = 800) -> float:
    """Training FLOPs per window of a LaBraM classifier: 3 x the forward's Linear/Conv2d multiply-adds x 2
    plus ``2 * 2 * n_tokens**2 * embed_dim`` per block of attention (CLS included)."""
    counted = [0]

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Linear):
            counted[0] += 2 * module.in_features * output.numel()
        else:
            fan_in = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            counted[0] += 2 * fan_in * output.numel()

    modules = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    handles = [m.register_forward_hook(hook) for m in modules]
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model(torch.zeros(1, model.n_chans, n_times, device=device))
    finally:
        for handle in handles:
            handle.remove()
    n_tokens = 1 + model.n_chans * (n_times // model.patch_samples)
    embed_dim = model.cls_token.shape[-1]
    return 3.0 * (counted[0] + model.depth * 4 * n_tokens**2 * embed_dim)


def run_variant(name: str, model_name: str, batch_size: int, steps: int, warmup: int, threads: int) -> dict:
    """Time ``steps`` training steps of one variant after ``warmup`` steps; return the figures.

    M4CEA models: a pretraining step; LaBraM models: a fine-tuning step (:func:`labram_finetune_step`).
    """
    from timm.optim import param_groups_weight_decay

    from models import create_model, patch_spectrum
    from models.attention import configure_attention
    from pretrain.engine import reconstruction_loss
    from pretrain.masking import gumbel_topk_mask, num_masked_tokens

    variant = VARIANTS[name]
    torch.set_num_threads(threads)
    device = torch.device(variant["device"])
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    if model_name.startswith("labram"):
        model, step = labram_finetune_step(variant, model_name, batch_size, device)
        return _time_steps(name, model_name, batch_size, steps, warmup, threads, device, step) | {
            "flops_per_sample": labram_flops_per_sample(model)
        }
    torch.manual_seed(0)
    model = create_model(model_name, head="pretrain").to(device)
    configure_attention(model, variant["fused_attn"])
    groups = param_groups_weight_decay(model, 1e-4, no_weight_decay_list=model.no_weight_decay())
    optimizer = torch.optim.AdamW(groups, lr=1e-4, **({} if variant["official"] else {"fused": True}))
    step_model = torch.compile(model) if variant["compile"] else model
    k = num_masked_tokens(model.n_tokens, 0.5)
    amp_dtype = variant["amp"]

    rng = np.random.default_rng(0)
    x = torch.from_numpy(
        rng.standard_normal((batch_size, model.n_chans, model.n_times), dtype=np.float32)
    ).to(device)
    weights_np = rng.dirichlet(np.ones(model.n_tokens), size=batch_size).astype(np.float32)
    weights = torch.from_numpy(weights_np).to(device)
    generator = torch.Generator(device=device).manual_seed(0)

    def step() -> torch.Tensor:
        if variant["official"]:
            mask = torch.from_numpy(_official_masks(weights_np, k, rng)).to(device)
        else:
            mask = gumbel_topk_mask(weights, k, generator=generator)
        with torch.no_grad():
            target_mag, target_phase = patch_spectrum(x, model.patch_samples)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            pred_mag, pred_phase = step_model(x, mask)
        loss_mag, loss_phase = reconstruction_loss(pred_mag, pred_phase, target_mag, target_phase)
        loss = loss_mag + loss_phase
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return _time_steps(name, model_name, batch_size, steps, warmup, threads, device, step) | {
        "flops_per_sample": model_flops_per_sample(model)
    }


def _time_steps(name, model_name, batch_size, steps, warmup, threads, device, step) -> dict:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "variant": name,
        "model": model_name,
        "batch_size": batch_size,
        "threads": threads if device.type == "cpu" else None,
        "steps": steps,
        "samples_per_s": batch_size / statistics.median(times),
        "best_samples_per_s": batch_size / min(times),
        "peak_memory_mib": peak_mib,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser("bench_train.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="m4cea_base")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, default=16, help="batch on the CPU")
    parser.add_argument(
        "--gpu-batch-size", type=int, default=None, help="batch on the GPU (default: --batch-size)"
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps")
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed steps first (compilation happens here)"
    )
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="GPU dense bf16 peak, for the MFU")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=None)
    parser.add_argument("--only", choices=sorted(VARIANTS), help=argparse.SUPPRESS)  # child process
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    if args.only:
        cuda = VARIANTS[args.only]["device"] == "cuda"
        batch = (args.gpu_batch_size or args.batch_size) if cuda else args.batch_size
        print(json.dumps(run_variant(args.only, args.model, batch, args.steps, args.warmup, args.threads)))
        return 0

    variants = args.variants
    if variants is None:
        devices = {"cpu", "cuda"} if args.device == "auto" else {args.device}
        if not torch.cuda.is_available():
            devices.discard("cuda")
        variants = [v for v in VARIANTS if VARIANTS[v]["device"] in devices]
    results = []
    for name in variants:
        cmd = [
            sys.executable, str(Path(__file__).resolve()), "--only", name, "--model", args.model,
            "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--steps", str(args.steps),
            "--warmup", str(args.warmup),
        ]  # fmt: skip
        if args.gpu_batch_size:
            cmd += ["--gpu-batch-size", str(args.gpu_batch_size)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(f"{name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))

    by_name = {r["variant"]: r for r in results}
    print(
        f"{args.model}; CPU: {args.threads} threads. "
        f"Median over {args.steps} steps after {args.warmup} warm-up steps."
    )
    print(
        f"{'variant':<18} {'batch':>5} {'samples/s':>10} {'peak MiB':>9} "
        f"{'vs reference':>13} {'vs official':>12} {'MFU':>6}"
    )
    for r in results:
        ref = by_name.get(f"{r['variant'].split('-')[0]}-reference")
        ratio = f"{r['samples_per_s'] / ref['samples_per_s']:.2f}x" if ref else "-"
        on_cpu = r["variant"].startswith("cpu")
        m4cea = args.model.startswith("m4cea")
        official = f"{r['samples_per_s'] / OFFICIAL_CPU_SAMPLES_PER_S:.2f}x" if on_cpu and m4cea else "-"
        mfu = (
            "-" if on_cpu else f"{r['samples_per_s'] * r['flops_per_sample'] / (args.peak_tflops * 1e12):.1%}"
        )
        print(
            f"{r['variant']:<18} {r['batch_size']:>5} {r['samples_per_s']:>10.2f} "
            f"{r['peak_memory_mib']:>9.0f} "
            f"{ratio:>13} {official:>12} {mfu:>6}"
        )
    if args.model.startswith("m4cea"):
        print(
            f"(official implementation: {OFFICIAL_CPU_SAMPLES_PER_S} samples/s at batch 16 with 2 threads "
            "on this CPU type)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if len(results) == len(variants) else 1


if __name__ == "__main__":
    sys.exit(main())
