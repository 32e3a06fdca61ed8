"""One pretraining epoch: knowledge-guided masking, spectrum reconstruction, gradient accumulation.

Targets (``pretrain.target``): ``spectrum`` (M4CEA: Fourier magnitude and phase of every patch,
:func:`reconstruction_loss`) or ``signal`` (MAE-style raw-patch reconstruction, as in MAE (He et al.,
CVPR 2022) and PedSleepMAE: the patch's samples of the scaled window, :func:`signal_loss`), for the
ablation of the target. The model and its two heads stay the same: with ``signal`` the prediction of a
patch is the first ``patch_samples`` of the 2 x (patch_samples // 2 + 1) outputs of the magnitude and
phase heads, concatenated (:func:`signal_prediction`), so checkpoints of both targets fine-tune alike.

:func:`train_one_epoch` is a plain function in the layout of MAE's ``engine_pretrain.py``
(facebookresearch/mae); the DDP habits (sync only on the last micro-step, AMP as a context that is a
no-op when off) follow nanoGPT's ``train.py``.

One optimiser step consumes ``batch_size`` windows over all ranks: ``accum_steps`` micro-batches of
``micro_batch_size`` windows on each of ``world_size`` ranks. Every micro-batch loss is divided by
``accum_steps`` (DDP averages over ranks), DDP all-reduces gradients on the last micro-step only, and
the optimiser steps and zeroes the gradients once per accumulation. The learning rate is set per
optimiser step. This loop is :func:`pretrain.accumulation.run_accumulated_epoch`, shared with LaBraM's
stages; :func:`train_one_epoch` gives it M4CEA's micro-step (masking, targets, losses).

Masking noise. The Gumbel noise of one optimiser step is drawn for the whole global batch from a
generator seeded by ``(seed, step)``; window ``p`` of the step (its position in the shuffled order,
see :func:`pretrain.data.build_pretrain_loader`) gets row ``p``. So a window's mask depends only on
the seed, the step and its position: not on the number of ranks, the micro-batch size or a
resume, and a run on 2 processes makes the same update as a run on 1 with the same global batch.

Host synchronisation. The step runs without ``.item()``: losses are summed on the device and read
once per ``log_every`` optimiser steps (and at the end of the epoch), after summing over ranks
(:class:`runtime.metrics.IntervalLog`). A non-finite loss is detected there, so it stops the run at
most ``log_every`` steps after it appears (and before the epoch's checkpoint is written). With
``runtime.amp=fp16`` the gradient scaler reads its overflow flag once per step, a synchronisation
inherent to ``GradScaler``; bf16 (the default on CUDA) needs no scaler.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models import patch_spectrum
from pretrain.accumulation import run_accumulated_epoch
from pretrain.masking import MASKING_STRATEGIES, gumbel_topk_mask
from runtime.distributed import DistributedContext

__all__ = [
    "LOSS_TOKENS",
    "TARGET_NORMS",
    "PRETRAIN_TARGETS",
    "EngineSettings",
    "magnitude_statistics",
    "normalize_magnitude_target",
    "patch_signal",
    "reconstruction_loss",
    "signal_loss",
    "signal_prediction",
    "train_one_epoch",
]


#: Allowed values of the config key ``loss.tokens``.
LOSS_TOKENS = ("all", "masked")

#: Allowed values of the config key ``loss.target_norm``.
TARGET_NORMS = ("none", "frequency")

#: Allowed values of the config key ``pretrain.target``.
PRETRAIN_TARGETS = ("spectrum", "signal")

_METRICS = ("loss", "loss_magnitude", "loss_phase", "grad_norm")
_SIGNAL_METRICS = ("loss", "loss_signal", "grad_norm")


@dataclass(frozen=True)
class EngineSettings:
    """What one optimiser step needs besides the model, data and optimiser.

    Attributes
    ----------
    micro_batch_size : int
        Windows per device step on one rank.
    accum_steps : int
        Micro-batches per optimiser step on one rank
        (``batch_size = micro_batch_size * accum_steps * world_size``).
    n_tokens : int
        Tokens per window, ``n_chans * n_patches`` (320).
    patch_samples : int
        Samples per patch (200), for the rFFT targets.
    n_masked : int
        Tokens masked per window (160 of 320 in the paper).
    strategy : str
        ``"knowledge"`` (MFDE-weighted) or ``"random"`` (uniform).
    loss_tokens : str
        ``"all"`` (official) or ``"masked"``.
    target : str
        ``"spectrum"`` (M4CEA) or ``"signal"`` (raw patches; see the module docstring).
    target_norm : str
        ``"none"`` (official: raw Fourier magnitudes) or ``"frequency"``
        (:func:`normalize_magnitude_target` with ``magnitude_mean`` and ``magnitude_std``); used by the
        ``spectrum`` target only.
    magnitude_mean, magnitude_std : tuple of float
        Per-bin statistics of the magnitude targets (:func:`magnitude_statistics`), needed by
        ``target_norm="frequency"``; empty otherwise.
    clip_grad : float | None
        Maximum gradient norm (20 in the paper); None or 0 clips nothing (the norm is still logged).
    amp_dtype : torch.dtype | None
        Autocast dtype (``torch.bfloat16``, ``torch.float16``) or None for full precision.
    seed : int
        Seed of the masking noise.
    log_every : int
        Optimiser steps between reads of the losses (logging and the non-finite check).
    """

    micro_batch_size: int
    accum_steps: int
    n_tokens: int
    patch_samples: int
    n_masked: int
    strategy: str = "knowledge"
    loss_tokens: str = "all"
    target: str = "spectrum"
    target_norm: str = "none"
    magnitude_mean: tuple = ()
    magnitude_std: tuple = ()
    clip_grad: float | None = 20.0
    amp_dtype: torch.dtype | None = None
    seed: int = 0
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.strategy not in MASKING_STRATEGIES:
            raise ValueError(
                "Invalid value for the 'masking.strategy' parameter. "
                f"Allowed values are {MASKING_STRATEGIES}, "
                f"but got {self.strategy!r} instead."
            )
        if self.loss_tokens not in LOSS_TOKENS:
            raise ValueError(
                f"Invalid value for the 'loss.tokens' parameter. Allowed values are {LOSS_TOKENS}, "
                f"but got {self.loss_tokens!r} instead."
            )
        if self.target not in PRETRAIN_TARGETS:
            raise ValueError(
                f"Invalid value for the 'pretrain.target' parameter. Allowed values are {PRETRAIN_TARGETS}, "
                f"but got {self.target!r} instead."
            )
        if self.target_norm not in TARGET_NORMS:
            raise ValueError(
                f"Invalid value for the 'loss.target_norm' parameter. Allowed values are {TARGET_NORMS}, "
                f"but got {self.target_norm!r} instead."
            )
        n_freqs = self.patch_samples // 2 + 1
        n_stats = (len(self.magnitude_mean), len(self.magnitude_std))
        if self.target == "spectrum" and self.target_norm == "frequency" and n_stats != (n_freqs, n_freqs):
            raise ValueError(
                f"loss.target_norm='frequency' needs magnitude_mean and magnitude_std of {n_freqs} values "
                f"(pretrain.engine.magnitude_statistics), but got {n_stats[0]} and {n_stats[1]}."
            )
        if self.loss_tokens == "masked" and self.n_masked == 0:
            raise ValueError(
                "loss.tokens='masked' needs masked tokens, but masking.mask_ratio gives 0 per window."
            )
        if not 0 <= self.n_masked <= self.n_tokens:
            raise ValueError(
                f"Invalid value for the 'n_masked' parameter: must be in 0..{self.n_tokens}, "
                f"but got {self.n_masked}."
            )
        for name in ("micro_batch_size", "accum_steps", "n_tokens", "patch_samples", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"Invalid value for the '{name}' parameter: must be >= 1, but got {getattr(self, name)}."
                )


def magnitude_statistics(windows, patch_samples: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and standard deviation of the Fourier-magnitude targets per frequency bin.

    Parameters
    ----------
    windows : iterable of Tensor, each shape (n_chans, n_times)
        Scaled windows (as the loader gives them), e.g. evenly spaced windows of the data folder.
    patch_samples : int
        Samples per patch.

    Returns
    -------
    mean, std : tuple of float, each of length ``patch_samples // 2 + 1``
        Over all tokens of all windows, computed in float64 (std with ``n - 1``).

    Raises
    ------
    ValueError
        If ``windows`` is empty.
    """
    total = total_sq = None
    count = 0
    for x in windows:
        magnitude = patch_spectrum(x.unsqueeze(0), patch_samples)[0]
        magnitude = magnitude.reshape(-1, patch_samples // 2 + 1).double()
        total = magnitude.sum(0) if total is None else total + magnitude.sum(0)
        total_sq = magnitude.square().sum(0) if total_sq is None else total_sq + magnitude.square().sum(0)
        count += magnitude.shape[0]
    if count == 0:
        raise ValueError("Invalid value for the 'windows' parameter: no window to compute statistics from.")
    mean = total / count
    std = ((total_sq - count * mean.square()).clamp_min(0) / max(count - 1, 1)).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def normalize_magnitude_target(
    target_magnitude: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Standardise the Fourier-magnitude targets per frequency bin (``loss.target_norm: frequency``).

    Raw magnitudes of the scaled EEG share one large spectrum (1/f: tens in the lowest bins, about 1
    above): fitting that common part is most of the official loss, and a network pretrained on it
    carries one large direction common to every token and window, so that its token-mean features are
    large and nearly constant across windows (what the classification head sees; issue 11). Standardised
    targets leave what differs between patches: the idea of MAE's normalised-pixel targets, here per
    frequency bin with statistics of the data (:func:`magnitude_statistics`), since a per-patch
    normalisation keeps the common 1/f shape and batch statistics would depend on the batch split.

    Parameters
    ----------
    target_magnitude : Tensor, shape (batch, n_tokens, n_freqs)
        :func:`models.patch_spectrum` magnitudes.
    mean, std : Tensor, shape (n_freqs,)
        Per-bin statistics of the data.
    eps : float
        Added to ``std``.

    Returns
    -------
    target : Tensor, shape (batch, n_tokens, n_freqs), float32
        ``(magnitude - mean) / (std + eps)``.

    References
    ----------
    He, Chen, Xie, Li, Dollar, Girshick, "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022
    (``norm_pix_loss``); https://github.com/facebookresearch/mae
    """
    return (target_magnitude.float() - mean.float()) / (std.float() + eps)


def reconstruction_loss(
    pred_magnitude: torch.Tensor,
    pred_phase: torch.Tensor,
    target_magnitude: torch.Tensor,
    target_phase: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared errors of the predicted Fourier magnitude and phase.

    Parameters
    ----------
    pred_magnitude, pred_phase : Tensor, shape (batch, n_tokens, n_freqs)
        Model outputs (any float dtype; computed in float32).
    target_magnitude, target_phase : Tensor, shape (batch, n_tokens, n_freqs)
        :func:`models.patch_spectrum` of the scaled input (phase in radians).
    mask : Tensor, shape (batch, n_tokens), bool | None
        None: mean over all tokens (official M4CEA). Otherwise the mean over the tokens where
        ``mask`` is True.

    Returns
    -------
    loss_magnitude, loss_phase : Tensor, scalar, float32
        The training loss is their sum.

    References
    ----------
    Official M4CEA pretraining: ``MSE(rec_magnitude, target_magnitude) + MSE(rec_angle, target_angle)``
    over all tokens.
    """
    err_mag = (pred_magnitude.float() - target_magnitude).square()
    err_phase = (pred_phase.float() - target_phase).square()
    if mask is None:
        return err_mag.mean(), err_phase.mean()
    weight = mask.unsqueeze(-1).to(err_mag.dtype)
    denom = weight.sum() * err_mag.shape[-1]
    return (err_mag * weight).sum() / denom, (err_phase * weight).sum() / denom


def patch_signal(x: torch.Tensor, patch_samples: int) -> torch.Tensor:
    """The patches of windows as tokens: the raw-signal target of ``pretrain.target: signal``.

    Parameters
    ----------
    x : Tensor, shape (batch, n_chans, n_times)
        Scaled windows; ``n_times`` a multiple of ``patch_samples``.
    patch_samples : int

    Returns
    -------
    patches : Tensor, shape (batch, n_chans * n_patches, patch_samples), float32
        Token ``channel * n_patches + patch``, the order of :func:`models.patch_spectrum`.
    """
    batch, n_chans, n_times = x.shape
    return x.float().reshape(batch, n_chans * (n_times // patch_samples), patch_samples)


def signal_prediction(
    pred_magnitude: torch.Tensor, pred_phase: torch.Tensor, patch_samples: int
) -> torch.Tensor:
    """The predicted patch samples of ``pretrain.target: signal`` from the model's two heads.

    The magnitude and phase heads give ``2 * (patch_samples // 2 + 1) >= patch_samples`` outputs per token;
    their concatenation, cut to ``patch_samples``, is read as the patch (a linear map of the last hidden
    layers, so nothing is lost by the reading, and the model's layout stays that of the official code).

    Returns
    -------
    prediction : Tensor, shape (batch, n_tokens, patch_samples)
    """
    return torch.cat([pred_magnitude, pred_phase], dim=-1)[..., :patch_samples]


def signal_loss(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error of predicted patches (MAE's pixel loss, without per-patch normalisation).

    Parameters
    ----------
    prediction, target : Tensor, shape (batch, n_tokens, patch_samples)
        :func:`signal_prediction` and :func:`patch_signal` (the window is already scaled per channel).
    mask : Tensor, shape (batch, n_tokens), bool | None
        None: mean over all tokens; else over the tokens where ``mask`` is True (MAE: the masked ones).

    Returns
    -------
    loss : Tensor, scalar, float32

    References
    ----------
    He K. et al., "Masked autoencoders are scalable vision learners", CVPR 2022 (``forward_loss``).
    """
    err = (prediction.float() - target).square()
    if mask is None:
        return err.mean()
    weight = mask.unsqueeze(-1).to(err.dtype)
    return (err * weight).sum() / (weight.sum() * err.shape[-1])


def train_one_epoch(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    epoch: int,
    *,
    settings: EngineSettings,
    step: int,
    lr_scheduler=None,
    scaler: torch.amp.GradScaler | None = None,
    ctx: DistributedContext | None = None,
    log_writer=None,
    max_steps: int | None = None,
) -> dict:
    """Train for one epoch of the loader (only whole optimiser steps).

    Parameters
    ----------
    model : torch.nn.Module
        Pretraining model ``model(x, mask) -> (pred_magnitude, pred_phase)``, possibly wrapped in
        ``DistributedDataParallel`` and/or ``torch.compile``, in training mode.
    loader : DataLoader
        This rank's micro-batches ``(x, weights)``: x (micro_batch, n_chans, n_times) scaled,
        weights (micro_batch, n_tokens) MFDE (:func:`pretrain.data.build_pretrain_loader`).
        Call ``sampler.set_epoch(epoch)`` before.
    optimizer : torch.optim.Optimizer
    device : torch.device
    epoch : int
        0-based, for logs.
    settings : EngineSettings
    step : int
        Optimiser steps done before this epoch (sets the learning rate and the masking noise).
    lr_scheduler : timm.scheduler.Scheduler | None
        Stepped with ``step_update(step)`` before every optimiser step.
    scaler : torch.amp.GradScaler | None
        For float16 autocast; None (or disabled) otherwise.
    ctx : DistributedContext | None
        This process's rank and world size (None: a single process).
    log_writer : tensorboardX.SummaryWriter | None
        Receives ``loss``, ``loss_magnitude``, ``loss_phase``, ``grad_norm``, ``lr`` and
        ``samples_per_s`` every ``log_every`` steps (rank 0 only).
    max_steps : int | None
        Stop after this many optimiser steps (benchmarks); None runs the whole epoch.

    Returns
    -------
    metrics : dict
        Means over the epoch's optimiser steps and over ranks: ``loss``, ``loss_magnitude``,
        ``loss_phase``, ``grad_norm`` (``pretrain.target: signal``: ``loss``, ``loss_signal``,
        ``grad_norm``); ``lr`` (last), ``samples_per_s``, ``n_steps`` and ``step`` (optimiser steps done
        after this epoch).

    Raises
    ------
    ValueError
        If the loader holds fewer micro-batches than one optimiser step needs.
    FloatingPointError
        If the loss becomes NaN or infinite (checked every ``log_every`` steps).
    """
    s = settings
    autocast = torch.autocast(device.type, dtype=s.amp_dtype, enabled=s.amp_dtype is not None)
    signal = s.target == "signal"
    magnitude_stats = (
        torch.tensor(s.magnitude_mean, device=device),
        torch.tensor(s.magnitude_std, device=device),
    )

    def micro_step(batch, noise):
        x, weights = batch
        x = x.to(device, non_blocking=True)
        weights = weights.to(device, non_blocking=True)
        if s.strategy == "random":
            weights = torch.ones_like(weights)
        mask = gumbel_topk_mask(weights, s.n_masked, noise=noise)
        loss_mask = mask if s.loss_tokens == "masked" else None
        with torch.no_grad():
            if signal:
                target_signal = patch_signal(x, s.patch_samples)
            else:
                target_magnitude, target_phase = patch_spectrum(x, s.patch_samples)
                if s.target_norm == "frequency":
                    target_magnitude = normalize_magnitude_target(target_magnitude, *magnitude_stats)
        with autocast:
            pred_magnitude, pred_phase = model(x, mask)
        if signal:
            prediction = signal_prediction(pred_magnitude, pred_phase, s.patch_samples)
            loss_magnitude = signal_loss(prediction, target_signal, loss_mask)
            loss_phase = torch.zeros_like(loss_magnitude)
        else:
            loss_magnitude, loss_phase = reconstruction_loss(
                pred_magnitude, pred_phase, target_magnitude, target_phase, loss_mask
            )
        return loss_magnitude + loss_phase, torch.stack([loss_magnitude.detach(), loss_phase.detach()])

    def summarise(step_losses):  # (magnitude, phase) -> the logged losses, grad_norm apart
        if signal:  # loss, loss_signal
            return torch.stack([step_losses[0], step_losses[0]])
        return torch.stack([step_losses.sum(), step_losses[0], step_losses[1]])

    return run_accumulated_epoch(
        model,
        loader,
        optimizer,
        device,
        epoch,
        settings=s,
        step=step,
        names=_SIGNAL_METRICS if signal else _METRICS,
        micro_step=micro_step,
        summarise=summarise,
        lr_scheduler=lr_scheduler,
        scaler=scaler,
        ctx=ctx,
        log_writer=log_writer,
        max_steps=max_steps,
    )
