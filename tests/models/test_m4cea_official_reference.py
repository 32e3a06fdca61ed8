"""Equivalence with the official M4CEA code (Evigouse/M4CEA_Project), from ../shared/reference."""

import copy
import math

import pytest
import torch

from models import convert_official_state_dict, create_model, load_official_state_dict, patch_spectrum

BASE_PRETRAIN_PARAMS = 6_013_138  # m4cea_base, pretraining heads
BASE_FINETUNE_PARAMS_4_CLASSES = 5_892_940  # m4cea_base, 4-class classification head


def _bool_mask(indices, n_tokens):
    mask = torch.zeros(indices.shape[0], n_tokens, dtype=torch.bool)
    return mask.scatter_(1, indices, True)


def _wrapped_phase_error(a, b):
    return torch.remainder(a - b + math.pi, 2 * math.pi) - math.pi


def test_reference_input_is_unscaled_and_targets_come_from_it(official_reference):
    # The reference input is standard normal, NOT divided by its per-channel 95th percentile (that would
    # make the percentile 1): the official model was fed this tensor as is, and its targets are the rFFT of
    # exactly the tensor the model receives.
    x = official_reference["input"]
    q95 = torch.quantile(x.abs(), 0.95, dim=-1)
    assert torch.all((q95 > 1.85) & (q95 < 2.1))
    magnitude, _ = patch_spectrum(x, 200)
    scaled = x / (q95.unsqueeze(-1) + 1e-8)
    scaled_magnitude, _ = patch_spectrum(scaled, 200)
    target = official_reference["pretrain_outputs"]["target_magnitude"].reshape(2, 320, 101)
    assert (magnitude - target).abs().max() < 1e-4
    assert (scaled_magnitude - target).abs().max() > 1.0


def test_patch_spectrum_matches_official_targets(official_reference):
    outputs = official_reference["pretrain_outputs"]
    magnitude, phase = patch_spectrum(official_reference["input"], 200)
    assert magnitude.shape == phase.shape == (2, 320, 101)
    # target shape (batch, n_chans, n_patches, n_freqs) flattens channel-major to our tokens
    torch.testing.assert_close(
        magnitude, outputs["target_magnitude"].reshape(2, 320, 101), rtol=1e-5, atol=1e-5
    )
    # The phase of low-magnitude bins is sensitive to float32 FFT rounding (another FFT backend made the
    # reference): 4 of 64640 bins differ by 1e-5 to 3e-5 rad.
    error = _wrapped_phase_error(phase, outputs["target_angle"].reshape(2, 320, 101)).abs()
    assert error.max() < 5e-5
    assert (error > 1e-5).sum() <= 8


def test_pretrain_outputs_match_official(official_reference):
    torch.manual_seed(0)
    model = create_model("m4cea_base", head="pretrain", depth=2).eval()
    result = load_official_state_dict(model, official_reference["pretrain_state_dict"])
    assert result.missing_keys == [] and result.ignored_keys == []
    mask = _bool_mask(official_reference["mask_indices"], model.n_tokens)
    assert mask.sum().item() == 2 * 160
    with torch.no_grad():
        magnitude, phase = model(official_reference["input"], mask)
    outputs = official_reference["pretrain_outputs"]
    torch.testing.assert_close(magnitude, outputs["rec_magnitude"], rtol=0, atol=1e-5)
    torch.testing.assert_close(phase, outputs["rec_angle"], rtol=0, atol=1e-5)
    # the mask matters: without it the outputs are far from the reference
    with torch.no_grad():
        unmasked, _ = model(official_reference["input"])
    assert (unmasked - outputs["rec_magnitude"]).abs().max() > 1e-3


def test_finetune_logits_match_official(official_reference):
    model = create_model("m4cea_base", head="classification", n_outputs=4, depth=2).eval()
    load_official_state_dict(model, official_reference["finetune_state_dict"])
    with torch.no_grad():
        logits = model(official_reference["input"])
    torch.testing.assert_close(logits, official_reference["finetune_logits"], rtol=0, atol=1e-5)


def test_official_pretrain_checkpoint_into_classifier(official_reference):
    pretrain_sd = official_reference["pretrain_state_dict"]
    model = create_model("m4cea_base", head="classification", n_outputs=2, depth=2).eval()
    with pytest.raises(ValueError, match="allow_missing_head=True"):
        load_official_state_dict(model, pretrain_sd)
    result = load_official_state_dict(model, pretrain_sd, allow_missing_head=True)
    assert result.missing_keys == ["head.weight", "head.bias"]
    assert sorted(result.ignored_keys) == sorted(
        f"head_{kind}.{layer}.{p}"
        for kind in ("magnitude", "phase")
        for layer in (0, 2)
        for p in ("weight", "bias")
    )
    torch.testing.assert_close(model.pos_embed, pretrain_sd["input_emb.positional_encoding"], rtol=0, atol=0)
    torch.testing.assert_close(
        model.blocks[1].attn.qkv.weight, pretrain_sd["transformer.blocks.1.attn.qkv.weight"], rtol=0, atol=0
    )


def test_depth12_official_layout_maps_onto_base(
    official_pretrain_shapes, official_finetune_shapes, base_pretrain_model
):
    for shapes, head, n_outputs, total in (
        (official_pretrain_shapes, "pretrain", None, BASE_PRETRAIN_PARAMS),
        (official_finetune_shapes, "classification", 4, BASE_FINETUNE_PARAMS_4_CLASSES),
    ):
        if head == "pretrain":  # a copy of the shared m4cea_base (the zeros loaded below change it)
            model = copy.deepcopy(base_pretrain_model)
        else:
            model = create_model("m4cea_base", head=head, n_outputs=n_outputs)
        ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        converted = convert_official_state_dict({k: torch.empty(0) for k in shapes})
        mapped = dict(zip(converted, shapes.values(), strict=True))
        assert mapped == ours
        assert sum(math.prod(s) for s in shapes.values()) == total
        assert sum(p.numel() for p in model.parameters()) == total
        # a zero-filled official-layout checkpoint of the full size loads strictly
        load_official_state_dict(model, {k: torch.zeros(s) for k, s in shapes.items()})
        assert model.pos_embed.abs().sum().item() == 0.0


def test_depth2_checkpoint_into_depth12_model_names_the_blocks(official_reference, base_pretrain_model):
    model = base_pretrain_model  # nothing is loaded when the keys do not match
    before = model.pos_embed.detach().clone()
    with pytest.raises(ValueError, match=r"blocks\.2\.norm1\.weight.*2 transformer blocks, the model 12"):
        load_official_state_dict(model, official_reference["pretrain_state_dict"])
    assert torch.equal(model.pos_embed, before)
