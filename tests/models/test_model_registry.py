"""The registry of named sizes and create_model."""

import pytest
import torch

from models import M4CEA, create_model, get_model_config, list_models

# Shrinks every registered size to a few tokens and one block, keeping its widths.
TINY_VARIANT = dict(n_chans=2, n_patches=3, depth=1)


def test_registered_names():
    assert list_models() == [
        "hms_mobilenetv3",
        "labram_base",
        "labram_tiny",
        "m4cea_base",
        "m4cea_tiny",
        "vqnsp_base",
        "vqnsp_tiny",
    ]


@pytest.mark.parametrize("name", [name for name in list_models() if name.startswith("m4cea")])
@pytest.mark.parametrize("head, n_outputs", [("pretrain", None), ("classification", 3)])
def test_every_model_runs_and_every_parameter_learns(name, head, n_outputs):
    torch.manual_seed(0)
    model = create_model(name, head=head, n_outputs=n_outputs, **TINY_VARIANT)
    assert isinstance(model, M4CEA) and model.head_type == head
    x = torch.randn(2, 2, model.n_times)
    mask = torch.tensor([[True, False, False, True, False, False]] * 2)
    out = model(x, mask)
    if head == "pretrain":
        assert isinstance(out, tuple) and len(out) == 2
        assert all(o.shape == (2, 6, model.patch_samples // 2 + 1) for o in out)
        loss = sum(o.square().mean() for o in out)
    else:
        assert out.shape == (2, 3)
        loss = torch.nn.functional.cross_entropy(out, torch.tensor([0, 2]))
    assert all(torch.isfinite(o).all() for o in (out if isinstance(out, tuple) else (out,)))
    loss.backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, param_name


def test_base_is_the_paper_model(base_pretrain_model):
    model = base_pretrain_model
    assert (model.n_chans, model.n_patches, model.patch_samples, model.n_times) == (16, 20, 200, 4000)
    assert (model.embed_dim, model.depth, model.num_heads, model.n_tokens) == (200, 12, 8, 320)
    assert model.blocks[0].mlp.fc1.out_features == 800
    assert model.blocks[0].attn.qkv.bias is None
    assert model.tie and model.head_type == "pretrain"
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    assert sum(p.numel() for p in model.parameters()) == 6_013_138


def test_tiny_accepts_the_base_input():
    model = create_model("m4cea_tiny")
    assert (model.n_chans, model.n_times, model.depth) == (16, 4000, 2)
    assert sum(p.numel() for p in model.parameters()) < 300_000


def test_overrides():
    model = create_model("m4cea_base", depth=3, drop_path_rate=0.0, n_chans=8)
    assert len(model.blocks) == 3 and model.depth == 3
    assert model.pos_embed.shape == (160, 200)
    assert all(isinstance(b.drop_path1, torch.nn.Identity) for b in model.blocks)
    # 200 Hz data with 1-s patches and 4-s windows is a configuration
    model = create_model("m4cea_base", head="classification", n_outputs=2, depth=1, n_patches=4)
    assert model.n_times == 800 and model(torch.randn(1, 16, 800)).shape == (1, 2)
    assert not create_model("m4cea_tiny", tie=False).tie


def test_get_model_config_is_a_copy():
    config = get_model_config("m4cea_base")
    assert config["depth"] == 12 and config["patch_samples"] == 200
    config["depth"] = 1
    assert get_model_config("m4cea_base")["depth"] == 12


def test_unknown_name_lists_the_registered_names():
    with pytest.raises(ValueError, match=r"'name'.*'m4cea_base', 'm4cea_tiny'.*'m4cea_huge'"):
        create_model("m4cea_huge")
    with pytest.raises(ValueError, match="m4cea_base"):
        get_model_config("labram")


def test_unknown_override_is_named():
    with pytest.raises(ValueError, match=r"Unknown override\(s\) \['n_layers'\].*'depth'"):
        create_model("m4cea_tiny", n_layers=3)


def test_head_arguments_are_checked():
    with pytest.raises(ValueError, match="n_outputs"):
        create_model("m4cea_tiny", head="classification")
    with pytest.raises(ValueError, match="n_outputs"):
        create_model("m4cea_tiny", head="pretrain", n_outputs=4)
    with pytest.raises(ValueError, match=r"'head'.*'finetune'"):
        create_model("m4cea_tiny", head="finetune", n_outputs=4)
    with pytest.raises(ValueError, match="n_outputs"):
        create_model("m4cea_tiny", head="classification", n_outputs=0)


def test_invalid_override_value():
    with pytest.raises(ValueError, match=r"'depth'.*'3'"):
        create_model("m4cea_tiny", depth="3")


def test_create_model_from_a_config_section():
    from models import create_model_from_config

    section = {"name": "m4cea_tiny", "depth": 3, "embed_dim": None, "pretrained": "ignored.pth"}
    model = create_model_from_config(section, head="classification", n_outputs=2)
    assert model.depth == 3 and model.embed_dim == 64 and model.n_outputs == 2
    with pytest.raises(ValueError, match="m4cea_base"):
        create_model_from_config({"name": "m4cea_huge"})


def test_input_contract_of_a_model_config_follows_its_size_overrides():
    """The loaders take the contract of the model a config builds: overridden patching included."""
    from models import get_input_contract

    m4cea = get_input_contract({"name": "m4cea_tiny", "n_patches": 5, "patch_samples": None})
    assert (m4cea.family, m4cea.sfreq, m4cea.patch_samples, m4cea.max_patches) == ("m4cea", 1000.0, 200, 5)
    assert get_input_contract({"name": "m4cea_base"}) == get_input_contract("m4cea_base")
    labram = get_input_contract({"name": "labram_base", "max_patches": 8, "tie": False})
    assert (labram.sfreq, labram.max_patches, labram.uv_scale) == (200.0, 8, 0.01)
    with pytest.raises(ValueError, match="Allowed values are"):
        get_input_contract({"name": "nope"})
