"""The run of ``finetune/ensemble_main.py``: members, gate, baselines and the run folder's outputs.

Beside the gated ensemble (:mod:`finetune.ensemble`), the uniform average of the members' probabilities
and the best single member (lowest validation loss) are evaluated on the same windows, so that the gate's
gain is visible in ``results.json`` and the tables (``scripts/make_table.py``). Under ``torchrun`` the
members' outputs are computed on each rank's share of the windows and gathered, the gate trains with DDP,
and only rank 0 writes.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from finetune.checkpoints import BEST_CHECKPOINT
from finetune.ensemble import MemberOutputs, gate_weights, loader_workers, train_gate
from finetune.ensemble_members import (
    check_members,
    gate_signal_dataset,
    load_member,
    member_outputs,
    resolve_gate_channels,
)
from finetune.evidence import split_sizes
from finetune.heads import parameter_counts
from finetune.metrics import evaluate_predictions
from finetune.outputs import PREDICTIONS_FILE, RESULTS_FILE, write_predictions, write_results
from finetune.splits import SPLIT_FILE, SPLIT_NAMES, make_split, read_split_file
from preprocess.segments import load_window, read_manifest
from runtime.checkpoint import save_checkpoint
from runtime.config import UsageError, save_config
from runtime.distributed import barrier, init_distributed
from runtime.files import remove_outputs
from runtime.logging import setup_logging
from tasks import Task, encode_labels

__all__ = ["ENSEMBLE_MODEL_NAME", "ENSEMBLE_OUTPUTS", "run_ensemble"]

logger = logging.getLogger("finetune.ensemble")

#: Files an ensemble run writes (removed before a new run in the same folder).
ENSEMBLE_OUTPUTS = (RESULTS_FILE, PREDICTIONS_FILE, BEST_CHECKPOINT, "config.yaml")

#: ``model.name`` of an ensemble run's config and results (the tables' row label).
ENSEMBLE_MODEL_NAME = "ensemble"


def _nll(probabilities, labels):
    p = np.clip(probabilities[np.arange(len(labels)), labels], 1e-8, None)
    return float(-np.log(p).mean())


def _gate_description(ens: dict, channels: list | None, ch_names) -> str:
    members = {
        "probabilities": "members' window probabilities",
        "features": f"members' pooled features through FFN heads (hidden {ens['head_hidden']})",
    }[ens["inputs"]]
    reads = []
    if ens["gate_inputs"] != "channels":
        reads.append("the members' log-probabilities")
    if ens["gate_inputs"] != "outputs":
        names = [ch_names[c] for c in channels] if ch_names else [str(c) for c in channels]
        reads.append(f"channels {', '.join(names)} (uV / 100)")
    return f"{members}; gate on {' and '.join(reads)}"


def run_ensemble(args, cfg: dict, task: Task) -> dict | None:
    """The ensemble run of ``finetune/ensemble_main.py``: members, gate, baselines, outputs.

    Parameters
    ----------
    args : argparse.Namespace
        ``members``, ``output``, ``overwrite``.
    cfg : dict
        The resolved fine-tuning config (``data.root``, ``split``, ``runtime.seed``, ``optim``,
        ``ensemble``...).
    task : Task

    Returns
    -------
    results : dict | None
        What ``results.json`` holds (rank 0; None on the other ranks): the gated ensemble's metrics
        (``test``, ``val``...) as any run, ``model`` ``"ensemble"``, plus ``members`` (``path``,
        ``model``), ``gate`` (``inputs``, ``channels``, ``mean_weights`` per member on the test split,
        summing to 1), ``baselines`` (``uniform`` and ``best_single`` metrics) and ``parameters``.

    Raises
    ------
    ValueError
        If a member does not fit (the message names it), ``ensemble.gate_channels`` names no channel of
        the windows, or the run folder holds a finished run.
    FileNotFoundError
        If a member folder or the data folder is missing.
    """
    from finetune.run import _data_root, run_folder  # the fine-tuning run's own conventions

    seed, ens = cfg["runtime"]["seed"], cfg["ensemble"]
    members = [load_member(p) for p in args.members]
    # the members' split is the ensemble's: every member must agree with the first
    cfg["split"] = dict(members[0].cfg["split"])
    check_members(members, task, seed, cfg["split"])
    cfg["model"]["name"] = ENSEMBLE_MODEL_NAME  # the row label of the tables (finetune.report)
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
    channels, ch_names = None, None
    if ens["gate_inputs"] != "outputs":
        window = load_window(root, rows[0])
        ch_names = [str(c) for c in window.get("ch_names") or []] or None
        channels = resolve_gate_channels(ens["gate_channels"], ch_names, int(window["data"].shape[0]))

    ctx = init_distributed(cfg["runtime"]["device"])
    setup_logging(ctx.rank, None)
    features = ens["inputs"] == "features"
    per_member = [member_outputs(m, root, rows_by_split, task, ctx, features) for m in members]
    labels = {name: encode_labels(rows_by_split[name], task) for name in SPLIT_NAMES}
    outputs = {}
    for name in SPLIT_NAMES:
        if features:
            given = [p[name]["features"] for p in per_member]
        else:
            given = np.stack([p[name]["probabilities"] for p in per_member], axis=1)
        signal = None if channels is None else gate_signal_dataset(root, rows_by_split[name], task)
        outputs[name] = MemberOutputs(given, labels[name], task, rows_by_split[name], signal, channels)
    gate, info = train_gate(cfg, task, outputs, ctx=ctx)
    if not ctx.is_main:
        barrier()  # rank 0 writes the run folder
        return None
    probabilities, weights = {}, {}
    for name in ("val", "test"):
        probabilities[name], weights[name], _ = gate_weights(
            gate, outputs[name], ctx.device, num_workers=loader_workers(cfg, outputs[name])
        )

    metric_names = list(task.metrics) + ["loss"]

    def metrics(name, p):
        result = evaluate_predictions(task, rows_by_split[name], p)
        result["loss"] = _nll(p, labels[name])
        return {m: result[m] for m in metric_names}

    member_p = {n: np.stack([p[n]["probabilities"] for p in per_member], axis=1) for n in ("val", "test")}
    uniform = {name: member_p[name].mean(axis=1) for name in ("val", "test")}
    single_val = [_nll(p["val"]["probabilities"], labels["val"]) for p in per_member]
    best = int(np.argmin(single_val))
    mean_weights = weights["test"].mean(axis=0)
    summary = {
        "task": task.name,
        "seed": seed,
        "model": ENSEMBLE_MODEL_NAME,
        "test": metrics("test", probabilities["test"]),
        "val": metrics("val", probabilities["val"]),
        "members": [{"path": str(m.path), "model": m.model_name} for m in members],
        "gate": {
            "inputs": _gate_description(ens, channels, ch_names),
            "channels": None if channels is None else [ch_names[c] if ch_names else c for c in channels],
            "mean_weights": [float(w) for w in mean_weights / mean_weights.sum()],
            "mean_weights_val": [float(w) for w in weights["val"].mean(axis=0)],
        },
        "baselines": {
            "uniform": {"test": metrics("test", uniform["test"]), "val": metrics("val", uniform["val"])},
            "best_single": {
                "member": str(members[best].path),
                "model": members[best].model_name,
                "chosen_by": "validation loss",
                "test": metrics("test", member_p["test"][:, best]),
                "val": metrics("val", member_p["val"][:, best]),
            },
        },
        "n": {name: split_sizes(task, rows_by_split[name]) for name in SPLIT_NAMES},
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
            "world_size": ctx.world_size,
            "data": str(root),
        },
        "parameters": parameter_counts(gate),
        "config": cfg,
    }
    remove_outputs(run_dir, ENSEMBLE_OUTPUTS)
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
    barrier()
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
