"""One pretraining run: config, set-up (resume included), the epoch loop and its checkpoints.

:func:`setup_run` and :func:`train` are the two phases ``pretrain/pretrain_main.py`` hands to
:func:`runtime.entry.run_entry`; the epoch itself is in :mod:`pretrain.engine` (M4CEA) or
:mod:`pretrain.engine_labram` (LaBraM's tokenizer and masked code prediction, set up by
:mod:`pretrain.run_labram`), chosen by the family of ``model.name``. See ``pretrain/pretrain_main.py``
for what a run writes.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml
from timm.optim import param_groups_weight_decay

from models import OVERRIDE_KEYS, create_model_from_config, get_input_contract, load_official_state_dict
from models.attention import configure_attention, use_fused_attention
from pretrain.data import PretrainDataset, build_pretrain_loader
from pretrain.engine import PRETRAIN_TARGETS, EngineSettings, magnitude_statistics, train_one_epoch
from pretrain.masking import num_masked_tokens
from pretrain.run_labram import FAMILY_DEFAULTS, build_labram_parts, model_family
from runtime.amp import AMP_DTYPES
from runtime.checkpoint import load_checkpoint, restore_training_state, save_checkpoint
from runtime.config import CONFIG_DIR, ConfigError, UsageError, check_values, load_config, save_config
from runtime.distributed import DistributedContext, all_gather_object, init_distributed
from runtime.files import remove_temporaries
from runtime.logging import JsonLinesWriter, create_summary_writer, setup_logging
from runtime.optim import build_lr_scheduler, steps_per_accumulation
from runtime.seeding import get_rng_state, seed_everything, set_rng_state

__all__ = [
    "DEFAULT_CONFIG",
    "PretrainRun",
    "build_model",
    "build_optimizer",
    "check_config",
    "resolve_config",
    "setup_run",
    "train",
]

logger = logging.getLogger("pretrain.run")

#: The pretraining schema and defaults.
DEFAULT_CONFIG = CONFIG_DIR / "pretrain" / "m4cea_base.yaml"


def _model_name(args: argparse.Namespace):
    """``model.name`` as ``--set`` or ``--config`` give it (None when neither does)."""
    for text in reversed(list(args.overrides)):
        key, sep, value = text.partition("=")
        if sep and key.strip() == "model.name":
            return value.strip()
    if args.config is not None and Path(args.config).is_file():
        try:
            data = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
        except yaml.YAMLError:
            return None  # load_config reports it
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            return data["model"].get("name")
    return None


def resolve_config(args: argparse.Namespace) -> dict:
    """Resolve the config: the family's defaults, ``--config``, ``--set``, then ``--epochs``.

    The family of ``model.name`` (from ``--set`` or ``--config``) chooses the defaults and schema:
    ``m4cea_base.yaml`` (also when no name is given), ``vqnsp_base.yaml`` (LaBraM's tokenizer) or
    ``labram_base.yaml`` (LaBraM's masked EEG modelling).

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
    return load_config(FAMILY_DEFAULTS[model_family(_model_name(args))], args.config, overrides)


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
    "runtime.amp": (lambda v: v in AMP_DTYPES, f"one of {list(AMP_DTYPES)}"),
    "runtime.seed": (lambda v: v >= 0, ">= 0"),
    "runtime.fused_attn": (lambda v: v is None or isinstance(v, bool), "null, true or false"),
    "pretrain.target": (lambda v: v in PRETRAIN_TARGETS, f"one of {list(PRETRAIN_TARGETS)}"),
}


def _flatten(cfg: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_config(cfg: dict) -> None:
    """Refuse nulls where a value is needed and values out of range (the schema checks types only).

    Raises
    ------
    ConfigError
        Naming the key, the allowed values and the value given.
    """
    flat = _flatten(cfg)
    nullable = _NULLABLE_KEYS
    if model_family(cfg["model"]["name"]) != "m4cea":  # LaBraM family: null keeps the registry's value
        nullable = nullable | {f"model.{k}" for k in cfg["model"] if k != "name"}
    for key, value in flat.items():
        if value is None and key not in nullable:
            raise ConfigError(f"Invalid value for the config key '{key}': a value is needed, but got null.")
    check_values(cfg, {k: v for k, v in _VALUE_CHECKS.items() if k in flat})  # per family's schema


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


@dataclass
class PretrainRun:
    """Everything the epoch loop needs, built by :func:`setup_run`."""

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
    settings: Any  # EngineSettings (M4CEA) or pretrain.engine_labram.LabramSettings
    train_epoch: Any  # the family's train_one_epoch with its settings bound
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


def setup_run(args: argparse.Namespace) -> PretrainRun:
    """The run set-up: config, resume, data, model, optimiser, loader (``run_entry``'s setup phase)."""
    cfg = resolve_config(args)
    check_config(cfg)
    output = Path(args.output)
    saved = sorted(output.glob("checkpoint-*.pth"))  # checkpoint-last.pth sorts after the numbered ones
    if args.resume is None and (output / "metrics.jsonl").exists() and saved:
        raise UsageError(
            f"The output folder {output} already holds a run (metrics.jsonl, {len(saved)} checkpoint(s)): "
            f"choose another folder, or pass --resume {saved[-1]} to continue it."
        )
    try:  # the user's --resume file: unreadable or foreign is bad input
        checkpoint = load_checkpoint(args.resume) if args.resume is not None else None
    except ValueError as err:
        raise UsageError(f"{err} (--resume)") from None

    ctx = init_distributed(cfg["runtime"]["device"])
    setup_logging(ctx.rank, output if ctx.is_main else None)
    device = ctx.device
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    accum = steps_per_accumulation(
        cfg["optim"]["batch_size"], cfg["optim"]["micro_batch_size"], ctx.world_size
    )

    amp = (
        cfg["runtime"]["amp"] if device.type == "cuda" else ("bf16" if cfg["runtime"]["amp_cpu"] else "fp32")
    )
    seed = cfg["runtime"]["seed"]
    if model_family(cfg["model"]["name"]) != "m4cea":  # LaBraM's tokenizer or masked EEG modelling
        parts = build_labram_parts(
            cfg, args.data, rank=ctx.rank, accum=accum, amp_dtype=AMP_DTYPES[amp], device=device
        )
        model, dataset, settings, train_epoch = parts.model, parts.dataset, parts.settings, parts.train_epoch
    else:
        model, dataset, settings = _m4cea_parts(cfg, args, ctx.rank, accum, AMP_DTYPES[amp])
        train_epoch = partial(train_one_epoch, settings=settings)
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
        raise UsageError(
            f"The data folder {args.data} holds {len(dataset)} windows, fewer than one optimiser step of "
            f"optim.batch_size={cfg['optim']['batch_size']} windows: use more data or a smaller batch size."
        )

    model.to(device)
    configure_attention(model, use_fused_attention(device, cfg["runtime"]["fused_attn"]))
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
        try:
            start_epoch, step = restore_training_state(
                checkpoint,
                model=model,
                optimizer=optimizer,
                scaler=scaler,
                load_model_state=load_official_state_dict,
                source=str(args.resume),
            )
        except ValueError as err:  # a checkpoint of another model or optimiser: bad --resume
            raise UsageError(str(err)) from None
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
    return PretrainRun(
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
        train_epoch=train_epoch,
        start_epoch=start_epoch,
        step=step,
        output=output,
    )


def train(run: PretrainRun) -> list[dict]:
    """The epoch loop with its checkpoints; the metrics of each epoch run."""
    cfg, ctx = run.cfg, run.ctx
    epochs = cfg["optim"]["epochs"]
    if ctx.is_main:
        save_config(cfg, run.output / "config.yaml")
        remove_temporaries(run.output, "checkpoint-*.pth")  # of a run killed while saving
    metrics_log = JsonLinesWriter(run.output / "metrics.jsonl", enabled=ctx.is_main)
    # Lines of epochs the checkpoint does not hold (a kill between a line and its checkpoint): this run
    # repeats them. Records number epochs from 1, so the checkpoint's epochs done is the last one kept.
    dropped = metrics_log.truncate_after(run.start_epoch)
    if dropped:
        logger.warning(
            "Removed %d line(s) of %s: epochs after the %d the checkpoint holds, which this run repeats.",
            dropped,
            metrics_log.path,
            run.start_epoch,
        )
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
            metrics = run.train_epoch(
                run.model,
                run.loader,
                run.optimizer,
                ctx.device,
                epoch,
                step=step,
                lr_scheduler=run.scheduler,
                scaler=run.scaler,
                ctx=ctx,
                log_writer=log_writer,
            )
            step = metrics["step"]
            record = {"epoch": epoch + 1, **metrics, "time_s": time.perf_counter() - start}
            metrics_log.write(record)
            history.append(record)
            logger.info(
                "epoch %d/%d: %s",
                epoch + 1,
                epochs,
                ", ".join(
                    f"{k} {v:.5g}" for k, v in metrics.items() if k not in ("n_steps", "step", "grad_norm")
                ),
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


def _m4cea_parts(cfg: dict, args: argparse.Namespace, rank: int, accum: int, amp_dtype) -> tuple:
    """Model, dataset and engine settings of an M4CEA run."""
    seed = cfg["runtime"]["seed"]
    seed_everything(seed)  # identical initial weights on every rank
    model = build_model(cfg)
    seed_everything(seed + rank)  # dropout / drop-path differ between ranks
    dataset = PretrainDataset(
        args.data,
        get_input_contract(cfg["model"]),
        n_chans=model.n_chans,
        n_times=model.n_times,
        n_tokens=model.n_tokens,
    )
    settings = EngineSettings(
        micro_batch_size=cfg["optim"]["micro_batch_size"],
        accum_steps=accum,
        n_tokens=model.n_tokens,
        patch_samples=model.patch_samples,
        n_masked=num_masked_tokens(model.n_tokens, cfg["masking"]["mask_ratio"]),
        strategy=cfg["masking"]["strategy"],
        loss_tokens=cfg["loss"]["tokens"],
        target=cfg["pretrain"]["target"],
        target_norm=cfg["loss"]["target_norm"],
        **_magnitude_statistics(cfg, dataset, model.patch_samples),
        clip_grad=cfg["optim"]["clip_grad"],
        amp_dtype=amp_dtype,
        seed=seed,
        log_every=cfg["logging"]["log_every"],
    )
    return model, dataset, settings


#: Windows (evenly spaced over the data folder) whose targets give the loss.target_norm statistics.
TARGET_STATS_WINDOWS = 256


def _magnitude_statistics(cfg: dict, dataset: PretrainDataset, patch_samples: int) -> dict:
    """``magnitude_mean``/``magnitude_std`` of the engine for ``loss.target_norm: frequency``.

    Computed on every rank from the same evenly spaced windows of the data folder (at most
    :data:`TARGET_STATS_WINDOWS`), so that every rank, world size and resume normalises alike.
    """
    if cfg["loss"]["target_norm"] != "frequency" or cfg["pretrain"]["target"] != "spectrum":
        return {}
    n = min(TARGET_STATS_WINDOWS, len(dataset))
    indices = sorted({round(i * (len(dataset) - 1) / max(n - 1, 1)) for i in range(n)})
    mean, std = magnitude_statistics((dataset[i][0] for i in indices), patch_samples)
    logger.info("Magnitude targets standardised per frequency bin with the statistics of %d windows.", n)
    return dict(magnitude_mean=mean, magnitude_std=std)
