"""The gradient-accumulation loop of one pretraining epoch, shared by M4CEA and both LaBraM stages.

One optimiser step consumes ``batch_size`` windows over all ranks: ``accum_steps`` micro-batches of
``micro_batch_size`` windows on each of ``world_size`` ranks. Every micro-batch loss is divided by
``accum_steps`` (DDP averages over ranks), DDP all-reduces gradients on the last micro-step only
(:func:`runtime.distributed.no_sync`), and the optimiser steps and zeroes the gradients once per
accumulation (:func:`runtime.optim.clip_and_step`). The learning rate is set per optimiser step.

Masking noise is drawn per optimiser step for the whole global batch from a generator seeded by
``(seed, step)``; window ``p`` of the step gets row ``p``, so the masks depend neither on the number of
ranks nor on a resume. Losses are summed on the device and read every ``log_every`` optimiser steps
(:class:`runtime.metrics.IntervalLog`), where a non-finite loss stops the run.

What a micro-step computes (model, targets, losses) is the engine's: :mod:`pretrain.engine` (M4CEA) and
:mod:`pretrain.engine_labram` (LaBraM) pass it as ``micro_step``. The loop follows MAE's
``engine_pretrain.py`` (facebookresearch/mae) and nanoGPT's ``train.py`` (sync on the last micro-step).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from tqdm import tqdm

from pretrain.masking import gumbel_noise
from runtime.distributed import DistributedContext, no_sync
from runtime.metrics import IntervalLog
from runtime.optim import clip_and_step, optimiser_steps_in_epoch
from runtime.seeding import derive_seed

__all__ = ["run_accumulated_epoch"]


def run_accumulated_epoch(
    model: torch.nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    epoch: int,
    *,
    settings,
    step: int,
    names: Sequence[str],
    micro_step: Callable,
    summarise: Callable | None = None,
    lr_scheduler=None,
    scaler: torch.amp.GradScaler | None = None,
    ctx: DistributedContext | None = None,
    log_writer=None,
    max_steps: int | None = None,
) -> dict:
    """Train for one epoch of the loader (only whole optimiser steps), ``micro_step`` per micro-batch.

    Parameters
    ----------
    model : torch.nn.Module
        The trained model, possibly wrapped in ``DistributedDataParallel`` and/or ``torch.compile``.
    loader : iterable
        This rank's micro-batches; each is passed to ``micro_step`` as it comes.
    optimizer : torch.optim.Optimizer
    device : torch.device
    epoch : int
        0-based, for logs.
    settings : pretrain.engine.EngineSettings | pretrain.engine_labram.LabramSettings
        Read: ``micro_batch_size``, ``accum_steps``, ``n_tokens``, ``clip_grad`` (None or 0: no
        clipping, the norm is still logged), ``seed`` (masking noise) and ``log_every``.
    step : int
        Optimiser steps done before this epoch (sets the learning rate and the masking noise).
    names : sequence of str
        The logged metrics, ``"loss"`` first and ``"grad_norm"`` last (:class:`runtime.metrics.IntervalLog`).
    micro_step : callable
        ``micro_step(batch, noise) -> (loss, metrics)``: ``batch`` from the loader, ``noise`` this
        rank's Gumbel noise of the micro-batch, Tensor (micro_batch_size, n_tokens); ``loss`` the scalar
        to back-propagate (the loop divides it by ``accum_steps``); ``metrics`` a detached 1-D Tensor,
        averaged over the micro-steps of an optimiser step.
    summarise : callable | None
        Maps that average to the logged values of ``names`` but ``grad_norm``; None: it is them.
    lr_scheduler : timm.scheduler.Scheduler | None
        Stepped with ``step_update(step)`` before every optimiser step.
    scaler : torch.amp.GradScaler | None
        For float16 autocast; None (or disabled) otherwise.
    ctx : DistributedContext | None
        This process's rank and world size (None: a single process).
    log_writer : tensorboardX.SummaryWriter | None
        Receives the metrics every ``log_every`` steps (rank 0 only).
    max_steps : int | None
        Stop after this many optimiser steps (benchmarks); None runs the whole epoch.

    Returns
    -------
    metrics : dict
        Means over the epoch's optimiser steps and over ranks of ``names``; ``lr`` (last),
        ``samples_per_s``, ``n_steps`` and ``step`` (optimiser steps done after this epoch).

    Raises
    ------
    ValueError
        If the loader holds fewer micro-batches than one optimiser step needs.
    FloatingPointError
        If the loss becomes NaN or infinite (checked every ``log_every`` steps).
    """
    ctx = ctx or DistributedContext(device=device)
    s = settings
    accum, world = s.accum_steps, ctx.world_size
    n_steps = optimiser_steps_in_epoch(len(loader), accum, s.micro_batch_size, epoch, max_steps)
    model.train()
    if scaler is None:
        scaler = torch.amp.GradScaler(device.type, enabled=False)
    generator = torch.Generator(device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    max_norm = s.clip_grad if s.clip_grad else math.inf

    def nonfinite_message(values: dict, at_step: int) -> str:
        return (
            f"Non-finite pretraining loss {values['loss']} ("
            + ", ".join(f"{k} {v}" for k, v in values.items() if k.startswith("loss_"))
            + f") in epoch {epoch} at optimiser step {at_step} (checked "
            f"every {s.log_every} steps): lower optim.base_lr, check the data for NaN or extreme "
            "values, or set runtime.amp=fp32."
        )

    progress = tqdm(
        total=n_steps, desc=f"epoch {epoch}", disable=not ctx.is_main, dynamic_ncols=True, leave=False
    )
    log = IntervalLog(
        names,
        device=device,
        log_every=s.log_every,
        world_size=world,
        global_batch=s.micro_batch_size * accum * world,
        progress=progress,
        log_writer=log_writer,
        nonfinite_message=nonfinite_message,
        show_speed=True,
    )
    data_iter = iter(loader)
    for _ in range(n_steps):
        if lr_scheduler is not None:
            lr_scheduler.step_update(step)
        lr = optimizer.param_groups[0]["lr"]
        generator.manual_seed(derive_seed(s.seed, "mask", step))
        noise = gumbel_noise((accum, s.micro_batch_size, world, s.n_tokens), generator)
        step_sums = None
        for micro in range(accum):
            with no_sync(model, sync=micro == accum - 1):
                loss, metrics = micro_step(next(data_iter), noise[micro, :, ctx.rank])
                scaler.scale(loss / accum).backward()
            step_sums = metrics / accum if step_sums is None else step_sums + metrics / accum
        grad_norm = clip_and_step(optimizer, scaler, params, max_norm)
        step += 1
        values = step_sums if summarise is None else summarise(step_sums)
        log.update(torch.cat([values, grad_norm.float().reshape(1)]), step=step, lr=lr)
    return log.finish()
