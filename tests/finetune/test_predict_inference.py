"""The prediction's inference form (TIE as matrices, fused attention with folded qk-norm)
gives the probabilities of the reference path: the unfused model in eval, float32, explicit attention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finetune.checkpoints import save_untrained_checkpoint
from finetune.predict_config import load_predict_config
from finetune.predictor import Predictor, load_finetuned
from models.attention import FoldedAttention, configure_attention, use_fused_attention
from preprocess.synthetic import CHBMIT_CHANNELS, synthetic_raw

# m4cea_tiny with m4cea_base's 25-dimensional heads (2 x 25): the head size of the CPU kernels in question
MODEL = ["model.name=m4cea_tiny", "model.embed_dim=50", "model.num_heads=2"]
HEAD_GAIN = 300.0  # the random head gives logits of ~0.01: spread them so that probabilities differ


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A 42-s synthetic recording (10 windows of 4 s) and an untrained checkpoint for it."""
    folder = tmp_path_factory.mktemp("inference")
    path = folder / "synthetic_raw.fif"
    synthetic_raw(CHBMIT_CHANNELS, duration_s=42.0, seed=11).save(path, verbose="error")
    checkpoint, _ = save_untrained_checkpoint(folder / "checkpoint-best.pth", "onset_detection", MODEL)
    return path, checkpoint


def _loaded(checkpoint):
    finetuned = load_finetuned(checkpoint)
    with torch.no_grad():
        finetuned.model.head.weight.mul_(HEAD_GAIN)
    return finetuned


def _reference(checkpoint, predictor, path):
    """Probabilities of the unfused float32 model with explicit attention, window by window."""
    model = _loaded(checkpoint).model.eval()
    configure_attention(model, fused=False)
    assert not model.patch_embed.matrix_form
    blocks = list(predictor.preprocessor.iter_windows(predictor.preprocessor.open(path)))
    windows = np.concatenate([predictor.adapter(w) for _, w, _ in blocks])
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(windows)), dim=-1).double().numpy()


def test_predicted_probabilities_equal_the_reference_path(recording):
    path, checkpoint = recording
    config = load_predict_config(overrides=["amp_cpu=fp32", "batch_size=4", "compile=never"])
    predictor = Predictor(_loaded(checkpoint), config)
    model = predictor.model
    assert model.patch_embed.matrix_form  # the inference form is in use
    assert all(isinstance(block.attn, FoldedAttention) for block in model.blocks)  # fused, folded
    predicted = predictor.window_probabilities(predictor.preprocessor.open(path))
    expected = _reference(checkpoint, predictor, path)
    assert predicted.accepted.all() and predicted.probabilities.shape == (10, 2)
    assert np.ptp(expected[:, 1]) > 0.01  # windows of different probabilities, 1000x the tolerance
    np.testing.assert_allclose(predicted.probabilities, expected, rtol=0, atol=1e-5)


def test_attention_is_fused_for_inference_on_every_device_and_for_training_on_gpus_only():
    assert use_fused_attention("cpu", inference=True) and use_fused_attention("cuda", inference=True)
    assert not use_fused_attention("cpu") and use_fused_attention("cuda")
    assert not use_fused_attention("cpu", setting=False, inference=True)
