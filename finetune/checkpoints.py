"""Fine-tuning checkpoints: the classification model, pretrained weights into it, the run's files.

What both the training run (:mod:`finetune.run`) and prediction (:mod:`finetune.predictor`) need: the
names of the files a run folder holds, how a task's classification model is built from a config, how a
pretraining (or official M4CEA) checkpoint is loaded into it, and the preprocessing config of a data
folder. Checkpoints are written by :func:`runtime.checkpoint.save_checkpoint`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from models import (
    LaBraM,
    convert_official_state_dict,
    create_model,
    create_model_from_config,
    get_input_contract,
    load_official_state_dict,
    read_official_checkpoint,
)
from models.zoo import is_zoo_name
from preprocess.segments import load_window
from runtime.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointReadError,
    load_verified,
    save_checkpoint,
    verify_zip_archive,
)
from runtime.config import CONFIG_DIR, UsageError, load_config
from tasks import Task, get_task, load_task_config

__all__ = [
    "BEST_CHECKPOINT",
    "PREPROCESS_CONFIG_FILE",
    "PREPROCESS_DEFAULTS",
    "build_model",
    "build_zoo_model",
    "zoo_window",
    "load_pretrained",
    "read_preprocess_config",
    "save_untrained_checkpoint",
]

#: Name of the best checkpoint in the run folder.
BEST_CHECKPOINT = "checkpoint-best.pth"

#: The data folder's preprocessing config, copied into the run folder (and the checkpoint's ``"preprocess"``).
PREPROCESS_CONFIG_FILE = "preprocess.yaml"

#: The preprocessing defaults (a run on data without ``config.yaml`` assumes them).
PREPROCESS_DEFAULTS = CONFIG_DIR / "preprocess" / "m4cea.yaml"


def build_model(cfg: dict, task: Task, ch_names: Sequence[str] | None = None) -> torch.nn.Module:
    """The classification model named in ``cfg["model"]`` with its non-null overrides and the task's classes.

    Parameters
    ----------
    cfg : dict
        Resolved fine-tuning config; its ``model`` section names the size and overrides.
    task : tasks.Task
        Gives the number of classes.
    ch_names : sequence of str | None
        Channel names of the stored windows, in order (a segment's ``ch_names``). Models that place
        channels by name (LaBraM's position table, :func:`models.channel_positions`) are built with
        ``cfg["model"]["ch_names"]`` when set, else with these, which are then written into
        ``cfg["model"]["ch_names"]`` so that the run's config (and every checkpoint) rebuilds the same
        model. Other models ignore them.

    Returns
    -------
    model : models.M4CEA | models.LaBraM

    Raises
    ------
    ValueError
        If the model name is not registered, an override is invalid, or a channel name is not in LaBraM's
        table.
    """
    if is_zoo_name(cfg["model"]["name"]):
        return build_zoo_model(cfg, task)
    model_cfg = cfg["model"]
    if get_input_contract(model_cfg["name"]).channel_names is not None and model_cfg.get("ch_names") is None:
        if ch_names is not None:
            model_cfg["ch_names"] = [str(name) for name in ch_names]
    return create_model_from_config(model_cfg, head="classification", n_outputs=task.n_classes)


def zoo_window(root: str | Path, rows: Sequence[Mapping]) -> dict:
    """What a braindecode model is built for: the stored windows' rate, length and channel names.

    Read from the first window of the manifest (every window of a folder shares them; the loader checks
    each). The run stores the result as ``model.zoo_window`` in its config, so that prediction rebuilds the
    same model.

    Returns
    -------
    window : dict
        ``sfreq_in`` (Hz), ``n_times_in`` (samples), ``n_chans`` and ``ch_names``.

    Raises
    ------
    FileNotFoundError
        If the first window is missing.
    """
    segment = load_window(root, rows[0])
    n_chans, n_times = (int(n) for n in segment["data"].shape)
    return {
        "sfreq_in": float(segment["sfreq"]),
        "n_times_in": n_times,
        "n_chans": n_chans,
        "ch_names": [str(c) for c in segment.get("ch_names") or []] or None,
    }


def build_zoo_model(cfg: dict, task: Task) -> torch.nn.Module:
    """A braindecode model (``model.name=braindecode.<Class>``, :mod:`models.zoo`) for the run's windows.

    Built from ``model.zoo_window`` (:func:`zoo_window`, set by the run), ``model.zoo_sfreq`` (null: the
    table's rate) and ``model.zoo_args`` (further arguments of the class).

    Raises
    ------
    ValueError
        If the run's config has no ``model.zoo_window``, or the model cannot take the windows (the message
        names what it needs).
    """
    section = cfg["model"]
    window = section.get("zoo_window")
    if not window:
        raise UsageError(
            f"model.name={section['name']} is built for the data's windows, but the config has no "
            f"model.zoo_window (sfreq_in, n_times_in, n_chans, ch_names): fine-tune it with --data first."
        )
    return create_model(
        section["name"],
        head="classification",
        n_outputs=task.n_classes,
        n_chans=int(window["n_chans"]),
        sfreq_in=float(window["sfreq_in"]),
        n_times_in=int(window["n_times_in"]),
        ch_names=window.get("ch_names"),
        sfreq=section.get("zoo_sfreq"),
        **dict(section.get("zoo_args") or {}),
    )


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
    task : tasks.Task

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
        preprocess=load_config(PREPROCESS_DEFAULTS),
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
    raise UsageError(
        f"The pretrained checkpoint {path} holds no model state dict (expected this project's "
        f"checkpoint with a 'model' entry, or a mapping of parameter names to tensors)."
    )


def load_pretrained(model: torch.nn.Module, path: str | Path) -> dict:
    """Load a pretrained (or fine-tuned) checkpoint into a classification model; the head stays new.

    Accepts this project's checkpoints (:mod:`runtime.checkpoint`: ``{"model": state dict, "config":
    ...}``, from pretraining or fine-tuning), bare state dicts in this project's or the official
    M4CEA layout (:func:`models.convert_official_state_dict`), and dicts holding one under ``model``,
    ``state_dict`` or ``module``. LaBraM: also the released official checkpoints (``labram-base.pth``:
    ``model`` with the masked-modelling ``student.*`` keys, ``args`` an ``argparse.Namespace``), read by
    :func:`models.read_official_checkpoint` (tensors, plain values and ``argparse.Namespace`` only), and
    official fine-tuned ones. A classification head in the checkpoint is dropped (the task's head is
    new; LaBraM's is ``fc_norm`` + ``head``, as the official fine-tuning from ``labram-base.pth``
    starts both afresh); pretraining heads are ignored; every other key of the model must be loaded,
    with the same shape (:func:`models.load_official_state_dict`, ``allow_missing_head=True``).

    Parameters
    ----------
    model : models.M4CEA | models.LaBraM
        Classification model.
    path : path-like
        The checkpoint, read with ``torch.load(weights_only=True)``.

    Returns
    -------
    info : dict
        ``path``, ``missing_keys`` (exactly the new head: ``head.weight``, ``head.bias``; LaBraM also
        ``fc_norm.*``),
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
        # Released LaBraM checkpoints pickle their argparse arguments: read_official_checkpoint allows
        # argparse.Namespace and nothing else (after the same integrity check of the zip members).
        try:
            verify_zip_archive(path, "pretrained checkpoint")
            obj = read_official_checkpoint(path)
        except ValueError:
            raise UsageError(
                f"{err}. A checkpoint that also pickles other objects than tensors, plain values and "
                f"argparse.Namespace must be reduced to its state dict first, in a session that trusts the "
                f"file: torch.save(torch.load(path, weights_only=False)['model'], 'state_dict.pth')."
            ) from None
    state, source_cfg = _state_dict_of(obj, path)
    labram = isinstance(model, LaBraM)
    # LaBraM keeps the official names (models.checkpoint); its classification head is fc_norm + head.
    converted = dict(state) if labram else convert_official_state_dict(state)
    head = re.compile(r"^(?:(?:module|model|_orig_mod)\.)*(?:head|fc_norm)\." if labram else r"^head\.")
    dropped = sorted(k for k in converted if head.match(k))
    converted = {k: v for k, v in converted.items() if not head.match(k)}
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
        raise UsageError(f"The pretrained checkpoint {path} does not fit the model: {err}.{hint}") from None
    head_keys = sorted(k for k in model.state_dict() if head.match(k))
    assert sorted(result.missing_keys) == head_keys, f"unexpected missing keys {result.missing_keys}"
    return {
        "path": str(path),
        "missing_keys": sorted(result.missing_keys),
        "ignored_keys": sorted(result.ignored_keys + dropped),
        "source_model": source_model,
    }


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
        raise UsageError(f"The preprocessing config {path} is not valid YAML: {err}") from None
    if not isinstance(config, dict):
        raise UsageError(
            f"The preprocessing config {path} must hold a mapping, but holds {type(config).__name__}."
        )
    return config
