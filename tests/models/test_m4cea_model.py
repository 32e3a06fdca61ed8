"""The M4CEA modules: shapes, masking, temporal embedding, targets, init, optimiser surface."""

import math

import pytest
import torch
from timm.optim import create_optimizer_v2
from torch import nn

from models import M4CEA, TemporalEmbedding, create_model, patch_spectrum, temporal_feature_dim

SMALL = dict(n_chans=3, n_patches=4, depth=2, embed_dim=32, num_heads=4)


def _small(head="pretrain", n_outputs=None, **overrides):
    torch.manual_seed(0)
    return create_model("m4cea_tiny", head=head, n_outputs=n_outputs, **{**SMALL, **overrides})


def _signal(model, batch=2, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, model.n_chans, model.n_times, generator=generator)


def test_pretrain_and_classification_shapes():
    model = _small().eval()
    x = _signal(model)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[:, ::2] = True
    magnitude, phase = model(x, mask)
    assert magnitude.shape == phase.shape == (2, 12, 101)
    assert model.forward_features(x, mask).shape == (2, 12, 32)
    classifier = _small("classification", 5).eval()
    logits = classifier(x)
    assert logits.shape == (2, 5)
    assert classifier.forward_head(classifier.forward_features(x), pre_logits=True).shape == (2, 32)
    assert (
        model.n_chans,
        model.n_patches,
        model.patch_samples,
        model.n_times,
        model.n_tokens,
        model.embed_dim,
        model.depth,
        model.n_freqs,
    ) == (3, 4, 200, 800, 12, 32, 2, 101)


def test_classification_head_is_mean_elu_linear():
    model = _small("classification", 3).eval()
    x = _signal(model)
    with torch.no_grad():
        features = model.forward_features(x)
        expected = nn.functional.linear(
            nn.functional.elu(features.mean(dim=1)), model.head.weight, model.head.bias
        )
        torch.testing.assert_close(model(x), expected)


def test_token_order_is_channel_major():
    # Changing one patch (channel 1, patch 2) changes the temporal features of token 1 * 4 + 2 most.
    model = _small().eval()
    x = _signal(model, batch=1)
    y = x.clone()
    y[0, 1, 2 * 200 : 3 * 200] += 5.0
    with torch.no_grad():
        change = model.patch_embed(y.reshape(1, 12, 200)) - model.patch_embed(x.reshape(1, 12, 200))
    assert change.abs().sum(-1).argmax().item() == 6


def test_mask_token_replaces_masked_tokens():
    model = _small().eval()
    x = _signal(model)
    all_masked = torch.ones(2, model.n_tokens, dtype=torch.bool)
    with torch.no_grad():
        a = model(x, all_masked)[0]
        b = model(torch.randn_like(x), all_masked)[0]
        # every token is the mask token: the input does not matter, both samples give the same output
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a[0], a[1])
    one_masked = torch.zeros(2, model.n_tokens, dtype=torch.bool)
    one_masked[:, 5] = True
    with torch.no_grad():
        before_masked, before_plain = model(x, one_masked)[0], model(x)[0]
        assert (before_masked - before_plain).abs().max() > 1e-4
        model.mask_token.add_(1.0)
        after_masked, after_plain = model(x, one_masked)[0], model(x)[0]
    assert (after_masked - before_masked).abs().max() > 1e-4  # the mask token is used where masked
    torch.testing.assert_close(after_plain, before_plain, rtol=0, atol=0)  # and only there


def test_mask_token_gets_gradient_only_when_masking():
    model = _small()
    x = _signal(model)
    mask = torch.zeros(2, model.n_tokens, dtype=torch.bool)
    mask[0, 3] = True
    sum(out.square().sum() for out in model(x, mask)).backward()
    assert model.mask_token.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    sum(out.square().sum() for out in model(x)).backward()
    assert model.mask_token.grad is None


def test_bad_inputs_are_named():
    model = _small()
    x = _signal(model)
    with pytest.raises(ValueError, match=r"'x'.*n_chans=3, n_times=800.*\(2, 2, 800\)"):
        model(x[:, :2])
    with pytest.raises(ValueError, match="'x'"):
        model(x[..., :600])
    with pytest.raises(TypeError, match="'x'"):
        model(x.long())
    with pytest.raises(TypeError, match="'mask'"):
        model(x, torch.zeros(2, 12))
    with pytest.raises(ValueError, match=r"'mask'.*\(2, 13\)"):
        model(x, torch.zeros(2, 13, dtype=torch.bool))


def test_temporal_feature_dim_and_other_patch_lengths():
    assert temporal_feature_dim(200) == 200  # 25 time steps x 8 channels
    assert [temporal_feature_dim(p) for p in (256, 400, 100, 250, 8, 1)] == [256, 400, 104, 256, 8, 8]
    model = _small(patch_samples=250, n_patches=2)
    assert model.n_features == 256 and model.mask_token.shape == (256,)
    magnitude, phase = model(torch.randn(1, 3, 500))
    assert magnitude.shape == (1, 6, 126)
    with pytest.raises(ValueError, match="patch_samples"):
        temporal_feature_dim(0)


@pytest.mark.parametrize("tie", [True, False])
def test_temporal_embedding_variants(tie):
    embed = TemporalEmbedding(200, tie=tie)
    patches = torch.randn(2, 7, 200)
    assert embed(patches).shape == (2, 7, 200)
    names = {name for name, _ in embed.named_parameters()}
    assert ("scale_factor" in names) is tie
    assert ("tie_conv.weight" in names) is tie
    assert embed.conv1.in_channels == (8 if tie else 1)


def test_tie_false_model_is_labram_temporal_conv():
    model = _small(tie=False).eval()
    x = _signal(model)
    assert model(x)[0].shape == (2, 12, 101)
    assert "patch_embed.scale_factor" not in dict(model.named_parameters())
    assert model.no_weight_decay() == {"pos_embed", "mask_token"}
    # same output as LaBraM's temporal convolution written out
    patches = x.reshape(2, 1, 12, 200)
    e = model.patch_embed
    h = nn.functional.gelu(e.norm1(e.conv1(patches)))
    h = nn.functional.gelu(e.norm2(e.conv2(h)))
    h = nn.functional.gelu(e.norm3(e.conv3(h)))
    torch.testing.assert_close(e(x.reshape(2, 12, 200)), h.permute(0, 2, 3, 1).reshape(2, 12, 200))


def test_tie_layer_adds_scaled_moving_average():
    # With the TIE convolution zeroed, the first stage is avg_pool(63, zero padding counted) * scale_factor.
    embed = TemporalEmbedding(200, tie=True)
    with torch.no_grad():
        embed.tie_conv.weight.zero_()
        embed.scale_factor.fill_(2.0)
    first_stage, bias, norm = embed.stage_matrices()[0]
    assert bias is None and norm is embed.tie_norm
    impulse = torch.zeros(200)
    impulse[100] = 63.0
    expected = torch.zeros(200)
    expected[100 - 31 : 100 + 32] = 2.0
    torch.testing.assert_close(first_stage @ impulse, expected.repeat(8))  # rows (filter, step)


@pytest.mark.parametrize("patch_samples", [200, 64, 100])
def test_matrix_form_equals_the_convolutions(patch_samples):
    # Random (not initial) parameters everywhere, so that every stage and every GroupNorm group matters.
    torch.manual_seed(3)
    embed = TemporalEmbedding(patch_samples, tie=True).double()
    with torch.no_grad():
        for param in embed.parameters():
            param.normal_(0.0, 0.3)
    patches = torch.randn(3, 10, patch_samples, dtype=torch.float64)
    # the official layers written out (independent of the embedding's own code)
    image = patches.reshape(3, 1, 10, patch_samples)
    pooled = nn.AvgPool2d((1, 63), stride=1, padding=(0, 31))(image)
    h = nn.functional.gelu(embed.tie_norm(embed.tie_conv(image) + pooled * embed.scale_factor))
    for conv, norm in ((embed.conv1, embed.norm1), (embed.conv2, embed.norm2), (embed.conv3, embed.norm3)):
        h = nn.functional.gelu(norm(conv(h)))
    expected = h.permute(0, 2, 3, 1).reshape(3, 10, -1)
    torch.testing.assert_close(embed.forward_convolutions(patches), expected, rtol=0, atol=0)
    assert expected.shape == (3, 10, temporal_feature_dim(patch_samples))
    torch.testing.assert_close(embed.forward_matrices(patches), expected, rtol=0, atol=1e-12)
    # gradients reach the convolution weights through the matrices
    weights = [embed.tie_conv.weight, embed.scale_factor, embed.conv1.weight, embed.conv1.bias]
    grads = torch.autograd.grad(embed.forward_matrices(patches).square().sum(), weights)
    grads_ref = torch.autograd.grad(embed.forward_convolutions(patches).square().sum(), weights)
    for grad, grad_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-10)


def test_fuse_switches_the_embedding_to_the_matrix_form_explicitly_not_on_grad_mode():
    embed = TemporalEmbedding(200, tie=True)
    patches = torch.randn(2, 5, 200)
    calls = []
    for form in ("forward_matrices", "forward_convolutions"):
        method = getattr(embed, form)
        setattr(embed, form, lambda x, form=form, method=method: (calls.append(form), method(x))[1])
    with torch.no_grad():
        unfused = embed(patches)
    assert calls == ["forward_convolutions"]  # grad mode alone changes nothing
    assert embed.fuse() is embed
    fused = embed(patches)
    assert calls == ["forward_convolutions", "forward_matrices"] and fused.requires_grad
    torch.testing.assert_close(fused.detach(), unfused, rtol=0, atol=1e-5)
    embed.fuse(False)
    embed(patches)
    assert calls[-1] == "forward_convolutions"
    model = create_model("m4cea_tiny", head="classification", n_outputs=2)
    assert model.fuse() is model and model.patch_embed.matrix_form


def test_patch_spectrum_of_a_cosine():
    n = 200
    t = torch.arange(2 * n, dtype=torch.float64)
    x = 3.0 * torch.cos(2 * math.pi * 10 * t / n + 0.5)
    x = torch.stack([x, 2 * x]).unsqueeze(0)  # (1, 2, 400)
    magnitude, phase = patch_spectrum(x, n)
    assert magnitude.dtype == torch.float32 and magnitude.shape == (1, 4, 101)
    torch.testing.assert_close(magnitude[0, :, 10], torch.tensor([300.0, 300.0, 600.0, 600.0]))
    torch.testing.assert_close(phase[0, :, 10], torch.full((4,), 0.5))
    assert magnitude[0, :, [0, 9, 11, 100]].max() < 1e-3
    with pytest.raises(ValueError, match="multiple of patch_samples=200"):
        patch_spectrum(torch.zeros(1, 2, 300), 200)
    with pytest.raises(TypeError, match="'x'"):
        patch_spectrum(torch.zeros(1, 2, 400, dtype=torch.long), 200)


def test_init_statistics_of_base(base_pretrain_model):
    model = base_pretrain_model
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    flat = torch.cat([w.detach().flatten() for w in weights])
    assert abs(flat.std().item() - 0.02 * math.sqrt(1 - 2 * 0.24197072 / 0.68268949)) < 2e-4  # 0.01079
    assert flat.abs().max().item() <= 0.02
    # no depth rescaling: first and last blocks have the same spread
    for block in (model.blocks[0], model.blocks[-1]):
        for w in (block.attn.proj.weight, block.mlp.fc2.weight):
            assert 0.0104 < w.std().item() < 0.0112
    biases = [m.bias for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None]
    assert all(b.abs().sum().item() == 0 for b in biases)
    norms = [m for m in model.modules() if isinstance(m, (nn.LayerNorm, nn.GroupNorm))]
    assert len(norms) == 4 + 12 * 4 + 1  # 4 GroupNorm, per block norm1/norm2/q_norm/k_norm, final
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)
    assert all(m.eps == 1e-6 for m in norms if isinstance(m, nn.LayerNorm))
    assert 0.97 < model.pos_embed.std().item() < 1.03 and abs(model.pos_embed.mean().item()) < 0.02
    for vector in (model.mask_token, model.patch_embed.scale_factor):
        assert 0.8 < vector.std().item() < 1.2


def test_drop_path_rises_linearly():
    model = create_model("m4cea_tiny", depth=5, drop_path_rate=0.2)
    rates = [getattr(b.drop_path1, "drop_prob", 0.0) for b in model.blocks]
    assert rates == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])


def test_qk_norm_fused_attention_matches_explicit_softmax():
    model = _small().eval()
    block = model.blocks[0]
    assert block.attn.fused_attn
    assert isinstance(block.attn.q_norm, nn.LayerNorm) and block.attn.q_norm.eps == 1e-6
    assert block.attn.q_norm.normalized_shape == (8,)  # per head: 32 / 4
    h = torch.randn(2, 12, 32)
    with torch.no_grad():
        fused = block.attn(h)
        a = block.attn
        q, k, v = a.qkv(h).reshape(2, 12, 3, 4, 8).permute(2, 0, 3, 1, 4)
        weights = (a.q_norm(q) @ a.k_norm(k).transpose(-2, -1) / math.sqrt(8)).softmax(-1)
        explicit = a.proj((weights @ v).transpose(1, 2).reshape(2, 12, 32))
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-6)


def test_reset_classifier_turns_pretrain_into_classifier():
    model = _small()
    backbone = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head")}
    model.reset_classifier(3)
    assert model.head_type == "classification" and model.n_outputs == 3
    assert not hasattr(model, "head_magnitude") and not hasattr(model, "head_phase")
    state = model.state_dict()
    assert set(state) == set(backbone) | {"head.weight", "head.bias"}
    assert all(torch.equal(state[k], v) for k, v in backbone.items())
    assert model(_signal(model)).shape == (2, 3)
    assert model.head.bias.abs().sum() == 0 and model.head.weight.abs().max() <= 0.02
    with pytest.raises(ValueError, match="n_outputs"):
        model.reset_classifier(0)


def test_no_weight_decay_names_are_parameters():
    model = _small()
    names = dict(model.named_parameters())
    assert model.no_weight_decay() == {"pos_embed", "mask_token", "patch_embed.scale_factor"}
    assert model.no_weight_decay() <= set(names)


def test_layer_ids_and_timm_layer_decay():
    model = _small("classification", 2)
    ids = {name: model.get_layer_id(name) for name, _ in model.named_parameters()}
    assert ids["pos_embed"] == ids["mask_token"] == ids["patch_embed.conv1.weight"] == 0
    assert ids["input_proj.weight"] == 0
    assert ids["blocks.0.attn.qkv.weight"] == 1 and ids["blocks.1.mlp.fc2.bias"] == 2
    assert ids["norm.weight"] == ids["head.weight"] == 3
    assert model.get_layer_id("module._orig_mod.blocks.1.norm1.weight") == 2
    with pytest.raises(ValueError, match="param_name"):
        model.get_layer_id("blocks.7.norm1.weight")
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=1e-4, layer_decay=0.5)
    scale_of = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            scale_of[id(p)] = group["lr_scale"]
    for name, param in model.named_parameters():
        assert scale_of[id(param)] == pytest.approx(0.5 ** (3 - ids[name])), name


def test_bf16_autocast_forward_backward():
    model = _small()
    x = _signal(model)
    mask = torch.rand(2, 12, generator=torch.Generator().manual_seed(0)) < 0.5
    with torch.no_grad():
        reference = model.eval()(x, mask)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        magnitude, phase = model(x, mask)
    assert magnitude.dtype == torch.bfloat16
    assert torch.isfinite(magnitude.float()).all()
    assert (magnitude.float() - reference).abs().max() < 0.05 * reference.abs().max() + 0.02
    (magnitude.float().square().mean() + phase.float().square().mean()).backward()
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad
    )


def test_invalid_constructor_values():
    with pytest.raises(ValueError, match="num_heads"):
        M4CEA(embed_dim=200, num_heads=7)
    with pytest.raises(ValueError, match="'depth'"):
        M4CEA(depth=0)
    with pytest.raises(ValueError, match="drop_path_rate"):
        M4CEA(drop_path_rate=1.5, depth=1)
    with pytest.raises(ValueError, match="'head'"):
        M4CEA(head="segmentation", depth=1)
    with pytest.raises(ValueError, match="n_outputs"):
        M4CEA(head="pretrain", n_outputs=3, depth=1)
    with pytest.raises(ValueError, match="n_outputs"):
        M4CEA(head="classification", depth=1)
    with pytest.raises(TypeError, match="'tie'"):
        M4CEA(tie="yes", depth=1)
