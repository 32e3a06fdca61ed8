"""Fine-tune M4CEA on one childhood-epilepsy task and evaluate it: one process or ``torchrun`` DDP.

Usage::

    python finetune/finetune_main.py --task T --seed S --data DIR --output DIR [--pretrained CKPT]
        [--config FILE] [--epochs N] [--linear-probe] [--overwrite] [--set key=value ...]
    torchrun --nproc_per_node=8 finetune/finetune_main.py --task hie_grading --seed 42 --data DIR ...

``T`` is one of :data:`finetune.tasks.TASKS`; ``DIR`` (``--data``, or ``data.root`` in a config file) a
labelled preprocessing output folder (``manifest.csv`` + one pickle per window, labels named as the
task's classes). The config resolves ``configs/finetune/_base.yaml`` <- ``<task>.yaml`` <- ``--config``
<- ``--set`` <- the flags (``--seed`` = ``runtime.seed``, ``--epochs`` = ``optim.epochs``,
``--linear-probe`` = ``head.linear_probe``, ``--pretrained`` = ``model.pretrained``, ``--data`` =
``data.root``). ``--pretrained`` takes this project's pretraining checkpoints
(``pretrain/pretrain_main.py``: a dict with ``"model"`` and ``"config"``), fine-tuning checkpoints, and
official M4CEA state dicts; the classification head is always new and every other key must load.

What a run does (the paper's recipe, DESIGN.md section 2, with the official code's defects fixed):
split the manifest without leakage (:mod:`finetune.splits`; the split seed is ``split.seed``, not the
training seed), AdamW with layer-wise lr decay (timm's ``create_optimizer_v2``, lr = ``base_lr *
batch_size / 256``), linear warm-up then half-cosine per optimiser step, exact gradient accumulation,
drop-path, optional class weights or a balanced sampler, label smoothing, optional linear probing
(frozen backbone); after each epoch the validation loss decides the best checkpoint
(``checkpoint-best.pth``, written atomically by rank 0) and early stopping (``early_stopping.patience``
epochs without a lower loss). The best checkpoint is then evaluated on validation and test at the task's
unit (:func:`finetune.metrics.evaluate_predictions`).

Run folder ``OUTPUT/<task>/seed<S>/``: ``results.json``, ``predictions.csv``, ``confusion_matrix.png``,
``roc.png`` (binary tasks) (:mod:`finetune.outputs`), ``checkpoint-best.pth``, ``config.yaml`` (the
resolved config), ``preprocess.yaml`` (the preprocessing config of the data folder, its ``config.yaml``,
when it has one; also stored in the checkpoint under ``"preprocess"``, so that ``finetune/predict.py``
windows new recordings exactly as the training data), ``metrics.jsonl`` (one line per epoch),
``log.txt`` and ``tensorboard/``. A folder
that holds a finished run (``results.json``) is refused unless ``--overwrite``.

Exit status 2 on a usage, config or data error (unknown task or key, wrong type, missing data folder,
labels outside the task, too few subjects for the split, a checkpoint of another architecture...),
with the message on stderr.

Layout after MAE's ``main_finetune.py`` (facebookresearch/mae): arguments, setup, epoch loop,
checkpoint and evaluation here; the epoch and the evaluation pass in :mod:`finetune.engine`.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (
    None,
    "",
):  # run as a script (python finetune/finetune_main.py, torchrun): repo root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Mapping, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from sklearn.metrics import balanced_accuracy_score  # noqa: E402
from timm.optim import create_optimizer_v2  # noqa: E402

from finetune.data import SAMPLERS, FinetuneDataset, build_eval_loader, build_train_loader  # noqa: E402
from finetune.engine import EngineSettings, balanced_class_weights, evaluate, train_one_epoch  # noqa: E402
from finetune.metrics import evaluate_predictions  # noqa: E402
from finetune.outputs import (  # noqa: E402
    PREDICTIONS_FILE,
    RESULTS_FILE,
    plot_confusion_matrix,
    plot_roc,
    write_predictions,
    write_results,
)
from finetune.splits import SPLIT_FILE, SPLIT_NAMES, Split, make_split, read_split_file  # noqa: E402
from finetune.tasks import TASKS, Task, aggregate, encode_labels, get_task, load_task_config, predict  # noqa: E402
from models import convert_official_state_dict, create_model_from_config, load_official_state_dict  # noqa: E402
from preprocess.segments import read_manifest  # noqa: E402
from runtime.checkpoint import (  # noqa: E402
    CHECKPOINT_FORMAT,
    CheckpointReadError,
    load_checkpoint,
    load_verified,
    save_checkpoint,
)
from runtime.config import CONFIG_DIR, ConfigError, add_override_argument, load_config, save_config  # noqa: E402
from runtime.distributed import (  # noqa: E402
    DistributedContext,
    barrier,
    init_distributed,
)
from runtime.entry import USAGE_ERRORS, run_entry  # noqa: E402,F401 (USAGE_ERRORS re-exported)
from runtime.logging import JsonLinesWriter, create_summary_writer, setup_logging  # noqa: E402
from runtime.optim import build_lr_scheduler, steps_per_accumulation  # noqa: E402
from runtime.seeding import seed_everything  # noqa: E402

__all__ = [
    "BEST_CHECKPOINT",
    "PREPROCESS_CONFIG_FILE",
    "build_model",
    "build_optimizer",
    "cli",
    "get_args_parser",
    "load_pretrained",
    "main",
    "read_preprocess_config",
    "resolve_config",
    "run_folder",
    "save_untrained_checkpoint",
]

logger = logging.getLogger("finetune.finetune_main")

#: Default ``--output``: runs land in ``runs/finetune/<task>/seed<S>/``.
DEFAULT_OUTPUT = "runs/finetune"

#: Name of the best checkpoint in the run folder.
BEST_CHECKPOINT = "checkpoint-best.pth"

#: The data folder's preprocessing config, copied into the run folder (and the checkpoint's ``"preprocess"``).
PREPROCESS_CONFIG_FILE = "preprocess.yaml"

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

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
_CLASS_WEIGHTS = ("none", "balanced")


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line arguments of the fine-tuning entry point."""
    parser = argparse.ArgumentParser(
        "finetune_main.py",
        description="Fine-tune M4CEA on a childhood-epilepsy task; evaluate it on a leakage-free test split.",
    )
    parser.add_argument("--task", required=True, help=f"task name, one of: {', '.join(TASKS)}")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="training seed (runtime.seed; paper: 42 2024 3407 4399 114514); the split seed is split.seed",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="labelled preprocessing output folder (manifest.csv + pickles); default: data.root "
        "of the config",
    )
    parser.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        help="runs folder; the run goes to OUTPUT/<task>/seed<S>/ (default: %(default)s)",
    )
    parser.add_argument(
        "--pretrained",
        default=None,
        help="checkpoint to start from: this project's pretraining checkpoint or an official "
        "M4CEA state dict (model.pretrained)",
    )
    parser.add_argument("--config", default=None, help="YAML that changes the task's defaults")
    parser.add_argument("--epochs", type=int, default=None, help="number of epochs (optim.epochs)")
    parser.add_argument(
        "--linear-probe",
        action="store_true",
        help="freeze the backbone, train the head only (head.linear_probe)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in the run folder")
    add_override_argument(parser, "optim.base_lr=5e-4 split.protocol=patient_specific")
    return parser


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


def _check_config(cfg: dict) -> None:
    """Value checks that the schema's type checks cannot express (split values: finetune.splits)."""
    o, es = cfg["optim"], cfg["early_stopping"]
    checks = [
        ("optim.epochs", o["epochs"], o["epochs"] >= 1, ">= 1"),
        ("optim.warmup_epochs", o["warmup_epochs"], o["warmup_epochs"] >= 0, ">= 0"),
        ("optim.base_lr", o["base_lr"], o["base_lr"] > 0, "> 0"),
        ("optim.min_lr", o["min_lr"], o["min_lr"] >= 0, ">= 0"),
        ("optim.weight_decay", o["weight_decay"], o["weight_decay"] >= 0, ">= 0"),
        ("optim.betas", o["betas"], len(o["betas"]) == 2, "a list of two floats"),
        ("optim.layer_decay", o["layer_decay"], 0 < o["layer_decay"] <= 1, "in (0, 1]"),
        ("optim.clip_grad", o["clip_grad"], o["clip_grad"] is None or o["clip_grad"] >= 0, ">= 0 or null"),
        ("early_stopping.patience", es["patience"], es["patience"] >= 1, ">= 1"),
        ("early_stopping.min_delta", es["min_delta"], es["min_delta"] >= 0, ">= 0"),
        (
            "loss.class_weights",
            cfg["loss"]["class_weights"],
            cfg["loss"]["class_weights"] in _CLASS_WEIGHTS,
            f"one of {list(_CLASS_WEIGHTS)}",
        ),
        (
            "loss.label_smoothing",
            cfg["loss"]["label_smoothing"],
            0 <= cfg["loss"]["label_smoothing"] < 1,
            "in [0, 1)",
        ),
        (
            "data.sampler",
            cfg["data"]["sampler"],
            cfg["data"]["sampler"] in SAMPLERS,
            f"one of {list(SAMPLERS)}",
        ),
        ("data.num_workers", cfg["data"]["num_workers"], cfg["data"]["num_workers"] >= 0, ">= 0"),
        ("logging.log_every", cfg["logging"]["log_every"], cfg["logging"]["log_every"] >= 1, ">= 1"),
        (
            "runtime.amp",
            cfg["runtime"]["amp"],
            cfg["runtime"]["amp"] in _AMP_DTYPES,
            f"one of {list(_AMP_DTYPES)}",
        ),
        ("runtime.seed", cfg["runtime"]["seed"], cfg["runtime"]["seed"] >= 0, ">= 0"),
    ]
    for key, value, ok, allowed in checks:
        if not ok:
            raise ConfigError(
                f"Invalid value for the config key '{key}'. Allowed values are {allowed}, "
                f"but got {value!r} instead."
            )


def run_folder(output: str | Path, task: str, seed: int) -> Path:
    """``OUTPUT/<task>/seed<S>``: where one run writes (the layout :mod:`finetune.report` reads)."""
    return Path(output) / task / f"seed{seed}"


def build_model(cfg: dict, task: Task) -> torch.nn.Module:
    """The classification model named in ``cfg["model"]`` with its non-null overrides and the task's classes.

    Raises
    ------
    ValueError
        If the model name is not registered or an override is invalid.
    """
    return create_model_from_config(cfg["model"], head="classification", n_outputs=task.n_classes)


def save_untrained_checkpoint(
    path: str | os.PathLike, task_name: str, overrides: Sequence[str] = (), seed: int = 0
) -> tuple[Path, Task]:
    """Write a fine-tuning checkpoint of a freshly initialised model (random head), default preprocessing.

    What ``finetune/predict.py`` reads, without training: for benchmarks (``scripts/bench_predict.py``)
    and tests of the prediction outputs, and to check an installation end to end before any training.

    Parameters
    ----------
    path : path-like
        The checkpoint file to write (atomically).
    task_name : str
        One of the eight tasks.
    overrides : sequence of str
        ``--set`` style overrides of the task's fine-tuning config (``model.name=m4cea_base``...).
    seed : int
        Seed of the model's initialisation.

    Returns
    -------
    path : Path
    task : finetune.tasks.Task

    Raises
    ------
    ValueError, runtime.config.ConfigError
        On an unknown task, a bad override, or an unknown model.
    """
    cfg = load_task_config(task_name, overrides=list(overrides))
    task = get_task(task_name, cfg)
    torch.manual_seed(seed)
    model = build_model(cfg, task)
    save_checkpoint(
        path,
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
        scaler=None,
        epoch=0,
        step=0,
        config=cfg,
        task=task.name,
        classes=list(task.classes),
        preprocess=load_config(CONFIG_DIR / "preprocess" / "m4cea.yaml"),
    )
    return Path(path), task


def _state_dict_of(obj: Any, path: Path) -> tuple[Mapping, dict | None]:
    """The model state dict inside a loaded checkpoint, and the config it was trained with (if any)."""

    def is_state_dict(x):
        return isinstance(x, Mapping) and len(x) > 0 and all(isinstance(v, torch.Tensor) for v in x.values())

    if isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT:
        return obj["model"], obj.get("config")
    if is_state_dict(obj):
        return obj, None
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "module"):
            if is_state_dict(obj.get(key)):
                return obj[key], obj.get("config") if isinstance(obj.get("config"), Mapping) else None
    raise ValueError(
        f"The pretrained checkpoint {path} holds no model state dict (expected this project's "
        f"checkpoint with a 'model' entry, or a mapping of parameter names to tensors)."
    )


def load_pretrained(model: torch.nn.Module, path: str | Path) -> dict:
    """Load a pretrained (or fine-tuned) checkpoint into a classification model; the head stays new.

    Accepts this project's checkpoints (:mod:`runtime.checkpoint`: ``{"model": state dict, "config":
    ...}``, from pretraining or fine-tuning), bare state dicts in this project's or the official
    M4CEA layout (:func:`models.convert_official_state_dict`), and dicts holding one under ``model``,
    ``state_dict`` or ``module``. A classification head in the checkpoint is dropped (the task's head
    is new); pretraining heads are ignored; every other key of the model must be loaded, with the
    same shape (:func:`models.load_official_state_dict`, ``allow_missing_head=True``).

    Parameters
    ----------
    model : models.M4CEA
        Classification model.
    path : path-like
        The checkpoint, read with ``torch.load(weights_only=True)``.

    Returns
    -------
    info : dict
        ``path``, ``missing_keys`` (exactly the new head: ``head.weight``, ``head.bias``),
        ``ignored_keys`` (checkpoint heads not used), ``source_model`` (the checkpoint's
        ``model.name`` when it has a config).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file cannot be read safely, holds no state dict, or does not fit the model (another
        architecture or size: the message lists the keys and, when known, the checkpoint's model).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Pretrained checkpoint not found: {path} (--pretrained).")
    try:
        obj = load_verified(path, what="pretrained checkpoint")
    except CheckpointReadError as err:
        raise ValueError(
            f"{err}. A "
            f"checkpoint that also pickles other objects (e.g. training arguments) must be reduced to its "
            f"state dict first, in a session that trusts the file: torch.save(torch.load(path, "
            f"weights_only=False)['model'], 'state_dict.pth')."
        ) from None
    state, source_cfg = _state_dict_of(obj, path)
    converted = convert_official_state_dict(state)
    dropped = sorted(k for k in converted if k.startswith("head."))
    converted = {k: v for k, v in converted.items() if not k.startswith("head.")}
    source_model = None
    if isinstance(source_cfg, Mapping) and isinstance(source_cfg.get("model"), Mapping):
        source_model = source_cfg["model"].get("name")
    try:
        result = load_official_state_dict(model, converted, allow_missing_head=True)
    except ValueError as err:
        hint = ""
        if source_model is not None:
            hint = (
                f" The checkpoint was trained as model.name={source_model!r}: set the same model "
                f"(--set model.name={source_model}) and size overrides."
            )
        raise ValueError(f"The pretrained checkpoint {path} does not fit the model: {err}.{hint}") from None
    head_keys = sorted(k for k in model.state_dict() if k.startswith("head."))
    assert sorted(result.missing_keys) == head_keys, f"unexpected missing keys {result.missing_keys}"
    return {
        "path": str(path),
        "missing_keys": sorted(result.missing_keys),
        "ignored_keys": sorted(result.ignored_keys + dropped),
        "source_model": source_model,
    }


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
class _Run:
    """Everything the epoch loop needs, built by :func:`_setup`."""

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
        raise ValueError(
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


def read_preprocess_config(root: str | Path) -> dict | None:
    """The preprocessing config a data folder was made with: its ``config.yaml``, or None without one.

    Parameters
    ----------
    root : path-like
        A preprocessing output folder (``preprocess/preprocess_main.py`` writes ``config.yaml`` there).

    Returns
    -------
    config : dict | None
        The resolved preprocessing config; None when the folder has no ``config.yaml`` (data written by
        other tools).

    Raises
    ------
    ValueError
        If ``config.yaml`` is not valid YAML or holds no mapping (the message names the file).
    """
    path = Path(root) / "config.yaml"
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ValueError(f"The preprocessing config {path} is not valid YAML: {err}") from None
    if not isinstance(config, dict):
        raise ValueError(
            f"The preprocessing config {path} must hold a mapping, but holds {type(config).__name__}."
        )
    return config


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


def _setup(args: argparse.Namespace) -> _Run:
    cfg = resolve_config(args)
    _check_config(cfg)
    task = get_task(args.task, cfg)
    root = _data_root(cfg)
    seed = cfg["runtime"]["seed"]
    run_dir = run_folder(args.output, task.name, seed)
    if (run_dir / RESULTS_FILE).exists() and not args.overwrite:
        raise ValueError(
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
        raise ValueError(f"The manifest {root / 'manifest.csv'} lists no window.")
    encode_labels(rows, task)  # every label one of the task's classes, before anything else
    assignment, assignment_key = (
        read_split_file(root / SPLIT_FILE) if cfg["split"]["protocol"] == "official" else (None, "subject")
    )
    split = make_split(rows, cfg["split"], assignment, assignment_key)
    _check_split_data(task, split, rows)
    accum = steps_per_accumulation(
        cfg["optim"]["batch_size"], cfg["optim"]["micro_batch_size"], ctx.world_size
    )

    seed_everything(seed)  # identical initial weights on every rank
    model = build_model(cfg, task)
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

    datasets = {
        name: FinetuneDataset(root, split.rows(rows, name), task, model.n_chans, model.n_times)
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
        raise ValueError(
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
    linear_probe = cfg["head"]["linear_probe"]
    if linear_probe:
        for name, param in model.named_parameters():
            param.requires_grad = name.startswith("head.")
    # Classification never masks tokens: the mask token gets no gradient (and DDP refuses unused parameters).
    model.mask_token.requires_grad_(False)
    amp = (
        cfg["runtime"]["amp"] if device.type == "cuda" else ("bf16" if cfg["runtime"]["amp_cpu"] else "fp32")
    )
    settings = EngineSettings(
        micro_batch_size=micro,
        accum_steps=accum,
        clip_grad=cfg["optim"]["clip_grad"],
        amp_dtype=_AMP_DTYPES[amp],
        label_smoothing=cfg["loss"]["label_smoothing"],
        log_every=cfg["logging"]["log_every"],
        linear_probe=linear_probe,
    )

    model.to(device)
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
        ", linear probe" if linear_probe else "",
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
    return _Run(
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


def _clear_run_folder(run_dir: Path) -> None:
    """Remove the outputs of an unfinished (or, with --overwrite, finished) run; nothing else."""
    for name in RUN_OUTPUTS:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _window_balanced_accuracy(task: Task, labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Balanced accuracy of the windows (a per-epoch progress figure; the results use the task's unit)."""
    with warnings.catch_warnings():  # a class predicted but absent from the labels: expected early on
        warnings.simplefilter("ignore", category=UserWarning)
        return float(balanced_accuracy_score(labels, predict(task, probabilities)))


def _train(run: _Run) -> dict | None:
    cfg, ctx, task, device = run.cfg, run.ctx, run.task, run.ctx.device
    if ctx.is_main:
        _clear_run_folder(run.run_dir)
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
    epochs, patience, min_delta = (
        cfg["optim"]["epochs"],
        cfg["early_stopping"]["patience"],
        cfg["early_stopping"]["min_delta"],
    )
    checkpoint_path = run.run_dir / BEST_CHECKPOINT
    amp_dtype = run.settings.amp_dtype
    best_loss, best_epoch, bad_epochs, step, epochs_run = math.inf, -1, 0, 0, 0
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
                    f"Non-finite validation loss {val_loss} after epoch {epoch}: lower "
                    f"optim.base_lr or switch off runtime.amp."
                )
            val_bacc = _window_balanced_accuracy(task, run.datasets["val"].labels, val_probabilities)
            improved = val_loss < best_loss - min_delta
            epochs_run = epoch + 1
            if improved:
                best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
                if ctx.is_main:
                    save_checkpoint(
                        checkpoint_path,
                        model=run.raw_model,
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
                    )
            else:
                bad_epochs += 1
            record = {
                "epoch": epoch,
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
            if bad_epochs >= patience:
                logger.info(
                    "Early stopping after epoch %d: no lower validation loss for %d epochs (best %.4f at "
                    "epoch %d).",
                    epoch + 1,
                    patience,
                    best_loss,
                    best_epoch + 1,
                )
                break

        barrier()  # the best checkpoint is on disk
        best = load_checkpoint(checkpoint_path)
        run.raw_model.load_state_dict(best["model"])
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
            best_epoch=best_epoch,
            best_loss=best_loss,
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
    run: _Run,
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
    for name in ("val", "test"):
        loss, probabilities = results[name]
        rows = run.datasets[name].rows
        evaluated[name] = evaluate_predictions(task, rows, probabilities)
        evaluated[name]["loss"] = loss
        parts.append((name, rows, probabilities))
    write_predictions(run.run_dir / PREDICTIONS_FILE, task, parts)
    test = evaluated["test"]
    plot_confusion_matrix(run.run_dir / "confusion_matrix.png", task, test["confusion_matrix"])
    roc = plot_roc(
        run.run_dir / "roc.png", task, run.datasets["test"].rows, results["test"][1], test.get("auroc")
    )
    if task.is_binary and roc is None:
        logger.warning("No ROC figure: the test %ss hold one class only (AUROC undefined).", task.unit)
    metric_names = list(task.metrics) + ["loss"]
    summary = {
        "task": task.name,
        "seed": cfg["runtime"]["seed"],
        "test": {m: evaluated["test"][m] for m in metric_names},
        "val": {m: evaluated["val"][m] for m in metric_names},
        "confusion_matrix": {
            "classes": list(task.classes),
            "unit": task.unit,
            "test": evaluated["test"]["confusion_matrix"],
            "val": evaluated["val"]["confusion_matrix"],
        },
        "undefined": {name: evaluated[name]["undefined"] for name in ("val", "test")},
        "n_units": {name: evaluated[name]["n_units"] for name in ("val", "test")},
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
        "config": cfg,
    }
    write_results(run.run_dir / RESULTS_FILE, summary)
    if log_writer is not None:
        for name, value in summary["test"].items():
            if value is not None and math.isfinite(value):
                log_writer.add_scalar(f"test/{name}", value, step)
    text = ", ".join(f"{m} {v:.4f}" for m, v in summary["test"].items())
    logger.info(
        "Test (%d %s units, best epoch %d): %s. Results: %s",
        evaluated["test"]["n_units"],
        task.unit,
        best_epoch + 1,
        text,
        run.run_dir / RESULTS_FILE,
    )
    return summary


def main(argv: list[str] | None = None) -> dict | None:
    """Run fine-tuning and evaluation with command-line arguments ``argv`` (default ``sys.argv[1:]``).

    Returns
    -------
    results : dict | None
        What ``results.json`` holds (NaN as float NaN) on rank 0; None on other ranks.

    Raises
    ------
    ConfigError, ValueError, TypeError, FileNotFoundError
        On usage, config and data errors (before training starts).
    FloatingPointError
        If the training or validation loss becomes non-finite.
    """
    return run_entry(_setup, _train, get_args_parser().parse_args(argv))


def cli(argv: list[str] | None = None) -> int:
    """Command-line entry: like :func:`main`, but usage/config/data errors print a message and return 2."""
    args = get_args_parser().parse_args(argv)  # argparse exits with status 2 itself
    return run_entry(_setup, _train, args, prog="finetune_main.py")


if __name__ == "__main__":
    sys.exit(cli())
