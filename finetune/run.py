"""One fine-tuning run: config, set-up, the epoch loop with early stopping, evaluation and outputs.

:func:`setup_run` and :func:`train_and_evaluate` are the two phases ``finetune/finetune_main.py`` hands
to :func:`runtime.entry.run_entry`; the epoch and the evaluation pass are in :mod:`finetune.engine`, the
model and its checkpoints in :mod:`finetune.checkpoints`. See ``finetune/finetune_main.py`` for what a
run does and writes.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score
from timm.optim import create_optimizer_v2

from finetune.checkpoints import (
    BEST_CHECKPOINT,
    PREPROCESS_CONFIG_FILE,
    build_model,
    load_pretrained,
    read_preprocess_config,
    zoo_window,
)
from finetune.data import SAMPLERS, FinetuneDataset, build_eval_loader, build_train_loader
from finetune.engine import EarlyStopping, EngineSettings, balanced_class_weights, evaluate, train_one_epoch
from finetune.event_evaluation import read_events_table
from finetune.evidence import bootstrap_ci, evidence_warnings, split_sizes
from finetune.heads import (
    HEAD_MODES,
    apply_head_mode,
    check_layer_decay,
    head_mode,
    lora_merged_state_dict,
    parameter_counts,
)
from finetune.metrics import evaluate_predictions
from finetune.outputs import (
    PREDICTIONS_FILE,
    RESULTS_FILE,
    plot_confusion_matrix,
    plot_roc,
    split_results,
    write_predictions,
    write_results,
)
from finetune.splits import SPLIT_FILE, SPLIT_NAMES, Split, make_split, read_split_file
from models import get_input_contract
from models.attention import configure_attention, use_fused_attention
from models.zoo import is_zoo_name
from preprocess.adapt import WindowAdapter
from preprocess.segments import load_window, read_manifest
from runtime.amp import AMP_DTYPES
from runtime.checkpoint import load_checkpoint, save_checkpoint
from runtime.config import UsageError, check_values, save_config
from runtime.distributed import DistributedContext, barrier, init_distributed
from runtime.files import remove_outputs, remove_temporaries
from runtime.logging import JsonLinesWriter, create_summary_writer, setup_logging
from runtime.optim import build_lr_scheduler, steps_per_accumulation
from runtime.seeding import seed_everything
from tasks import Task, aggregate, encode_labels, get_task, load_task_config, predict

__all__ = [
    "RUN_OUTPUTS",
    "FinetuneRun",
    "build_optimizer",
    "check_config",
    "resolve_config",
    "run_folder",
    "setup_run",
    "train_and_evaluate",
]

logger = logging.getLogger("finetune.run")

#: Files and folders a run writes; an unfinished run's are removed before a new run starts.
RUN_OUTPUTS = (
    RESULTS_FILE,
    PREDICTIONS_FILE,
    BEST_CHECKPOINT,
    "config.yaml",
    PREPROCESS_CONFIG_FILE,
    "metrics.jsonl",
    "log.txt",
    "confusion_matrix.png",
    "roc.png",
    "tensorboard",
)

_CLASS_WEIGHTS = ("none", "balanced")


def resolve_config(args: argparse.Namespace) -> dict:
    """The resolved config: ``_base.yaml`` <- ``<task>.yaml`` <- ``--config`` <- ``--set`` <- the flags.

    Raises
    ------
    ValueError
        If the task is unknown (the message lists the tasks).
    FileNotFoundError
        If the config file does not exist.
    ConfigError
        On an unknown key, a value of the wrong type or invalid YAML.
    """
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"runtime.seed={args.seed}")
    if args.epochs is not None:
        overrides.append(f"optim.epochs={args.epochs}")
    if args.linear_probe:
        overrides.append("head.linear_probe=true")
    cfg = load_task_config(args.task, args.config, overrides)
    # Paths are set directly: YAML parsing of a --set value would mangle some file names.
    if args.pretrained is not None:
        cfg["model"]["pretrained"] = str(args.pretrained)
    if args.data is not None:
        cfg["data"]["root"] = str(args.data)
    return cfg


def check_config(cfg: dict) -> None:
    """Value checks that the schema's type checks cannot express (split values: finetune.splits)."""
    check_values(
        cfg,
        {
            "optim.epochs": (lambda v: v >= 1, ">= 1"),
            "optim.warmup_epochs": (lambda v: v >= 0, ">= 0"),
            "optim.base_lr": (lambda v: v > 0, "> 0"),
            "optim.min_lr": (lambda v: v >= 0, ">= 0"),
            "optim.weight_decay": (lambda v: v >= 0, ">= 0"),
            "optim.betas": (lambda v: len(v) == 2, "a list of two floats"),
            "optim.layer_decay": (lambda v: 0 < v <= 1, "in (0, 1]"),
            "optim.clip_grad": (lambda v: v is None or v >= 0, ">= 0 or null"),
            "early_stopping.patience": (lambda v: v >= 1, ">= 1"),
            "early_stopping.min_delta": (lambda v: v >= 0, ">= 0"),
            "loss.class_weights": (lambda v: v in _CLASS_WEIGHTS, f"one of {list(_CLASS_WEIGHTS)}"),
            "loss.label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
            "data.sampler": (lambda v: v in SAMPLERS, f"one of {list(SAMPLERS)}"),
            "data.num_workers": (lambda v: v >= 0, ">= 0"),
            "logging.log_every": (lambda v: v >= 1, ">= 1"),
            "runtime.amp": (lambda v: v in AMP_DTYPES, f"one of {list(AMP_DTYPES)}"),
            "runtime.seed": (lambda v: v >= 0, ">= 0"),
            "head.mode": (lambda v: v in HEAD_MODES, f"one of {list(HEAD_MODES)}"),
            "head.lora_rank": (lambda v: v >= 1, ">= 1"),
            "head.lora_alpha": (lambda v: v > 0, "> 0"),
        },
    )


def run_folder(output: str | Path, task: str, seed: int) -> Path:
    """``OUTPUT/<task>/seed<S>``: where one run writes (the layout :mod:`finetune.report` reads)."""
    return Path(output) / task / f"seed{seed}"


def build_optimizer(model: torch.nn.Module, cfg: dict, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with layer-wise lr decay through timm's optimiser factory.

    ``timm.optim.create_optimizer_v2(model, "adamw", layer_decay=...)`` groups the parameters with the
    model's ``group_matcher()`` (embedding, each block, then norm and head) and gives layer ``l`` of
    ``L`` the scale ``layer_decay ** (L - l)`` (``lr_scale``, applied by the timm scheduler); biases, norm
    weights and ``model.no_weight_decay()`` get no weight decay; frozen parameters (linear probing) are
    left out. The peak learning rate is ``base_lr * batch_size / 256`` (paper: 1e-3 * 64 / 256).

    References
    ----------
    Bao et al., "BEiT", ICLR 2022 (layer-wise decay); official M4CEA fine-tuning (AdamW, 1e-3 x 64/256).
    """
    optim = cfg["optim"]
    lr = optim["base_lr"] * optim["batch_size"] / 256
    extra = {"fused": True} if device.type == "cuda" else {}
    return create_optimizer_v2(
        model,
        opt="adamw",
        lr=lr,
        weight_decay=optim["weight_decay"],
        layer_decay=optim["layer_decay"],
        betas=tuple(optim["betas"]),
        eps=optim["eps"],
        **extra,
    )


@dataclass
class FinetuneRun:
    """Everything the epoch loop needs, built by :func:`setup_run`."""

    args: argparse.Namespace
    cfg: dict
    ctx: DistributedContext
    task: Task
    rows: list
    split: Split
    datasets: dict
    model: torch.nn.Module  # wrapped (DDP / compile) for training
    raw_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    train_loader: Any
    train_sampler: Any
    eval_loaders: dict
    settings: EngineSettings
    class_weights: torch.Tensor | None
    pretrained: dict | None
    run_dir: Path
    preprocess_config: dict | None = None


def _data_root(cfg: dict) -> Path:
    root = cfg["data"]["root"]
    if root is None:
        raise UsageError(
            f"No data for the task '{cfg['task']['name']}': pass --data DIR (a labelled preprocessing "
            f"output folder with manifest.csv, from preprocess/preprocess_main.py --events ...), or "
            f"set data.root in a --config file."
        )
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Data folder not found: {root} (--data must be a labelled preprocessing output "
            f"folder with manifest.csv)."
        )
    return root


def _check_split_data(task: Task, split: Split, rows: list) -> None:
    """Before training: labels, units and classes of each split (errors now, not after training)."""
    for name in SPLIT_NAMES:
        part = split.rows(rows, name)
        uniform = np.full((len(part), task.n_classes), 1.0 / task.n_classes)
        units = aggregate(task, part, uniform)  # mixed labels per recording/subject, duplicated windows
        missing = [task.classes[c] for c in range(task.n_classes) if not (units.labels == c).any()]
        if missing:
            logger.warning(
                "The %s split (%d %s units) has no %s unit: metrics that need every class may be "
                "undefined (NaN, with the reason in results.json).",
                name,
                len(units.keys),
                task.unit,
                ", ".join(missing),
            )


def setup_run(args: argparse.Namespace) -> FinetuneRun:
    """The run set-up: config, data, split, model, optimiser, loaders (``run_entry``'s setup phase)."""
    cfg = resolve_config(args)
    check_config(cfg)
    task = get_task(args.task, cfg)
    root = _data_root(cfg)
    seed = cfg["runtime"]["seed"]
    run_dir = run_folder(args.output, task.name, seed)
    if (run_dir / RESULTS_FILE).exists() and not args.overwrite:
        raise UsageError(
            f"The run folder {run_dir} already holds a finished run ({RESULTS_FILE}): pass --overwrite "
            f"to replace it, or choose another --output or --seed."
        )

    ctx = init_distributed(cfg["runtime"]["device"])
    setup_logging(ctx.rank, None)
    device = ctx.device
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")

    rows = read_manifest(root)
    if not rows:
        raise UsageError(f"The manifest {root / 'manifest.csv'} lists no window.")
    encode_labels(rows, task)  # every label one of the task's classes, before anything else
    assignment, assignment_key = (
        read_split_file(root / SPLIT_FILE) if cfg["split"]["protocol"] == "official" else (None, "subject")
    )
    split = make_split(rows, cfg["split"], assignment, assignment_key)
    _check_split_data(task, split, rows)
    accum = steps_per_accumulation(
        cfg["optim"]["batch_size"], cfg["optim"]["micro_batch_size"], ctx.world_size
    )

    zoo = is_zoo_name(cfg["model"]["name"])
    if zoo:  # a braindecode model is built for the stored windows (rate, length, channel names)
        cfg["model"]["zoo_window"] = zoo_window(root, rows)
    seed_everything(seed)  # identical initial weights on every rank
    # LaBraM places channels by name: the stored windows' names go into cfg["model"]["ch_names"].
    model = build_model(cfg, task, load_window(root, rows[0]).get("ch_names"))
    pretrained = None
    if cfg["model"]["pretrained"] is not None:
        pretrained = load_pretrained(model, cfg["model"]["pretrained"])
        logger.info(
            "Loaded %s (new head: %s; unused: %d keys).",
            pretrained["path"],
            ", ".join(pretrained["missing_keys"]),
            len(pretrained["ignored_keys"]),
        )
    seed_everything(seed + ctx.rank)  # drop-path differs between ranks

    adapter, contract = None, None
    n_times = getattr(model, "n_times", None)  # LaBraM takes any length up to its time table
    if zoo:  # the model's own input contract (models/zoo.py), applied to the stored windows
        window = cfg["model"]["zoo_window"]
        n_times = window["n_times_in"]
        adapter = WindowAdapter(model.contract, window["sfreq_in"], n_times)
    else:
        contract = get_input_contract(cfg["model"])
    datasets = {
        name: FinetuneDataset(
            root, split.rows(rows, name), task, model.n_chans, n_times, contract, adapter=adapter
        )
        for name in SPLIT_NAMES
    }
    data_cfg = cfg["data"]
    pin = data_cfg["pin_memory"] and device.type == "cuda"
    micro = cfg["optim"]["micro_batch_size"]
    train_loader, train_sampler = build_train_loader(
        datasets["train"],
        micro_batch_size=micro,
        rank=ctx.rank,
        world_size=ctx.world_size,
        seed=seed,
        sampler=data_cfg["sampler"],
        num_workers=data_cfg["num_workers"],
        pin_memory=pin,
        prefetch_factor=data_cfg["prefetch_factor"],
    )
    eval_loaders = {
        name: build_eval_loader(
            datasets[name],
            batch_size=micro,
            rank=ctx.rank,
            world_size=ctx.world_size,
            num_workers=data_cfg["num_workers"],
            pin_memory=pin,
            prefetch_factor=data_cfg["prefetch_factor"],
            persistent=name == "val",
        )
        for name in ("val", "test")
    }
    steps_per_epoch = len(train_loader) // accum
    if steps_per_epoch == 0:
        raise UsageError(
            f"The training split holds {len(datasets['train'])} windows, fewer than one optimiser step of "
            f"optim.batch_size={cfg['optim']['batch_size']} windows ({ctx.world_size} process(es) x "
            f"{accum} micro-batches of {micro}): use more data or a smaller batch size "
            f"(--set optim.batch_size=N optim.micro_batch_size=N)."
        )

    class_weights = None
    if cfg["loss"]["class_weights"] == "balanced":
        class_weights = balanced_class_weights(datasets["train"].labels, task.n_classes).to(device)
        if data_cfg["sampler"] == "balanced":
            logger.warning(
                "loss.class_weights=balanced with data.sampler=balanced corrects the class imbalance twice."
            )
    mode = head_mode(cfg)
    linear_probe = mode == "linear_probe"
    apply_head_mode(model, cfg)  # freezes the backbone (linear probe) or injects LoRA adapters
    check_layer_decay(model, cfg, cfg["model"]["name"])
    amp = (
        cfg["runtime"]["amp"] if device.type == "cuda" else ("bf16" if cfg["runtime"]["amp_cpu"] else "fp32")
    )
    settings = EngineSettings(
        micro_batch_size=micro,
        accum_steps=accum,
        clip_grad=cfg["optim"]["clip_grad"],
        amp_dtype=AMP_DTYPES[amp],
        label_smoothing=cfg["loss"]["label_smoothing"],
        log_every=cfg["logging"]["log_every"],
        linear_probe=linear_probe,
    )

    model.to(device)
    configure_attention(model, use_fused_attention(device, cfg["runtime"]["fused_attn"]))
    optimizer = build_optimizer(model, cfg, device)
    scheduler = build_lr_scheduler(optimizer, cfg, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    raw_model = model
    if cfg["runtime"]["compile"]:
        model = torch.compile(model)
    if ctx.is_distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.local_rank] if device.type == "cuda" else None
        )

    n_train = sum(p.numel() for p in raw_model.parameters() if p.requires_grad)
    logger.info(
        "Task %s (%s, unit %s): %s split of %d windows: train %d, val %d, test %d. Model %s (%.2f M params, "
        "%.3f M trained%s) on %s x %d; %d optimiser steps per epoch of %d windows (%d x %d micro-steps x %d "
        "ranks), peak lr %.3g, autocast %s.",
        task.name,
        ", ".join(task.classes),
        task.unit,
        split.protocol,
        len(rows),
        *(len(datasets[n]) for n in SPLIT_NAMES),
        cfg["model"]["name"],
        sum(p.numel() for p in raw_model.parameters()) / 1e6,
        n_train / 1e6,
        f", {mode}" if mode != "full" else "",
        device,
        ctx.world_size,
        steps_per_epoch,
        cfg["optim"]["batch_size"],
        micro,
        accum,
        ctx.world_size,
        cfg["optim"]["base_lr"] * cfg["optim"]["batch_size"] / 256,
        amp,
    )
    return FinetuneRun(
        args,
        cfg,
        ctx,
        task,
        rows,
        split,
        datasets,
        model,
        raw_model,
        optimizer,
        scheduler,
        scaler,
        train_loader,
        train_sampler,
        eval_loaders,
        settings,
        class_weights,
        pretrained,
        run_dir,
        read_preprocess_config(root),
    )


class _StateView(torch.nn.Module):
    """A module whose state dict is a given mapping (a LoRA run's merged weights, for save_checkpoint)."""

    def __init__(self, state: dict) -> None:
        super().__init__()
        self._state = state

    def state_dict(self, *args, **kwargs):
        return dict(self._state)


def _window_balanced_accuracy(task: Task, labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Balanced accuracy of the windows (a per-epoch progress figure; the results use the task's unit)."""
    with warnings.catch_warnings():  # a class predicted but absent from the labels: expected early on
        warnings.simplefilter("ignore", category=UserWarning)
        return float(balanced_accuracy_score(labels, predict(task, probabilities)))


def train_and_evaluate(run: FinetuneRun) -> dict | None:
    """The epoch loop, then the best checkpoint evaluated on validation and test (rank 0 writes)."""
    cfg, ctx, task, device = run.cfg, run.ctx, run.task, run.ctx.device
    if ctx.is_main:
        remove_outputs(run.run_dir, RUN_OUTPUTS)  # of an unfinished (or, with --overwrite, finished) run
        remove_temporaries(run.run_dir)  # of a run killed while writing (.checkpoint-best.pth.*.tmp...)
        run.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run.run_dir / "config.yaml")
        if run.preprocess_config is not None:
            save_config(run.preprocess_config, run.run_dir / PREPROCESS_CONFIG_FILE)
        else:
            logger.warning(
                "The data folder %s has no config.yaml: the run does not record how its windows were "
                "preprocessed (finetune/predict.py will assume configs/preprocess/m4cea.yaml).",
                cfg["data"]["root"],
            )
    barrier()
    setup_logging(ctx.rank, run.run_dir if ctx.is_main else None)
    metrics_log = JsonLinesWriter(run.run_dir / "metrics.jsonl", enabled=ctx.is_main)
    log_writer = create_summary_writer(
        run.run_dir / "tensorboard", enabled=ctx.is_main and cfg["logging"]["tensorboard"]
    )
    epochs = cfg["optim"]["epochs"]
    stopping = EarlyStopping(cfg["early_stopping"]["patience"], cfg["early_stopping"]["min_delta"])
    checkpoint_path = run.run_dir / BEST_CHECKPOINT
    amp_dtype = run.settings.amp_dtype
    step, epochs_run = 0, 0
    start = time.perf_counter()
    try:
        for epoch in range(epochs):
            run.train_sampler.set_epoch(epoch)
            epoch_start = time.perf_counter()
            train = train_one_epoch(
                run.model,
                run.train_loader,
                run.optimizer,
                run.scheduler,
                device,
                epoch,
                settings=run.settings,
                step=step,
                class_weights=run.class_weights,
                scaler=run.scaler,
                ctx=ctx,
                log_writer=log_writer,
            )
            step = train["step"]
            val_loss, val_probabilities = evaluate(
                run.model,
                run.eval_loaders["val"],
                device,
                class_weights=run.class_weights,
                amp_dtype=amp_dtype,
            )
            if not math.isfinite(val_loss):
                raise FloatingPointError(
                    f"Non-finite validation loss {val_loss} after epoch {epoch + 1}: lower "
                    f"optim.base_lr or switch off runtime.amp."
                )
            val_bacc = _window_balanced_accuracy(task, run.datasets["val"].labels, val_probabilities)
            epochs_run = epoch + 1
            improved = stopping.update(val_loss, epoch + 1)
            if improved and ctx.is_main:
                merged = lora_merged_state_dict(run.raw_model)  # LoRA: plain layout for predict.py
                extra = {} if merged is None else {"lora_state": run.raw_model.state_dict()}
                save_checkpoint(
                    checkpoint_path,
                    model=_StateView(merged) if merged is not None else run.raw_model,
                    optimizer=run.optimizer,
                    scaler=run.scaler,
                    epoch=epoch,
                    step=step,
                    config=cfg,
                    rng=None,
                    val_loss=val_loss,
                    task=task.name,
                    classes=list(task.classes),
                    preprocess=run.preprocess_config,
                    **extra,
                )
            record = {
                "epoch": epoch + 1,
                **{f"train_{k}": v for k, v in train.items()},
                "val_loss": val_loss,
                "val_balanced_accuracy_window": val_bacc,
                "best": improved,
                "time_s": time.perf_counter() - epoch_start,
            }
            metrics_log.write(record)
            if log_writer is not None:
                log_writer.add_scalar("val/loss", val_loss, step)
                log_writer.add_scalar("val/balanced_accuracy_window", val_bacc, step)
            logger.info(
                "epoch %d/%d: train loss %.4f (accuracy %.3f), val loss %.4f (window balanced accuracy "
                "%.3f)%s, lr %.3g",
                epoch + 1,
                epochs,
                train["loss"],
                train["accuracy"],
                val_loss,
                val_bacc,
                " *best*" if improved else "",
                train["lr"],
            )
            if stopping.should_stop:
                logger.info(
                    "Early stopping after epoch %d: no lower validation loss for %d epochs (best %.4f at "
                    "epoch %d).",
                    epoch + 1,
                    stopping.patience,
                    stopping.best_loss,
                    stopping.best_epoch,
                )
                break

        barrier()  # the best checkpoint is on disk
        best = load_checkpoint(checkpoint_path)
        run.raw_model.load_state_dict(best.get("lora_state", best["model"]))
        results = {}
        for name in ("val", "test"):
            results[name] = evaluate(
                run.model,
                run.eval_loaders[name],
                device,
                class_weights=run.class_weights,
                amp_dtype=amp_dtype,
            )
        if not ctx.is_main:
            return None
        summary = _write_outputs(
            run,
            results,
            best_epoch=stopping.best_epoch,
            best_loss=stopping.best_loss,
            epochs_run=epochs_run,
            step=step,
            time_s=time.perf_counter() - start,
            log_writer=log_writer,
        )
    finally:
        if log_writer is not None:
            log_writer.close()
    return summary


def _write_outputs(
    run: FinetuneRun,
    results: dict,
    *,
    best_epoch: int,
    best_loss: float,
    epochs_run: int,
    step: int,
    time_s: float,
    log_writer,
) -> dict:
    """Metrics at the task's unit, results.json, predictions.csv and figures (rank 0)."""
    task, cfg = run.task, run.cfg
    evaluated, parts = {}, []
    # Seizure events and event units come from the annotated events the preprocessing kept (DATA/events.csv).
    events = read_events_table(cfg["data"]["root"])
    for name in ("val", "test"):
        loss, probabilities = results[name]
        rows = run.datasets[name].rows
        evaluated[name] = evaluate_predictions(task, rows, probabilities, events=events)
        evaluated[name]["loss"] = loss
        parts.append((name, rows, probabilities))
    write_predictions(run.run_dir / PREDICTIONS_FILE, task, parts)
    test = evaluated["test"]
    # Evidence beside every number (finetune.evidence): n per split, 95% intervals, warnings.
    sizes = {name: split_sizes(task, run.datasets[name].rows) for name in SPLIT_NAMES}
    ci95, bootstrap = bootstrap_ci(task, run.datasets["test"].rows, results["test"][1], events=events)
    warnings_ = evidence_warnings(task, sizes["test"], run.split.protocol)
    if run.split.subject_overlap:
        overlap = "; ".join(f"{s} in {' and '.join(n)}" for s, n in run.split.subject_overlap.items())
        warnings_.append(f"Subjects in more than one split (split.allow_subject_overlap): {overlap}.")
    n_test = sizes["test"]
    n_text = f"n = {n_test['units']} {task.unit}s"
    n_text += f" ({n_test['windows']} windows)" if task.unit != "window" else ""
    n_text += f", {n_test['subjects']} subject{'s' if n_test['subjects'] != 1 else ''}"
    plot_confusion_matrix(
        run.run_dir / "confusion_matrix.png",
        task,
        test["confusion_matrix"],
        title=f"{task.name}\ntest confusion matrix\n{n_text}",
    )
    roc = plot_roc(
        run.run_dir / "roc.png",
        task,
        run.datasets["test"].rows,
        results["test"][1],
        test.get("auroc"),
        title=f"{task.name}\ntest ROC per {task.unit}\n{n_text}",
    )
    if task.is_binary and roc is None:
        logger.warning("No ROC figure: the test %ss hold one class only (AUROC undefined).", task.unit)
    summary = {
        **split_results(task, cfg["runtime"]["seed"], evaluated),
        **(
            {"event_scoring": {name: evaluated[name]["event_scoring"] for name in ("val", "test")}}
            if "event_scoring" in evaluated["test"]
            else {}
        ),
        "n": sizes,
        "ci95": ci95,
        "bootstrap": bootstrap,
        "warnings": warnings_,
        "split": run.split.describe(run.rows),
        "checkpoint": {
            "path": str(run.run_dir / BEST_CHECKPOINT),
            "epoch": best_epoch,
            "val_loss": best_loss,
            "pretrained": run.pretrained,
        },
        "training": {
            "epochs_run": epochs_run,
            "stopped_early": epochs_run < cfg["optim"]["epochs"],
            "optimizer_steps": step,
            "world_size": run.ctx.world_size,
            "time_s": time_s,
            "data": str(cfg["data"]["root"]),
        },
        "parameters": parameter_counts(run.raw_model),
        "config": cfg,
    }
    write_results(run.run_dir / RESULTS_FILE, summary)
    if log_writer is not None:
        for name, value in summary["test"].items():
            if value is not None and math.isfinite(value):
                log_writer.add_scalar(f"test/{name}", value, step)
    for warning in summary.get("event_scoring", {}).get("test", {}).get("warnings", []):
        logger.warning("Test event scoring: %s", warning)
    text = ", ".join(f"{m} {v:.4f}" for m, v in summary["test"].items())
    logger.info(
        "Test (%d %s units, best epoch %d): %s. Results: %s",
        evaluated["test"]["n_units"],
        task.unit,
        best_epoch,
        text,
        run.run_dir / RESULTS_FILE,
    )
    for warning in warnings_:  # last in the log, where they are read
        logger.warning("Not a result yet: %s", warning)
    return summary
