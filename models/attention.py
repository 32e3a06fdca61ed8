"""The attention implementation of a model, chosen in one place for every entry point.

timm's attention layers (``timm.layers.Attention`` and the blocks built on it) carry a ``fused_attn``
switch: ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels) or the
explicit ``softmax(q k^T / sqrt(d)) v`` of the official code. Both compute the same function.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FoldedAttention", "configure_attention", "fold_attention", "use_fused_attention"]


def use_fused_attention(
    device: torch.device | str, setting: bool | None = None, inference: bool = False
) -> bool:
    """Whether to use fused attention on ``device``: ``setting`` when given, else on GPU or for inference.

    Training: the explicit form is faster on CPU for M4CEA's 25-dimensional heads (measured on a 2-core
    AMD EPYC: batch 16 with bf16 autocast 16.7 vs 10.4 samples/s; see scripts/bench_train.py); fused
    kernels win on GPU. Inference (no gradients): the fused kernel wins on the CPU too, as it never writes
    the scores (m4cea_base, batch 64, bf16, 2-core Xeon with AMX, same run: attention 2.7x faster eager,
    the compiled model 1.46x faster; see scripts/bench_predict.py).

    Parameters
    ----------
    device : torch.device | str
        Where the model runs.
    setting : bool | None
        The config's choice (``runtime.fused_attn``); None: automatic.
    inference : bool
        The model only runs without gradients (prediction): fused on every device unless ``setting``.

    Returns
    -------
    fused : bool
    """
    if setting is not None:
        return bool(setting)
    return inference or torch.device(device).type == "cuda"


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


class FoldedAttention(nn.Module):
    """Inference form of a timm ``Attention`` with LayerNorm on q and k: the same function, fewer passes.

    A LayerNorm over each 25-dimensional head is centring (linear) then scaling by the inverse RMS. The
    centring is folded into the rows of the qkv projection (``(I - 1/D) W`` per head, computed in float64),
    and the LayerNorm's weight, bias and the attention scale ``1/sqrt(D)`` of q into one affine map, so
    what remains per head is one sum of squares and a multiply-add on the (batch, tokens, heads, D)
    projection as it comes out of the matrix product, before
    ``torch.nn.functional.scaled_dot_product_attention`` (scale 1). On the CPU the per-head LayerNorm was
    four passes with a transposition (m4cea_base, bf16, compiled: 14% of the model's time).

    Made by :func:`fold_attention` for prediction only; it has no trainable parameters (the folded
    weights are buffers outside the state dict) and computes the same outputs as the module it replaces
    in eval mode, to float rounding (tests/models/test_attention.py).

    Parameters
    ----------
    attn : timm.layers.Attention
        With ``q_norm`` and ``k_norm`` LayerNorms (qk-norm), no gate, no ``scale_norm``.
    """

    def __init__(self, attn: nn.Module):
        super().__init__()
        heads, dim = attn.num_heads, attn.head_dim
        width = heads * dim
        self.num_heads, self.head_dim, self.eps = heads, dim, float(attn.q_norm.eps)
        centre = torch.eye(dim, dtype=torch.float64, device=attn.qkv.weight.device) - 1.0 / dim
        weight = attn.qkv.weight.detach().double().view(3, heads, dim, -1)
        weight = torch.cat([torch.einsum("ij,hjc->hic", centre, weight[i]) for i in range(2)] + [weight[2]])
        dtype = attn.qkv.weight.dtype
        self.register_buffer("qkv_weight", weight.reshape(3 * width, -1).to(dtype), persistent=False)
        bias = attn.qkv.bias
        if bias is not None:
            bias = bias.detach().double().view(3, heads, dim)
            bias = torch.cat([bias[:2] - bias[:2].mean(-1, keepdim=True), bias[2:]]).reshape(-1).to(dtype)
        self.register_buffer("qkv_bias", bias, persistent=False)
        scales = (attn.scale, 1.0)  # q carries the attention scale
        for name, norm, scale in (("q", attn.q_norm, scales[0]), ("k", attn.k_norm, scales[1])):
            self.register_buffer(f"{name}_weight", (norm.weight.detach() * scale).to(dtype), persistent=False)
            self.register_buffer(f"{name}_bias", (norm.bias.detach() * scale).to(dtype), persistent=False)
        self.proj = attn.proj

    def _normalise(self, x, weight, bias):
        """Scale centred heads (batch, tokens, heads, D) to unit RMS, then the LayerNorm's affine map."""
        h = x.to(torch.promote_types(x.dtype, torch.float32))  # bf16: statistics in float32, as LayerNorm
        inverse_rms = torch.rsqrt(h.square().mean(-1, keepdim=True) + self.eps)
        return (h * inverse_rms * weight.to(h.dtype) + bias.to(h.dtype)).to(x.dtype)

    def forward(self, x, attn_mask=None, is_causal=False):
        """Attention of ``x`` (batch, n_tokens, width) -> (batch, n_tokens, width), as timm's."""
        batch, n_tokens, _ = x.shape
        qkv = torch.nn.functional.linear(x, self.qkv_weight, self.qkv_bias)
        q, k, v = qkv.view(batch, n_tokens, 3, self.num_heads, self.head_dim).unbind(2)
        q = self._normalise(q, self.q_weight, self.q_bias).transpose(1, 2)
        k = self._normalise(k, self.k_weight, self.k_bias).transpose(1, 2)
        out = torch.nn.functional.scaled_dot_product_attention(
            q, k, v.transpose(1, 2), attn_mask=attn_mask, is_causal=is_causal, scale=1.0
        )
        return self.proj(out.transpose(1, 2).reshape(batch, n_tokens, -1))


def fold_attention(model: nn.Module) -> int:
    """Replace the model's timm qk-norm attention layers by their inference form (:class:`FoldedAttention`).

    For prediction only (no training, no state dict afterwards): the model's other modules are kept.
    Layers without LayerNorm on q and k, with a gate or a ``scale_norm``, or in training mode are left.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode.

    Returns
    -------
    n_layers : int
        Attention layers replaced.
    """
    from timm.layers import Attention

    n_layers = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            foldable = (
                type(child) is Attention
                and not child.training
                and isinstance(child.q_norm, nn.LayerNorm)
                and isinstance(child.k_norm, nn.LayerNorm)
                and isinstance(child.norm, nn.Identity)
                and getattr(child, "gate", None) is None
            )
            if foldable:
                setattr(parent, name, FoldedAttention(child))
                n_layers += 1
    return n_layers
