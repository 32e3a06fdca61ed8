"""One fine-tuning epoch and one evaluation pass: cross-entropy, gradient accumulation, gathered predictions.

:func:`train_one_epoch` and :func:`evaluate` are plain functions in the layout of MAE's
``engine_finetune.py`` (facebookresearch/mae); the DDP habits (all-reduce on the last micro-step only,
AMP as a context that is a no-op when off) follow nanoGPT's ``train.py``.

Loss. Per window, the cross-entropy of the logits with optional label smoothing
(:func:`torch.nn.functional.cross_entropy`), times the weight of the window's class when class
weights are used (:func:`balanced_class_weights`). An optimiser step minimises the **mean over all
windows of the step**: each micro-batch contributes ``sum of its window losses / (micro_batch_size *
accum_steps)`` and DDP averages over ranks, so accumulating ``k`` micro-batches gives the gradient of
one batch ``k`` times larger, class weights included. (``torch.nn.CrossEntropyLoss(weight=w)``
instead divides each batch by its own sum of weights, which does not accumulate exactly; with
balanced weights the mean weight over the training split is 1, so both agree in expectation.)

Soft labels. When the targets are class distributions (float tensors (batch, n_classes), windows with a
``label_probs``, e.g. the HMS expert votes), the window loss is the KL divergence KL(p || softmax(logits))
(:func:`soft_window_losses`); its mean over a batch is ``torch.nn.KLDivLoss(reduction="batchmean")`` of the
log-probabilities, the HMS competition's score. Class weights then weigh each window by its argmax class;
label smoothing does not apply.

Gradient accumulation fixes the official code's defect (``zero_grad()`` every micro-batch while the
optimiser steps every k: k-1 of k gradients lost; DESIGN.md section 2): gradients are zeroed once per
optimiser step, after it.

Host synchronisation. The step runs without ``.item()``: losses and correct counts are summed on the
device and read once per ``log_every`` optimiser steps (and at the end of the epoch), summed over
ranks (:class:`runtime.metrics.IntervalLog`); a non-finite loss is detected there and stops the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from runtime.distributed import DistributedContext, all_gather_object, no_sync, unwrap_model
from runtime.metrics import IntervalLog
from runtime.optim import clip_and_step

__all__ = [
    "EarlyStopping",
    "EngineSettings",
    "balanced_class_weights",
    "evaluate",
    "set_train_mode",
    "soft_window_losses",
    "train_one_epoch",
    "window_losses",
]

_METRICS = ("loss", "accuracy", "grad_norm")


@dataclass
class EarlyStopping:
    """Best-checkpoint tracking and early stopping on the validation loss.

    An epoch improves when its validation loss is below ``best_loss - min_delta``; training stops after
    ``patience`` epochs in a row without improvement (official M4CEA fine-tuning: patience 30).

    Attributes
    ----------
    patience : int
        Epochs without improvement before stopping (>= 1).
    min_delta : float
        Smallest decrease of the validation loss that counts as an improvement (>= 0).
    best_loss : float
        Lowest validation loss so far (inf before the first epoch).
    best_epoch : int | None
        Epoch of ``best_loss``, numbered from 1 (None before the first epoch).
    bad_epochs : int
        Epochs since the last improvement.
    """

    patience: int
    min_delta: float = 0.0
    best_loss: float = math.inf
    best_epoch: int | None = None
    bad_epochs: int = 0

    def update(self, val_loss: float, epoch: int) -> bool:
        """Record the validation loss of ``epoch`` (numbered from 1); True when it is the new best."""
        improved = val_loss < self.best_loss - self.min_delta
        if improved:
            self.best_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` epochs in a row brought no improvement."""
        return self.bad_epochs >= self.patience


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
    clip_grad : float | None
        Maximum gradient norm; None or 0 clips nothing (the norm is still logged).
    amp_dtype : torch.dtype | None
        Autocast dtype (``torch.bfloat16``, ``torch.float16``) or None for full precision.
    label_smoothing : float
        Cross-entropy label smoothing, in [0, 1).
    log_every : int
        Optimiser steps between reads of the losses (logs, tensorboard, the non-finite check).
    linear_probe : bool
        Only the head trains: the backbone stays in eval mode (no drop-path or dropout).
    """

    micro_batch_size: int
    accum_steps: int = 1
    clip_grad: float | None = None
    amp_dtype: torch.dtype | None = None
    label_smoothing: float = 0.0
    log_every: int = 50
    linear_probe: bool = False

    def __post_init__(self) -> None:
        for name in ("micro_batch_size", "accum_steps", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"Invalid value for the '{name}' parameter: must be >= 1, but got {getattr(self, name)}."
                )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(
                f"Invalid value for the 'loss.label_smoothing' parameter. Allowed values are numbers "
                f"in [0, 1), but got {self.label_smoothing!r} instead."
            )


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Class weights inversely proportional to class frequency (scikit-learn's ``"balanced"``).

    Parameters
    ----------
    labels : ndarray of int, shape (n_windows,)
        Class indices of the training windows.
    n_classes : int

    Returns
    -------
    weights : Tensor of float32, shape (n_classes,)
        ``n_windows / (n_present * count_c)`` for each class present (``n_present`` classes), 0 for a
        class absent from ``labels``; the mean weight over the windows is 1.

    References
    ----------
    King and Zeng, "Logistic regression in rare events data", Political Analysis 2001; scikit-learn
    ``compute_class_weight("balanced")``.
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.as_tensor(weights, dtype=torch.float32)


def soft_window_losses(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """KL divergence KL(p || q) of each window's true distribution p from its predicted q = softmax(logits).

    Parameters
    ----------
    logits : Tensor, shape (batch, n_classes)
    target_probs : Tensor, shape (batch, n_classes)
        True class distributions (rows sum to 1; zeros allowed: 0 * log 0 = 0).

    Returns
    -------
    losses : Tensor of float32, shape (batch,)
        ``sum_k p_k (log p_k - log q_k)`` in nats; their mean is
        ``torch.nn.KLDivLoss(reduction="batchmean")(log_softmax(logits), p)``.

    References
    ----------
    Kaggle "HMS - Harmful Brain Activity Classification" (2024): the score is the mean KL divergence of
    the expert-vote distribution from the predicted one.
    """
    log_q = F.log_softmax(logits.float(), dim=1)
    return F.kl_div(log_q, target_probs.float(), reduction="none").sum(dim=1)


def _hard_targets(targets: torch.Tensor) -> torch.Tensor:
    """Class indices of targets: themselves, or the argmax of distributions."""
    return targets.argmax(dim=1) if targets.is_floating_point() else targets


def window_losses(
    logits: torch.Tensor,
    targets: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy (or, for soft targets, KL divergence) of each window, in float32, weighted by its class.

    Parameters
    ----------
    logits : Tensor, shape (batch, n_classes)
    targets : Tensor of int64, shape (batch,) | Tensor of float, shape (batch, n_classes)
        Class indices, or class distributions (:func:`soft_window_losses`; weighted by the argmax class,
        no label smoothing).
    class_weights : Tensor, shape (n_classes,) | None
        Weight of each class (:func:`balanced_class_weights`); None: 1.
    label_smoothing : float
        In [0, 1).

    Returns
    -------
    losses : Tensor of float32, shape (batch,)
        ``w[y_i] * CE_smoothed(logits_i, y_i)``.
    """
    if targets.is_floating_point():
        losses = soft_window_losses(logits, targets)
    else:
        losses = F.cross_entropy(logits.float(), targets, reduction="none", label_smoothing=label_smoothing)
    if class_weights is not None:
        losses = losses * class_weights[_hard_targets(targets)]
    return losses


def set_train_mode(model: torch.nn.Module, linear_probe: bool = False) -> None:
    """Training mode; with ``linear_probe`` everything but the classification head stays in eval mode.

    Parameters
    ----------
    model : torch.nn.Module
        A classification model of any family (its ``get_classifier()`` names the head), possibly wrapped
        (DDP, ``torch.compile``).
    linear_probe : bool
        True: the frozen backbone runs as at inference (no drop-path, no dropout, batch-norm statistics
        fixed); only the classification layer trains.
    """
    model.train()
    if linear_probe:
        raw = unwrap_model(model)
        raw.eval()
        raw.get_classifier().train()


def train_one_epoch(
    model: torch.nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    lr_scheduler,
    device: torch.device,
    epoch: int,
    *,
    settings: EngineSettings,
    step: int = 0,
    class_weights: torch.Tensor | None = None,
    scaler: torch.amp.GradScaler | None = None,
    ctx: DistributedContext | None = None,
    log_writer=None,
) -> dict:
    """Train for one epoch of the loader (whole optimiser steps only).

    Parameters
    ----------
    model : torch.nn.Module
        Classification model ``model(x) -> logits (batch, n_classes)``, possibly wrapped in
        ``DistributedDataParallel`` and/or ``torch.compile``.
    loader : iterable with ``len``
        This rank's micro-batches ``(x, labels, positions)``: x (micro_batch, n_chans, n_times) scaled,
        labels (micro_batch,) int64 (:func:`finetune.data.build_train_loader`; call
        ``sampler.set_epoch(epoch)`` before). Every micro-batch must hold ``micro_batch_size`` windows.
    optimizer : torch.optim.Optimizer
    lr_scheduler : timm.scheduler.Scheduler | None
        Stepped with ``step_update(step)`` before every optimiser step.
    device : torch.device
    epoch : int
        0-based, for logs.
    settings : EngineSettings
    step : int
        Optimiser steps done before this epoch.
    class_weights : Tensor, shape (n_classes,) | None
        On ``device``; None for an unweighted loss.
    scaler : torch.amp.GradScaler | None
        For float16 autocast; None (or disabled) otherwise.
    ctx : DistributedContext | None
        This process's rank and world size (None: a single process).
    log_writer : tensorboardX.SummaryWriter | None
        Receives ``train/loss``, ``train/accuracy``, ``train/grad_norm``, ``train/lr`` and
        ``train/samples_per_s`` every ``log_every`` steps (rank 0 only).

    Returns
    -------
    metrics : dict
        Over the epoch's windows and all ranks: ``loss`` (mean window loss), ``accuracy`` (fraction of
        windows whose largest logit is the true class), ``grad_norm`` (mean over steps, before
        clipping); ``lr`` (largest of the groups, last step), ``samples_per_s``, ``n_steps`` and ``step``
        (optimiser steps done after this epoch).

    Raises
    ------
    ValueError
        If the loader holds fewer micro-batches than one optimiser step needs, or a micro-batch has
        another size than ``settings.micro_batch_size``.
    FloatingPointError
        If the loss becomes NaN or infinite (checked every ``log_every`` steps).
    """
    ctx = ctx or DistributedContext(device=device)
    s = settings
    accum, world = s.accum_steps, ctx.world_size
    n_steps = len(loader) // accum
    if n_steps == 0:
        raise ValueError(
            f"Epoch {epoch}: this rank has {len(loader)} micro-batches of {s.micro_batch_size} "
            f"windows, fewer than the {accum} that one optimiser step needs: use more data or a "
            f"smaller optim.batch_size."
        )
    set_train_mode(model, s.linear_probe)
    if scaler is None:
        scaler = torch.amp.GradScaler(device.type, enabled=False)
    autocast = torch.autocast(device.type, dtype=s.amp_dtype, enabled=s.amp_dtype is not None)
    params = [p for p in model.parameters() if p.requires_grad]
    max_norm = s.clip_grad if s.clip_grad else math.inf
    windows_per_rank_step = s.micro_batch_size * accum
    global_batch = windows_per_rank_step * world

    def nonfinite_message(values: dict, step: int) -> str:
        return (
            f"Non-finite fine-tuning loss {values['loss']} in epoch {epoch} at optimiser step {step} "
            f"(checked every {s.log_every} steps): lower optim.base_lr, check the data for NaN or "
            f"extreme values, or switch off runtime.amp."
        )

    progress = tqdm(
        total=n_steps, desc=f"epoch {epoch}", disable=not ctx.is_main, dynamic_ncols=True, leave=False
    )
    log = IntervalLog(
        _METRICS,
        device=device,
        log_every=s.log_every,
        world_size=world,
        global_batch=global_batch,
        progress=progress,
        log_writer=log_writer,
        nonfinite_message=nonfinite_message,
    )
    data_iter = iter(loader)
    optimizer.zero_grad(set_to_none=True)
    for _ in range(n_steps):
        if lr_scheduler is not None:
            lr_scheduler.step_update(step)
        lr = max(group["lr"] for group in optimizer.param_groups)
        step_sums = torch.zeros(2, device=device)  # loss sum, correct windows
        for micro in range(accum):
            x, labels, _ = next(data_iter)
            if x.shape[0] != s.micro_batch_size:
                raise ValueError(
                    f"A micro-batch holds {x.shape[0]} windows, but settings.micro_batch_size is "
                    f"{s.micro_batch_size}: build the loader with drop_last=True."
                )
            x = x.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with no_sync(model, sync=micro == accum - 1):
                with autocast:
                    logits = model(x)
                losses = window_losses(logits, labels, class_weights, s.label_smoothing)
                loss = losses.sum() / windows_per_rank_step
                scaler.scale(loss).backward()
            with torch.no_grad():
                correct = (logits.argmax(dim=1) == _hard_targets(labels)).sum()
                step_sums += torch.stack([losses.detach().sum(), correct.float()])
        grad_norm = clip_and_step(optimizer, scaler, params, max_norm)
        step += 1
        step_metrics = torch.cat([step_sums / windows_per_rank_step, grad_norm.float().reshape(1)])
        log.update(step_metrics, step=step, lr=lr)
    return log.finish()


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader,
    device: torch.device,
    *,
    n_windows: int | None = None,
    class_weights: torch.Tensor | None = None,
    amp_dtype: torch.dtype | None = None,
) -> tuple[float, np.ndarray]:
    """Class probabilities of every window of a split, gathered from all ranks, and the mean loss.

    Parameters
    ----------
    model : torch.nn.Module
        Classification model, possibly wrapped; put in eval mode here.
    loader : DataLoader
        This rank's share of the split (:func:`finetune.data.build_eval_loader`), yielding
        ``(x, labels, positions)``; positions index the split's rows. Padding repeats are allowed.
    device : torch.device
    n_windows : int | None
        Windows in the split (default ``len(loader.dataset)``).
    class_weights : Tensor, shape (n_classes,) | None
        Weights of the loss, as in training (no label smoothing here).
    amp_dtype : torch.dtype | None
        Autocast dtype, as in training.

    Returns
    -------
    loss : float
        Mean over the split's windows of the (class-weighted) cross-entropy, or KL divergence when the
        loader yields class distributions, computed in float64 from the float32 logits.
    probabilities : ndarray of float64, shape (n_windows, n_classes)
        Softmax of the logits; row ``i`` is the split's row ``i`` (manifest order of the split). The
        same on every rank.

    Raises
    ------
    RuntimeError
        If the ranks together did not predict every window of the split (a sampler that skips windows).
    """
    n_windows = len(loader.dataset) if n_windows is None else int(n_windows)
    model.eval()
    autocast = torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    logits_parts, label_parts, position_parts = [], [], []
    for x, labels, positions in loader:
        with autocast:
            logits = model(x.to(device, non_blocking=True))
        logits_parts.append(logits.float())
        label_parts.append(labels)
        position_parts.append(positions)
    local = (
        torch.cat(logits_parts).cpu().numpy() if logits_parts else np.zeros((0, 0), np.float32),
        torch.cat(label_parts).numpy() if label_parts else np.zeros(0, np.int64),  # or (n, n_classes) float
        torch.cat(position_parts).numpy() if position_parts else np.zeros(0, np.int64),
    )
    gathered = [part for part in all_gather_object(local) if part[2].size]
    logits_all = np.concatenate([g[0] for g in gathered]).astype(np.float64)
    labels_all = np.concatenate([g[1] for g in gathered])
    positions_all = np.concatenate([g[2] for g in gathered])
    # Keep the first prediction of each window (DistributedSampler pads with repeats).
    unique, first = np.unique(positions_all, return_index=True)
    if unique.size != n_windows or unique[0] != 0 or unique[-1] != n_windows - 1:
        raise RuntimeError(
            f"Evaluation predicted {unique.size} distinct windows, but the split has {n_windows}."
        )
    logits_all, labels_all = logits_all[first], labels_all[first]
    log_p = torch.log_softmax(torch.from_numpy(logits_all), dim=1)
    targets = torch.from_numpy(labels_all)
    if targets.is_floating_point():
        nll = F.kl_div(log_p, targets.double(), reduction="none").sum(dim=1)
    else:
        nll = -log_p.gather(1, targets.long().unsqueeze(1)).squeeze(1)
    if class_weights is not None:
        nll = nll * class_weights.detach().cpu().double()[_hard_targets(targets).long()]
    return float(nll.mean()), log_p.exp().numpy()
