"""The LaBraM-family parts of a pretraining run: data adapted to LaBraM's input, model, tokenizer, engine.

:func:`pretrain.run.setup_run` dispatches on the family of ``model.name``: ``vqnsp_*`` trains the tokenizer
(:func:`pretrain.engine_labram.train_tokenizer_one_epoch`), ``labram_*`` the masked code prediction with a
frozen tokenizer (:func:`pretrain.engine_labram.train_mem_one_epoch`); each family's default YAML
(``configs/pretrain/vqnsp_base.yaml``, ``labram_base.yaml``) is its schema. The stored windows are adapted
when read (:class:`preprocess.adapt.WindowAdapter`: 1000 -> 200 Hz, uV / 100) and the models are built with
the channel names stored with the windows (LaBraM places channels by name).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from models import create_model_from_config, get_input_contract, load_official_state_dict
from models.checkpoint import read_official_checkpoint
from preprocess.adapt import WindowAdapter
from preprocess.segments import load_segment, read_manifest
from pretrain.data import PretrainDataset
from pretrain.engine_labram import LabramSettings, train_mem_one_epoch, train_tokenizer_one_epoch
from pretrain.masking import num_masked_tokens
from runtime.checkpoint import CHECKPOINT_FORMAT, CheckpointReadError, load_verified
from runtime.config import CONFIG_DIR, UsageError
from runtime.seeding import seed_everything

__all__ = ["FAMILY_DEFAULTS", "LabramParts", "build_labram_parts", "load_tokenizer", "model_family"]

logger = logging.getLogger("pretrain.run")

#: The default YAML (and schema) of each model family's pretraining config.
FAMILY_DEFAULTS = {
    "m4cea": CONFIG_DIR / "pretrain" / "m4cea_base.yaml",
    "vqnsp": CONFIG_DIR / "pretrain" / "vqnsp_base.yaml",
    "labram": CONFIG_DIR / "pretrain" / "labram_base.yaml",
}


def model_family(name: Any) -> str:
    """Family of a model name: the part before the first ``_`` (``m4cea``, ``labram``, ``vqnsp``).

    Returns ``"m4cea"`` for anything else, so that the M4CEA schema reports the unknown name.
    """
    family = name.split("_")[0] if isinstance(name, str) else ""
    return family if family in FAMILY_DEFAULTS else "m4cea"


@dataclass
class LabramParts:
    """What :func:`pretrain.run.setup_run` needs of a LaBraM-family run."""

    model: torch.nn.Module
    dataset: PretrainDataset
    settings: LabramSettings
    train_epoch: Any  # train_one_epoch-like callable (model, loader, optimizer, device, epoch, **kwargs)


def _stored_windows(data: Path) -> tuple[dict, dict]:
    """The manifest's first row and its segment (channel names, rate, shape)."""
    rows = read_manifest(data)
    if not rows:
        raise UsageError(f"The manifest {Path(data) / 'manifest.csv'} lists no window.")
    return rows[0], load_segment(Path(data) / rows[0]["path"])


def load_tokenizer(cfg: dict, ch_names, device: torch.device) -> torch.nn.Module:
    """The frozen tokenizer of masked EEG modelling, from ``model.tokenizer``.

    A checkpoint of this project's tokenizer training (``format`` of :mod:`runtime.checkpoint`) is read with
    :func:`runtime.checkpoint.load_verified` and its model rebuilt from the config it records; any other file
    (the official ``vqnsp.pth``, a bare state dict) is read with
    :func:`models.checkpoint.read_official_checkpoint` into the size ``model.tokenizer_model``.

    Parameters
    ----------
    cfg : dict
        A resolved LaBraM pretraining config.
    ch_names : sequence of str
        Channel names of the windows (the tokenizer is built for them).
    device : torch.device

    Returns
    -------
    tokenizer : models.VQNSP
        In eval mode, without gradients, on ``device``.

    Raises
    ------
    UsageError
        If ``model.tokenizer`` is null, names no tokenizer, does not fit the size or the vocabulary.
    FileNotFoundError
        If the file does not exist.
    """
    path = cfg["model"]["tokenizer"]
    if not path:
        raise UsageError(
            "LaBraM's masked EEG modelling needs a trained tokenizer: --set model.tokenizer=CKPT (a "
            "checkpoint of a configs/pretrain/vqnsp_*.yaml run, or the official vqnsp.pth)."
        )
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Tokenizer checkpoint not found: {path} (model.tokenizer).")
    try:
        checkpoint = load_verified(path, what="tokenizer checkpoint")
    except CheckpointReadError:  # e.g. the official file with its argparse.Namespace: the allow-list reader
        checkpoint = None
    if isinstance(checkpoint, dict) and checkpoint.get("format") == CHECKPOINT_FORMAT:
        model_cfg, state = dict(checkpoint["config"]["model"]), checkpoint["model"]
    else:
        try:
            state = read_official_checkpoint(path)
        except ValueError as err:
            raise UsageError(f"{err} (model.tokenizer)") from None
        model_cfg = {"name": cfg["model"]["tokenizer_model"]}
    if model_family(model_cfg.get("name")) != "vqnsp":
        raise UsageError(
            f"model.tokenizer={path} holds a {model_cfg.get('name')!r} model, not a VQ-NSP tokenizer: give "
            "the checkpoint of a configs/pretrain/vqnsp_*.yaml run."
        )
    model_cfg["ch_names"] = list(ch_names)
    tokenizer = create_model_from_config(model_cfg)
    try:
        load_official_state_dict(tokenizer, state)
    except (TypeError, ValueError) as err:
        raise UsageError(
            f"The tokenizer {path} does not fit {model_cfg['name']} (model.tokenizer_model): {err}"
        ) from None
    return tokenizer.eval().requires_grad_(False).to(device)


def build_labram_parts(
    cfg: dict, data: str, *, rank: int, accum: int, amp_dtype, device: torch.device
) -> LabramParts:
    """Dataset (adapted windows), model, settings and epoch function of a LaBraM-family run.

    Parameters
    ----------
    cfg : dict
        A resolved ``vqnsp_*`` or ``labram_*`` pretraining config.
    data : str
        The preprocessing output folder (``--data``).
    rank : int
        This process's rank (dropout is seeded with ``seed + rank`` after the model is built).
    accum : int
        Micro-batches per optimiser step on this rank.
    amp_dtype : torch.dtype | None
        Autocast dtype.
    device : torch.device

    Returns
    -------
    parts : LabramParts

    Raises
    ------
    UsageError
        If the windows do not fit LaBraM's input (length, channel names), or the tokenizer does not fit.
    FileNotFoundError
        If the data folder or the tokenizer is missing.
    """
    name = cfg["model"]["name"]
    family = model_family(name)
    row, segment = _stored_windows(Path(data))
    stored = segment["data"]
    n_chans, n_times_in = int(stored.shape[0]), int(stored.shape[1])
    ch_names = cfg["model"]["ch_names"] or segment.get("ch_names")
    if not ch_names or len(ch_names) != n_chans:
        raise UsageError(
            f"LaBraM places channels by name, but the windows of {data} have {n_chans} channels and the "
            f"names {ch_names!r}: preprocess with a named montage, or set model.ch_names to {n_chans} names."
        )
    sfreq = row.get("sfreq") or segment.get("sfreq")
    if not sfreq:
        raise UsageError(
            f"The windows of {data} record no sampling rate (manifest column or segment 'sfreq'): LaBraM's "
            "input is resampled from it; preprocess again with preprocess/preprocess_main.py."
        )
    sfreq = float(sfreq)
    adapter = WindowAdapter(get_input_contract(name), sfreq_in=sfreq, n_times_in=n_times_in)
    n_weights = int(torch.as_tensor(segment["mfde"]).numel())

    seed = cfg["runtime"]["seed"]
    seed_everything(seed)  # identical initial weights on every rank
    model_cfg = {**cfg["model"], "ch_names": list(ch_names)}
    head = {} if family == "vqnsp" else {"head": "pretrain"}
    try:
        model = create_model_from_config(model_cfg, **head)
    except ValueError as err:  # e.g. a channel name LaBraM's table lacks
        raise UsageError(f"{err} (model section of the config)") from None
    n_tokens = model.n_chans * (adapter.n_times // model.patch_samples)
    if family == "labram":
        tokenizer = load_tokenizer(cfg, ch_names, device)
        if tokenizer.n_codes != model.vocab_size:
            raise UsageError(
                f"The tokenizer has {tokenizer.n_codes} codes but the model predicts model.vocab_size="
                f"{model.vocab_size}: set model.vocab_size={tokenizer.n_codes}."
            )
        train_epoch = partial(train_mem_one_epoch, tokenizer=tokenizer)
        n_masked = num_masked_tokens(n_tokens, cfg["masking"]["mask_ratio"])
    else:
        train_epoch = partial(train_tokenizer_one_epoch, n_codes=model.n_codes)
        n_masked = 0
    seed_everything(seed + rank)  # dropout / drop-path differ between ranks

    dataset = PretrainDataset(
        data, adapter.contract, n_chans=n_chans, n_times=adapter.n_times, n_tokens=n_weights
    )
    settings = LabramSettings(
        micro_batch_size=cfg["optim"]["micro_batch_size"],
        accum_steps=accum,
        n_tokens=n_tokens,
        n_masked=n_masked,
        clip_grad=cfg["optim"]["clip_grad"],
        amp_dtype=amp_dtype,
        seed=seed,
        log_every=cfg["logging"]["log_every"],
    )
    logger.info(
        "%s: windows of %d channels adapted from %g Hz x %d samples to %g Hz x %d (%d tokens%s).",
        name,
        n_chans,
        sfreq,
        n_times_in,
        adapter.sfreq,
        adapter.n_times,
        n_tokens,
        f", {n_masked} masked" if family == "labram" else "",
    )
    return LabramParts(
        model=model, dataset=dataset, settings=settings, train_epoch=partial(train_epoch, settings=settings)
    )
