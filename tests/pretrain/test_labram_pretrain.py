"""LaBraM's two pretraining stages through pretrain_main.py: tokenizer (VQ-NSP), masked code prediction."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import DOUBLE_BANANA, codebook_usage, create_model, load_official_state_dict
from pretrain.engine_labram import mem_losses, usage_from_counts
from pretrain.pretrain_main import main
from runtime.checkpoint import load_checkpoint
from runtime.config import ConfigError, UsageError
from runtime.logging import JsonLinesWriter

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS = REPO_ROOT / "configs" / "pretrain"
# 16 windows, 8 per optimiser step (2 micro-batches of 4): 2 steps per epoch.
SMALL = [
    "optim.batch_size=8",
    "optim.micro_batch_size=4",
    "logging.tensorboard=false",
    "optim.warmup_epochs=0",
]


def _args(config, data, output, *overrides, epochs=None, resume=None):
    argv = ["--config", str(CONFIGS / config), "--data", str(data), "--output", str(output)]
    argv += ["--set", *SMALL, *overrides]
    if epochs is not None:
        argv += ["--epochs", str(epochs)]
    if resume is not None:
        argv += ["--resume", str(resume)]
    return argv


@pytest.fixture(scope="module")
def labram_data(tmp_path_factory, make_data):
    """16 stored windows (16 double-banana channels x 4 s at 1000 Hz, uV): 64 LaBraM tokens each."""
    return make_data(
        tmp_path_factory.mktemp("labram_data"), n_windows=16, seed=3, ch_names=list(DOUBLE_BANANA)
    )


@pytest.fixture(scope="module")
def tokenizer_run(labram_data, tmp_path_factory):
    """Three epochs of vqnsp_tiny; returns (output folder, history)."""
    output = tmp_path_factory.mktemp("vqnsp_run")
    history = main(_args("vqnsp_tiny.yaml", labram_data, output, "logging.tensorboard=true", epochs=3))
    return output, history


@pytest.fixture(scope="module")
def mem_run(labram_data, tokenizer_run, tmp_path_factory):
    """Three epochs of labram_tiny from the tiny tokenizer; returns (output folder, history)."""
    output = tmp_path_factory.mktemp("mem_run")
    tokenizer = tokenizer_run[0] / "checkpoint-last.pth"
    history = main(_args("labram_tiny.yaml", labram_data, output, f"model.tokenizer={tokenizer}", epochs=3))
    return output, history


def test_tokenizer_stage_learns_and_logs_codebook_usage(tokenizer_run):
    output, history = tokenizer_run
    assert [r["step"] for r in history] == [2, 4, 6]
    losses = [r["loss"] for r in history]
    assert losses[-1] < losses[0] - 0.02, losses  # reconstruction of the standardised spectrum improves
    for r in history:
        assert r["loss"] == pytest.approx(r["loss_rec"] + r["loss_rec_angle"] + r["loss_quant"], rel=1e-5)
        assert 1.0 <= r["codebook_perplexity"] <= 64.0 and 0 <= r["n_unused_codes"] <= 63
        assert isinstance(r["n_unused_codes"], int)
    assert JsonLinesWriter.read(output / "metrics.jsonl")[-1]["codebook_perplexity"] == pytest.approx(
        history[-1]["codebook_perplexity"]
    )
    assert any((output / "tensorboard").iterdir())
    ckpt = load_checkpoint(output / "checkpoint-0003.pth")
    tokenizer = create_model("vqnsp_tiny", ch_names=DOUBLE_BANANA)
    load_official_state_dict(tokenizer, ckpt["model"])  # strict: every key and buffer
    assert tokenizer.quantize.initialised  # k-means ran on the first batch and is saved


def test_usage_from_counts_equals_codebook_usage():
    codes = torch.tensor([[0, 0, 1, 5], [5, 5, 5, 2]])
    counts = torch.bincount(codes.reshape(-1), minlength=8)
    assert usage_from_counts(counts) == pytest.approx(codebook_usage(codes, 8))
    assert usage_from_counts(torch.tensor([2, 2, 0, 0])) == pytest.approx((2.0, 2))


def test_mem_losses_are_the_official_cross_entropies():
    torch.manual_seed(0)
    codes = torch.randint(0, 5, (2, 6))
    mask = torch.tensor([[1, 0, 1, 0, 1, 0], [0, 0, 1, 1, 1, 0]], dtype=torch.bool)
    logits, logits_sym = torch.randn(6, 5), torch.randn(6, 5)
    logits[0, codes[mask][0]] = 100.0  # one sure hit among the masked tokens
    loss, loss_sym, acc, acc_sym = mem_losses(logits, logits_sym, codes, mask)
    labels = codes[mask]
    expected = -torch.log_softmax(logits, -1)[torch.arange(6), labels].mean()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(loss_sym, torch.nn.CrossEntropyLoss()(logits_sym, codes[~mask]))
    assert acc.item() == pytest.approx((logits.argmax(-1) == labels).float().mean().item()) and acc > 0
    assert 0 <= acc_sym <= 1


def test_mem_stage_learns_from_the_tokenizer_and_loads_into_a_classifier(mem_run):
    output, history = mem_run
    losses = [r["loss"] for r in history]
    assert losses[-1] < losses[0] - 0.1, losses
    assert history[0]["loss"] > 0.9 * 2 * math.log(64)  # two cross-entropies over 64 codes at the start
    for r in history:
        assert r["loss"] == pytest.approx(r["loss_masked"] + r["loss_sym"], rel=1e-5)
        assert 0.0 <= r["mlm_acc"] <= 1.0 and 0.0 <= r["mlm_acc_sym"] <= 1.0
    assert history[-1]["mlm_acc"] > history[0]["mlm_acc"]
    state = load_checkpoint(output / "checkpoint-last.pth")["model"]
    assert not any(k.startswith(("encoder.", "decoder.", "quantize.")) for k in state)  # tokenizer not saved
    classifier = create_model("labram_tiny", head="classification", n_outputs=3, ch_names=DOUBLE_BANANA)
    result = load_official_state_dict(classifier, state, allow_missing_head=True)
    assert sorted(result.missing_keys) == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    torch.testing.assert_close(
        classifier.state_dict()["blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"]
    )


def test_mem_resume_equals_uninterrupted_run(labram_data, tokenizer_run, mem_run, tmp_path):
    """Stop after 2 of 3 epochs, resume from that checkpoint: the third epoch's losses and weights agree."""
    output, full = mem_run
    tokenizer = tokenizer_run[0] / "checkpoint-last.pth"
    resumed = main(
        _args(
            "labram_tiny.yaml",
            labram_data,
            tmp_path / "resumed",
            f"model.tokenizer={tokenizer}",
            epochs=3,
            resume=output / "checkpoint-0002.pth",
        )
    )
    assert [r["epoch"] for r in resumed] == [3]
    for key in ("loss", "loss_masked", "loss_sym", "mlm_acc", "mlm_acc_sym", "grad_norm", "lr", "step"):
        assert resumed[0][key] == pytest.approx(full[2][key], rel=1e-6, abs=1e-6), key
    a = load_checkpoint(output / "checkpoint-0003.pth")["model"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint-0003.pth")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_mem_stage_needs_a_fitting_tokenizer(labram_data, tokenizer_run, tmp_path):
    with pytest.raises(UsageError, match=r"needs a trained tokenizer: --set model.tokenizer="):
        main(_args("labram_tiny.yaml", labram_data, tmp_path / "a"))
    with pytest.raises(FileNotFoundError, match=r"nothing\.pth \(model\.tokenizer\)"):
        main(
            _args("labram_tiny.yaml", labram_data, tmp_path / "b", f"model.tokenizer={tmp_path}/nothing.pth")
        )
    tokenizer = tokenizer_run[0] / "checkpoint-last.pth"
    with pytest.raises(UsageError, match=r"64 codes .* model.vocab_size=32: set model.vocab_size=64"):
        main(
            _args(
                "labram_tiny.yaml",
                labram_data,
                tmp_path / "c",
                f"model.tokenizer={tokenizer}",
                "model.vocab_size=32",
            )
        )
    with pytest.raises(ConfigError, match=r"Unknown config key 'masking'"):  # the tokenizer's schema
        main(_args("vqnsp_tiny.yaml", labram_data, tmp_path / "d", "masking.mask_ratio=0.4"))


def test_official_tokenizer_file_with_args_is_read_through_the_allow_list(
    labram_data, tokenizer_run, tmp_path
):
    """An official-layout file ({'model', 'epoch', 'args': argparse.Namespace}) serves as the tokenizer."""
    import argparse

    state = load_checkpoint(tokenizer_run[0] / "checkpoint-last.pth")["model"]
    official = tmp_path / "vqnsp.pth"
    torch.save({"model": state, "epoch": 99, "args": argparse.Namespace(codebook_n_emd=64)}, official)
    history = main(
        _args(
            "labram_tiny.yaml",
            labram_data,
            tmp_path / "out",
            f"model.tokenizer={official}",
            "model.tokenizer_model=vqnsp_tiny",
            epochs=1,
        )
    )
    assert len(history) == 1 and math.isfinite(history[0]["loss"])


@pytest.mark.slow  # two torchrun processes: tens of seconds
def test_mem_torchrun_two_processes_equal_one_process(labram_data, tokenizer_run, tmp_path):
    """torchrun --nproc_per_node=2 (gloo), micro-batches of 2 = 1 process with micro-batches of 4."""
    tokenizer = f"model.tokenizer={tokenizer_run[0] / 'checkpoint-last.pth'}"
    main(_args("labram_tiny.yaml", labram_data, tmp_path / "one", tokenizer, epochs=1))
    cmd = [
        str(Path(sys.executable).parent / "torchrun"),
        "--standalone",
        "--nproc_per_node=2",
        str(REPO_ROOT / "pretrain" / "pretrain_main.py"),
        *_args(
            "labram_tiny.yaml", labram_data, tmp_path / "two", tokenizer, "optim.micro_batch_size=2", epochs=1
        ),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    one = JsonLinesWriter.read(tmp_path / "one" / "metrics.jsonl")
    two = JsonLinesWriter.read(tmp_path / "two" / "metrics.jsonl")
    assert two[0]["n_steps"] == one[0]["n_steps"] == 2
    assert two[0]["loss"] == pytest.approx(one[0]["loss"], rel=1e-5)
    a = load_checkpoint(tmp_path / "one" / "checkpoint-0001.pth")["model"]
    b = load_checkpoint(tmp_path / "two" / "checkpoint-0001.pth")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_windows_without_10_20_names_are_refused(pretrain_data, tmp_path):
    """LaBraM places channels by name: windows named C0, C1... are bad input (exit status 2), not a crash."""
    with pytest.raises(UsageError, match=r"C0.*\(model section of the config\)"):
        main(_args("vqnsp_tiny.yaml", pretrain_data, tmp_path / "out"))


def test_tokenizer_resume_equals_uninterrupted_run(labram_data, tokenizer_run, tmp_path):
    """The codebook (k-means initialised, EMA-updated buffers) resumes exactly too."""
    output, full = tokenizer_run
    resumed = main(
        _args(
            "vqnsp_tiny.yaml",
            labram_data,
            tmp_path / "resumed",
            epochs=3,
            resume=output / "checkpoint-0002.pth",
        )
    )
    for key in ("loss", "loss_rec", "loss_quant", "codebook_perplexity", "n_unused_codes", "step"):
        assert resumed[0][key] == pytest.approx(full[2][key], rel=1e-6, abs=1e-6), key
    a = load_checkpoint(output / "checkpoint-0003.pth")["model"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint-0003.pth")["model"]
    assert "quantize.embedding.weight" in a
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
