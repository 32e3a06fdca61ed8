"""Training checkpoints: atomic writes, safe loads, exact resume.

A checkpoint is a plain dict saved with :func:`torch.save`::

    {"format": "m4cea-train-checkpoint", "version": 1,
     "model": state dict of the unwrapped model, "optimizer": optimizer state dict,
     "scaler": GradScaler state dict or None, "epoch": last finished epoch (0-based),
     "step": optimiser steps done, "config": the resolved config,
     "rng": one generator-state dict per rank (runtime.seeding.get_rng_state), ...}

It is written by rank 0 only, to a temporary file renamed onto the final name
(:func:`runtime.files.atomic_write`), so a crash never leaves a truncated checkpoint behind. It is
read with ``torch.load(weights_only=True)``, which builds tensors and plain values only.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from runtime.distributed import unwrap_model
from runtime.files import atomic_write

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "restore_training_state", "save_checkpoint"]

CHECKPOINT_FORMAT = "m4cea-train-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    epoch: int,
    step: int,
    config: dict,
    rng: list[dict] | None = None,
    **extra: Any,
) -> Path:
    """Write a training checkpoint atomically.

    Parameters
    ----------
    path : path-like
        Destination ``.pth`` file; its folder is created.
    model : torch.nn.Module
        The model, possibly wrapped in DDP or ``torch.compile``: the unwrapped state dict is saved,
        so keys carry no ``module.`` / ``_orig_mod.`` prefix.
    optimizer : torch.optim.Optimizer
    scaler : torch.amp.GradScaler | None
        Saved when enabled (fp16); None otherwise.
    epoch : int
        The last finished epoch, 0-based.
    step : int
        Optimiser steps done so far.
    config : dict
        The resolved config.
    rng : list of dict | None
        Generator states of every rank (:func:`runtime.seeding.get_rng_state`), in rank order.
    **extra
        Further plain values to store (e.g. the data folder).

    Returns
    -------
    path : Path
    """
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "epoch": int(epoch),
        "step": int(step),
        "config": config,
        "rng": rng,
        **extra,
    }
    with atomic_write(path, "wb") as f:
        torch.save(state, f)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a training checkpoint with ``torch.load(weights_only=True)``.

    Parameters
    ----------
    path : path-like
        A file written by :func:`save_checkpoint`.
    map_location : str | torch.device
        Where to put the tensors (default CPU).

    Returns
    -------
    checkpoint : dict

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (the message names it).
    ValueError
        If the file is not a torch checkpoint, holds objects other than tensors and plain values, or
        is not a training checkpoint of this project (e.g. a bare state dict).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise ValueError(
            f"Cannot read the checkpoint {path} with torch.load(weights_only=True): {err}"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a training checkpoint of this project (expected a dict with "
            f"format={CHECKPOINT_FORMAT!r}); to start from pretrained weights load them into the model "
            "instead."
        )
    return checkpoint


def restore_training_state(
    checkpoint: dict,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    load_model_state: Callable[[torch.nn.Module, dict], Any],
    source: str = "checkpoint",
) -> tuple[int, int]:
    """Load model, optimiser and scaler states from ``checkpoint``; return where to continue.

    Parameters
    ----------
    checkpoint : dict
        From :func:`load_checkpoint`.
    model : torch.nn.Module
        The unwrapped model, built from the same config.
    optimizer : torch.optim.Optimizer
    scaler : torch.amp.GradScaler | None
    load_model_state : callable
        ``load_model_state(model, state_dict)``, strict, raising on missing/unexpected keys or wrong
        shapes (e.g. ``models.load_official_state_dict``).
    source : str
        Name of the checkpoint for error messages (its path).

    Returns
    -------
    start_epoch : int
        The first epoch to run (the saved epoch + 1).
    step : int
        Optimiser steps already done.

    Raises
    ------
    ValueError
        If the model state does not fit ``model`` (another architecture or size), or the optimiser
        state does not fit the optimiser; the message names ``source``.
    """
    try:
        load_model_state(unwrap_model(model), checkpoint["model"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise ValueError(
            f"The checkpoint {source} does not fit this model (another architecture or size?): {err}"
        ) from None
    try:
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise ValueError(f"The optimiser state in {source} does not fit this optimiser: {err}") from None
    if scaler is not None and scaler.is_enabled() and checkpoint.get("scaler") is not None:
        scaler.load_state_dict(checkpoint["scaler"])
    return int(checkpoint["epoch"]) + 1, int(checkpoint["step"])
