"""models.attention: the inference form of timm's qk-norm attention computes the same function."""

from __future__ import annotations

import copy

import pytest
import torch
from timm.layers import Attention

from models import create_model
from models.attention import FoldedAttention, configure_attention, fold_attention


@pytest.mark.parametrize("qkv_bias", [False, True])
@pytest.mark.parametrize("fused", [False, True])
def test_folded_attention_equals_timms_attention(qkv_bias, fused):
    torch.manual_seed(0)
    attn = Attention(50, num_heads=2, qkv_bias=qkv_bias, qk_norm=True, norm_layer=torch.nn.LayerNorm).eval()
    attn.fused_attn = fused
    with torch.no_grad():  # non-trivial norms and biases, an offset in q and k (what the centring removes)
        for p in attn.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    x = torch.randn(3, 40, 50, dtype=torch.float64)
    attn = attn.double()
    folded = FoldedAttention(attn)
    with torch.no_grad():
        expected, got = attn(x), folded(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    assert list(folded.state_dict()) == ["proj.weight", "proj.bias"]  # the folded weights are buffers


def test_fold_attention_replaces_the_model_layers_and_keeps_its_outputs():
    torch.manual_seed(0)
    model = create_model("m4cea_tiny", head="classification", n_outputs=3, embed_dim=50, num_heads=2)
    configure_attention(model.eval(), fused=False)
    folded = copy.deepcopy(model).fuse()
    assert fold_attention(folded) == 2
    assert all(isinstance(block.attn, FoldedAttention) for block in folded.blocks)
    x = torch.randn(2, 16, 4000)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=0, atol=1e-5)
    assert fold_attention(copy.deepcopy(model).train()) == 0  # training keeps timm's layers
