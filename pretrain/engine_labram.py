"""LaBraM's two pretraining stages, one epoch each: VQ-NSP tokenizer training and masked code prediction.

Jiang, Zhao, Lu, "Large Brain Model for Learning Generic Representations with Tremendous EEG Data in
BCI", ICLR 2024 (official code github 935963004/LaBraM, ``engine_for_vqnsp.py`` and
``engine_for_pretraining.py``, read to reproduce the losses; this code is ours):

- :func:`train_tokenizer_one_epoch`: the tokenizer (:class:`models.VQNSP`) in training mode predicts the
  standardised Fourier amplitude and phase of every patch from its quantised code; loss = commitment +
  amplitude MSE + phase MSE (``VQNSP.forward``); the codebook follows an EMA of its assigned encoder
  outputs (k-means initialisation on the first batch). The epoch's codebook usage is the histogram of
  the codes of its training steps: ``n_unused_codes`` (the official ``Unused_code``: the official
  engine resets the quantizer's usage counts at every epoch and counts the codes still at 0) and
  ``codebook_perplexity`` (``exp`` of the histogram's entropy).
- :func:`train_mem_one_epoch`: masked EEG modelling. Half the tokens of each window are masked uniformly
  at random (the official ``random_masking``, mask ratio 0.5); the frozen tokenizer (eval mode) gives
  every token's code; the model predicts the codes of the masked tokens and, in the symmetric pass, of
  the others: loss = CE(masked) + CE(symmetric) as the official. Logged: the two losses and the
  masked-token accuracies ``mlm_acc`` and ``mlm_acc_sym``.

Mechanics are those of :mod:`pretrain.engine` (M4CEA), in the one loop both share
(:func:`pretrain.accumulation.run_accumulated_epoch`): ``accum_steps`` micro-batches per optimiser step on
every rank, DDP's ``no_sync`` except on the last micro-step, autocast (bf16 on CUDA), losses summed on the
device and read every ``log_every`` steps (:class:`runtime.metrics.IntervalLog`), the learning rate set
per optimiser step, and masking noise drawn per optimiser step for the whole global batch from
``(seed, step)`` so that the masks depend neither on the number of ranks nor on a resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pretrain.accumulation import run_accumulated_epoch
from pretrain.masking import gumbel_topk_mask
from runtime.distributed import DistributedContext, all_reduce_sum

__all__ = [
    "LabramSettings",
    "TOKENIZER_METRICS",
    "MEM_METRICS",
    "mem_losses",
    "usage_from_counts",
    "train_mem_one_epoch",
    "train_tokenizer_one_epoch",
]

#: Metrics of a tokenizer epoch (besides lr, speed, steps and the codebook usage).
TOKENIZER_METRICS = ("loss", "loss_rec", "loss_rec_angle", "loss_quant", "grad_norm")

#: Metrics of a masked-EEG-modelling epoch.
MEM_METRICS = ("loss", "loss_masked", "loss_sym", "mlm_acc", "mlm_acc_sym", "grad_norm")


@dataclass(frozen=True)
class LabramSettings:
    """What one optimiser step of either LaBraM stage needs besides the model, data and optimiser.

    Attributes
    ----------
    micro_batch_size, accum_steps : int
        As :class:`pretrain.engine.EngineSettings`.
    n_tokens : int
        Tokens per window, ``n_chans * n_patches`` (64 for 16 channels x 4 s at 200 Hz).
    n_masked : int
        Tokens masked per window (masked modelling; half of ``n_tokens`` as the official).
    clip_grad : float | None
        Maximum gradient norm (official: none for the tokenizer, 3.0 for masked modelling).
    amp_dtype : torch.dtype | None
        Autocast dtype or None.
    seed : int
        Seed of the masking noise.
    log_every : int
        Optimiser steps between reads of the losses.
    """

    micro_batch_size: int
    accum_steps: int
    n_tokens: int
    n_masked: int = 0
    clip_grad: float | None = None
    amp_dtype: torch.dtype | None = None
    seed: int = 0
    log_every: int = 50

    def __post_init__(self) -> None:
        for name in ("micro_batch_size", "accum_steps", "n_tokens", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"Invalid value for the '{name}' parameter: must be >= 1, but got {getattr(self, name)}."
                )
        if not 0 <= self.n_masked <= self.n_tokens:
            raise ValueError(
                f"Invalid value for the 'n_masked' parameter: must be in 0..{self.n_tokens}, "
                f"but got {self.n_masked}."
            )


def usage_from_counts(counts: torch.Tensor) -> tuple[float, int]:
    """Perplexity and unused codes of a code histogram (the figures of :func:`models.codebook_usage`).

    Parameters
    ----------
    counts : Tensor, shape (n_codes,)
        How often each code was chosen (any numeric dtype; not all zero).

    Returns
    -------
    perplexity : float
        ``exp(entropy)`` of the normalised histogram (natural log): ``k`` when ``k`` codes are used equally.
    n_unused : int
        Codes with a count of 0 (the official ``Unused_code``).
    """
    counts = counts.double()
    probabilities = counts[counts > 0] / counts.sum()
    entropy = -(probabilities * probabilities.log()).sum()
    return float(entropy.exp()), int((counts == 0).sum())


def mem_losses(
    logits_masked: torch.Tensor,
    logits_sym: torch.Tensor,
    codes: torch.Tensor,
    mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-entropies and accuracies of masked code prediction, as the official engine.

    Parameters
    ----------
    logits_masked, logits_sym : Tensor, shapes (n_masked_total, vocab_size), (n_visible_total, vocab_size)
        The model's symmetric outputs (:meth:`models.LaBraM.forward` with ``head="pretrain"``).
    codes : Tensor of int64, shape (batch, n_tokens)
        The tokenizer's codes (:meth:`models.VQNSP.tokenize`).
    mask : Tensor of bool, shape (batch, n_tokens)
        True = masked in the first pass.

    Returns
    -------
    loss_masked, loss_sym : Tensor, scalar, float32
        Mean cross-entropy over the masked tokens and over the others (second pass); the training loss
        is their sum (official ``loss_rec + loss_rec_sym``).
    acc_masked, acc_sym : Tensor, scalar, float32
        Fraction of those tokens whose arg-max logit is their code (official ``mlm_acc``, ``mlm_acc_sym``).
    """
    labels, labels_sym = codes[mask], codes[~mask]
    loss_masked = F.cross_entropy(logits_masked.float(), labels)
    loss_sym = F.cross_entropy(logits_sym.float(), labels_sym)
    with torch.no_grad():
        acc = (logits_masked.argmax(-1) == labels).float().mean()
        acc_sym = (logits_sym.argmax(-1) == labels_sym).float().mean()
    return loss_masked, loss_sym, acc, acc_sym


def train_tokenizer_one_epoch(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    epoch: int,
    *,
    settings: LabramSettings,
    step: int,
    n_codes: int,
    lr_scheduler=None,
    scaler: torch.amp.GradScaler | None = None,
    ctx: DistributedContext | None = None,
    log_writer=None,
    max_steps: int | None = None,
) -> dict:
    """Train the VQ-NSP tokenizer for one epoch of the loader (only whole optimiser steps).

    Parameters
    ----------
    model : torch.nn.Module
        :class:`models.VQNSP` (possibly in ``DistributedDataParallel``); ``model(x)`` returns its
        :class:`models.vqnsp.VQNSPLosses` and updates the codebook (training mode).
    loader : DataLoader
        Micro-batches ``(x, weights)``: ``x`` (micro_batch, n_chans, n_times) at 200 Hz in uV / 100
        (:class:`preprocess.adapt.WindowAdapter`); the weights are not used.
    optimizer, device, epoch, step, lr_scheduler, scaler, ctx, log_writer, max_steps
        As :func:`pretrain.engine.train_one_epoch`.
    settings : LabramSettings
        ``n_masked`` is not used.
    n_codes : int
        Codebook size, for the usage histogram.

    Returns
    -------
    metrics : dict
        Means over the epoch's optimiser steps and ranks of :data:`TOKENIZER_METRICS`; ``lr``,
        ``samples_per_s``, ``n_steps``, ``step``; and the codebook usage of the epoch's training codes
        over all ranks: ``codebook_perplexity`` and ``n_unused_codes``.

    Raises
    ------
    ValueError
        If the loader holds fewer micro-batches than one optimiser step needs.
    FloatingPointError
        If the loss becomes NaN or infinite.

    References
    ----------
    Official ``engine_for_vqnsp.train_one_epoch`` (github 935963004/LaBraM).
    """
    s = settings
    autocast = torch.autocast(device.type, dtype=s.amp_dtype, enabled=s.amp_dtype is not None)
    counts = torch.zeros(n_codes, dtype=torch.long, device=device)

    def micro_step(batch, noise):
        x = batch[0].to(device, non_blocking=True)
        with autocast:
            losses = model(x)
        counts.add_(torch.bincount(losses.codes.reshape(-1), minlength=n_codes))
        parts = torch.stack([losses.loss, losses.rec_loss, losses.rec_angle_loss, losses.quant_loss])
        return losses.loss, parts.detach().float()

    metrics = run_accumulated_epoch(
        model,
        loader,
        optimizer,
        device,
        epoch,
        settings=s,
        step=step,
        names=TOKENIZER_METRICS,
        micro_step=micro_step,
        lr_scheduler=lr_scheduler,
        scaler=scaler,
        ctx=ctx,
        log_writer=log_writer,
        max_steps=max_steps,
    )
    perplexity, n_unused = usage_from_counts(all_reduce_sum(counts))
    metrics.update(codebook_perplexity=perplexity, n_unused_codes=n_unused)
    if log_writer is not None:
        log_writer.add_scalar("train/codebook_perplexity", perplexity, metrics["step"])
        log_writer.add_scalar("train/n_unused_codes", n_unused, metrics["step"])
    return metrics


def train_mem_one_epoch(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    epoch: int,
    *,
    tokenizer: torch.nn.Module,
    settings: LabramSettings,
    step: int,
    lr_scheduler=None,
    scaler: torch.amp.GradScaler | None = None,
    ctx: DistributedContext | None = None,
    log_writer=None,
    max_steps: int | None = None,
) -> dict:
    """Masked EEG modelling for one epoch: predict the frozen tokenizer's codes of masked tokens.

    Parameters
    ----------
    model : torch.nn.Module
        :class:`models.LaBraM` with ``head="pretrain"`` (possibly in ``DistributedDataParallel``).
    tokenizer : torch.nn.Module
        A trained :class:`models.VQNSP` in eval mode without gradients (never updated here); its
        ``tokenize(x)`` gives the targets (under the same autocast, as the official engine).
    loader : DataLoader
        Micro-batches ``(x, weights)``, ``x`` at 200 Hz in uV / 100; the weights are not used
        (masking is uniform, as the official).
    optimizer, device, epoch, step, lr_scheduler, scaler, ctx, log_writer, max_steps
        As :func:`pretrain.engine.train_one_epoch`.
    settings : LabramSettings
        ``n_masked`` tokens of every window are masked (uniform without replacement).

    Returns
    -------
    metrics : dict
        Means over the epoch's optimiser steps and ranks of :data:`MEM_METRICS` (``loss`` is
        ``loss_masked + loss_sym``), then ``lr``, ``samples_per_s``, ``n_steps``, ``step``.

    Raises
    ------
    ValueError
        If the loader holds fewer micro-batches than one optimiser step needs.
    FloatingPointError
        If the loss becomes NaN or infinite.

    References
    ----------
    Official ``engine_for_pretraining.train_one_epoch`` and ``random_masking`` (github
    935963004/LaBraM).
    """
    s = settings
    autocast = torch.autocast(device.type, dtype=s.amp_dtype, enabled=s.amp_dtype is not None)
    if tokenizer.training:
        raise ValueError("The tokenizer must be in eval mode (call tokenizer.eval()): it is frozen.")

    def micro_step(batch, noise):
        x = batch[0].to(device, non_blocking=True)
        weights = torch.ones(x.shape[0], s.n_tokens, device=device)
        mask = gumbel_topk_mask(weights, s.n_masked, noise=noise)
        with torch.no_grad(), autocast:
            codes = tokenizer.tokenize(x)
        with autocast:
            logits_masked, logits_sym = model(x, mask)
        loss_masked, loss_sym, acc, acc_sym = mem_losses(logits_masked, logits_sym, codes, mask)
        loss = loss_masked + loss_sym
        return loss, torch.stack([loss.detach(), loss_masked.detach(), loss_sym.detach(), acc, acc_sym])

    return run_accumulated_epoch(
        model,
        loader,
        optimizer,
        device,
        epoch,
        settings=s,
        step=step,
        names=MEM_METRICS,
        micro_step=micro_step,
        lr_scheduler=lr_scheduler,
        scaler=scaler,
        ctx=ctx,
        log_writer=log_writer,
        max_steps=max_steps,
    )
