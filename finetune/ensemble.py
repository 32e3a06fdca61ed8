"""Gated ensembles of fine-tuned runs (EnECG's mixture of frozen experts): the gate and its training.

Members are finished fine-tuning runs (``OUTPUT/<task>/seed<S>/``) of any models, frozen
(:mod:`finetune.ensemble_members` reads them). Each member ``m`` gives, per window, either its class
probabilities ``p_m`` (``ensemble.inputs: probabilities``) or its pooled features ``f_m``, which a small
trainable FFN head turns into class probabilities ``p_m = softmax(FFN_m(f_m))`` (``ensemble.inputs:
features``, as EnECG does). A gate (mixture of experts) outputs one weight per member, ``w = softmax(g)``,
from the members' log-probabilities (``ensemble.gate_inputs: outputs``), from a small convolutional network
on a subset of the window's EEG channels (``channels``, ``ensemble.gate_channels``) or from both; the
ensemble's prediction is the mixture ``sum_m w_m p_m``. :class:`GatedEnsemble` returns ``log(mixture)``,
so the fine-tuning engine's cross-entropy (:func:`finetune.engine.train_one_epoch`) is the mixture's
negative log-likelihood: :func:`train_gate` trains gate and heads on the training split with the same
engine, seeds, loaders, early stopping on the validation loss and DDP (``torchrun``) as fine-tuning.

References
----------
Xu et al., "EnECG: efficient ensemble learning for electrocardiogram multi-task foundation model" (frozen
foundation models, trainable FFN heads on their features, a learned gate); Jacobs et al., "Adaptive
mixtures of local experts", Neural Comput. 1991.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from finetune.data import build_eval_loader, build_train_loader
from finetune.engine import EarlyStopping, EngineSettings, evaluate, train_one_epoch
from runtime.checks import check_choice
from runtime.config import UsageError
from runtime.distributed import DistributedContext, unwrap_model
from runtime.optim import build_lr_scheduler, steps_per_accumulation
from runtime.seeding import seed_everything
from tasks import Task

__all__ = [
    "ENSEMBLE_INPUTS",
    "GATE_INPUTS",
    "GatedEnsemble",
    "MemberOutputs",
    "SignalEncoder",
    "build_gate",
    "loader_workers",
    "gate_weights",
    "train_gate",
]

logger = logging.getLogger("finetune.ensemble")

#: Allowed values of ``ensemble.inputs``: what each member gives the ensemble.
ENSEMBLE_INPUTS = ("probabilities", "features")
#: Allowed values of ``ensemble.gate_inputs``: what the gate reads.
GATE_INPUTS = ("outputs", "channels", "both")


class MemberOutputs(Dataset):
    """The members' outputs of one split (and the gate's window signal) as a dataset.

    Parameters
    ----------
    outputs : ndarray, shape (n_windows, n_members, n_classes), or list of ndarray
        The members' window probabilities (``ensemble.inputs: probabilities``), or one array per member
        of shape (n_windows, n_features_m), its pooled features (``features``).
    labels : ndarray of int, shape (n_windows,)
        Class index of each window.
    task : Task
    rows : list of dict | None
        The split's manifest rows (kept for the outputs).
    signal : Dataset | ndarray | None
        The window signal the gate reads (``ensemble.gate_inputs: channels | both``): an array of shape
        (n_windows, n_chans, n_times) or a dataset whose item ``i`` is ``(x, label, i)`` with ``x`` of
        that shape (e.g. a :class:`finetune.data.FinetuneDataset`, read lazily).
    gate_channels : sequence of int | None
        Indices of the channels of ``signal`` the gate reads (default: all).

    Attributes
    ----------
    x : Tensor
        ``outputs`` as float32: (n_windows, n_members, n_classes) or (n_windows, sum of n_features_m).
    member_dims : tuple of int
        Values per member in ``x`` (``n_classes`` each for probabilities).
    signal_shape : tuple of int | None
        ``(len(gate_channels), n_times)`` of the gate's signal, None without signal.

    Notes
    -----
    ``dataset[i]`` returns ``(inputs, label, i)`` (the loader interface of
    :class:`finetune.data.FinetuneDataset`): ``inputs`` float32 of shape (sum(member_dims) + n_chans *
    n_times,), the member outputs then the selected channels, flattened (:class:`GatedEnsemble` unpacks).

    Raises
    ------
    ValueError
        If the shapes do not fit one another or the task's classes.
    """

    def __init__(self, outputs, labels, task: Task, rows=None, signal=None, gate_channels=None) -> None:
        self.labels = np.asarray(labels, dtype=np.int64)
        self.task, self.rows = task, rows
        if isinstance(outputs, (list, tuple)):
            parts = [np.asarray(o, dtype=np.float32) for o in outputs]
            if any(p.ndim != 2 or len(p) != len(self.labels) for p in parts):
                shapes = [p.shape for p in parts]
                raise ValueError(f"Member features of shapes {shapes} do not fit {len(self.labels)} labels.")
            self.member_dims = tuple(int(p.shape[1]) for p in parts)
            self.x = torch.as_tensor(np.concatenate(parts, axis=1))
        else:
            self.x = torch.as_tensor(np.asarray(outputs, dtype=np.float32))
            if self.x.ndim != 3 or len(self.x) != len(self.labels) or self.x.shape[2] != task.n_classes:
                raise ValueError(
                    f"Member probabilities of shape {tuple(self.x.shape)} do not fit the labels."
                )
            self.member_dims = (task.n_classes,) * self.x.shape[1]
        self.signal, self.signal_shape, self.gate_channels = signal, None, None
        if signal is not None:
            if len(signal) != len(self.labels):
                raise ValueError(
                    f"The gate's signal has {len(signal)} windows, but the split {len(self.labels)}."
                )
            first = self._window(0)
            n_chans = first.shape[0]
            self.gate_channels = list(range(n_chans)) if gate_channels is None else list(gate_channels)
            if not self.gate_channels or not all(0 <= c < n_chans for c in self.gate_channels):
                raise ValueError(f"Gate channels {self.gate_channels} are not indices of {n_chans} channels.")
            self.signal_shape = (len(self.gate_channels), int(first.shape[1]))

    @property
    def n_members(self) -> int:
        """Number of members."""
        return len(self.member_dims)

    def _window(self, index: int) -> torch.Tensor:
        item = self.signal[index]
        return torch.as_tensor(item[0] if isinstance(item, tuple) else item, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        inputs = self.x[index].flatten()
        if self.signal is not None:
            inputs = torch.cat([inputs, self._window(index)[self.gate_channels].flatten()])
        return inputs, torch.tensor(self.labels[index]), torch.tensor(index)


class SignalEncoder(torch.nn.Module):
    """A small network on the gate's EEG channels: two strided 1-D convolutions, GELU, mean over time.

    Parameters
    ----------
    n_chans : int
        Channels the gate reads.
    width : int
        Output features (and convolution channels).

    Notes
    -----
    ``forward(x)``, ``x`` (batch, n_chans, n_times) in uV / 100, returns (batch, width). Kernels of 7
    samples, stride 2 each: any window length works.
    """

    def __init__(self, n_chans: int, width: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv1d(n_chans, width, 7, stride=2, padding=3),
            torch.nn.GELU(),
            torch.nn.Conv1d(width, width, 7, stride=2, padding=3),
            torch.nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=-1)


def _mlp(n_in: int, hidden: int, n_out: int) -> torch.nn.Module:
    if hidden <= 0:
        return torch.nn.Linear(n_in, n_out)
    return torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, n_out))


class GatedEnsemble(torch.nn.Module):
    """A gate over frozen members: ``log(sum_m w_m p_m)``, with optional FFN heads on member features.

    Parameters
    ----------
    n_members, n_classes : int
    hidden : int
        Width of the gate's hidden layer (0: a linear gate; ``ensemble.gate_hidden``).
    inputs : {"probabilities", "features"}
        What the members give: probabilities ``p_m`` used as they are, or pooled features, each member's
        through its own FFN head (LayerNorm, Linear, GELU, Linear) to class logits (EnECG).
    member_dims : sequence of int | None
        Features per member (``inputs="features"``); default ``n_classes`` each.
    head_hidden : int
        Hidden width of the FFN heads (``ensemble.head_hidden``).
    gate_inputs : {"outputs", "channels", "both"}
        What the gate reads: the members' log-probabilities, the window signal (:class:`SignalEncoder`)
        or both (concatenated).
    signal_shape : tuple of int | None
        ``(n_chans, n_times)`` of the gate's signal; required with ``channels`` and ``both``.

    Notes
    -----
    ``forward(x)`` takes the packed inputs of :class:`MemberOutputs` (batch, ...) (or probabilities
    (batch, n_members, n_classes)) and returns log-probabilities (batch, n_classes), which the engine
    treats as logits (softmax of log p is p); :meth:`weights` returns ``w`` (batch, n_members), summing
    to 1; :meth:`member_log_probabilities` the experts' (batch, n_members, n_classes).

    Raises
    ------
    ValueError
        If ``inputs`` or ``gate_inputs`` is not an allowed value, or ``signal_shape`` is missing.
    """

    def __init__(
        self,
        n_members: int,
        n_classes: int,
        hidden: int = 16,
        *,
        inputs: str = "probabilities",
        member_dims: Sequence[int] | None = None,
        head_hidden: int = 32,
        gate_inputs: str = "outputs",
        signal_shape: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.inputs = check_choice("ensemble.inputs", inputs, ENSEMBLE_INPUTS)
        self.gate_inputs = check_choice("ensemble.gate_inputs", gate_inputs, GATE_INPUTS)
        self.n_members, self.n_classes = int(n_members), int(n_classes)
        self.member_dims = tuple(member_dims) if member_dims is not None else (self.n_classes,) * n_members
        if len(self.member_dims) != self.n_members:
            raise ValueError(f"member_dims {self.member_dims} has not one entry per member ({n_members}).")
        self.heads = None
        if self.inputs == "features":
            self.heads = torch.nn.ModuleList(
                torch.nn.Sequential(torch.nn.LayerNorm(d), _mlp(d, head_hidden, self.n_classes))
                for d in self.member_dims
            )
        self.signal_shape = None if signal_shape is None else tuple(int(s) for s in signal_shape)
        self.signal_net = None
        n_in = self.n_members * self.n_classes if self.gate_inputs != "channels" else 0
        if self.gate_inputs != "outputs":
            if self.signal_shape is None:
                raise UsageError(
                    f"ensemble.gate_inputs={gate_inputs!r} reads the window signal, but no signal_shape "
                    f"was given."
                )
            width = max(int(hidden), 8)
            self.signal_net = SignalEncoder(self.signal_shape[0], width)
            n_in += width
        self.gate = _mlp(n_in, hidden, self.n_members)

    def _unpack(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = x.flatten(1)
        n_out = sum(self.member_dims)
        if self.signal_shape is None:
            return x, None
        return x[:, :n_out], x[:, n_out:].reshape(len(x), *self.signal_shape)

    def member_log_probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """Experts' log-probabilities (batch, n_members, n_classes) from the members' outputs."""
        if self.heads is None:
            return torch.log(outputs.reshape(len(outputs), self.n_members, self.n_classes).clamp_min(1e-8))
        parts = outputs.split(self.member_dims, dim=1)
        log_p = [F.log_softmax(head(p), dim=-1) for head, p in zip(self.heads, parts, strict=True)]
        return torch.stack(log_p, dim=1)

    def _gate_logits(self, log_p: torch.Tensor, signal: torch.Tensor | None) -> torch.Tensor:
        parts = [] if self.gate_inputs == "channels" else [log_p.flatten(1)]
        if self.signal_net is not None:
            parts.append(self.signal_net(signal))
        return self.gate(torch.cat(parts, dim=1))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Gate weights ``w`` (batch, n_members), summing to 1."""
        outputs, signal = self._unpack(x)
        return torch.softmax(self._gate_logits(self.member_log_probabilities(outputs), signal), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, signal = self._unpack(x)
        log_p = self.member_log_probabilities(outputs)
        log_w = torch.log_softmax(self._gate_logits(log_p, signal), dim=-1)
        return torch.logsumexp(log_w.unsqueeze(-1) + log_p, dim=1)


def build_gate(cfg: dict, task: Task, outputs: MemberOutputs) -> GatedEnsemble:
    """The gate of the config's ``ensemble`` section for the members' outputs of ``outputs``."""
    ens = cfg["ensemble"]
    return GatedEnsemble(
        outputs.n_members,
        task.n_classes,
        ens["gate_hidden"],
        inputs=ens["inputs"],
        member_dims=outputs.member_dims,
        head_hidden=ens["head_hidden"],
        gate_inputs=ens["gate_inputs"],
        signal_shape=outputs.signal_shape,
    )


def loader_workers(cfg: dict, outputs: MemberOutputs) -> int:
    """``data.num_workers`` when windows are read from disk (a gate on channels), else 0 (all in memory)."""
    return cfg["data"]["num_workers"] if isinstance(outputs.signal, Dataset) else 0


def train_gate(
    cfg: dict, task: Task, outputs: dict, device=None, ctx: DistributedContext | None = None
) -> tuple[GatedEnsemble, dict]:
    """Train the gate (and FFN heads) on the training split's member outputs, early stopping on validation.

    Parameters
    ----------
    cfg : dict
        The run config: ``runtime.seed``, ``optim`` (``batch_size``: windows per optimiser step over all
        ranks, ``micro_batch_size``, ``base_lr``, ``weight_decay``, ``epochs``, warm-up and cosine),
        ``early_stopping``, ``ensemble`` (``inputs``, ``gate_inputs``, ``gate_hidden``, ``head_hidden``),
        ``data.num_workers`` (loader processes when the gate reads windows from disk).
    task : Task
    outputs : dict of str to MemberOutputs
        ``"train"`` and ``"val"``.
    device : torch.device | None
        Default: ``ctx.device``, or the CPU.
    ctx : DistributedContext | None
        Under ``torchrun`` (:func:`runtime.distributed.init_distributed`): each rank trains on its share
        of every optimiser step's windows (``DistributedSampler``), gradients averaged by
        ``DistributedDataParallel``; None: one process.

    Returns
    -------
    gate : GatedEnsemble
        In eval mode, unwrapped, with the weights of the lowest validation loss (the same on every rank).
    info : dict
        ``best_epoch``, ``best_loss``, ``epochs_run``, ``optimizer_steps``.

    Raises
    ------
    ValueError
        If the training split holds fewer windows than one optimiser step, or the batch sizes do not fit
        the number of processes.
    """
    ctx = ctx or DistributedContext(device=device or torch.device("cpu"))
    device = ctx.device if device is None else device
    seed, optim = cfg["runtime"]["seed"], cfg["optim"]
    seed_everything(seed)  # identical initial gates on every rank
    gate = build_gate(cfg, task, outputs["train"]).to(device)
    micro = optim["micro_batch_size"]
    accum = steps_per_accumulation(optim["batch_size"], micro, ctx.world_size)
    workers = loader_workers(cfg, outputs["train"])
    loader, sampler = build_train_loader(
        outputs["train"],
        micro_batch_size=micro,
        rank=ctx.rank,
        world_size=ctx.world_size,
        seed=seed,
        num_workers=workers,
    )
    if len(loader) // accum == 0:
        raise UsageError(
            f"The training split holds {len(outputs['train'])} windows, fewer than one optimiser step of "
            f"optim.batch_size={optim['batch_size']}: use a smaller batch size (--set optim.batch_size=N "
            f"optim.micro_batch_size=N)."
        )
    val_loader = build_eval_loader(
        outputs["val"], batch_size=micro, rank=ctx.rank, world_size=ctx.world_size, num_workers=workers
    )
    lr = optim["base_lr"] * optim["batch_size"] / 256
    optimizer = torch.optim.AdamW(gate.parameters(), lr=lr, weight_decay=optim["weight_decay"])
    scheduler = build_lr_scheduler(optimizer, cfg, len(loader) // accum)
    settings = EngineSettings(
        micro_batch_size=micro, accum_steps=accum, log_every=max(1, len(loader) // accum)
    )
    model = gate
    if ctx.is_distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            gate, device_ids=[ctx.local_rank] if device.type == "cuda" else None
        )
    stopping = EarlyStopping(cfg["early_stopping"]["patience"], cfg["early_stopping"]["min_delta"])
    best_state, step, epochs_run = None, 0, 0
    for epoch in range(optim["epochs"]):
        sampler.set_epoch(epoch)
        train = train_one_epoch(
            model, loader, optimizer, scheduler, device, epoch, settings=settings, step=step, ctx=ctx
        )
        step = train["step"]
        val_loss = evaluate(model, val_loader, device)[0]  # gathered: the same on every rank
        epochs_run = epoch + 1
        improved = stopping.update(val_loss, epoch + 1)
        if improved:
            best_state = {k: v.detach().clone() for k, v in gate.state_dict().items()}
        logger.info(
            "gate epoch %d/%d: train loss %.4f, val loss %.4f%s",
            epoch + 1,
            optim["epochs"],
            train["loss"],
            val_loss,
            " *best*" if improved else "",
        )
        if stopping.should_stop:
            break
    gate.load_state_dict(best_state)
    info = {
        "best_epoch": stopping.best_epoch,
        "best_loss": stopping.best_loss,
        "epochs_run": epochs_run,
        "optimizer_steps": step,
    }
    return unwrap_model(gate).eval(), info


@torch.no_grad()
def gate_weights(
    gate: GatedEnsemble, outputs: MemberOutputs, device, batch_size: int = 256, num_workers: int = 0
) -> tuple:
    """The ensemble's probabilities and the gate's weights of every window of a split (one process).

    Returns
    -------
    probabilities : ndarray of float64, shape (n_windows, n_classes)
    weights : ndarray of float64, shape (n_windows, n_members)
        Each row sums to 1.
    member_probabilities : ndarray of float64, shape (n_windows, n_members, n_classes)
        The experts' probabilities (the FFN heads' with ``ensemble.inputs: features``).
    """
    gate.eval()
    parts = []
    for x, _, _ in build_eval_loader(outputs, batch_size=batch_size, num_workers=num_workers):
        x = x.to(device)
        members = gate.member_log_probabilities(gate._unpack(x)[0]).exp()
        parts.append((gate(x).exp(), gate.weights(x), members))
    return tuple(torch.cat([p[k] for p in parts]).double().cpu().numpy() for k in range(3))
