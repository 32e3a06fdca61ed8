"""The pretraining entry point: a tiny run end to end, exact resume, torchrun DDP, bad inputs."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from models import create_model
from models.attention import configure_attention
from pretrain import run as pretrain_run
from pretrain.pretrain_main import cli, main
from pretrain.run import build_optimizer
from runtime.checkpoint import load_checkpoint
from runtime.config import ConfigError
from runtime.logging import JsonLinesWriter
from runtime.optim import build_lr_scheduler, steps_per_accumulation

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = str(REPO_ROOT / "configs" / "pretrain" / "m4cea_tiny.yaml")
# 16 windows, 8 per optimiser step (2 micro-batches of 4): 2 steps per epoch.
SMALL = ["optim.batch_size=8", "optim.micro_batch_size=4", "logging.tensorboard=false"]


def _args(data, output, *overrides, epochs=None, resume=None):
    argv = ["--config", TINY, "--data", str(data), "--output", str(output), "--set", *SMALL, *overrides]
    if epochs is not None:
        argv += ["--epochs", str(epochs)]
    if resume is not None:
        argv += ["--resume", str(resume)]
    return argv


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, make_data):
    return make_data(tmp_path_factory.mktemp("small_data"), n_windows=16, seed=1)


@pytest.fixture(scope="module")
def tiny_run(small_data, tmp_path_factory):
    """Two epochs of m4cea_tiny with tensorboard on; returns (output folder, history)."""
    output = tmp_path_factory.mktemp("tiny_run")
    history = main(_args(small_data, output, "logging.tensorboard=true"))
    return output, history


def _params(path):
    return load_checkpoint(path)["model"]


def test_run_writes_config_logs_and_checkpoints(tiny_run, small_data):
    output, history = tiny_run
    assert [r["epoch"] for r in history] == [1, 2] and [r["step"] for r in history] == [2, 4]
    assert all(
        math.isfinite(r["loss"]) and r["loss"] == pytest.approx(r["loss_magnitude"] + r["loss_phase"])
        for r in history
    )
    records = JsonLinesWriter.read(output / "metrics.jsonl")
    assert [r["loss"] for r in records] == [r["loss"] for r in history]
    assert {"loss", "loss_magnitude", "loss_phase", "lr", "samples_per_s", "grad_norm"} <= set(records[0])

    config = yaml.safe_load((output / "config.yaml").read_text())
    assert config["model"]["name"] == "m4cea_tiny" and config["optim"]["batch_size"] == 8
    assert config["logging"]["tensorboard"] is True

    names = sorted(p.name for p in output.glob("checkpoint-*.pth"))
    assert names == ["checkpoint-0001.pth", "checkpoint-0002.pth", "checkpoint-last.pth"]
    ckpt = load_checkpoint(output / "checkpoint-0002.pth")  # torch.load(weights_only=True)
    assert (ckpt["epoch"], ckpt["step"], ckpt["config"], ckpt["scaler"]) == (1, 4, config, None)
    assert len(ckpt["rng"]) == 1 and ckpt["data"] == str(small_data)
    model = create_model("m4cea_tiny")
    assert set(ckpt["model"]) == set(model.state_dict())  # unwrapped: no module./_orig_mod. prefix
    for key, value in _params(output / "checkpoint-last.pth").items():
        assert torch.equal(value, ckpt["model"][key])
    assert any((output / "tensorboard").iterdir())
    assert "epoch 2/2" in (output / "log.txt").read_text()


def test_loader_workers_and_incomplete_accumulation(small_data, tmp_path):
    """Worker processes (persistent across epochs); 16 windows at 12 per step: 1 step, the rest skipped."""
    history = main(_args(small_data, tmp_path / "out", "data.num_workers=2", "optim.batch_size=12", epochs=2))
    assert [(r["n_steps"], r["step"]) for r in history] == [(1, 1), (1, 2)]
    assert all(math.isfinite(r["loss"]) for r in history)


def test_signal_target_through_the_entry_point(small_data, tmp_path):
    """pretrain.target=signal: the raw-patch loss is logged (loss = loss_signal) and saved with the config."""
    history = main(_args(small_data, tmp_path / "out", "pretrain.target=signal", epochs=1))
    assert history[0]["loss"] == history[0]["loss_signal"] and math.isfinite(history[0]["loss"])
    assert "loss_magnitude" not in history[0]
    checkpoint = load_checkpoint(tmp_path / "out" / "checkpoint-last.pth")
    assert checkpoint["config"]["pretrain"]["target"] == "signal"
    with pytest.raises(ConfigError, match=r"'pretrain\.target'.*'pixels'"):
        main(_args(small_data, tmp_path / "bad", "pretrain.target=pixels"))


@pytest.mark.slow  # three short pretraining runs (4 s): the default suite stays under 2 minutes
def test_resume_equals_uninterrupted_run(small_data, tmp_path):
    """Stop after 2 of 3 epochs, resume from that checkpoint: same losses and parameters (drop-path on)."""
    extra = ["model.drop_path_rate=0.2", "optim.warmup_epochs=1", "checkpoint.save_last=false"]
    full = main(_args(small_data, tmp_path / "full", *extra, epochs=3))
    resumed = main(
        _args(
            small_data,
            tmp_path / "resumed",
            *extra,
            epochs=3,
            resume=tmp_path / "full" / "checkpoint-0002.pth",
        )
    )
    assert [r["epoch"] for r in resumed] == [3]
    for key in ("loss", "loss_magnitude", "loss_phase", "grad_norm", "lr", "step"):
        assert resumed[0][key] == pytest.approx(full[2][key], rel=1e-6, abs=1e-6), key
    assert full[2]["loss"] != full[1]["loss"]
    a, b = (
        _params(tmp_path / "full" / "checkpoint-0003.pth"),
        _params(tmp_path / "resumed" / "checkpoint-0003.pth"),
    )
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


@pytest.mark.slow  # two torchrun processes: tens of seconds
def test_torchrun_two_processes_equal_one_process(small_data, tmp_path):
    """torchrun --nproc_per_node=2 (gloo), 2 micro-batches of 2 each = 1 process, 2 of 4: same update."""
    common = ["optim.warmup_epochs=0", "optim.base_lr=0.01", "checkpoint.save_last=false"]
    main(_args(small_data, tmp_path / "one", *common, epochs=1))
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node=2",
        str(REPO_ROOT / "pretrain" / "pretrain_main.py"),
        *_args(small_data, tmp_path / "two", *common, "optim.micro_batch_size=2", epochs=1),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "world_size" not in done.stderr and "x 2;" in done.stderr  # logged once, by rank 0: "on cpu x 2;"
    assert done.stderr.count("epoch 1/1: loss") == 1

    one, two = (
        JsonLinesWriter.read(tmp_path / "one" / "metrics.jsonl"),
        JsonLinesWriter.read(tmp_path / "two" / "metrics.jsonl"),
    )
    assert two[0]["n_steps"] == one[0]["n_steps"] == 2
    assert two[0]["loss"] == pytest.approx(one[0]["loss"], rel=1e-5)
    a, b = (
        _params(tmp_path / "one" / "checkpoint-0001.pth"),
        _params(tmp_path / "two" / "checkpoint-0001.pth"),
    )
    torch.manual_seed(0)  # runtime.seed: the initial weights of both runs
    initial = create_model("m4cea_tiny").state_dict()
    moved = max((a[k] - initial[k]).abs().max().item() for k in a)
    assert moved > 4e-4  # the runs did update the model: AdamW moves by ~lr (3.1e-4, then 1.6e-4) per step
    # Float32 sums in another order (DDP's all-reduce vs accumulation) change near-zero gradients a little,
    # and AdamW's first steps (lr * g / (|g| + eps)) can amplify that up to ~lr; a lost micro-batch or a
    # wrong average would move most parameters by ~lr (3e-4), 60 times the tolerance.
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=5e-6)


def test_lr_schedule_warmup_then_half_cosine():
    model = torch.nn.Linear(2, 2)
    cfg = {
        "optim": {
            "epochs": 10,
            "warmup_epochs": 3,
            "base_lr": 1e-3,
            "batch_size": 512,
            "min_lr": 1e-5,
            "weight_decay": 0.0,
            "betas": [0.9, 0.999],
            "eps": 1e-8,
        }
    }
    optimizer = build_optimizer(model, cfg)
    peak = 1e-3 * 512 / 256
    assert optimizer.param_groups[0]["lr"] == pytest.approx(peak)  # base_lr * batch_size / 256
    scheduler = build_lr_scheduler(optimizer, cfg, steps_per_epoch=4)  # 12 warm-up steps of 40
    expected = {
        0: 0.0,
        6: peak * 6 / 12,
        12: peak,
        26: 1e-5 + (peak - 1e-5) * 0.5 * (1 + math.cos(math.pi * 14 / 28)),
        39: 1e-5 + (peak - 1e-5) * 0.5 * (1 + math.cos(math.pi * 27 / 28)),
        40: 1e-5,
    }
    for step, lr in expected.items():
        scheduler.step_update(step)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(lr, rel=1e-9, abs=1e-12), step


def test_weight_decay_groups():
    model = create_model("m4cea_tiny")
    cfg = {
        "optim": {
            "base_lr": 1e-3,
            "batch_size": 256,
            "weight_decay": 1e-4,
            "betas": [0.9, 0.999],
            "eps": 1e-8,
        }
    }
    optimizer = build_optimizer(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    no_decay = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert decay | no_decay == set(names.values()) and not decay & no_decay
    assert {
        "pos_embed",
        "mask_token",
        "patch_embed.scale_factor",
        "blocks.0.norm1.weight",
        "input_proj.bias",
    } <= no_decay
    assert {"input_proj.weight", "blocks.0.attn.qkv.weight", "patch_embed.tie_conv.weight"} <= decay
    assert all(g["lr"] == pytest.approx(1e-3) and g["betas"] == (0.9, 0.999) for g in optimizer.param_groups)


def test_configure_attention():
    model = create_model("m4cea_tiny")
    assert configure_attention(model, False) == 2  # one per block
    assert not any(block.attn.fused_attn for block in model.blocks)
    x, mask = torch.randn(2, 16, 4000), torch.rand(2, 320) < 0.5
    model.eval()
    with torch.no_grad():
        explicit = model(x, mask)
        configure_attention(model, True)
        fused = model(x, mask)
    assert all(block.attn.fused_attn for block in model.blocks)
    for a, b in zip(explicit, fused, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # the same function


def test_steps_per_accumulation():
    assert steps_per_accumulation(256, 128, 1) == 2
    assert steps_per_accumulation(256, 32, 8) == 1
    with pytest.raises(ConfigError, match=r"batch_size=256 .*micro_batch_size=128 on world_size=3 .*= 384"):
        steps_per_accumulation(256, 128, 3)


# Bad inputs: each gives a clear error before any training ---------------------------------------------------


def test_data_folder_without_manifest(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"No manifest at .*empty/manifest.csv"):
        main(_args(tmp_path / "empty", tmp_path / "out"))


def test_pickles_of_another_shape(tmp_path, make_data):
    data = make_data(tmp_path / "short", n_windows=4, n_patches=10)
    with pytest.raises(ValueError, match=r"n_times=\[2000\].*model expects n_times=4000"):
        main(_args(data, tmp_path / "out"))


def test_checkpoint_of_another_architecture(tiny_run, small_data, tmp_path):
    with pytest.raises(
        ValueError,
        match=r"checkpoint-0002.pth does not fit this model.*missing from the checkpoint.*blocks\.2\.",
    ):
        main(
            _args(
                small_data,
                tmp_path / "out",
                "model.depth=3",
                epochs=3,
                resume=tiny_run[0] / "checkpoint-0002.pth",
            )
        )


def test_unknown_model_name(small_data, tmp_path):
    with pytest.raises(ValueError, match=r"'name'.*m4cea_base.*m4cea_tiny.*'m4cea_huge'"):
        main(_args(small_data, tmp_path / "out", "model.name=m4cea_huge"))


def test_unknown_config_key(small_data, tmp_path):
    with pytest.raises(ConfigError, match=r"Unknown config key 'optim\.learning_rate'"):
        main(_args(small_data, tmp_path / "out", "optim.learning_rate=0.1"))


def test_unreachable_batch_size(small_data, tmp_path):
    with pytest.raises(ConfigError, match=r"optim\.batch_size=10 cannot be reached.*micro_batch_size=4"):
        main(_args(small_data, tmp_path / "out", "optim.batch_size=10"))


def test_dataset_smaller_than_one_step(small_data, tmp_path):
    with pytest.raises(
        ValueError, match=r"holds 16 windows, fewer than one optimiser step of optim.batch_size=32"
    ):
        main(_args(small_data, tmp_path / "out", "optim.batch_size=32"))


def test_resume_from_missing_file(small_data, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Checkpoint file not found: .*nothing.pth"):
        main(_args(small_data, tmp_path / "out", resume=tmp_path / "nothing.pth"))


def test_output_folder_with_a_run(tiny_run, small_data):
    with pytest.raises(ValueError, match="already holds a run"):
        main(_args(small_data, tiny_run[0]))


def test_invalid_values(small_data, tmp_path):
    with pytest.raises(ConfigError, match=r"'runtime\.amp'.*'bf16', 'fp16', 'fp32'.*'int8'"):
        main(_args(small_data, tmp_path / "out", "runtime.amp=int8"))
    with pytest.raises(ConfigError, match=r"'optim\.epochs': a value is needed, but got null"):
        main(_args(small_data, tmp_path / "out", "optim.epochs=null"))
    with pytest.raises(ConfigError, match=r"'optim\.betas'.*\[1\.5, 0\.9\]"):
        main(_args(small_data, tmp_path / "out", "optim.betas=[1.5,0.9]"))
    with pytest.raises(ValueError, match=r"'mask_ratio'.*1\.5"):
        main(_args(small_data, tmp_path / "out", "masking.mask_ratio=1.5"))
    with pytest.raises(ValueError, match=r"'masking\.strategy'.*'entropy'"):
        main(_args(small_data, tmp_path / "out", "masking.strategy=entropy"))


def test_cli_exit_status_2(small_data, tmp_path, capsys):
    """A config error is a usage error: exit status 2 with one line on stderr, no traceback.

    In-process: the script runs ``sys.exit(cli())`` (tests/test_entry_points.py runs it as a script from a
    fresh shell; the torchrun test, marked slow, runs it end to end).
    """
    assert cli(_args(small_data, tmp_path / "out", "optim.nope=1")) == 2
    err = capsys.readouterr().err
    assert "pretrain_main.py: error: Unknown config key 'optim.nope'" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exit_info:  # argparse: usage error, status 2
        main(["--output", str(tmp_path)])
    assert exit_info.value.code == 2


class _Killed(BaseException):
    """Stands for kill -9 of the run (not an Exception: nothing handles it)."""


def _epochs(output):
    return [r["epoch"] for r in JsonLinesWriter.read(output / "metrics.jsonl")]


def test_run_killed_during_its_first_save_is_started_again(small_data, tmp_path, monkeypatch):
    output = tmp_path / "out"

    def killed(path, **kwargs):  # what kill -9 inside atomic_write leaves: a temporary, no checkpoint
        Path(path).with_name(f".{Path(path).name}.k1ll3d.tmp").write_bytes(b"PK\x03\x04half")
        raise _Killed

    monkeypatch.setattr(pretrain_run, "save_checkpoint", killed)
    with pytest.raises(_Killed):
        main(_args(small_data, output, epochs=1))
    assert _epochs(output) == [1] and not list(output.glob("checkpoint-*.pth"))
    monkeypatch.undo()
    history = main(_args(small_data, output, epochs=1))  # the same command again
    assert [r["epoch"] for r in history] == [1] and _epochs(output) == [1]
    assert sorted(p.name for p in output.glob("*.pth")) == ["checkpoint-0001.pth", "checkpoint-last.pth"]
    assert not list(output.glob(".*.tmp"))


@pytest.mark.slow  # two pretraining runs
def test_run_killed_between_metrics_and_checkpoint_resumes_without_duplicate_lines(
    small_data, tmp_path, monkeypatch
):
    output = tmp_path / "out"
    save = pretrain_run.save_checkpoint

    def killed_in_second_epoch(path, **kwargs):
        if kwargs["epoch"] == 1:
            raise _Killed
        return save(path, **kwargs)

    monkeypatch.setattr(pretrain_run, "save_checkpoint", killed_in_second_epoch)
    with pytest.raises(_Killed):
        main(_args(small_data, output, epochs=2))
    monkeypatch.undo()
    assert _epochs(output) == [1, 2] and load_checkpoint(output / "checkpoint-last.pth")["epoch"] == 0
    with pytest.raises(ValueError, match=r"--resume .*checkpoint-last\.pth to continue"):
        main(_args(small_data, output, epochs=2))
    resumed = main(_args(small_data, output, epochs=2, resume=output / "checkpoint-last.pth"))
    assert [r["epoch"] for r in resumed] == [2]
    assert _epochs(output) == [1, 2]  # epoch 2 once: the line of the killed run is gone
    assert JsonLinesWriter.read(output / "metrics.jsonl")[1]["loss"] == resumed[0]["loss"]
