"""Strict loading of official-layout and own state dicts."""

import pytest
import torch

from models import convert_official_state_dict, create_model, load_official_state_dict

SMALL = dict(n_chans=2, n_patches=3, embed_dim=32, num_heads=4, depth=2)

OFFICIAL_TO_OURS = {
    "time.scale_factor": "patch_embed.scale_factor",
    "time.conv2DOutput.weight": "patch_embed.tie_conv.weight",
    "time.norm1.weight": "patch_embed.tie_norm.weight",
    "time.conv1.bias": "patch_embed.conv1.bias",
    "time.norm2.bias": "patch_embed.norm1.bias",
    "time.conv3.weight": "patch_embed.conv3.weight",
    "time.norm4.weight": "patch_embed.norm3.weight",
    "input_emb.positional_encoding": "pos_embed",
    "input_emb.mask_encoding": "mask_token",
    "input_emb.proj.0.weight": "input_proj.weight",
    "transformer.blocks.11.attn.q_norm.bias": "blocks.11.attn.q_norm.bias",
    "transformer.norm.weight": "norm.weight",
    "decode_task_layer.2.bias": "head_magnitude.2.bias",
    "decode_task_layer_angle.0.weight": "head_phase.0.weight",
    "typeclassifier.clshead.1.weight": "head.weight",
    "module._orig_mod.blocks.0.norm1.weight": "blocks.0.norm1.weight",
    "_orig_mod.module.head.bias": "head.bias",
}


def _model(head="pretrain", n_outputs=None, seed=0, **overrides):
    torch.manual_seed(seed)
    return create_model("m4cea_tiny", head=head, n_outputs=n_outputs, **{**SMALL, **overrides}).eval()


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _equal_states(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def _official_layout(state):
    """Our state dict written back in the official layout (the inverse of the documented mapping)."""
    renames = [
        ("patch_embed.scale_factor", "time.scale_factor"),
        ("patch_embed.tie_conv.", "time.conv2DOutput."),
        ("patch_embed.tie_norm.", "time.norm1."),
        ("patch_embed.norm3.", "time.norm4."),
        ("patch_embed.norm2.", "time.norm3."),
        ("patch_embed.norm1.", "time.norm2."),
        ("patch_embed.conv", "time.conv"),
        ("mask_token", "input_emb.mask_encoding"),
        ("input_proj.", "input_emb.proj.0."),
        ("pos_embed", "input_emb.positional_encoding"),
        ("blocks.", "transformer.blocks."),
        ("norm.", "transformer.norm."),
        ("head_magnitude.", "decode_task_layer."),
        ("head_phase.", "decode_task_layer_angle."),
        ("head.", "typeclassifier.clshead.1."),
    ]
    out = {}
    for key, value in state.items():
        for ours, official in renames:
            if key.startswith(ours):
                key = official + key[len(ours) :]
                break
        out[key] = value
    return out


def test_official_key_mapping():
    converted = convert_official_state_dict({k: torch.zeros(1) for k in OFFICIAL_TO_OURS})
    assert list(converted) == list(OFFICIAL_TO_OURS.values())


@pytest.mark.parametrize("head, n_outputs", [("pretrain", None), ("classification", 4)])
def test_official_layout_round_trip(head, n_outputs):
    source, target = _model(head, n_outputs, seed=0), _model(head, n_outputs, seed=1)
    official = _official_layout(_state(source))
    assert any(k.startswith("time.norm4.") for k in official)
    load_official_state_dict(target, official)
    assert _equal_states(_state(target), _state(source))
    x = torch.randn(2, 2, 600)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod."])
def test_own_state_dict_round_trip_with_wrapper_prefixes(prefix):
    source, target = _model(seed=0), _model(seed=1)
    assert not _equal_states(_state(source), _state(target))
    result = load_official_state_dict(target, {prefix + k: v for k, v in source.state_dict().items()})
    assert result.missing_keys == [] and result.ignored_keys == []
    assert _equal_states(_state(target), _state(source))


def test_compiled_and_ddp_style_keys_from_a_real_wrapper():
    source = _model(seed=0)
    wrapped = torch.nn.ModuleDict({"module": source})  # keys 'module.<name>' like DistributedDataParallel
    target = _model(seed=1)
    load_official_state_dict(target, wrapped.state_dict())
    assert _equal_states(_state(target), _state(source))


def test_wrong_depth_is_an_error_naming_the_blocks():
    deep, shallow = _model(depth=3), _model(depth=2)
    message = r"missing.*blocks\.2\.norm1\.weight.*2 transformer blocks, the model 3"
    with pytest.raises(ValueError, match=message):
        load_official_state_dict(deep, shallow.state_dict())
    before = _state(shallow)
    with pytest.raises(ValueError, match=r"not in the model.*blocks\.2\.attn\.qkv\.weight"):
        load_official_state_dict(shallow, deep.state_dict())
    assert _equal_states(_state(shallow), before)  # nothing loaded


def test_wrong_head_size_is_an_error():
    four, two = _model("classification", 4), _model("classification", 2)
    message = r"shape mismatch.*'head\.weight: checkpoint \(4, 32\), model \(2, 32\)'"
    with pytest.raises(ValueError, match=message):
        load_official_state_dict(two, four.state_dict())
    with pytest.raises(ValueError, match=message):  # still strict with a new head allowed
        load_official_state_dict(two, four.state_dict(), allow_missing_head=True)
    with pytest.raises(
        ValueError,
        match=r"shape mismatch.*'head\.weight \(from typeclassifier\.clshead\.1\."
        r"weight\): checkpoint \(4, 32\), model \(2, 32\)'",
    ):
        load_official_state_dict(two, _official_layout(four.state_dict()))


def test_leftover_and_missing_keys_are_named():
    model = _model()
    state = dict(model.state_dict())
    with pytest.raises(ValueError, match=r"not in the model: 1 key\(s\): 'extra\.weight'"):
        load_official_state_dict(model, {**state, "extra.weight": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"not in the model.*'input_emb\.cnn\.0\.weight'"):
        load_official_state_dict(model, {**state, "input_emb.cnn.0.weight": torch.zeros(3)})
    del state["patch_embed.conv2.bias"]
    message = r"missing from the checkpoint: 1 key\(s\): 'patch_embed\.conv2\.bias'"
    with pytest.raises(ValueError, match=message):
        load_official_state_dict(model, state)


def test_bad_state_dict_types():
    model = _model()
    with pytest.raises(TypeError, match="checkpoint\\['model'\\]"):
        load_official_state_dict(model, {"model": model.state_dict(), "epoch": 3})
    with pytest.raises(TypeError, match="'state_dict'"):
        load_official_state_dict(model, [("pos_embed", model.pos_embed)])
    with pytest.raises(ValueError, match="both map to 'pos_embed'"):
        load_official_state_dict(
            model, {"pos_embed": model.pos_embed, "input_emb.positional_encoding": model.pos_embed}
        )


def test_pretrain_checkpoint_into_classifier_only_head_missing():
    pretrained = _model("pretrain", seed=0)
    classifier = _model("classification", 3, seed=1)
    head_before = classifier.head.weight.detach().clone()
    with pytest.raises(
        ValueError,
        match=r"missing.*'head\.weight'.*not in the model.*head_magnitude.*"
        r"allow_missing_head=True",
    ):
        load_official_state_dict(classifier, pretrained.state_dict())
    result = load_official_state_dict(classifier, pretrained.state_dict(), allow_missing_head=True)
    assert result.missing_keys == ["head.weight", "head.bias"]
    assert sorted(result.ignored_keys) == sorted(
        k for k in pretrained.state_dict() if k.startswith(("head_magnitude.", "head_phase."))
    )
    backbone = {k: v for k, v in _state(pretrained).items() if not k.startswith("head")}
    state = _state(classifier)
    assert all(torch.equal(state[k], v) for k, v in backbone.items())
    assert torch.equal(classifier.head.weight, head_before)


def test_classifier_checkpoint_into_pretrain_model_with_new_heads():
    classifier, pretrain = _model("classification", 3, seed=0), _model("pretrain", seed=1)
    result = load_official_state_dict(
        pretrain, _official_layout(classifier.state_dict()), allow_missing_head=True
    )
    assert len(result.missing_keys) == 8 and result.ignored_keys == ["head.weight", "head.bias"]
    assert torch.equal(pretrain.pos_embed, classifier.pos_embed)


def test_allow_missing_head_is_strict_about_the_backbone():
    pretrained, classifier = _model("pretrain"), _model("classification", 3)
    state = dict(pretrained.state_dict())
    del state["blocks.1.norm2.bias"]
    message = r"missing from the checkpoint: 1 key\(s\): 'blocks\.1\.norm2\.bias'"
    with pytest.raises(ValueError, match=message):
        load_official_state_dict(classifier, state, allow_missing_head=True)
    # part of a head present is not a missing head
    partial = {**pretrained.state_dict(), "head.bias": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"missing from the checkpoint: 1 key\(s\): 'head\.weight'"):
        load_official_state_dict(classifier, partial, allow_missing_head=True)


def test_tie_checkpoint_into_tie_free_model_is_an_error():
    with pytest.raises(
        ValueError,
        match=r"not in the model.*patch_embed\.scale_factor.*shape mismatch.*"
        r"patch_embed\.conv1\.weight: checkpoint \(8, 8, 1, 15\)",
    ):
        load_official_state_dict(_model(tie=False), _model(tie=True).state_dict())
