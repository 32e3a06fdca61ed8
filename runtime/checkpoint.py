"""Training checkpoints: atomic writes, verified loads, exact resume.

A checkpoint is a plain dict saved with :func:`torch.save`::

    {"format": "m4cea-train-checkpoint", "version": 2,
     "model": state dict of the unwrapped model, "optimizer": optimizer state dict,
     "scaler": GradScaler state dict or None, "epoch": last finished epoch (0-based),
     "step": optimiser steps done, "config": the resolved config,
     "rng": one generator-state dict per rank (runtime.seeding.get_rng_state), ...,
     "sha256": payload_sha256 of every other entry}

It is written by rank 0 only, to a temporary file renamed onto the final name
(:func:`runtime.files.atomic_write`), so a crash never leaves a truncated checkpoint behind.

Every checkpoint this project reads (``--resume``, ``--pretrained``, the fine-tuned model of predict)
goes through :func:`load_verified`, which refuses, naming the file:

- a torch older than 2.6, whose ``weights_only=True`` can be bypassed (CVE-2025-32434);
- a damaged file: the CRC-32 of every member of torch's zip archive is checked;
- anything but tensors and plain values (``torch.load(weights_only=True)``);
- plain values nested deeper or larger (shared references counted every time they occur, as JSON or
  YAML would write them) than :data:`MAX_NESTING_DEPTH`, :data:`MAX_PLAIN_NODES` and, for the config
  entries (:data:`CONFIG_ENTRIES`), :data:`MAX_CONFIG_NODES` / :data:`MAX_CONFIG_TEXT_CHARS`;
- a payload whose sha256 (:func:`payload_sha256`, recorded under ``"sha256"`` when this project
  writes the file) differs from the recorded one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from runtime.distributed import unwrap_model
from runtime.files import atomic_write

__all__ = [
    "CHECKPOINT_FORMAT",
    "CONFIG_ENTRIES",
    "CheckpointReadError",
    "HASH_KEY",
    "MAX_CONFIG_NODES",
    "MAX_CONFIG_TEXT_CHARS",
    "MAX_NESTING_DEPTH",
    "MAX_PLAIN_NODES",
    "MIN_TORCH_VERSION",
    "check_torch_version",
    "load_checkpoint",
    "load_verified",
    "payload_sha256",
    "restore_training_state",
    "save_checkpoint",
    "UnsafeTorchError",
    "verify_zip_archive",
    "write_checkpoint_file",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "m4cea-train-checkpoint"
#: 1: no payload hash; 2: ``"sha256"`` of the payload (:func:`payload_sha256`).
CHECKPOINT_VERSION = 2
#: The entry holding :func:`payload_sha256` of the other entries.
HASH_KEY = "sha256"

#: The first torch release whose ``torch.load(weights_only=True)`` cannot be bypassed (CVE-2025-32434).
MIN_TORCH_VERSION = (2, 6)

#: Bounds on the plain values of a loaded file (everything but tensor contents), each occurrence of a
#: shared object counted: deeper nesting or more values are refused.
MAX_NESTING_DEPTH = 64
MAX_PLAIN_NODES = 1_000_000
#: Tighter bounds for the entries that are configs, written out as JSON/YAML by the entry points.
CONFIG_ENTRIES = ("config", "preprocess", "args")
MAX_CONFIG_NODES = 50_000
MAX_CONFIG_TEXT_CHARS = 4 * 2**20

_ZIP_MAGIC = b"PK\x03\x04"
_READ_CHUNK = 1 << 20


class CheckpointReadError(ValueError):
    """``torch.load(weights_only=True)`` refused the file: not a torch file, or objects other than tensors."""


class UnsafeTorchError(RuntimeError):
    """The installed torch can be made to run code by a checkpoint despite ``weights_only=True``."""


def check_torch_version(version: str | None = None) -> None:
    """Refuse a torch release whose ``weights_only=True`` loading can be bypassed.

    Parameters
    ----------
    version : str | None
        A version string (``"2.5.1+cu121"``); default ``torch.__version__``.

    Raises
    ------
    UnsafeTorchError
        If the version is older than :data:`MIN_TORCH_VERSION` (CVE-2025-32434, GHSA-53q9-r3pm-6pq6:
        ``torch.load(weights_only=True)`` of torch <= 2.5.1 can run code from a crafted file).
    """
    version = torch.__version__ if version is None else version
    match = re.match(r"(\d+)\.(\d+)", str(version))
    if match is None or (int(match[1]), int(match[2])) < MIN_TORCH_VERSION:
        wanted = ".".join(map(str, MIN_TORCH_VERSION))
        raise UnsafeTorchError(
            f"torch {version} is installed, but loading checkpoints needs torch>={wanted}: older releases "
            f"let a crafted file run code despite torch.load(weights_only=True) (CVE-2025-32434). "
            f"Upgrade it: pip install 'torch>={wanted}' (requirements.txt)."
        )


def verify_zip_archive(path: str | os.PathLike, what: str = "checkpoint") -> bool:
    """Check the CRC-32 of every member of a torch zip checkpoint.

    Parameters
    ----------
    path : path-like
        A file written by :func:`torch.save` (zip format, the default since torch 1.6).
    what : str
        What the file is, for messages (``"checkpoint"``, ``"pretrained checkpoint"``).

    Returns
    -------
    checked : bool
        True for a zip archive whose members all match their CRC-32; False for a file in torch's
        legacy (pre-1.6, not zip) format, which holds no checksums.

    Raises
    ------
    ValueError
        If the archive is truncated or a member does not match its CRC-32; the message names the file
        and the member.
    """
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
            return False
    member = None
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                member = info.filename
                with archive.open(info) as stream:  # zipfile checks the CRC-32 at the member's end
                    while stream.read(_READ_CHUNK):
                        pass
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, ValueError) as err:
        where = f" (member {member})" if member is not None else ""
        raise ValueError(
            f"The {what} {path} is corrupted{where}: {err}. The file was damaged or truncated after it "
            f"was written; use another copy or an earlier checkpoint."
        ) from None
    return True


def _hash_tensor(value: torch.Tensor) -> bytes:
    tensor = value.detach()
    if tensor.layout != torch.strided:
        tensor = tensor.to_dense()
    data = tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    digest = hashlib.sha256(f"{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    digest.update(memoryview(data))
    return digest.digest()


def _absorb(digest, value: Any, memo: dict) -> None:
    """Feed one value to ``digest``: leaves by type and value, tensors and containers by their own digest."""
    if isinstance(value, (torch.Tensor, Mapping, list, tuple)):
        digest.update(b"#" + _digest_of(value, memo))
    elif value is None:
        digest.update(b"N")
    elif isinstance(value, bool):
        digest.update(b"?1" if value else b"?0")
    elif isinstance(value, int):
        digest.update(b"I%d;" % value)
    elif isinstance(value, float):
        digest.update(b"F" + struct.pack("<d", value))
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        digest.update(b"S%d;" % len(data) + data)
    elif isinstance(value, (bytes, bytearray)):
        digest.update(b"B%d;" % len(value) + bytes(value))
    else:  # other values the weights-only unpickler builds (torch.dtype, torch.device...)
        text = f"{type(value).__module__}.{type(value).__qualname__}:{value!r}".encode()
        digest.update(b"O%d;" % len(text) + text)


def _digest_of(value: Any, memo: dict) -> bytes:
    """sha256 of a tensor or container, once per object: shared references cost nothing more."""
    key = id(value)
    if key not in memo:
        if isinstance(value, torch.Tensor):
            digest = _hash_tensor(value)
        else:
            inner = hashlib.sha256()
            if isinstance(value, Mapping):
                inner.update(b"D%d;" % len(value))
                for item_key, item in value.items():
                    _absorb(inner, item_key, memo)
                    _absorb(inner, item, memo)
            else:
                inner.update((b"L%d;" if isinstance(value, list) else b"U%d;") % len(value))
                for item in value:
                    _absorb(inner, item, memo)
            digest = inner.digest()
        memo[key] = (value, digest)  # holding the value keeps its id unique during the pass
    return memo[key][1]


def payload_sha256(state: Mapping) -> str:
    """The sha256 of a checkpoint's entries (all but :data:`HASH_KEY`), as they are after loading.

    Tensors count by dtype, shape and the bytes of their elements (in C order, on the CPU), plain values
    by type and value, dicts in insertion order (which :mod:`pickle` keeps); every tensor, dict, list and
    tuple is hashed once into a digest that its container takes in (a Merkle tree), so an object shared
    many times costs one hash. The result is the same before :func:`torch.save` and after
    :func:`torch.load`, on any device, whatever the zip layout.

    Parameters
    ----------
    state : Mapping
        A checkpoint dict of tensors and plain values (dict, list, tuple, str, bytes, int, float, bool,
        None).

    Returns
    -------
    hexdigest : str
        64 hexadecimal digits.
    """
    return _digest_of({k: v for k, v in state.items() if k != HASH_KEY}, {}).hex()


def _check_plain_size(value: Any, *, path: Path, entry: str, max_nodes: int, max_chars: int | None) -> None:
    """Refuse nesting deeper than MAX_NESTING_DEPTH or more than ``max_nodes`` values (shared counted)."""
    nodes, chars = 1, 0
    stack = [(value, 1)]

    def refuse(reason):
        raise ValueError(
            f"The checkpoint {path} is refused: its {entry} {reason}. A file written by this project never "
            f"does; it may have been crafted to exhaust memory when written out (shared references)."
        )

    while stack:
        item, depth = stack.pop()
        if isinstance(item, (str, bytes, bytearray)):
            chars += len(item)
            if max_chars is not None and chars > max_chars:
                refuse(f"holds more than {max_chars} characters of text (shared references expanded)")
            continue
        if isinstance(item, (list, tuple)):
            children = item
        elif isinstance(item, dict) or (not isinstance(item, torch.Tensor) and isinstance(item, Mapping)):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, (set, frozenset)):
            children = list(item)
        elif isinstance(getattr(item, "__dict__", None), dict) and not isinstance(item, torch.Tensor):
            children = [*vars(item).keys(), *vars(item).values()]  # allow-listed objects (Namespace...)
        else:
            continue
        if not children:
            continue
        if depth >= MAX_NESTING_DEPTH:
            refuse(f"is nested deeper than {MAX_NESTING_DEPTH} levels")
        nodes += len(children)
        if nodes > max_nodes:
            refuse(f"holds more than {max_nodes} values (shared references expanded)")
        stack.extend((child, depth + 1) for child in children)


def load_verified(
    path: str | os.PathLike,
    *,
    what: str = "checkpoint",
    map_location: str | torch.device = "cpu",
) -> Any:
    """Read a torch file safely and check its integrity: the one loader of every checkpoint.

    Parameters
    ----------
    path : path-like
        A file written by :func:`torch.save`: this project's checkpoints, state dicts, official ones.
    what : str
        What the file is, for messages (``"checkpoint"``, ``"pretrained checkpoint"``).
    map_location : str | torch.device
        Where to put the tensors (default CPU).

    Returns
    -------
    obj : Any
        What was saved: tensors and plain values only.

    Raises
    ------
    UnsafeTorchError
        With torch older than 2.6 (:func:`check_torch_version`).
    FileNotFoundError
        If ``path`` does not exist.
    CheckpointReadError
        A ValueError: the file is not a torch file, or holds objects other than tensors and plain values.
    ValueError
        If a member of the zip archive fails its CRC-32 (:func:`verify_zip_archive`), its plain values
        exceed the bounds of this module (nesting, shared references), or it records a payload sha256
        (:data:`HASH_KEY`) that its payload does not have. Every message names the file.

    Notes
    -----
    A file in torch's legacy (pre-1.6) format has no checksums: it loads with a warning.
    """
    check_torch_version()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what[:1].upper()}{what[1:]} file not found: {path}")
    if not verify_zip_archive(path, what):
        logger.warning("The %s %s is in torch's legacy format: its integrity cannot be checked.", what, path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        raise CheckpointReadError(
            f"Cannot read the {what} {path} with torch.load(weights_only=True): {err}"
        ) from None
    if isinstance(obj, Mapping):
        for entry in CONFIG_ENTRIES:
            if entry in obj:
                _check_plain_size(
                    obj[entry],
                    path=path,
                    entry=f"{entry!r} entry",
                    max_nodes=MAX_CONFIG_NODES,
                    max_chars=MAX_CONFIG_TEXT_CHARS,
                )
    _check_plain_size(obj, path=path, entry="content", max_nodes=MAX_PLAIN_NODES, max_chars=None)
    if isinstance(obj, Mapping):
        recorded = obj.get(HASH_KEY)
        if recorded is not None and recorded != payload_sha256(obj):
            raise ValueError(
                f"The {what} {path} is corrupted: the sha256 of its content differs from the one recorded "
                f"when it was written. Use another copy or an earlier checkpoint."
            )
        if recorded is None and obj.get("format") == CHECKPOINT_FORMAT and obj.get("version", 1) >= 2:
            raise ValueError(
                f"The {what} {path} lacks the sha256 that this project records in every checkpoint "
                f"(format version {obj.get('version')}): it was changed after it was written."
            )
    return obj


def write_checkpoint_file(path: str | os.PathLike, state: dict) -> Path:
    """Record :func:`payload_sha256` of ``state`` under :data:`HASH_KEY` and save it atomically.

    Parameters
    ----------
    path : path-like
        Destination file; its folder is created. A crash leaves the previous file (or none).
    state : dict
        Tensors and plain values; ``state`` itself is not changed.

    Returns
    -------
    path : Path
    """
    sealed = {k: v for k, v in state.items() if k != HASH_KEY}
    sealed[HASH_KEY] = payload_sha256(sealed)
    with atomic_write(path, "wb") as f:
        torch.save(sealed, f)
    return Path(path)


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    epoch: int,
    step: int,
    config: dict,
    rng: list[dict] | None = None,
    **extra: Any,
) -> Path:
    """Write a training checkpoint atomically.

    Parameters
    ----------
    path : path-like
        Destination ``.pth`` file; its folder is created.
    model : torch.nn.Module
        The model, possibly wrapped in DDP or ``torch.compile``: the unwrapped state dict is saved,
        so keys carry no ``module.`` / ``_orig_mod.`` prefix.
    optimizer : torch.optim.Optimizer
    scaler : torch.amp.GradScaler | None
        Saved when enabled (fp16); None otherwise.
    epoch : int
        The last finished epoch, 0-based.
    step : int
        Optimiser steps done so far.
    config : dict
        The resolved config.
    rng : list of dict | None
        Generator states of every rank (:func:`runtime.seeding.get_rng_state`), in rank order.
    **extra
        Further plain values to store (e.g. the data folder).

    Returns
    -------
    path : Path
    """
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "epoch": int(epoch),
        "step": int(step),
        "config": config,
        "rng": rng,
        **extra,
    }
    return write_checkpoint_file(path, state)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a training checkpoint of this project through :func:`load_verified`.

    Parameters
    ----------
    path : path-like
        A file written by :func:`save_checkpoint`.
    map_location : str | torch.device
        Where to put the tensors (default CPU).

    Returns
    -------
    checkpoint : dict

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (the message names it).
    ValueError
        If the file is damaged (CRC-32, payload sha256), is not a torch checkpoint, holds objects other
        than tensors and plain values or too deeply nested / shared ones, or is not a training checkpoint
        of this project (e.g. a bare state dict). Every message names the file.
    UnsafeTorchError
        With torch older than 2.6.
    """
    checkpoint = load_verified(path, what="checkpoint", map_location=map_location)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a training checkpoint of this project (expected a dict with "
            f"format={CHECKPOINT_FORMAT!r}); to start from pretrained weights load them into the model "
            "instead."
        )
    if HASH_KEY not in checkpoint:
        logger.warning("The checkpoint %s predates payload hashes: only its zip CRCs were checked.", path)
    return checkpoint


def restore_training_state(
    checkpoint: dict,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    load_model_state: Callable[[torch.nn.Module, dict], Any],
    source: str = "checkpoint",
) -> tuple[int, int]:
    """Load model, optimiser and scaler states from ``checkpoint``; return where to continue.

    Parameters
    ----------
    checkpoint : dict
        From :func:`load_checkpoint`.
    model : torch.nn.Module
        The unwrapped model, built from the same config.
    optimizer : torch.optim.Optimizer
    scaler : torch.amp.GradScaler | None
    load_model_state : callable
        ``load_model_state(model, state_dict)``, strict, raising on missing/unexpected keys or wrong
        shapes (e.g. ``models.load_official_state_dict``).
    source : str
        Name of the checkpoint for error messages (its path).

    Returns
    -------
    start_epoch : int
        The first epoch to run (the saved epoch + 1).
    step : int
        Optimiser steps already done.

    Raises
    ------
    ValueError
        If the model state does not fit ``model`` (another architecture or size), or the optimiser
        state does not fit the optimiser; the message names ``source``.
    """
    try:
        load_model_state(unwrap_model(model), checkpoint["model"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise ValueError(
            f"The checkpoint {source} does not fit this model (another architecture or size?): {err}"
        ) from None
    try:
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise ValueError(f"The optimiser state in {source} does not fit this optimiser: {err}") from None
    if scaler is not None and scaler.is_enabled() and checkpoint.get("scaler") is not None:
        scaler.load_state_dict(checkpoint["scaler"])
    return int(checkpoint["epoch"]) + 1, int(checkpoint["step"])
