"""The attention implementation of a model, chosen in one place for every entry point.

timm's attention layers (``timm.layers.Attention`` and the blocks built on it) carry a ``fused_attn``
switch: ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels) or the
explicit ``softmax(q k^T / sqrt(d)) v`` of the official code. Both compute the same function.
"""

from __future__ import annotations

import torch

__all__ = ["configure_attention", "use_fused_attention"]


def use_fused_attention(device: torch.device | str, setting: bool | None = None) -> bool:
    """Whether to use fused attention on ``device``: ``setting`` when given, else on GPU only.

    The explicit form is faster on CPU for M4CEA's 25-dimensional heads (measured on a 2-core AMD EPYC:
    batch 16 with bf16 autocast 16.7 vs 10.4 samples/s; see scripts/bench_train.py); fused kernels win on
    GPU.

    Parameters
    ----------
    device : torch.device | str
        Where the model runs.
    setting : bool | None
        The config's choice (``runtime.fused_attn``); None: automatic.

    Returns
    -------
    fused : bool
    """
    if setting is not None:
        return bool(setting)
    return torch.device(device).type == "cuda"


def configure_attention(model: torch.nn.Module, fused: bool) -> int:
    """Switch the model's timm attention layers between fused and explicit attention.

    Parameters
    ----------
    model : torch.nn.Module
    fused : bool
        True: ``torch.nn.functional.scaled_dot_product_attention``; False: the explicit softmax form.

    Returns
    -------
    n_layers : int
        Attention layers switched (modules with timm's ``fused_attn`` attribute).
    """
    n_layers = 0
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = fused
            n_layers += 1
    return n_layers
