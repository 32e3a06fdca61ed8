"""Gated ensembles of fine-tuned runs (EnECG's mixture of frozen experts) and their baselines.

Members are finished fine-tuning runs (``OUTPUT/<task>/seed<S>/``) of any models, frozen. Each member's
window probabilities ``p_m`` (batch, n_classes) are combined by a gate, a small network on the members'
log-probabilities that outputs one weight per member (softmax), into the mixture ``sum_m w_m p_m``. The gate
is trained on the training split with the fine-tuning engine (:func:`finetune.engine.train_one_epoch`: the
gate returns ``log(mixture)``, so the engine's cross-entropy is the mixture's negative log-likelihood), the
same seeds, loaders and early stopping on the validation loss. Beside the gate, the uniform average of the
members and the best single member (lowest validation loss) are evaluated on the same windows.

References
----------
Xu et al., "EnECG: efficient ensemble learning for electrocardiogram multi-task foundation model" (gated
mixture of frozen foundation models); Jacobs et al., "Adaptive mixtures of local experts", Neural Comput.
1991.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import Dataset

from finetune.checkpoints import BEST_CHECKPOINT, build_model
from finetune.data import FinetuneDataset, build_eval_loader, build_train_loader
from finetune.engine import EarlyStopping, EngineSettings, evaluate, train_one_epoch
from finetune.heads import parameter_counts
from finetune.metrics import evaluate_predictions
from finetune.outputs import PREDICTIONS_FILE, RESULTS_FILE, write_predictions, write_results
from finetune.splits import SPLIT_FILE, SPLIT_NAMES, make_split, read_split_file
from models.zoo import is_zoo_name
from preprocess.adapt import WindowAdapter
from preprocess.segments import read_manifest
from runtime.checkpoint import load_checkpoint, save_checkpoint
from runtime.config import UsageError, save_config
from runtime.optim import build_lr_scheduler
from runtime.seeding import seed_everything
from tasks import Task, encode_labels

__all__ = [
    "EnsembleMember",
    "GatedEnsemble",
    "MemberOutputs",
    "check_members",
    "load_member",
    "member_probabilities",
    "run_ensemble",
    "train_gate",
]

logger = logging.getLogger("finetune.ensemble")

#: Files an ensemble run writes (removed before a new run in the same folder).
ENSEMBLE_OUTPUTS = (RESULTS_FILE, PREDICTIONS_FILE, BEST_CHECKPOINT, "config.yaml")


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
    """The member's windows as its own run read them (zoo models: their input contract)."""
    if is_zoo_name(member.model_name):
        window = member.cfg["model"]["zoo_window"]
        adapter = WindowAdapter(model.contract, window["sfreq_in"], window["n_times_in"])
        return FinetuneDataset(root, rows, task, model.n_chans, window["n_times_in"], adapter=adapter)
    return FinetuneDataset(root, rows, task, model.n_chans, model.n_times)


def member_probabilities(member, root, rows_by_split, task, device, batch_size=64) -> dict:
    """The frozen member's window probabilities of each split.

    Returns
    -------
    probabilities : dict of str to ndarray, shape (n_windows, n_classes)
        Keyed by split name, rows in the order of ``rows_by_split[name]``.
    """
    model = build_model(member.cfg, task)
    model.load_state_dict(load_checkpoint(member.path / BEST_CHECKPOINT)["model"])
    model.to(device).eval()
    out = {}
    for name, rows in rows_by_split.items():
        loader = build_eval_loader(_member_dataset(member, model, root, rows, task), batch_size=batch_size)
        out[name] = evaluate(model, loader, device)[1]
    return out


class MemberOutputs(Dataset):
    """Members' probabilities of one split as a dataset: items ``(p, label, index)``, ``p`` (n_members,
    n_classes), the loader interface of :class:`finetune.data.FinetuneDataset`."""

    def __init__(self, probabilities: np.ndarray, labels: np.ndarray, task: Task, rows=None) -> None:
        self.x = torch.as_tensor(np.asarray(probabilities, dtype=np.float32))
        self.labels = np.asarray(labels, dtype=np.int64)
        self.task, self.rows = task, rows
        if self.x.ndim != 3 or len(self.x) != len(self.labels) or self.x.shape[2] != task.n_classes:
            raise ValueError(f"Member probabilities of shape {tuple(self.x.shape)} do not fit the labels.")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        return self.x[index], torch.tensor(self.labels[index]), torch.tensor(index)


class GatedEnsemble(torch.nn.Module):
    """A gate over frozen members' probabilities: ``log(sum_m w_m(p) p_m)``.

    Parameters
    ----------
    n_members, n_classes : int
    hidden : int
        Width of the gate's hidden layer (0: a linear gate).

    Notes
    -----
    ``forward(p)``, ``p`` (batch, n_members, n_classes) probabilities, returns log-probabilities
    (batch, n_classes), which the engine treats as logits (softmax of log p is p); :meth:`weights`
    returns ``w`` (batch, n_members), summing to 1.
    """

    def __init__(self, n_members: int, n_classes: int, hidden: int = 16) -> None:
        super().__init__()
        n_in = n_members * n_classes
        layers = [torch.nn.Linear(n_in, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, n_members)]
        self.gate = torch.nn.Sequential(*layers) if hidden > 0 else torch.nn.Linear(n_in, n_members)
        self.head = self.gate  # the trainable part (head-mode conventions)

    def weights(self, p: torch.Tensor) -> torch.Tensor:
        features = torch.log(p.clamp_min(1e-6)).flatten(1)
        return torch.softmax(self.gate(features), dim=-1)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        mixture = (self.weights(p).unsqueeze(-1) * p).sum(dim=1)
        return torch.log(mixture.clamp_min(1e-8))


def train_gate(cfg: dict, task: Task, outputs: dict, device=None) -> tuple:
    """Train a gate on the training split's member outputs, early stopping on validation.

    Parameters
    ----------
    cfg : dict
        The run config: ``runtime.seed``, ``optim`` (``batch_size``, ``micro_batch_size``, ``base_lr``,
        ``epochs``, warm-up and cosine), ``early_stopping``, ``ensemble.gate_hidden``.
    task : Task
    outputs : dict of str to MemberOutputs
        ``"train"`` and ``"val"``.

    Returns
    -------
    gate : GatedEnsemble
        With the weights of the lowest validation loss.
    info : dict
        ``best_epoch``, ``best_loss``, ``epochs_run``, ``optimizer_steps``.
    """
    device = torch.device("cpu") if device is None else device
    seed, optim = cfg["runtime"]["seed"], cfg["optim"]
    seed_everything(seed)
    n_members = outputs["train"].x.shape[1]
    gate = GatedEnsemble(n_members, task.n_classes, cfg["ensemble"]["gate_hidden"]).to(device)
    micro = min(optim["micro_batch_size"], len(outputs["train"]))
    loader, sampler = build_train_loader(outputs["train"], micro_batch_size=micro, seed=seed)
    val_loader = build_eval_loader(outputs["val"], batch_size=micro)
    lr = optim["base_lr"] * optim["batch_size"] / 256
    optimizer = torch.optim.AdamW(gate.parameters(), lr=lr, weight_decay=optim["weight_decay"])
    scheduler = build_lr_scheduler(optimizer, cfg, max(1, len(loader)))
    settings = EngineSettings(micro_batch_size=micro, log_every=max(1, len(loader)))
    stopping = EarlyStopping(cfg["early_stopping"]["patience"], cfg["early_stopping"]["min_delta"])
    best_state, step, epochs_run = None, 0, 0
    for epoch in range(optim["epochs"]):
        sampler.set_epoch(epoch)
        step = train_one_epoch(
            gate, loader, optimizer, scheduler, device, epoch, settings=settings, step=step
        )["step"]
        val_loss = evaluate(gate, val_loader, device)[0]
        epochs_run = epoch + 1
        if stopping.update(val_loss, epoch + 1):
            best_state = {k: v.detach().clone() for k, v in gate.state_dict().items()}
        if stopping.should_stop:
            break
    gate.load_state_dict(best_state)
    info = {
        "best_epoch": stopping.best_epoch,
        "best_loss": stopping.best_loss,
        "epochs_run": epochs_run,
        "optimizer_steps": step,
    }
    return gate.eval(), info


def _nll(probabilities, labels):
    p = np.clip(probabilities[np.arange(len(labels)), labels], 1e-8, None)
    return float(-np.log(p).mean())


def _mixture(gate, outputs, device):
    loader = build_eval_loader(outputs, batch_size=256)
    probabilities = evaluate(gate, loader, device)[1]
    with torch.no_grad():
        weights = gate.weights(outputs.x.to(device)).cpu().numpy()
    return probabilities, weights


def run_ensemble(args, cfg: dict, task: Task) -> dict:
    """The ensemble run of ``finetune/ensemble_main.py``: members, gate, baselines, outputs.

    Parameters
    ----------
    args : argparse.Namespace
        ``members``, ``output``, ``overwrite``.
    cfg : dict
        The resolved fine-tuning config (``data.root``, ``split``, ``runtime.seed``, ``optim``...).
    task : Task

    Returns
    -------
    results : dict
        What ``results.json`` holds: the gated ensemble's metrics (``test``, ``val``...) as any run, plus
        ``members`` (``path``, ``model``), ``gate`` (``mean_weights`` per member on the test split, summing
        to 1), ``baselines`` (``uniform`` and ``best_single`` test metrics) and ``parameters``.

    Raises
    ------
    ValueError
        If a member does not fit (the message names it), or the run folder holds a finished run.
    FileNotFoundError
        If a member folder or the data folder is missing.
    """
    from finetune.run import _data_root, run_folder  # the fine-tuning run's own conventions

    seed = cfg["runtime"]["seed"]
    members = [load_member(p) for p in args.members]
    # the members' split is the ensemble's: every member must agree with the first
    cfg["split"] = dict(members[0].cfg["split"])
    check_members(members, task, seed, cfg["split"])
    root = _data_root(cfg)
    run_dir = run_folder(args.output, task.name, seed)
    if (run_dir / RESULTS_FILE).exists() and not args.overwrite:
        raise UsageError(f"The run folder {run_dir} already holds a finished run: pass --overwrite.")
    rows = read_manifest(root)
    encode_labels(rows, task)
    assignment, key = (
        read_split_file(root / SPLIT_FILE) if cfg["split"]["protocol"] == "official" else (None, "subject")
    )
    split = make_split(rows, cfg["split"], assignment, key)
    rows_by_split = {name: split.rows(rows, name) for name in SPLIT_NAMES}
    device = torch.device(
        "cuda" if torch.cuda.is_available() and cfg["runtime"]["device"] != "cpu" else "cpu"
    )
    per_member = [member_probabilities(m, root, rows_by_split, task, device) for m in members]
    labels = {name: encode_labels(rows_by_split[name], task) for name in SPLIT_NAMES}
    outputs = {
        name: MemberOutputs(
            np.stack([p[name] for p in per_member], axis=1), labels[name], task, rows_by_split[name]
        )
        for name in SPLIT_NAMES
    }
    gate, info = train_gate(cfg, task, outputs, device)
    probabilities, weights = {}, {}
    for name in ("val", "test"):
        probabilities[name], weights[name] = _mixture(gate, outputs[name], device)

    metric_names = list(task.metrics) + ["loss"]

    def metrics(name, p):
        result = evaluate_predictions(task, rows_by_split[name], p)
        result["loss"] = _nll(p, labels[name])
        return {m: result[m] for m in metric_names}

    uniform = {name: outputs[name].x.mean(dim=1).numpy() for name in ("val", "test")}
    single_val = [_nll(p["val"], labels["val"]) for p in per_member]
    best = int(np.argmin(single_val))
    mean_weights = weights["test"].mean(axis=0)
    summary = {
        "task": task.name,
        "seed": seed,
        "test": metrics("test", probabilities["test"]),
        "val": metrics("val", probabilities["val"]),
        "members": [{"path": str(m.path), "model": m.model_name} for m in members],
        "gate": {
            "inputs": "members' window probabilities",
            "mean_weights": [float(w) for w in mean_weights / mean_weights.sum()],
            "mean_weights_val": [float(w) for w in weights["val"].mean(axis=0)],
        },
        "baselines": {
            "uniform": {"test": metrics("test", uniform["test"]), "val": metrics("val", uniform["val"])},
            "best_single": {
                "member": str(members[best].path),
                "model": members[best].model_name,
                "chosen_by": "validation loss",
                "test": metrics("test", per_member[best]["test"]),
                "val": metrics("val", per_member[best]["val"]),
            },
        },
        "split": split.describe(rows),
        "checkpoint": {
            "path": str(run_dir / BEST_CHECKPOINT),
            "epoch": info["best_epoch"],
            "val_loss": info["best_loss"],
        },
        "training": {
            "epochs_run": info["epochs_run"],
            "stopped_early": info["epochs_run"] < cfg["optim"]["epochs"],
            "optimizer_steps": info["optimizer_steps"],
            "data": str(root),
        },
        "parameters": parameter_counts(gate),
        "config": cfg,
    }
    for name in ENSEMBLE_OUTPUTS:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    save_checkpoint(
        run_dir / BEST_CHECKPOINT,
        model=gate,
        optimizer=torch.optim.SGD(gate.parameters(), lr=0.0),
        scaler=None,
        epoch=max(0, info["best_epoch"] - 1),
        step=info["optimizer_steps"],
        config=cfg,
        task=task.name,
        classes=list(task.classes),
        members=[str(m.path) for m in members],
    )
    parts = [(name, rows_by_split[name], probabilities[name]) for name in ("val", "test")]
    write_predictions(run_dir / PREDICTIONS_FILE, task, parts)
    write_results(run_dir / RESULTS_FILE, summary)
    test = summary["test"]
    logger.info(
        "Ensemble of %d members: test %s; gate weights %s; uniform %s; best single (%s) %s.",
        len(members),
        ", ".join(f"{k} {v:.4f}" for k, v in test.items() if v is not None and math.isfinite(v)),
        np.round(mean_weights, 3).tolist(),
        summary["baselines"]["uniform"]["test"],
        members[best].model_name,
        summary["baselines"]["best_single"]["test"],
    )
    return summary
