"""Fine-tuning modes: the whole model, a linear probe, or LoRA adapters (``head.mode``); parameter counts.

- ``full``: every parameter trains (the paper's fine-tuning).
- ``linear_probe``: only the classification head trains (``--linear-probe``).
- ``lora``: low-rank adapters on the attention and MLP linears (``head.lora_targets``) plus the head train;
  every other weight stays bit-identical (Hu et al., "LoRA", ICLR 2022; through ``peft``).

The head is what the model's ``get_classifier()`` returns (timm's surface; every family has it: M4CEA's and
LaBraM's ``head``, hms_mobilenetv3's ``backbone.classifier``, a braindecode model's ``final_layer``).

A LoRA run's checkpoint holds the merged weights under ``"model"`` (``W + (alpha / r) B A``: the plain
model's layout, so ``finetune/predict.py`` loads it like any run) and the adapter-structured state under
``"lora_state"`` (frozen weights and adapters apart, what the run reloads).
"""

from __future__ import annotations

import re

import torch

from runtime.config import UsageError

__all__ = [
    "HEAD_MODES",
    "apply_head_mode",
    "check_layer_decay",
    "head_mode",
    "head_prefixes",
    "lora_merged_state_dict",
    "parameter_counts",
]

HEAD_MODES = ("full", "linear_probe", "lora")

# The transformer linears of this project's M4CEA and LaBraM (timm blocks).
_OWN_TARGETS = r".*blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc1|fc2))"


def head_mode(cfg: dict) -> str:
    """``head.mode``, with the older ``head.linear_probe: true`` meaning ``linear_probe``.

    Raises
    ------
    ValueError
        If the mode is unknown, or ``head.linear_probe`` contradicts ``head.mode``.
    """
    head = cfg["head"]
    mode = head.get("mode", "full")
    if mode not in HEAD_MODES:
        raise UsageError(f"Invalid value for head.mode: {mode!r}; allowed values are {list(HEAD_MODES)}.")
    if head.get("linear_probe"):
        if mode not in ("full", "linear_probe"):
            raise UsageError(f"head.linear_probe=true (--linear-probe) contradicts head.mode={mode}.")
        return "linear_probe"
    return mode


def head_prefixes(model: torch.nn.Module) -> tuple:
    """Parameter-name prefix of the classification head: the name of ``model.get_classifier()`` plus ``"."``.

    Parameters
    ----------
    model : torch.nn.Module
        A classification model of any family (M4CEA, LaBraM: ``("head.",)``; hms_mobilenetv3:
        ``("backbone.classifier.",)``; braindecode models: ``("model.final_layer.",)``).

    Returns
    -------
    prefixes : tuple of str
        One prefix, of the head's parameter and state-dict names.

    Raises
    ------
    TypeError
        If the model has no ``get_classifier()`` or its classifier is not one of its submodules (a model
        family must declare its head).
    """
    get_classifier = getattr(model, "get_classifier", None)
    if get_classifier is None:
        raise TypeError(
            f"{type(model).__name__} has no get_classifier(): every classification model must name its "
            "head (timm's surface) for linear probing and LoRA."
        )
    classifier = get_classifier()
    for name, module in model.named_modules():
        if module is classifier and name:
            return (f"{name}.",)
    raise TypeError(f"{type(model).__name__}.get_classifier() returns no submodule of the model.")


def _lora_targets(model, targets):
    """peft ``target_modules``: the configured names, the attention and MLP linears of timm-style blocks
    (M4CEA, LaBraM), or else every linear outside the head (braindecode models)."""
    if targets:
        return list(targets)
    if any(re.fullmatch(_OWN_TARGETS, name) for name, _ in model.named_modules()):
        return _OWN_TARGETS
    heads = tuple(p.rstrip(".") for p in head_prefixes(model))
    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not name.startswith(heads)
    ]
    if not names:
        raise UsageError(
            f"{type(getattr(model, 'model', model)).__name__} has no linear layer outside its head for LoRA: "
            f"use head.mode=full or linear_probe."
        )
    return "^(" + "|".join(re.escape(n) for n in names) + ")$"


def apply_head_mode(model: torch.nn.Module, cfg: dict) -> torch.nn.Module:
    """Freeze what the mode keeps fixed; for ``lora``, inject the adapters (in place).

    Parameters
    ----------
    model : torch.nn.Module
        The classification model, pretrained weights loaded.
    cfg : dict
        The run config (``head.mode``, ``head.lora_rank``, ``head.lora_alpha``, ``head.lora_targets``:
        module names or one regular expression; empty: the attention and MLP linears of M4CEA/LaBraM
        blocks, every linear outside the head of a braindecode model).

    Returns
    -------
    model : torch.nn.Module
        The same module; ``requires_grad`` is True for the head (and adapters) only unless mode is full.

    Raises
    ------
    ValueError
        If the mode is unknown or no module matches the LoRA targets.
    """
    mode = head_mode(cfg)
    heads = head_prefixes(model)
    if mode == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        head = cfg["head"]
        config = LoraConfig(
            r=int(head["lora_rank"]),
            lora_alpha=float(head["lora_alpha"]),
            lora_dropout=0.0,
            target_modules=_lora_targets(model, head.get("lora_targets")),
        )
        try:
            inject_adapter_in_model(config, model)
        except ValueError as err:
            raise UsageError(f"LoRA (head.lora_targets): {err}") from None
    if mode != "full":
        for name, param in model.named_parameters():
            param.requires_grad = name.startswith(heads) or (mode == "lora" and ".lora_" in name)
    if isinstance(getattr(model, "mask_token", None), torch.nn.Parameter):  # classification never masks
        model.mask_token.requires_grad_(False)
    return model


def check_layer_decay(model: torch.nn.Module, cfg: dict, name: str) -> None:
    """A clear error for layer-wise lr decay on a model without layers (no ``group_matcher``).

    Raises
    ------
    ValueError
        If ``optim.layer_decay < 1`` and the model has no layer grouping.
    """
    if cfg["optim"]["layer_decay"] < 1.0 and not hasattr(model, "group_matcher"):
        raise UsageError(
            f"Model {name} has no layer grouping, so layer-wise lr decay (optim.layer_decay="
            f"{cfg['optim']['layer_decay']}) does not apply: set --set optim.layer_decay=1.0."
        )


def parameter_counts(model: torch.nn.Module) -> dict:
    """``{"trainable": int, "total": int}``: parameters with ``requires_grad``, and all of them."""
    params = list(model.parameters())
    return {
        "trainable": int(sum(p.numel() for p in params if p.requires_grad)),
        "total": int(sum(p.numel() for p in params)),
    }


def lora_merged_state_dict(model: torch.nn.Module) -> dict | None:
    """The state dict with each LoRA layer merged into its base weight, in the plain model's layout.

    Returns
    -------
    state : dict | None
        ``W + scaling * B @ A`` under the base layer's own names (``...qkv.weight``), adapters dropped;
        None when the model has no LoRA layer.
    """
    from peft.tuners.lora import LoraLayer

    layers = {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    if not layers:
        return None
    state = model.state_dict()
    merged = {}
    for key, value in state.items():
        if ".lora_" in key:
            continue
        merged[key.replace(".base_layer.", ".")] = value.detach().clone()
    with torch.no_grad():
        for name, layer in layers.items():
            for adapter in layer.active_adapters:
                merged[f"{name}.weight"] += layer.get_delta_weight(adapter).to(merged[f"{name}.weight"].dtype)
    return merged
