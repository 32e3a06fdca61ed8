"""Pretrain M4CEA with knowledge-guided masking: one process (CPU or one GPU) or ``torchrun`` DDP.

Usage::

    python pretrain/pretrain_main.py --config configs/pretrain/m4cea_base.yaml --data DIR --output DIR \\
        [--epochs N] [--resume CKPT] [--set key=value ...]
    torchrun --nproc_per_node=8 pretrain/pretrain_main.py --config configs/pretrain/m4cea_base.yaml ...

``DIR`` (``--data``) is a preprocessing output folder (``manifest.csv`` + one pickle per window).
The output folder receives ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one line per
epoch, averaged over ranks), ``log.txt``, ``tensorboard/`` and the checkpoints
``checkpoint-NNNN.pth`` (NNNN = epochs done) and ``checkpoint-last.pth``.

Exit status 2 on a usage or config error (unknown key, wrong type, missing file, data of another
shape, a batch size the accumulation cannot reach...), with the message on stderr.

Layout after MAE's ``main_pretrain.py`` (facebookresearch/mae): arguments, setup, epoch loop,
checkpoints here; the epoch itself in :mod:`pretrain.engine`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script (python pretrain/pretrain_main.py, torchrun ...): put the repo root on the path.
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from timm.optim import param_groups_weight_decay  # noqa: E402

from models import OVERRIDE_KEYS, create_model_from_config, load_official_state_dict  # noqa: E402
from pretrain.data import PretrainDataset, build_pretrain_loader  # noqa: E402
from pretrain.engine import EngineSettings, magnitude_statistics, train_one_epoch  # noqa: E402
from pretrain.masking import num_masked_tokens  # noqa: E402
from runtime.checkpoint import load_checkpoint, restore_training_state, save_checkpoint  # noqa: E402
from runtime.config import CONFIG_DIR, ConfigError, add_override_argument, load_config, save_config  # noqa: E402
from runtime.distributed import (  # noqa: E402
    DistributedContext,
    all_gather_object,
    init_distributed,
)
from runtime.entry import USAGE_ERRORS, run_entry  # noqa: E402,F401 (USAGE_ERRORS re-exported)
from runtime.logging import JsonLinesWriter, create_summary_writer, setup_logging  # noqa: E402
from runtime.optim import build_lr_scheduler, steps_per_accumulation  # noqa: E402
from runtime.seeding import get_rng_state, seed_everything, set_rng_state  # noqa: E402

__all__ = [
    "build_model",
    "build_optimizer",
    "configure_attention",
    "get_args_parser",
    "main",
    "resolve_config",
]

logger = logging.getLogger("pretrain.pretrain_main")

#: The pretraining schema and defaults.
DEFAULT_CONFIG = CONFIG_DIR / "pretrain" / "m4cea_base.yaml"

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line arguments of the pretraining entry point."""
    parser = argparse.ArgumentParser(
        "pretrain_main.py",
        description="Pretrain M4CEA (knowledge-guided masked spectrum reconstruction) "
        "on a preprocessing output folder.",
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (default: %(default)s)")
    parser.add_argument("--data", required=True, help="preprocessing output folder (manifest.csv + pickles)")
    parser.add_argument("--output", required=True, help="run folder: config, logs, checkpoints")
    parser.add_argument("--epochs", type=int, default=None, help="number of epochs (overrides optim.epochs)")
    parser.add_argument("--resume", default=None, help="checkpoint to continue from (checkpoint-*.pth)")
    add_override_argument(parser, "optim.base_lr=5e-4 model.depth=6")
    return parser


def resolve_config(args: argparse.Namespace) -> dict:
    """Resolve the config: defaults (m4cea_base.yaml), ``--config``, ``--set``, then ``--epochs``.

    Raises
    ------
    FileNotFoundError
        If the config file does not exist.
    ConfigError
        On an unknown key, a value of the wrong type or invalid YAML.
    """
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"optim.epochs={args.epochs}")
    return load_config(DEFAULT_CONFIG, args.config, overrides)


#: Config keys that may be null (the model overrides: null keeps the registry's value).
_NULLABLE_KEYS = {f"model.{k}" for k in OVERRIDE_KEYS} | {"optim.clip_grad", "runtime.fused_attn"}

#: Value checks that the schema's type checks cannot express: key -> (predicate, allowed values).
_VALUE_CHECKS = {
    "optim.epochs": (lambda v: v >= 1, ">= 1"),
    "optim.warmup_epochs": (lambda v: v >= 0, ">= 0"),
    "optim.batch_size": (lambda v: v >= 1, ">= 1"),
    "optim.micro_batch_size": (lambda v: v >= 1, ">= 1"),
    "optim.base_lr": (lambda v: v > 0, "> 0"),
    "optim.min_lr": (lambda v: v >= 0, ">= 0"),
    "optim.weight_decay": (lambda v: v >= 0, ">= 0"),
    "optim.betas": (
        lambda v: len(v) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in v),
        "[beta1, beta2] in [0, 1)",
    ),
    "optim.clip_grad": (lambda v: v is None or v >= 0, "null or >= 0"),
    "data.num_workers": (lambda v: v >= 0, ">= 0"),
    "data.prefetch_factor": (lambda v: v >= 1, ">= 1"),
    "checkpoint.every_epochs": (lambda v: v >= 1, ">= 1"),
    "logging.log_every": (lambda v: v >= 1, ">= 1"),
    "runtime.amp": (lambda v: v in _AMP_DTYPES, f"one of {list(_AMP_DTYPES)}"),
    "runtime.seed": (lambda v: v >= 0, ">= 0"),
    "runtime.fused_attn": (lambda v: v is None or isinstance(v, bool), "null, true or false"),
}


def _flatten(cfg: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_config(cfg: dict) -> None:
    """Refuse nulls where a value is needed and values out of range (the schema checks types only).

    Raises
    ------
    ConfigError
        Naming the key, the allowed values and the value given.
    """
    flat = _flatten(cfg)
    for key, value in flat.items():
        if value is None and key not in _NULLABLE_KEYS:
            raise ConfigError(f"Invalid value for the config key '{key}': a value is needed, but got null.")
    for key, (ok, allowed) in _VALUE_CHECKS.items():
        if not ok(flat[key]):
            raise ConfigError(
                f"Invalid value for the config key '{key}'. Allowed values are {allowed}, "
                f"but got {flat[key]!r} instead."
            )


def build_model(cfg: dict) -> torch.nn.Module:
    """Build the pretraining model named in ``cfg["model"]`` with its non-null overrides.

    Raises
    ------
    ValueError
        If the model name is not registered or an override is invalid.
    """
    return create_model_from_config(cfg["model"], head="pretrain")


def build_optimizer(model: torch.nn.Module, cfg: dict) -> torch.optim.AdamW:
    """AdamW with the paper's settings; no weight decay on biases, norms and ``model.no_weight_decay()``.

    The learning rate is ``base_lr * batch_size / 256`` (the schedule then scales it per step).
    Parameter groups from ``timm.optim.param_groups_weight_decay``; torch's fused AdamW kernel
    (CPU and CUDA).
    """
    optim = cfg["optim"]
    no_decay = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    groups = param_groups_weight_decay(model, optim["weight_decay"], no_weight_decay_list=no_decay)
    lr = optim["base_lr"] * optim["batch_size"] / 256
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(optim["betas"]), eps=optim["eps"], fused=True)


def configure_attention(model: torch.nn.Module, fused: bool) -> int:
    """Switch the model's timm attention layers between fused and explicit attention.

    ``fused=True``: ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient
    kernels on GPU). ``fused=False``: the explicit ``softmax(q k^T / sqrt(d)) v`` of the official
    code, which is faster on CPU for M4CEA's 25-dimensional heads (measured on a 2-core AMD EPYC:
    batch 16 with bf16 autocast 16.7 vs 10.4 samples/s; see scripts/bench_train.py). Both compute
    the same function.

    Parameters
    ----------
    model : torch.nn.Module
    fused : bool

    Returns
    -------
    n_layers : int
        Attention layers switched (modules with timm's ``fused_attn`` attribute).
    """
    n_layers = 0
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = fused
            n_layers += 1
    return n_layers


@dataclass
class _Run:
    """Everything the epoch loop needs, built by :func:`_setup`."""

    args: argparse.Namespace
    cfg: dict
    ctx: DistributedContext
    model: torch.nn.Module  # wrapped (DDP / compile) for training
    raw_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # timm.scheduler.CosineLRScheduler
    scaler: torch.amp.GradScaler
    loader: Any
    sampler: Any
    settings: EngineSettings
    start_epoch: int
    step: int
    output: Path


def _config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += _config_differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            keys.append(f"{prefix}{key}")
    return keys


def _setup(args: argparse.Namespace) -> _Run:
    cfg = resolve_config(args)
    _check_config(cfg)
    output = Path(args.output)
    if args.resume is None and (output / "metrics.jsonl").exists():
        raise ValueError(
            f"The output folder {output} already holds a run (metrics.jsonl): choose another folder, or pass "
            "--resume CHECKPOINT to continue it."
        )
    checkpoint = load_checkpoint(args.resume) if args.resume is not None else None

    ctx = init_distributed(cfg["runtime"]["device"])
    setup_logging(ctx.rank, output if ctx.is_main else None)
    device = ctx.device
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    accum = steps_per_accumulation(
        cfg["optim"]["batch_size"], cfg["optim"]["micro_batch_size"], ctx.world_size
    )

    seed = cfg["runtime"]["seed"]
    seed_everything(seed)  # identical initial weights on every rank
    model = build_model(cfg)
    seed_everything(seed + ctx.rank)  # dropout / drop-path differ between ranks

    dataset = PretrainDataset(
        args.data, n_chans=model.n_chans, n_times=model.n_times, n_tokens=model.n_tokens
    )
    loader, sampler = build_pretrain_loader(
        dataset,
        micro_batch_size=cfg["optim"]["micro_batch_size"],
        rank=ctx.rank,
        world_size=ctx.world_size,
        seed=seed,
        num_workers=cfg["data"]["num_workers"],
        pin_memory=cfg["data"]["pin_memory"] and device.type == "cuda",
        prefetch_factor=cfg["data"]["prefetch_factor"],
    )
    steps_per_epoch = len(loader) // accum
    if steps_per_epoch == 0:
        raise ValueError(
            f"The data folder {args.data} holds {len(dataset)} windows, fewer than one optimiser step of "
            f"optim.batch_size={cfg['optim']['batch_size']} windows: use more data or a smaller batch size."
        )

    amp = (
        cfg["runtime"]["amp"] if device.type == "cuda" else ("bf16" if cfg["runtime"]["amp_cpu"] else "fp32")
    )
    settings = EngineSettings(
        micro_batch_size=cfg["optim"]["micro_batch_size"],
        accum_steps=accum,
        n_tokens=model.n_tokens,
        patch_samples=model.patch_samples,
        n_masked=num_masked_tokens(model.n_tokens, cfg["masking"]["mask_ratio"]),
        strategy=cfg["masking"]["strategy"],
        loss_tokens=cfg["loss"]["tokens"],
        target_norm=cfg["loss"]["target_norm"],
        **_magnitude_statistics(cfg, dataset, model.patch_samples),
        clip_grad=cfg["optim"]["clip_grad"],
        amp_dtype=_AMP_DTYPES[amp],
        seed=seed,
        log_every=cfg["logging"]["log_every"],
    )

    model.to(device)
    fused_attn = cfg["runtime"]["fused_attn"]
    configure_attention(model, device.type == "cuda" if fused_attn is None else fused_attn)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_lr_scheduler(optimizer, cfg, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    start_epoch, step = 0, 0
    if checkpoint is not None:
        changed = _config_differences(checkpoint.get("config") or {}, cfg)
        if changed:
            logger.warning(
                "Resuming with a config that differs from the checkpoint's in: %s", ", ".join(changed)
            )
        start_epoch, step = restore_training_state(
            checkpoint,
            model=model,
            optimizer=optimizer,
            scaler=scaler,
            load_model_state=load_official_state_dict,
            source=str(args.resume),
        )
        rng = checkpoint.get("rng") or []
        if len(rng) == ctx.world_size:
            set_rng_state(rng[ctx.rank])
        else:
            logger.warning(
                "The checkpoint holds RNG states of %d rank(s), this run has %d: dropout is reseeded.",
                len(rng),
                ctx.world_size,
            )
        logger.info("Resumed from %s: epoch %d, optimiser step %d.", args.resume, start_epoch, step)

    raw_model = model
    if cfg["runtime"]["compile"]:
        model = torch.compile(model)
    if ctx.is_distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[ctx.local_rank] if device.type == "cuda" else None,
            gradient_as_bucket_view=True,
        )
    n_params = sum(p.numel() for p in raw_model.parameters())
    logger.info(
        "Model %s (%.2f M parameters) on %s x %d; %d windows, %d optimiser steps per epoch of %d windows "
        "(%d x %d micro-steps x %d ranks), lr %.3g, autocast %s.",
        cfg["model"]["name"],
        n_params / 1e6,
        device,
        ctx.world_size,
        len(dataset),
        steps_per_epoch,
        cfg["optim"]["batch_size"],
        settings.micro_batch_size,
        accum,
        ctx.world_size,
        optimizer.param_groups[0]["initial_lr"],
        amp,
    )
    return _Run(
        args=args,
        cfg=cfg,
        ctx=ctx,
        model=model,
        raw_model=raw_model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        loader=loader,
        sampler=sampler,
        settings=settings,
        start_epoch=start_epoch,
        step=step,
        output=output,
    )


def _train(run: _Run) -> list[dict]:
    cfg, ctx = run.cfg, run.ctx
    epochs = cfg["optim"]["epochs"]
    if ctx.is_main:
        save_config(cfg, run.output / "config.yaml")
    metrics_log = JsonLinesWriter(run.output / "metrics.jsonl", enabled=ctx.is_main)
    log_writer = create_summary_writer(
        run.output / "tensorboard", enabled=ctx.is_main and cfg["logging"]["tensorboard"]
    )
    history = []
    step = run.step
    try:
        if run.start_epoch >= epochs:
            logger.info(
                "Nothing to do: the checkpoint already finished %d of %d epochs.", run.start_epoch, epochs
            )
        for epoch in range(run.start_epoch, epochs):
            run.sampler.set_epoch(epoch)
            start = time.perf_counter()
            metrics = train_one_epoch(
                run.model,
                run.loader,
                run.optimizer,
                ctx.device,
                epoch,
                settings=run.settings,
                step=step,
                lr_scheduler=run.scheduler,
                scaler=run.scaler,
                ctx=ctx,
                log_writer=log_writer,
            )
            step = metrics["step"]
            record = {"epoch": epoch, **metrics, "time_s": time.perf_counter() - start}
            metrics_log.write(record)
            history.append(record)
            logger.info(
                "epoch %d/%d: loss %.5f (magnitude %.5f, phase %.5f), lr %.3g, %.1f samples/s",
                epoch + 1,
                epochs,
                metrics["loss"],
                metrics["loss_magnitude"],
                metrics["loss_phase"],
                metrics["lr"],
                metrics["samples_per_s"],
            )
            done = epoch + 1
            numbered = done % cfg["checkpoint"]["every_epochs"] == 0 or done == epochs
            if numbered or cfg["checkpoint"]["save_last"]:
                rng = all_gather_object(get_rng_state())  # collective: every rank takes part
                if ctx.is_main:
                    paths = ([f"checkpoint-{done:04d}.pth"] if numbered else []) + (
                        ["checkpoint-last.pth"] if cfg["checkpoint"]["save_last"] else []
                    )
                    for name in paths:
                        save_checkpoint(
                            run.output / name,
                            model=run.raw_model,
                            optimizer=run.optimizer,
                            scaler=run.scaler,
                            epoch=epoch,
                            step=step,
                            config=cfg,
                            rng=rng,
                            data=str(run.args.data),
                        )
                    logger.info("Saved %s", ", ".join(str(run.output / p) for p in paths))
    finally:
        if log_writer is not None:
            log_writer.close()
    return history


#: Windows (evenly spaced over the data folder) whose targets give the loss.target_norm statistics.
TARGET_STATS_WINDOWS = 256


def _magnitude_statistics(cfg: dict, dataset: PretrainDataset, patch_samples: int) -> dict:
    """``magnitude_mean``/``magnitude_std`` of the engine for ``loss.target_norm: frequency``.

    Computed on every rank from the same evenly spaced windows of the data folder (at most
    :data:`TARGET_STATS_WINDOWS`), so that every rank, world size and resume normalises alike.
    """
    if cfg["loss"]["target_norm"] != "frequency":
        return {}
    n = min(TARGET_STATS_WINDOWS, len(dataset))
    indices = sorted({round(i * (len(dataset) - 1) / max(n - 1, 1)) for i in range(n)})
    mean, std = magnitude_statistics((dataset[i][0] for i in indices), patch_samples)
    logger.info("Magnitude targets standardised per frequency bin with the statistics of %d windows.", n)
    return dict(magnitude_mean=mean, magnitude_std=std)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run pretraining with command-line arguments ``argv`` (default ``sys.argv[1:]``).

    Returns
    -------
    history : list of dict
        The metrics of each epoch run (also in ``OUTPUT/metrics.jsonl``).

    Raises
    ------
    ConfigError, ValueError, TypeError, FileNotFoundError
        On usage and config errors (before training starts).
    FloatingPointError
        If the loss becomes non-finite.
    """
    return run_entry(_setup, _train, get_args_parser().parse_args(argv))


def cli(argv: list[str] | None = None) -> int:
    """Command-line entry: like :func:`main`, but usage/config errors print a message and return 2."""
    args = get_args_parser().parse_args(argv)  # argparse exits with status 2 itself
    return run_entry(_setup, _train, args, prog="pretrain_main.py")


if __name__ == "__main__":
    sys.exit(cli())
