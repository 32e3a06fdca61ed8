"""Frozen-backbone embeddings of every window, the embedding space, and linear probes on it.

PedSleepMAE's protocol for looking at what a pretrained model learned (and the LaBraM/M4CEA papers'
linear-probing baselines), on this project's data contract:

- :func:`load_encoder` builds the backbone of any checkpoint: this project's pretraining or fine-tuning
  checkpoints (config inside), or official M4CEA / LaBraM state dicts (``--model`` names the size);
- :func:`embed_folder` writes ``embeddings.h5``: the mean over tokens of the backbone's output for every
  manifest window (or every token with ``tokens=True``), aligned with the manifest's columns, streamed
  in batches into resizable datasets (flat memory);
- :func:`embedding_space` draws a UMAP of the embeddings coloured by label and by subject and scores
  their separation (silhouette by label and by subject): do the embeddings carry the task, or the child?
- :func:`probe` fits a logistic regression on the frozen embeddings of a task's training split
  (:mod:`finetune.splits`) and evaluates it with the task's units and metrics, written as the
  ``results.json`` of fine-tuning runs (so :mod:`finetune.report` tables hold probes beside them).

References
----------
Tiwari et al., "PedSleepMAE: generative model for multimodal pediatric sleep signals", 2024.
McInnes, Healy, Melville, "UMAP: Uniform Manifold Approximation and Projection", arXiv:1802.03426.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from finetune.metrics import evaluate_predictions
from finetune.outputs import split_results, write_results
from finetune.splits import SPLIT_FILE, make_split, read_split_file
from models import (
    convert_official_state_dict,
    create_model_from_config,
    load_official_state_dict,
)
from models.checkpoint import read_official_checkpoint
from models.registry import get_input_contract
from preprocess.adapt import WindowAdapter
from preprocess.segments import load_window, read_manifest
from runtime.checkpoint import CHECKPOINT_FORMAT, CheckpointReadError, load_verified
from runtime.config import UsageError
from tasks import encode_labels, get_task, load_task_config

__all__ = ["EMBEDDINGS_FILE", "embed_folder", "embedding_space", "load_encoder", "probe", "read_embeddings"]

logger = logging.getLogger(__name__)

#: The embeddings file in the output folder.
EMBEDDINGS_FILE = "embeddings.h5"
#: Manifest columns stored beside the embeddings (``label`` "" and ``shard_index`` -1 for none).
_STRING_COLUMNS = ("path", "subject", "recording", "label")
_NUMBER_COLUMNS = {"start_s": np.float64, "shard_index": np.int64, "n_times": np.int64, "sfreq": np.float64}


def _state_and_config(path: Path) -> tuple[Mapping, dict | None]:
    """The state dict of a checkpoint file and its config (None for official or bare state dicts)."""
    try:
        obj = load_verified(path, what="checkpoint")
    except CheckpointReadError:  # official releases pickle argparse.Namespace: allow-listed reader
        return read_official_checkpoint(path), None
    if isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT:
        return obj["model"], obj.get("config")
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "module"):
            if isinstance(obj.get(key), Mapping):
                return obj[key], obj.get("config") if isinstance(obj.get("config"), Mapping) else None
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj, None
    raise UsageError(f"The checkpoint {path} holds no model state dict (--checkpoint).")


def load_encoder(
    path: str | os.PathLike, model_name: str | None = None, ch_names: list[str] | None = None
) -> tuple[torch.nn.Module, str]:
    """The frozen backbone of a checkpoint, in eval mode.

    Parameters
    ----------
    path : path-like
        This project's pretraining or fine-tuning checkpoint (its config names the model), or an official
        M4CEA or LaBraM checkpoint / state dict.
    model_name : str | None
        Registered size for checkpoints without a config (default: ``labram_base`` when the keys hold a
        CLS token, else ``m4cea_base``), its depth counted from the checkpoint's blocks; ignored for this
        project's checkpoints.
    ch_names : list of str | None
        Channel names of the stored windows (LaBraM places channels by name).

    Returns
    -------
    model : torch.nn.Module
        Classification-headed model whose :meth:`forward_features` is used; heads are not loaded.
    name : str
        The model's registered name (gives its input contract).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is unsafe, holds no state dict, or does not fit the model (keys listed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path} (--checkpoint).")
    state, cfg = _state_and_config(path)
    if cfg is not None and isinstance(cfg.get("model"), Mapping):
        model_cfg = dict(cfg["model"])
        name = model_cfg["name"]
    else:
        name = model_name or ("labram_base" if any("cls_token" in k for k in state) else "m4cea_base")
        model_cfg = {"name": name}
        if name.startswith("m4cea"):  # official M4CEA key layout to ours
            state = convert_official_state_dict(state)
        blocks = {k.split(".")[1] for k in state if k.startswith("blocks.")}
        if blocks:  # official releases come in several depths (the reference files: 2)
            model_cfg["depth"] = len(blocks)
    if name.startswith("labram") and ch_names is not None and not model_cfg.get("ch_names"):
        model_cfg["ch_names"] = list(ch_names)
    if name.startswith("m4cea"):
        state = convert_official_state_dict(state)
    # a fine-tuned checkpoint's head is loaded too (unused); a pretraining checkpoint's is left new
    head = state.get("head.weight")
    n_outputs = int(head.shape[0]) if isinstance(head, torch.Tensor) and head.ndim == 2 else 1
    model = create_model_from_config(model_cfg, head="classification", n_outputs=n_outputs)
    load_official_state_dict(model, state, allow_missing_head=True)
    model.eval().requires_grad_(False)
    return model, name


class _Windows(Dataset):
    """Manifest windows adapted to a model's input contract, with their row index."""

    def __init__(self, root: Path, rows: list[dict], adapter: WindowAdapter):
        self.root, self.rows, self.adapter = root, rows, adapter

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        data = load_window(self.root, self.rows[index])["data"]
        return torch.from_numpy(np.ascontiguousarray(self.adapter(data))), index


def embed_folder(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike,
    output: str | os.PathLike,
    *,
    tokens: bool = False,
    model_name: str | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Embed every window of a preprocessing output folder into ``output/embeddings.h5``.

    Parameters
    ----------
    checkpoint : path-like
        Any checkpoint :func:`load_encoder` reads.
    data : path-like
        Preprocessing output folder (``manifest.csv``; pickles or HDF5 shards).
    output : path-like
        Folder to write ``embeddings.h5`` into (created).
    tokens : bool
        Also store every token's embedding (``tokens``, (n_windows, n_tokens, dim); LaBraM's CLS excluded).
    model_name : str | None
        Size of a checkpoint without config (see :func:`load_encoder`).
    batch_size, num_workers : int
        Windows per forward pass; loader worker processes.
    device : str | None
        ``"cuda"``, ``"cpu"``...; None: CUDA when available.
    progress : bool
        Show a progress bar (tqdm).

    Returns
    -------
    path : Path
        ``embeddings.h5``: ``embeddings`` float32 (n_windows, dim), what the classification head sees
        (M4CEA: the mean over the backbone's output tokens; LaBraM: ``fc_norm`` of the patch tokens' mean,
        a plain layer norm for a pretraining checkpoint); ``path``, ``subject``, ``recording``, ``label``
        (UTF-8, "" for no label), ``start_s`` (s), ``shard_index`` (-1 for pickles), ``n_times``,
        ``sfreq`` (Hz), each (n_windows,), in manifest order; attributes ``checkpoint``, ``model``, ``data``.

    Raises
    ------
    FileNotFoundError
        If the data folder, its manifest or the checkpoint is missing.
    ValueError
        If the manifest lists no window, or the windows do not fit the model's input contract.

    Notes
    -----
    The file is written under a temporary name and renamed when complete; batches are appended to
    resizable datasets, so memory does not grow with the corpus.
    """
    data, output = Path(data), Path(output)
    rows = read_manifest(data)
    if not rows:
        raise UsageError(f"The manifest {data / 'manifest.csv'} lists no window.")
    first = load_window(data, rows[0])
    model, name = load_encoder(checkpoint, model_name, list(first["ch_names"]))
    contract = get_input_contract(name)
    if contract.family == "m4cea":  # the checkpoint's size may override the registered patching
        patching = {"patch_samples": model.patch_samples, "max_patches": model.n_patches}
        contract = dataclasses.replace(contract, **patching)
    adapter = WindowAdapter(contract, float(first["sfreq"]), first["data"].shape[-1])
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    loader = DataLoader(
        _Windows(data, rows, adapter),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    output.mkdir(parents=True, exist_ok=True)
    final = output / EMBEDDINGS_FILE
    tmp = output / f".{EMBEDDINGS_FILE}.{secrets.token_hex(4)}.tmp"
    strings = h5py.string_dtype("utf-8")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs.update({"checkpoint": str(checkpoint), "model": name, "data": str(data)})
            for key in _STRING_COLUMNS:
                values = ["" if row.get(key) is None else str(row[key]) for row in rows]
                f.create_dataset(key, data=np.array(values, dtype=object), dtype=strings)
            for key, dtype in _NUMBER_COLUMNS.items():
                values = [-1 if row.get(key) is None else row[key] for row in rows]
                f.create_dataset(key, data=np.array(values, dtype=dtype))
            written = 0
            with torch.inference_mode():
                for x, index in tqdm(loader, desc="embedding", unit="batch", disable=not progress):
                    features = model.forward_features(x.to(device, non_blocking=True))
                    # what the classification head sees: M4CEA the token mean, LaBraM fc_norm of the mean
                    pooled = model.forward_head(features, pre_logits=True).float().cpu().numpy()
                    if name.startswith("labram"):
                        features = features[:, 1:]  # the CLS token is not a patch
                    if written == 0:
                        f.create_dataset(
                            "embeddings", shape=(0, pooled.shape[1]), maxshape=(None, pooled.shape[1]),
                            dtype=np.float32, chunks=(min(batch_size, 1024), pooled.shape[1]),
                        )  # fmt: skip
                        if tokens:
                            shape = tuple(features.shape[1:])
                            f.create_dataset(
                                "tokens", shape=(0, *shape), maxshape=(None, *shape), dtype=np.float32,
                                chunks=(1, *shape),
                            )  # fmt: skip
                    assert int(index[0]) == written  # the loader keeps manifest order
                    n = written + len(pooled)
                    f["embeddings"].resize(n, axis=0)
                    f["embeddings"][written:n] = pooled
                    if tokens:
                        f["tokens"].resize(n, axis=0)
                        f["tokens"][written:n] = features.float().cpu().numpy()
                    written = n
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("Embedded %d windows with %s (%s): %s", len(rows), checkpoint, name, final)
    return final


def read_embeddings(path: str | os.PathLike) -> tuple[np.ndarray, list[dict]]:
    """Read ``embeddings.h5``: the embeddings and the manifest rows they belong to.

    Returns
    -------
    embeddings : ndarray of float32, shape (n_windows, dim)
    rows : list of dict
        ``path``, ``subject``, ``recording``, ``label`` (None when empty), ``start_s``, ``shard_index``
        (None for pickles), ``n_times``, ``sfreq``: manifest rows, for splits and unit aggregation.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = Path(path)
    if path.is_dir():
        path = path / EMBEDDINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"Embeddings not found: {path} (write them with finetune/embed.py).")
    with h5py.File(path, "r") as f:
        embeddings = f["embeddings"][()]
        columns = {key: f[key].asstr()[()] for key in _STRING_COLUMNS}
        columns.update({key: f[key][()] for key in _NUMBER_COLUMNS})
    rows = []
    for i in range(len(embeddings)):
        row = {key: str(columns[key][i]) for key in _STRING_COLUMNS}
        row["label"] = row["label"] or None
        row["start_s"], row["sfreq"] = float(columns["start_s"][i]), float(columns["sfreq"][i])
        row["n_times"] = int(columns["n_times"][i])
        row["shard_index"] = None if columns["shard_index"][i] < 0 else int(columns["shard_index"][i])
        rows.append(row)
    return embeddings, rows


def _silhouette(embeddings: np.ndarray, groups: list, seed: int, max_points: int) -> float | None:
    from sklearn.metrics import silhouette_score

    keep = np.array([g is not None for g in groups])
    values = np.array([g for g in groups if g is not None])
    if len(set(values.tolist())) < 2 or len(values) <= len(set(values.tolist())):
        return None  # silhouette needs 2 to n - 1 groups
    sample = min(max_points, len(values))
    return float(silhouette_score(embeddings[keep], values, sample_size=sample, random_state=seed))


def embedding_space(
    embeddings_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    n_neighbors: int = 15,
    max_points: int = 5000,
    seed: int = 0,
    projection: str = "umap",
) -> dict:
    """UMAP (or PCA) figure of the embeddings coloured by label and by subject, and separation scores.

    Parameters
    ----------
    embeddings_path : path-like
        ``embeddings.h5`` (:func:`embed_folder`).
    output : path-like
        Folder for ``embedding_space.png`` and ``separation.json``.
    n_neighbors : int
        UMAP's neighbourhood size (at most n_windows - 1 is used).
    max_points : int
        Windows drawn (a seeded random subset beyond it) and sampled for the silhouettes.
    seed : int
        Seed of the subset, of UMAP and of the silhouette sampling.
    projection : {"umap", "pca"}
        The 2-D projection drawn: UMAP (its first call in a process compiles numba code, about a minute)
        or PCA (instant; for quick looks and tests).

    Returns
    -------
    scores : dict
        ``silhouette_label``, ``silhouette_subject`` (in [-1, 1]; None when fewer than two groups),
        ``n_windows``, ``n_labels``, ``n_subjects``, as written to ``separation.json``. High by label and
        low by subject: the embeddings carry the task rather than the child.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    if projection not in ("umap", "pca"):
        raise UsageError(
            f"Invalid value for the 'projection' parameter. Allowed values are ('umap', 'pca'), but got "
            f"{projection!r} instead."
        )
    if projection == "umap":
        import umap

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    embeddings, rows = read_embeddings(embeddings_path)
    labels, subjects = [r["label"] for r in rows], [r["subject"] for r in rows]
    scores = {
        "silhouette_label": _silhouette(embeddings, labels, seed, max_points),
        "silhouette_subject": _silhouette(embeddings, subjects, seed, max_points),
        "n_windows": len(rows),
        "n_labels": len({x for x in labels if x is not None}),
        "n_subjects": len(set(subjects)),
    }
    with open(output / "separation.json", "w", encoding="utf-8") as f:
        json.dump(scores, f, indent=1)
    rng = np.random.default_rng(seed)
    shown = np.sort(rng.permutation(len(rows))[:max_points])
    if len(shown) >= 4:
        if projection == "umap":
            reducer = umap.UMAP(n_neighbors=max(2, min(n_neighbors, len(shown) - 1)), random_state=seed)
        else:
            reducer = PCA(n_components=2, random_state=seed)
        xy = reducer.fit_transform(embeddings[shown])
        fig, axes = plt.subplots(1, 2, figsize=(11, 5))
        for ax, (title, groups) in zip(axes, (("label", labels), ("subject", subjects)), strict=True):
            values = np.array(["(none)" if groups[i] is None else groups[i] for i in shown])
            for name in sorted(set(values.tolist())):
                ax.scatter(*xy[values == name].T, s=6, label=name)
            if len(set(values.tolist())) <= 20:
                ax.legend(fontsize=7, markerscale=2, loc="best")
            ax.set_title(f"{projection.upper()} by {title} (silhouette {scores['silhouette_' + title]})")
            ax.set_xticks([]), ax.set_yticks([])
        fig.tight_layout()
        fig.savefig(output / "embedding_space.png", dpi=120)
        plt.close(fig)
    return scores


def probe(
    embeddings_path: str | os.PathLike,
    task_name: str,
    seed: int,
    output: str | os.PathLike,
    *,
    overrides: list[str] | None = None,
    c: float = 1.0,
    max_iter: int = 1000,
) -> dict:
    """Linear probe: logistic regression on frozen embeddings, with the task's split, units and metrics.

    Parameters
    ----------
    embeddings_path : path-like
        ``embeddings.h5`` of a labelled folder (:func:`embed_folder`).
    task_name : str
        One of the tasks (``configs/finetune/<task>.yaml`` gives classes, unit, metrics and split).
    seed : int
        The run's seed (the regression's solver seed); the split has its own seed (``split.seed``).
    output : path-like
        Runs folder: results go to ``output/<task>/seed<S>/results.json`` as for fine-tuning.
    overrides : list of str | None
        ``--set`` style overrides of the task config (``split.protocol=...``).
    c : float
        Inverse L2 regularisation strength of the regression (scikit-learn's ``C``).
    max_iter : int
        Solver iterations.

    Returns
    -------
    summary : dict
        What ``results.json`` holds: ``task``, ``seed``, ``test`` and ``val`` metrics (and ``loss``, the
        mean cross-entropy of the windows), ``confusion_matrix``, ``undefined``, ``n_units``, ``split``,
        ``probe``, ``config``.

    Raises
    ------
    ValueError
        If a label is not one of the task's classes, or the split protocol cannot split the rows.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    cfg = load_task_config(task_name, overrides=list(overrides or ()))
    cfg["runtime"]["seed"] = seed
    task = get_task(task_name, cfg)
    embeddings, rows = read_embeddings(embeddings_path)
    labels = encode_labels(rows, task)
    if cfg["split"]["protocol"] == "official":
        h5 = Path(embeddings_path)
        with h5py.File(h5 / EMBEDDINGS_FILE if h5.is_dir() else h5, "r") as f:
            data = Path(f.attrs["data"])
        assignment, key = read_split_file(data / SPLIT_FILE)
    else:
        assignment, key = None, "subject"
    split = make_split(rows, cfg["split"], assignment, key)
    train = split.indices["train"]
    classifier = make_pipeline(
        StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    )
    classifier.fit(embeddings[train], labels[train])
    evaluated = {}
    for name in ("val", "test"):
        index = split.indices[name]
        probabilities = np.zeros((len(index), task.n_classes))
        probabilities[:, classifier.classes_] = classifier.predict_proba(embeddings[index])
        part = [rows[i] for i in index]
        evaluated[name] = evaluate_predictions(task, part, probabilities)
        true = probabilities[np.arange(len(index)), labels[index]]
        evaluated[name]["loss"] = float(-np.log(np.clip(true, 1e-12, None)).mean())
    summary = {
        **split_results(task, seed, evaluated),
        "split": split.describe(rows),
        "probe": {
            "kind": "logistic_regression",
            "C": c,
            "embeddings": str(embeddings_path),
            "n_train_windows": len(train),
            "time_s": time.perf_counter() - start,
        },
        "config": cfg,
    }
    run_dir = Path(output) / task.name / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_results(run_dir / "results.json", summary)
    return summary
