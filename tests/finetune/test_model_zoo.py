"""braindecode models through fine-tuning, head modes (linear probe, LoRA) and parameter counts."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from finetune.finetune_main import main
from finetune.heads import apply_head_mode, lora_merged_state_dict, parameter_counts
from models import DOUBLE_BANANA, create_model, get_input_contract
from models.zoo import chs_info_from_names, create_zoo_model
from runtime.checkpoint import load_checkpoint
from runtime.config import UsageError
from tests.finetune.labelled_data import TINY_FINETUNE, make_labelled_data, save_pretrain_checkpoint

# Not importorskip: importing braindecode (1.3 s) would happen at collection, in every pytest-xdist worker.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("braindecode") is None, reason="needs braindecode")

# 6 subjects of 4 windows of 1 s (16 x 1000 samples at 1000 Hz), classes differ in rhythm.
# Tiny sizes of the braindecode classes (the tests check the plumbing, not the architectures).
ZOO_ARGS = {
    "EEGNet": "{F1: 4, D: 2, F2: 8}",
    "BIOT": "{embed_dim: 16, num_heads: 2, num_layers: 1}",
    "CBraMod": "{n_layer: 1, dim_feedforward: 32}",
}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    recordings = [(f"s{i}", f"r{i}", ["background", "background", "seizure", "seizure"]) for i in range(6)]
    return make_labelled_data(tmp_path_factory.mktemp("synth"), recordings)


def _argv(data, output, *overrides, epochs=2, extra=()):
    return [
        "--task", "onset_detection", "--seed", "42", "--data", str(data), "--output", str(output),
        "--epochs", str(epochs), *extra, "--set", *TINY_FINETUNE, *overrides,
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["EEGNet", "BIOT", "CBraMod"])
def test_braindecode_model_fine_tunes_on_the_synthetic_cohort(name, synth, tmp_path):
    import braindecode.models

    if not hasattr(braindecode.models, name):
        pytest.skip(f"braindecode {braindecode.__version__} has no {name}")
    results = main(
        _argv(synth, tmp_path, f"model.name=braindecode.{name}", f"model.zoo_args={ZOO_ARGS[name]}")
    )
    contract = get_input_contract(f"braindecode.{name}")
    window = results["config"]["model"]["zoo_window"]
    assert window["sfreq_in"] == 1000.0 and window["n_times_in"] == 1000 and window["n_chans"] == 16
    checkpoint = load_checkpoint(tmp_path / "onset_detection/seed42/checkpoint-best.pth")
    model = create_zoo_model(
        f"braindecode.{name}", 2, n_chans=16, sfreq_in=1000.0, n_times_in=1000, **_zoo_args(name)
    )
    model.load_state_dict(checkpoint["model"])  # the run's model: the table's rate, the window's length
    assert model.n_times == int(contract.sfreq)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)  # CBraMod fixes some
    assert results["parameters"] == {"trainable": trainable, "total": total} and trainable > total / 2
    assert 0.0 <= results["test"]["auroc"] <= 1.0 or np.isnan(results["test"]["auroc"])


def _zoo_args(name):
    import yaml

    return yaml.safe_load(ZOO_ARGS[name])


def test_unknown_class_and_too_short_windows_are_refused():
    with pytest.raises(UsageError, match="not a braindecode model class"):
        create_zoo_model("braindecode.NoSuchNet", 2, n_chans=16, sfreq_in=1000.0, n_times_in=1000)
    with pytest.raises(UsageError, match="at least 440 samples at 250 Hz"):  # Deep4Net's four pooling stages
        create_zoo_model("braindecode.Deep4Net", 2, n_chans=16, sfreq_in=1000.0, n_times_in=1000)
    with pytest.raises(UsageError, match="whole patches of 200 samples"):  # CBraMod: 1-s patches at 200 Hz
        create_zoo_model("braindecode.CBraMod", 2, n_chans=16, sfreq_in=1000.0, n_times_in=1500, n_layer=1)


def test_chs_info_places_bipolar_pairs_at_their_midpoint():
    import mne

    montage = mne.channels.make_standard_montage("standard_1020").get_positions()["ch_pos"]
    info = chs_info_from_names(list(DOUBLE_BANANA[:1]) + ["Cz", "EKG"])
    assert info[0]["ch_name"] == "AF7"  # the 10-10 electrode between Fp1 and F7
    np.testing.assert_allclose(info[0]["loc"][:3], (montage["Fp1"] + montage["F7"]) / 2)
    np.testing.assert_allclose(info[1]["loc"][:3], montage["Cz"])
    assert info[2]["ch_name"] == "EKG" and np.isnan(info[2]["loc"][:3]).all()


def test_layer_decay_on_a_model_without_layers_is_a_clear_error(synth, tmp_path, capsys):
    argv = _argv(synth, tmp_path, "model.name=braindecode.EEGNet", "optim.layer_decay=0.65")
    with pytest.raises(UsageError, match="no layer grouping.*optim.layer_decay=1.0"):
        main(argv)


def test_bad_head_mode_is_a_config_error(synth, tmp_path):
    with pytest.raises(ValueError, match="head.mode"):
        main(_argv(synth, tmp_path, "model.name=m4cea_tiny", "model.n_patches=5", "head.mode=adapters"))


def test_lora_trains_only_adapters_and_head(synth, tmp_path):
    """Frozen weights bit-identical after training; the merged checkpoint is the plain model's layout."""
    pretrained = save_pretrain_checkpoint(tmp_path / "pretrain.pth", n_patches=5)
    overrides = ["model.name=m4cea_tiny", "model.n_patches=5", "head.mode=lora", "head.lora_rank=2"]
    results = main(_argv(synth, tmp_path / "runs", *overrides, extra=["--pretrained", str(pretrained)]))
    checkpoint = load_checkpoint(tmp_path / "runs/onset_detection/seed42/checkpoint-best.pth")
    lora_state, merged = checkpoint["lora_state"], checkpoint["model"]
    source = load_checkpoint(pretrained)["model"]
    frozen = [k for k in lora_state if ".lora_" not in k and not k.startswith("head.")]
    assert len(frozen) > 20
    for key in frozen:  # every frozen weight exactly as pretrained
        assert torch.equal(lora_state[key], source[key.replace(".base_layer.", ".")]), key
    adapters_b = [k for k in lora_state if ".lora_B." in k]
    assert adapters_b and any(lora_state[k].abs().sum() > 0 for k in adapters_b)  # B starts at zero
    # the merged layout loads into the plain model (what predict.py builds) and gives the same logits
    plain = create_model("m4cea_tiny", head="classification", n_outputs=2, n_patches=5)
    plain.load_state_dict(merged)
    n_lora = sum(v.numel() for k, v in lora_state.items() if ".lora_" in k)
    assert results["parameters"]["trainable"] == n_lora + plain.head.weight.numel() + plain.head.bias.numel()
    assert results["parameters"]["total"] == sum(p.numel() for p in plain.parameters()) + n_lora
    adapted = create_model("m4cea_tiny", head="classification", n_outputs=2, n_patches=5)
    apply_head_mode(
        adapted, {"head": {"mode": "lora", "lora_rank": 2, "lora_alpha": 16.0, "lora_targets": []}}
    )
    adapted.load_state_dict(lora_state)
    x = torch.randn(2, 16, 1000)
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(x), adapted.eval()(x), rtol=1e-4, atol=1e-5)
    assert set(lora_merged_state_dict(adapted)) == set(plain.state_dict())


def test_linear_probe_mode_and_parameter_counts_on_a_braindecode_model():
    model = create_zoo_model("braindecode.EEGNet", 2, n_chans=16, sfreq_in=1000.0, n_times_in=1000)
    apply_head_mode(model, {"head": {"mode": "linear_probe"}})
    head = sum(p.numel() for n, p in model.named_parameters() if n.startswith("model.final_layer."))
    assert parameter_counts(model) == {"trainable": head, "total": sum(p.numel() for p in model.parameters())}
    with pytest.raises(UsageError, match="head.mode"):
        apply_head_mode(model, {"head": {"mode": "adapters"}})
