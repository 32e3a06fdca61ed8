"""Load M4CEA weights in the official layout (Evigouse/M4CEA_Project) or in ours, strictly.

Key mapping, official -> ours (``{i}`` a block index, ``{p}`` a parameter name):

=========================================  ==========================================
official                                   this project
=========================================  ==========================================
``time.scale_factor``                      ``patch_embed.scale_factor``
``time.conv2DOutput.weight``               ``patch_embed.tie_conv.weight``
``time.norm1.{p}``                         ``patch_embed.tie_norm.{p}``
``time.conv{1,2,3}.{p}``                   ``patch_embed.conv{1,2,3}.{p}``
``time.norm{2,3,4}.{p}``                   ``patch_embed.norm{1,2,3}.{p}``
``input_emb.mask_encoding``                ``mask_token``
``input_emb.proj.0.{p}``                   ``input_proj.{p}``
``input_emb.positional_encoding``          ``pos_embed``
``transformer.blocks.{i}.{p}``             ``blocks.{i}.{p}`` (timm ``Block``, same names)
``transformer.norm.{p}``                   ``norm.{p}``
``decode_task_layer.{0,2}.{p}``            ``head_magnitude.{0,2}.{p}``
``decode_task_layer_angle.{0,2}.{p}``      ``head_phase.{0,2}.{p}``
``typeclassifier.clshead.1.{p}``           ``head.{p}``
=========================================  ==========================================

LaBraM and VQ-NSP (:mod:`models.labram`) use the official parameter names, so their official state dicts
load as they are, after these steps (:func:`_convert_labram`): ``module.`` / ``model.`` / ``_orig_mod.``
prefixes stripped; in a masked-modelling checkpoint (``labram-base.pth``) the modules the official forward
never uses (``student.lm_head.*``, ``projection_head.*``) dropped and ``student.`` stripped (the outer
``lm_head`` is the one used); in a tokenizer checkpoint the official loader's dropped keys (``loss*``,
``teacher*``, ``scaling*``) dropped. Dropped keys are listed in ``LoadResult.ignored_keys``.
"""

from __future__ import annotations

import argparse
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch

from runtime.distributed import unwrap_name

from .labram import LaBraM
from .vqnsp import VQNSP

__all__ = [
    "LoadResult",
    "convert_official_state_dict",
    "load_official_state_dict",
    "read_official_checkpoint",
]

_HEAD_PREFIXES = ("head.", "head_magnitude.", "head_phase.")
_MAX_LISTED = 12

_OFFICIAL_RULES = [
    (re.compile(r"^time\.scale_factor$"), lambda m: "patch_embed.scale_factor"),
    (re.compile(r"^time\.conv2DOutput\.(.+)$"), lambda m: f"patch_embed.tie_conv.{m[1]}"),
    (re.compile(r"^time\.norm1\.(.+)$"), lambda m: f"patch_embed.tie_norm.{m[1]}"),
    (re.compile(r"^time\.conv([123])\.(.+)$"), lambda m: f"patch_embed.conv{m[1]}.{m[2]}"),
    (re.compile(r"^time\.norm([234])\.(.+)$"), lambda m: f"patch_embed.norm{int(m[1]) - 1}.{m[2]}"),
    (re.compile(r"^input_emb\.mask_encoding$"), lambda m: "mask_token"),
    (re.compile(r"^input_emb\.proj\.0\.(.+)$"), lambda m: f"input_proj.{m[1]}"),
    (re.compile(r"^input_emb\.positional_encoding$"), lambda m: "pos_embed"),
    (re.compile(r"^transformer\.blocks\.(.+)$"), lambda m: f"blocks.{m[1]}"),
    (re.compile(r"^transformer\.norm\.(.+)$"), lambda m: f"norm.{m[1]}"),
    (re.compile(r"^decode_task_layer\.(.+)$"), lambda m: f"head_magnitude.{m[1]}"),
    (re.compile(r"^decode_task_layer_angle\.(.+)$"), lambda m: f"head_phase.{m[1]}"),
    (re.compile(r"^typeclassifier\.clshead\.1\.(.+)$"), lambda m: f"head.{m[1]}"),
]


class LoadResult(NamedTuple):
    """What :func:`load_official_state_dict` did not load.

    Attributes
    ----------
    missing_keys : list of str
        Model keys left at their initial values (only ever the model's own head, with
        ``allow_missing_head=True``).
    ignored_keys : list of str
        Checkpoint keys (our layout) of the other kind of head, dropped with ``allow_missing_head=True``.
    """

    missing_keys: list
    ignored_keys: list


def _map_key(key):
    for pattern, replace in _OFFICIAL_RULES:
        match = pattern.match(key)
        if match:
            return replace(match)
    return key


def _rename_keys(state_dict, rename, hint):
    """Apply ``rename(key) -> new key | None (dropped)`` to a state dict, refusing two keys with one name.

    Returns the renamed dict, each new key's original key, and the dropped keys; ``hint`` ends the
    message of a mapping that holds other values than tensors.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"Invalid value for the 'state_dict' parameter. Expected a mapping of parameter "
            f"names to tensors, but got {type(state_dict).__name__} instead."
        )
    not_tensors = [key for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise TypeError(
            f"Invalid value for the 'state_dict' parameter. Every value must be a tensor, but "
            f"{_listing(not_tensors)} are not (a whole checkpoint? {hint})."
        )
    converted, sources, dropped = {}, {}, []
    for key, value in state_dict.items():
        new_key = rename(key)
        if new_key is None:
            dropped.append(key)
            continue
        if new_key in converted:
            raise ValueError(
                f"Invalid value for the 'state_dict' parameter. Keys {sources[new_key]!r} and "
                f"{key!r} both map to {new_key!r}."
            )
        converted[new_key] = value
        sources[new_key] = key
    return converted, sources, dropped


def _convert_with_sources(state_dict):
    converted, sources, _ = _rename_keys(
        state_dict,
        lambda key: _map_key(unwrap_name(key)),
        "pass its model state dict, e.g. checkpoint['model']",
    )
    return converted, sources


def convert_official_state_dict(state_dict):
    """Rename the keys of an official M4CEA state dict to this project's layout.

    Keys already in our layout pass through unchanged; ``module.`` (DDP) and ``_orig_mod.``
    (``torch.compile``) prefixes are stripped. Values are not copied. The mapping is in this module's
    docstring.

    Parameters
    ----------
    state_dict : Mapping of str to torch.Tensor
        Official (pretraining or fine-tuning) or own state dict.

    Returns
    -------
    converted : dict of str to torch.Tensor

    Raises
    ------
    TypeError
        If ``state_dict`` is not a mapping of tensors.
    ValueError
        If two keys map to the same name.

    References
    ----------
    .. [1] Official code: https://github.com/Evigouse/M4CEA_Project (``Pretrain/pretrain_model.py``,
       ``Finetune/finetune_model.py``).
    """
    return _convert_with_sources(state_dict)[0]


def _listing(keys):
    keys = list(keys)
    shown = ", ".join(repr(k) for k in keys[:_MAX_LISTED])
    more = f" and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return f"{len(keys)} key(s): {shown}{more}"


def _n_blocks(keys):
    indices = {int(m[1]) for m in (re.match(r"^blocks\.(\d+)\.", k) for k in keys) if m}
    return max(indices) + 1 if indices else 0


def _is_head(key, prefixes=_HEAD_PREFIXES):
    return key.startswith(prefixes)


# LaBraM ------------------------------------------------------------------------------------------------
_LABRAM_WRAPPERS = ("module.", "model.", "_orig_mod.")
_LABRAM_UNUSED = ("student.lm_head.", "projection_head.")  # official MEM modules its forward never calls
_VQNSP_UNUSED = ("loss", "teacher", "scaling")  # dropped by the official tokenizer loader
# a LaBraM model's head keys, per head: classification (fc_norm + head) and masked modelling
_LABRAM_HEADS = {"classification": ("fc_norm.", "head."), "pretrain": ("mask_token", "norm.", "lm_head.")}


def _convert_labram(state_dict, model):
    """Official LaBraM / VQ-NSP state dict -> our keys (the same names), with the keys to drop."""
    unused = _VQNSP_UNUSED if isinstance(model, VQNSP) else _LABRAM_UNUSED

    def rename(key):
        new_key = unwrap_name(key, _LABRAM_WRAPPERS)
        if new_key.startswith(unused):
            return None
        return new_key[len("student.") :] if new_key.startswith("student.") else new_key

    return _rename_keys(
        state_dict, rename, "pass checkpoint['model'], or read it with read_official_checkpoint"
    )


def read_official_checkpoint(path):
    """Read a released LaBraM / VQ-NSP / M4CEA checkpoint file safely and return its model state dict.

    Official checkpoints are ``torch.save`` dicts with ``model`` (the state dict), ``epoch`` and often
    ``args`` (an ``argparse.Namespace``), ``optimizer``, ``scaler``. They are read with
    ``torch.load(weights_only=True)`` and one allow-listed class, ``argparse.Namespace``: tensors, plain
    containers, numbers and strings load; any other pickled object is refused, nothing is executed.

    Parameters
    ----------
    path : str | pathlib.Path
        The checkpoint file (e.g. the official ``checkpoints/labram-base.pth``, ``vqnsp.pth``).

    Returns
    -------
    state_dict : dict of str to torch.Tensor
        ``checkpoint["model"]`` (or ``"module"``, ``"state_dict"``), or the file's dict itself when it is a
        bare state dict. Pass it to :func:`load_official_state_dict`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file holds an object outside the allow-list (named in the message), or no state dict.

    References
    ----------
    .. [1] PyTorch, "torch.load(weights_only=True)" and ``torch.serialization.safe_globals``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Invalid value for the 'path' parameter: checkpoint {path} does not exist.")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # what torch raises for a global outside the allow-list
        found = re.search(r"GLOBAL (\S+)", str(error))
        culprit = found[1] if found else str(error).splitlines()[0]
        raise ValueError(
            f"Refusing to load {path}: it holds an object outside the allow-list (tensors, "
            f"plain types, argparse.Namespace): {culprit}. Nothing was executed."
        ) from None
    if isinstance(checkpoint, Mapping):
        for key in ("model", "module", "state_dict"):
            if isinstance(checkpoint.get(key), Mapping):
                return dict(checkpoint[key])
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            return dict(checkpoint)
    raise ValueError(
        f"Invalid checkpoint {path}: expected a state dict or a dict with 'model', 'module' or "
        f"'state_dict', but got {type(checkpoint).__name__} with keys "
        f"{sorted(checkpoint)[:_MAX_LISTED] if isinstance(checkpoint, Mapping) else '-'}."
    )


def load_official_state_dict(model, state_dict, allow_missing_head=False):
    """Load an official-layout or own state dict into an M4CEA, LaBraM or VQ-NSP model, strictly.

    Every key must map to a parameter of ``model`` with the same shape and every parameter must be
    given; otherwise nothing is loaded and a ``ValueError`` names the offending keys.

    Parameters
    ----------
    model : models.m4cea.M4CEA | models.labram.LaBraM | models.labram.VQNSP
        Target model (either head), e.g. from :func:`models.create_model`.
    state_dict : Mapping of str to torch.Tensor
        M4CEA: official layout (keys ``time.*``, ``input_emb.*``, ``transformer.*``,
        ``decode_task_layer*``, ``typeclassifier.*``) or ours, with or without ``module.`` /
        ``_orig_mod.`` prefixes. LaBraM / VQ-NSP: any of the three official layouts (fine-tuning
        ``NeuralTransformer``, masked modelling ``student.*`` + ``lm_head``, tokenizer ``encoder.*`` /
        ``decoder.*`` / ``quantize.*``) or ours; ``module.``, ``model.``, ``_orig_mod.`` prefixes
        stripped, unused official modules dropped (module docstring).
    allow_missing_head : bool
        For starting a new head from a backbone checkpoint (fine-tuning from pretraining): the model's
        own head keys may be missing from the checkpoint (all of them, or none), and checkpoint head
        keys of the other kind (e.g. the magnitude/phase heads when loading into a classification
        model) are ignored. LaBraM's heads: ``fc_norm`` + ``head`` (classification); ``mask_token``,
        ``norm``, ``lm_head`` (masked modelling), as the official fine-tuning from ``labram-base.pth``
        starts ``fc_norm`` and ``head`` afresh. Everything else stays strict: a classification head of
        the wrong size is still an error.

    Returns
    -------
    result : LoadResult
        ``missing_keys`` (the new head, left as initialised) and ``ignored_keys``.

    Raises
    ------
    TypeError
        If ``state_dict`` is not a mapping of tensors.
    ValueError
        On missing, unexpected or wrongly shaped keys (e.g. a depth-2 checkpoint in a depth-12 model, a
        4-class head in a 2-class model), listing them; nothing is loaded then.
    """
    if isinstance(model, (LaBraM, VQNSP)):
        converted, sources, ignored = _convert_labram(state_dict, model)
        own = getattr(model, "head_type", None)
        heads = _LABRAM_HEADS.get(own, ())
        other_heads = tuple(p for kind, prefixes in _LABRAM_HEADS.items() if kind != own for p in prefixes)
    else:
        converted, sources = _convert_with_sources(state_dict)
        ignored, heads, other_heads = [], _HEAD_PREFIXES, _HEAD_PREFIXES
    target = model.state_dict()
    if allow_missing_head:
        dropped = [k for k in converted if _is_head(k, other_heads) and k not in target]
        for key in dropped:
            del converted[key]
        ignored += dropped
    missing = [k for k in target if k not in converted]
    unexpected = [k for k in converted if k not in target]
    mismatched = [k for k in converted if k in target and converted[k].shape != target[k].shape]

    head_keys = [k for k in target if _is_head(k, heads)]
    allowed_missing = set()
    if allow_missing_head and all(k in missing for k in head_keys):
        allowed_missing = set(head_keys)
    problems = []
    bad_missing = [k for k in missing if k not in allowed_missing]
    if bad_missing:
        problems.append(f"missing from the checkpoint: {_listing(bad_missing)}")
    if unexpected:
        named = [k if sources[k] == k else f"{k} (from {sources[k]})" for k in unexpected]
        problems.append(f"not in the model: {_listing(named)}")
    if mismatched:
        shapes = [
            f"{k}{'' if sources[k] == k else f' (from {sources[k]})'}: checkpoint "
            f"{tuple(converted[k].shape)}, model {tuple(target[k].shape)}"
            for k in mismatched
        ]
        problems.append(f"shape mismatch for {_listing(shapes)}")
    if problems:
        hints = []
        ckpt_depth, model_depth = _n_blocks(converted), _n_blocks(target)
        if ckpt_depth != model_depth:
            hints.append(f"the checkpoint has {ckpt_depth} transformer blocks, the model {model_depth}")
        head_problem = any(_is_head(k, heads) for k in bad_missing) or any(
            _is_head(k, other_heads) for k in unexpected
        )
        if head_problem and not allow_missing_head:
            hints.append("to start a new head from a backbone checkpoint pass allow_missing_head=True")
        hint = f" ({'; '.join(hints)})" if hints else ""
        raise ValueError(
            f"Cannot load the state dict into {type(model).__name__} "
            f"(head_type={getattr(model, 'head_type', None)!r}): " + "; ".join(problems) + hint
        )
    model.load_state_dict(converted, strict=False)
    return LoadResult(
        missing_keys=sorted(set(missing) & allowed_missing, key=missing.index), ignored_keys=ignored
    )
