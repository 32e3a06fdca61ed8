"""Equivalence with the official LaBraM code (935963004/LaBraM @ c431221e), from ../shared/reference."""

import argparse
import os

import pytest
import torch

from models import (
    LaBraM,
    channel_positions,
    create_model,
    load_official_state_dict,
    read_official_checkpoint,
    spectrum_targets,
)
from tests.models.conftest import read_key_shapes

UNUSED_MEM_KEYS = ("student.lm_head.", "projection_head.")  # official modules its forward never calls


def _labram(reference, head, **kwargs):
    torch.manual_seed(0)
    return create_model("labram_base", head=head, depth=2, ch_names=reference["ch_names"], **kwargs).eval()


def _vqnsp(reference):
    torch.manual_seed(0)
    return create_model(
        "vqnsp_base", ch_names=reference["ch_names"], depth=2, decoder_depth=1, kmeans_init=False
    ).eval()


def test_channel_rows_are_the_official_input_chans(labram_reference):
    rows = channel_positions(labram_reference["ch_names"])
    assert [0, *rows] == labram_reference["input_chans"].tolist()
    assert torch.equal(labram_reference["input"].reshape(2, 16, 4, 200), labram_reference["input_patches"])


def test_classification_logits_and_features_match_official(labram_reference):
    model = _labram(labram_reference, "classification", n_outputs=4)
    result = load_official_state_dict(model, labram_reference["finetune_state_dict"])
    assert result.missing_keys == [] and result.ignored_keys == []
    with torch.no_grad():
        features = model.forward_features(labram_reference["input"])
        pooled = model.forward_head(features, pre_logits=True)
        logits = model(labram_reference["input"])
    assert features.shape == (2, 1 + 64, 200)
    torch.testing.assert_close(pooled, labram_reference["finetune_features"], rtol=0, atol=1e-5)
    torch.testing.assert_close(logits, labram_reference["finetune_logits"], rtol=0, atol=1e-5)


def test_masked_modelling_logits_match_official(labram_reference):
    model = _labram(labram_reference, "pretrain")
    result = load_official_state_dict(model, labram_reference["mem_state_dict"])
    assert result.missing_keys == []
    assert sorted(result.ignored_keys) == sorted(
        k for k in labram_reference["mem_state_dict"] if k.startswith(UNUSED_MEM_KEYS)
    )
    mask = labram_reference["mem_mask"]
    with torch.no_grad():
        logits_masked, logits_visible = model(labram_reference["input"], mask)
    assert logits_masked.shape == logits_visible.shape == (64, 8192)
    torch.testing.assert_close(logits_masked, labram_reference["mem_logits_masked"], rtol=0, atol=1e-5)
    torch.testing.assert_close(logits_visible, labram_reference["mem_logits_symmetric"], rtol=0, atol=1e-5)


def test_masked_modelling_reproduces_the_cls_position_quirk(labram_reference):
    # The official student gives the CLS token the first channel's position row, not row 0 (which the
    # classification model uses): row 0 of the table plays no part in masked modelling and gets no gradient.
    x, mask = labram_reference["input"], labram_reference["mem_mask"]
    model = _labram(labram_reference, "pretrain")
    load_official_state_dict(model, labram_reference["mem_state_dict"])
    with torch.no_grad():
        model.pos_embed[0, 0] = 100.0
        assert torch.equal(model(x, mask)[0], model(x, mask)[0])
        torch.testing.assert_close(
            model(x, mask)[0], labram_reference["mem_logits_masked"], rtol=0, atol=1e-5
        )
    model.train()
    sum(out.sum() for out in model(x, mask)).backward()
    assert model.pos_embed.grad[0, 0].abs().max() == 0
    assert model.pos_embed.grad[0, model.input_rows[0]].abs().max() > 0
    classifier = _labram(labram_reference, "classification", n_outputs=4).train()
    classifier(x).sum().backward()
    assert classifier.pos_embed.grad[0, 0].abs().max() > 0


def test_vqnsp_codes_reconstructions_and_losses_match_official(labram_reference):
    model = _vqnsp(labram_reference)
    result = load_official_state_dict(model, labram_reference["vqnsp_state_dict"])
    assert result.missing_keys == [] and result.ignored_keys == []
    x = labram_reference["input"]
    codebook = model.quantize.embedding.weight.clone()
    with torch.no_grad():
        codes = model.tokenize(x)
        amplitude, angle = model.reconstruct(x)
        losses = model(x)
    assert codes.dtype == torch.int64 and torch.equal(codes, labram_reference["vqnsp_tokens"])
    torch.testing.assert_close(amplitude, labram_reference["vqnsp_rec_amplitude"], rtol=0, atol=1e-5)
    torch.testing.assert_close(angle, labram_reference["vqnsp_rec_angle"], rtol=0, atol=1e-5)
    for name in ("loss", "rec_loss", "rec_angle_loss", "quant_loss"):
        torch.testing.assert_close(
            getattr(losses, name), labram_reference[f"vqnsp_{name}"], rtol=0, atol=1e-5
        )
    assert torch.equal(losses.codes, codes)
    assert torch.equal(model.quantize.embedding.weight, codebook)  # evaluation never moves the codebook


def test_spectrum_targets_are_standardised_full_fft(labram_reference):
    amplitude, angle = spectrum_targets(labram_reference["input"])
    assert amplitude.shape == angle.shape == (2, 64, 200)
    for values in (amplitude, angle):
        torch.testing.assert_close(values.mean(dim=(1, 2)), torch.zeros(2), rtol=0, atol=1e-5)
        torch.testing.assert_close(values.std(dim=(1, 2)), torch.ones(2), rtol=0, atol=1e-5)
    # full FFT of a real patch: bin k and bin 200 - k have the same amplitude
    torch.testing.assert_close(amplitude[..., 1:100], amplitude[..., 101:].flip(-1), rtol=0, atol=1e-4)


@pytest.mark.parametrize("head, kind", [("classification", "finetune"), ("pretrain", "mem_pretrain")])
def test_labram_base_has_the_official_keys_and_shapes(head, kind):
    official = read_key_shapes(f"official_labram_base_{kind}_state_dict_keys.txt")
    with torch.device("meta"):
        model = create_model("labram_base", head=head, n_outputs=4 if head == "classification" else None)
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    if kind == "mem_pretrain":
        # our masked-modelling model is the official student plus the outer lm_head it uses
        official = {
            key.removeprefix("student."): shape
            for key, shape in official.items()
            if not key.startswith(UNUSED_MEM_KEYS)
        }
    assert ours == official


def test_vqnsp_base_has_the_official_keys_and_shapes():
    official = read_key_shapes("official_vqnsp_base_state_dict_keys.txt")
    with torch.device("meta"):
        model = create_model("vqnsp_base")
    assert {key: tuple(value.shape) for key, value in model.state_dict().items()} == official


def _save(tmp_path, checkpoint):
    path = tmp_path / "checkpoint.pth"
    torch.save(checkpoint, path)
    return path


def test_official_checkpoint_with_args_loads_and_finetunes(labram_reference, tmp_path):
    args = argparse.Namespace(model="labram_base_patch200_1600_8k_vocab", lr=5e-4, input_size=1600)
    optimizer = {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 5e-4, "params": [0]}]}
    prefixed = {f"module.{key}": value for key, value in labram_reference["mem_state_dict"].items()}
    path = _save(tmp_path, {"model": prefixed, "epoch": 49, "args": args, "optimizer": optimizer})
    state_dict = read_official_checkpoint(path)
    assert set(state_dict) == set(prefixed)

    pretrain = _labram(labram_reference, "pretrain")
    load_official_state_dict(pretrain, state_dict)
    with torch.no_grad():
        logits = pretrain(labram_reference["input"], labram_reference["mem_mask"])[0]
    torch.testing.assert_close(logits, labram_reference["mem_logits_masked"], rtol=0, atol=1e-5)

    # fine-tuning from labram-base.pth, as the official fine-tuning: fc_norm and head start afresh
    classifier = _labram(labram_reference, "classification", n_outputs=3)
    with pytest.raises(ValueError, match="allow_missing_head=True"):
        load_official_state_dict(classifier, state_dict)
    result = load_official_state_dict(classifier, state_dict, allow_missing_head=True)
    assert result.missing_keys == ["fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"]
    assert {"mask_token", "norm.weight", "lm_head.weight"} <= set(result.ignored_keys)
    assert torch.equal(
        classifier.blocks[1].attn.qkv.weight,
        labram_reference["mem_state_dict"]["student.blocks.1.attn.qkv.weight"],
    )


def test_model_prefix_and_tokenizer_checkpoint(labram_reference, tmp_path):
    state = {f"model.{key}": value for key, value in labram_reference["vqnsp_state_dict"].items()}
    state["loss.discriminator.weight"] = torch.zeros(1)  # dropped by the official tokenizer loader too
    path = _save(tmp_path, {"model": state, "epoch": 99, "args": argparse.Namespace(codebook_emd_dim=64)})
    model = _vqnsp(labram_reference)
    result = load_official_state_dict(model, read_official_checkpoint(path))
    assert result.ignored_keys == ["loss.discriminator.weight"]
    with torch.no_grad():
        assert torch.equal(model.tokenize(labram_reference["input"]), labram_reference["vqnsp_tokens"])


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


class _Plain:
    pass


@pytest.mark.parametrize("payload, culprit", [(_Payload(), "system"), (_Plain(), "_Plain")])
def test_checkpoint_with_a_foreign_object_is_refused(labram_reference, tmp_path, payload, culprit):
    path = _save(tmp_path, {"model": labram_reference["finetune_state_dict"], "extra": payload})
    with pytest.raises(ValueError, match=f"allow-list.*{culprit}"):
        read_official_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        read_official_checkpoint(tmp_path / "missing.pth")


def test_wrong_depth_is_refused_and_nothing_loaded(labram_reference):
    torch.manual_seed(0)
    model = create_model(
        "labram_base", head="classification", n_outputs=4, depth=3, ch_names=labram_reference["ch_names"]
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"blocks\.2.*2 transformer blocks, the model 3"):
        load_official_state_dict(model, labram_reference["finetune_state_dict"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model, LaBraM)
