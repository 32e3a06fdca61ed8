"""Members of a gated ensemble: finished fine-tuning runs, their checks, outputs and the gate's signal.

Each member is read from its run folder (``config.yaml``, ``checkpoint-best.pth``), frozen, and run once over
every split's windows as its own run read them (its input contract): window probabilities and, for
``ensemble.inputs: features``, its pooled features (the input of the classification layer:
``forward_head(forward_features(x), pre_logits=True)`` for M4CEA and LaBraM, the input of
``final_layer``, flattened, for braindecode models). Under ``torchrun`` each rank runs its share of the
windows and the outputs are gathered. The gate's signal (``ensemble.gate_inputs: channels | both``) is the
stored window in uV / 100 (LaBraM's scaling, which keeps amplitude), at the stored rate, on the channels
of ``ensemble.gate_channels``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from finetune.checkpoints import BEST_CHECKPOINT, build_model, zoo_window
from finetune.data import FinetuneDataset, build_eval_loader
from models import get_input_contract
from models.contract import InputContract
from models.zoo import is_zoo_name
from preprocess.adapt import WindowAdapter
from runtime.checkpoint import load_checkpoint
from runtime.config import UsageError
from runtime.distributed import DistributedContext, all_gather_object
from tasks import Task

__all__ = [
    "EnsembleMember",
    "check_members",
    "gate_signal_dataset",
    "load_member",
    "member_outputs",
    "pooled_features",
    "resolve_gate_channels",
]


@dataclass
class EnsembleMember:
    """A finished fine-tuning run used as a frozen member."""

    path: Path
    cfg: dict
    model_name: str


def load_member(path: str | Path) -> EnsembleMember:
    """Read a member run folder (``config.yaml`` and ``checkpoint-best.pth`` must exist).

    Raises
    ------
    FileNotFoundError
        If the folder, its config or its best checkpoint is missing (the message names the member).
    """
    path = Path(path)
    for name in ("config.yaml", BEST_CHECKPOINT):
        if not (path / name).is_file():
            raise FileNotFoundError(
                f"Ensemble member {path} has no {name}: --members takes finished fine-tuning run folders "
                f"(OUTPUT/<task>/seed<S>)."
            )
    with open(path / "config.yaml", encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    return EnsembleMember(path, cfg, str(cfg["model"]["name"]))


def check_members(members: list, task: Task, seed: int, split_cfg: dict) -> None:
    """Members must share the task, its classes, the split and the seed; an error names the member.

    Raises
    ------
    ValueError
        If a member was trained for another task or classes, with another split protocol or settings,
        or another seed; or fewer than two members are given.
    """
    if len(members) < 2:
        raise UsageError(f"An ensemble needs at least two --members, but got {len(members)}.")
    for member in members:
        cfg = member.cfg
        checks = (
            ("task", cfg["task"]["name"], task.name),
            ("classes", list(cfg["task"]["classes"]), list(task.classes)),
            ("split", dict(cfg["split"]), dict(split_cfg)),
            ("seed (runtime.seed)", cfg["runtime"]["seed"], seed),
        )
        for what, got, want in checks:
            if got != want:
                raise UsageError(
                    f"Ensemble member {member.path} ({member.model_name}) has {what} {got!r}, but the "
                    f"ensemble has {want!r}: members must share task, classes, split and seed protocol."
                )


def _member_dataset(member, model, root, rows, task):
    """The member's windows as its own run read them (finetune/run.py): each model's input contract
    (LaBraM: 200 Hz, uV / 100, any length up to its time table; braindecode models: models/zoo.py)."""
    if is_zoo_name(member.model_name):
        window = member.cfg["model"]["zoo_window"]
        adapter = WindowAdapter(model.contract, window["sfreq_in"], window["n_times_in"])
        return FinetuneDataset(root, rows, task, model.n_chans, window["n_times_in"], adapter=adapter)
    contract = get_input_contract(member.cfg["model"])
    return FinetuneDataset(root, rows, task, model.n_chans, getattr(model, "n_times", None), contract)


def pooled_features(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and pooled features (the classification layer's input) of a fine-tuned model.

    Parameters
    ----------
    model : torch.nn.Module
        M4CEA or LaBraM (``forward_features``, ``forward_head(..., pre_logits=True)``) or a braindecode
        model (:class:`models.zoo.ZooModel`, whose ``model.final_layer`` input is flattened).
    x : Tensor, shape (batch, n_chans, n_times)

    Returns
    -------
    logits : Tensor, shape (batch, n_classes)
    features : Tensor, shape (batch, n_features)

    Raises
    ------
    ValueError
        If the model has neither interface (use ``ensemble.inputs=probabilities``).
    """
    final = getattr(getattr(model, "model", None), "final_layer", None)
    if final is not None:
        captured = []
        handle = final.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
        try:
            logits = model(x)
        finally:
            handle.remove()
        return logits, captured[0].flatten(1)
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        features = model.forward_features(x)
        return model.forward_head(features), model.forward_head(features, pre_logits=True)
    raise UsageError(
        f"ensemble.inputs=features needs members whose pooled features can be read (M4CEA, LaBraM, "
        f"braindecode models), but {type(model).__name__} has no forward_features/forward_head nor a "
        f"braindecode final_layer: use --set ensemble.inputs=probabilities."
    )


@torch.no_grad()
def member_outputs(
    member: EnsembleMember,
    root: Path,
    rows_by_split: dict,
    task: Task,
    ctx: DistributedContext,
    features: bool = False,
    batch_size: int = 64,
) -> dict:
    """The frozen member's window probabilities (and pooled features) of each split, gathered over ranks.

    Returns
    -------
    outputs : dict of str to dict
        Keyed by split name: ``probabilities`` ndarray of float64 (n_windows, n_classes) (softmax of the
        float32 logits), and with ``features`` ``features`` ndarray of float32 (n_windows, n_features);
        rows in the order of ``rows_by_split[name]``. The same on every rank.
    """
    device = ctx.device
    model = build_model(member.cfg, task)
    model.load_state_dict(load_checkpoint(member.path / BEST_CHECKPOINT)["model"])
    model.to(device).eval()
    out = {}
    for name, rows in rows_by_split.items():
        dataset = _member_dataset(member, model, root, rows, task)
        loader = build_eval_loader(dataset, batch_size=batch_size, rank=ctx.rank, world_size=ctx.world_size)
        parts = []
        for x, _, positions in loader:
            x = x.to(device)
            logits, pooled = pooled_features(model, x) if features else (model(x), None)
            pooled = pooled.float().cpu().numpy() if features else np.zeros((len(x), 0), np.float32)
            parts.append((logits.float().cpu().numpy(), pooled, positions.numpy()))
        gathered = [p for rank_parts in all_gather_object(parts) for p in rank_parts]
        positions = np.concatenate([p[2] for p in gathered])
        _, first = np.unique(positions, return_index=True)  # DistributedSampler pads with repeats
        if len(first) != len(rows):
            raise RuntimeError(f"Member outputs cover {len(first)} of the {len(rows)} windows of {name}.")
        order = first[np.argsort(positions[first])]
        logits = torch.from_numpy(np.concatenate([p[0] for p in gathered])[order]).double()
        out[name] = {"probabilities": torch.softmax(logits, dim=1).numpy()}
        if features:
            out[name]["features"] = np.concatenate([p[1] for p in gathered])[order]
    return out


def resolve_gate_channels(spec: Sequence, ch_names: Sequence[str] | None, n_chans: int) -> list[int]:
    """Channel indices of ``ensemble.gate_channels``: names (case-insensitive) or 0-based indices.

    Parameters
    ----------
    spec : sequence of str or int
        ``[]``: all channels.
    ch_names : sequence of str | None
        The stored windows' channel names.
    n_chans : int

    Returns
    -------
    indices : list of int

    Raises
    ------
    ValueError
        If a name is not a channel of the windows or an index is out of range (the message lists the
        channels).
    """
    if not spec:
        return list(range(n_chans))
    names = [str(c).upper() for c in ch_names or []]
    indices = []
    for item in spec:
        if isinstance(item, int) and not isinstance(item, bool) and 0 <= item < n_chans:
            indices.append(item)
        elif isinstance(item, str) and item.upper() in names:
            indices.append(names.index(item.upper()))
        else:
            raise UsageError(
                f"Invalid value for the 'ensemble.gate_channels' parameter: {item!r} is not a channel of "
                f"the windows ({', '.join(ch_names or []) or f'{n_chans} unnamed channels'}; names or "
                f"indices 0 to {n_chans - 1})."
            )
    return indices


def gate_signal_dataset(root: Path, rows: list, task: Task) -> FinetuneDataset:
    """The stored windows of a split in uV / 100, at the stored rate, read lazily (the gate's signal)."""
    window = zoo_window(root, rows)
    contract = InputContract(
        family="ensemble gate",
        sfreq=window["sfreq_in"],
        patch_samples=1,
        max_patches=window["n_times_in"],
        fixed_patches=False,
        uv_scale=0.01,
        normalisation="uV / 100",
    )
    adapter = WindowAdapter(contract, window["sfreq_in"], window["n_times_in"])
    return FinetuneDataset(root, rows, task, window["n_chans"], window["n_times_in"], adapter=adapter)
