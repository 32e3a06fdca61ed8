"""Optimisation helpers shared by pretraining and fine-tuning: accumulation, the lr schedule, the step.

Both stages read the same ``optim`` keys (``batch_size``, ``micro_batch_size``, ``epochs``,
``warmup_epochs``, ``min_lr``) and step the schedule once per optimiser step, as the paper does
(MAE/LaBraM's per-iteration warm-up then half-cosine; DESIGN.md section 2).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from timm.scheduler import CosineLRScheduler

from runtime.config import ConfigError

__all__ = ["build_lr_scheduler", "clip_and_step", "optimiser_steps_in_epoch", "steps_per_accumulation"]

logger = logging.getLogger(__name__)


def optimiser_steps_in_epoch(
    n_micro_batches: int, accum_steps: int, micro_batch_size: int, epoch: int, max_steps: int | None = None
) -> int:
    """Optimiser steps one epoch of a rank makes: whole accumulations of its micro-batches.

    Parameters
    ----------
    n_micro_batches : int
        Micro-batches of the rank's loader (``len(loader)``).
    accum_steps : int
        Micro-batches per optimiser step.
    micro_batch_size : int
        Windows per micro-batch (for the message).
    epoch : int
        The epoch (for the message).
    max_steps : int | None
        A cap (e.g. for benchmarks); None: no cap.

    Returns
    -------
    n_steps : int
        At least 1.

    Raises
    ------
    ValueError
        If the loader holds fewer micro-batches than one optimiser step needs.
    """
    n_steps = n_micro_batches // accum_steps
    if max_steps is not None:
        n_steps = min(n_steps, max_steps)
    if n_steps == 0:
        raise ValueError(
            f"Epoch {epoch}: this rank has {n_micro_batches} micro-batches of {micro_batch_size} windows, "
            f"fewer than the {accum_steps} that one optimiser step needs: use more data or a smaller "
            "optim.batch_size."
        )
    return n_steps


def steps_per_accumulation(batch_size: int, micro_batch_size: int, world_size: int) -> int:
    """Micro-steps per optimiser step: ``batch_size / (micro_batch_size * world_size)``.

    Parameters
    ----------
    batch_size : int
        Global windows per optimiser step, over all ranks and micro-steps (``optim.batch_size``).
    micro_batch_size : int
        Windows per device step on one rank (``optim.micro_batch_size``).
    world_size : int
        Number of processes.

    Returns
    -------
    accum_steps : int
        Micro-batches each rank accumulates before an optimiser step.

    Raises
    ------
    ConfigError
        If that is not a positive integer (the message names the three values).
    """
    per_round = micro_batch_size * world_size
    if batch_size < 1 or micro_batch_size < 1 or batch_size % per_round != 0:
        raise ConfigError(
            f"optim.batch_size={batch_size} cannot be reached by gradient accumulation with "
            f"optim.micro_batch_size={micro_batch_size} on world_size={world_size} process(es): "
            f"batch_size must be a positive multiple of micro_batch_size * world_size = {per_round}."
        )
    return batch_size // per_round


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer, cfg: Mapping, steps_per_epoch: int
) -> CosineLRScheduler:
    """Linear warm-up from 0 over ``warmup_epochs``, then a half-cosine to ``min_lr``, per optimiser step.

    timm's ``CosineLRScheduler`` with ``t_in_epochs=False`` (stepped with ``step_update(step)``) and
    ``warmup_prefix=True`` (the cosine starts at the peak when the warm-up ends), so that, with
    ``W`` warm-up and ``T`` total steps, ``lr(t) = peak * t / W`` for ``t < W`` and
    ``lr(t) = min_lr + (peak - min_lr) * (1 + cos(pi * (t - W) / (T - W))) / 2`` after. The peak is
    each parameter group's ``lr`` when the scheduler is built, times the group's ``lr_scale`` when it
    has one (timm's layer-wise decay groups).

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Its groups' ``lr`` are the peaks.
    cfg : mapping
        A resolved config with an ``optim`` section: ``epochs``, ``warmup_epochs``, ``min_lr``.
    steps_per_epoch : int
        Optimiser steps per epoch.

    Returns
    -------
    scheduler : timm.scheduler.CosineLRScheduler
        Call ``scheduler.step_update(step)`` before optimiser step ``step`` (0-based).

    References
    ----------
    He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022 (facebookresearch/mae,
    ``util/lr_sched.py``); Loshchilov and Hutter, "SGDR", ICLR 2017.
    """
    optim = cfg["optim"]
    total = optim["epochs"] * steps_per_epoch
    warmup = min(optim["warmup_epochs"] * steps_per_epoch, total)
    if optim["warmup_epochs"] >= optim["epochs"]:
        logger.warning(
            "optim.warmup_epochs=%d >= optim.epochs=%d: the whole run warms up.",
            optim["warmup_epochs"],
            optim["epochs"],
        )
    return CosineLRScheduler(
        optimizer,
        t_initial=max(2, total - warmup),
        lr_min=optim["min_lr"],
        warmup_t=warmup,
        warmup_lr_init=0.0,
        warmup_prefix=True,
        cycle_limit=1,
        t_in_epochs=False,
    )


def clip_and_step(optimizer, scaler, params, max_norm: float) -> torch.Tensor:
    """End one optimiser step: unscale, clip the gradient norm, step through the scaler, zero the gradients.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
    scaler : torch.amp.GradScaler
        Disabled (``enabled=False``) for fp32 and bf16, where unscaling and the scaler's step are plain.
    params : sequence of torch.nn.Parameter
        The trained parameters (those with ``requires_grad``).
    max_norm : float
        Clipping threshold of the total L2 norm (``math.inf``: measure it, clip nothing; the official
        pretraining clips at 20).

    Returns
    -------
    grad_norm : torch.Tensor
        The total gradient norm before clipping (0-d, on the parameters' device; not synchronised).
    """
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm
