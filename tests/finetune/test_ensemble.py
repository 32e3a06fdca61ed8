"""Gated ensembles: the gate prefers the informative member (on probabilities, on features through FFN
heads, from one EEG channel); the entry point's outputs, config checks, member checks and torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from finetune.checkpoints import build_model
from finetune.ensemble import GatedEnsemble, MemberOutputs, train_gate
from finetune.ensemble_main import main as ensemble_main
from finetune.ensemble_members import load_member, pooled_features, resolve_gate_channels
from finetune.finetune_main import main as finetune_main
from runtime.checkpoint import load_checkpoint
from runtime.config import CONFIG_DIR, ConfigError, UsageError, load_config
from runtime.seeding import seed_everything
from tasks import get_task
from tests.finetune.labelled_data import TINY_FINETUNE, make_labelled_data
from tests.helpers import ROOT

ONSET = get_task("onset_detection")


def _members_of_known_quality(n, rng):
    """Member 0: calibrated probabilities (0.8 on a guess that is right 80 % of the time); member 1: noise.

    Mixing a calibrated member with noise only lowers the likelihood: the best gate weighs member 0 by 1
    (with 0.9 on an 80 % guess the optimum would be 0.75, which smooths the overconfidence).
    """
    labels = rng.integers(0, 2, n)
    right = rng.random(n) < 0.8
    guess = np.where(right, labels, 1 - labels)
    informative = np.full((n, 2), 0.2)
    informative[np.arange(n), guess] = 0.8
    noise = rng.dirichlet([1.0, 1.0], n)
    return np.stack([informative, noise], axis=1), labels


def test_gate_learns_to_prefer_the_informative_member():
    rng = np.random.default_rng(0)
    cfg = load_config(CONFIG_DIR / "finetune" / "_base.yaml")
    cfg["optim"].update(epochs=15, batch_size=32, micro_batch_size=32, base_lr=0.2, warmup_epochs=0)
    outputs = {}
    for name, n in (("train", 256), ("val", 64), ("test", 64)):
        p, labels = _members_of_known_quality(n, rng)
        outputs[name] = MemberOutputs(p, labels, ONSET)
    gate, info = train_gate(cfg, ONSET, outputs)
    weights = gate.weights(outputs["test"].x).detach().numpy()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    assert weights[:, 0].mean() > 0.85, weights.mean(axis=0)
    gated = gate(outputs["test"].x).exp().detach().numpy()
    labels = outputs["test"].labels
    nll = [
        -np.log(p[np.arange(len(labels)), labels]).mean() for p in (gated, outputs["test"].x.mean(1).numpy())
    ]
    assert nll[0] < nll[1]  # the gate beats the uniform average
    assert info["best_epoch"] >= 1 and info["optimizer_steps"] > 0


def _gate_config(**ensemble):
    cfg = load_config(CONFIG_DIR / "finetune" / "_base.yaml")
    cfg["optim"].update(epochs=15, batch_size=32, micro_batch_size=32, base_lr=0.2, warmup_epochs=0)
    cfg["ensemble"].update(ensemble)
    return cfg


def _nll(p, labels):
    return float(-np.log(p[np.arange(len(labels)), labels]).mean())


def test_ffn_heads_on_member_features_and_the_gate_prefers_the_informative_member():
    """EnECG: member 0's 8 features carry the label (two of them, with noise), member 1's are noise. Each
    member's FFN head learns from its features; the gate learns that only member 0's head is worth it."""
    rng = np.random.default_rng(1)
    outputs = {}
    for name, n in (("train", 256), ("val", 64), ("test", 128)):
        labels = rng.integers(0, 2, n)
        informative = rng.normal(0, 1, (n, 8))
        informative[:, :2] += 2.0 * np.stack([labels, 1 - labels], axis=1)
        outputs[name] = MemberOutputs([informative, rng.normal(0, 1, (n, 6))], labels, ONSET)
    assert outputs["train"].member_dims == (8, 6) and outputs["train"][0][0].shape == (14,)
    gate, _ = train_gate(_gate_config(inputs="features", head_hidden=16), ONSET, outputs)
    assert [sum(p.numel() for p in head.parameters()) for head in gate.heads] == [
        16 + (8 * 16 + 16) + (16 * 2 + 2),
        12 + (6 * 16 + 16) + (16 * 2 + 2),
    ]  # LayerNorm, Linear, Linear per member
    test = outputs["test"]
    with torch.no_grad():
        weights = gate.weights(test.x).numpy()
        heads = gate.member_log_probabilities(test.x).exp().numpy()
        gated = gate(test.x).exp().numpy()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(gated, (weights[:, :, None] * heads).sum(axis=1), rtol=1e-5)
    assert weights[:, 0].mean() > 0.8, weights.mean(axis=0)
    labels = test.labels
    accuracy = [(heads[:, m].argmax(1) == labels).mean() for m in range(2)]
    assert accuracy[0] > 0.9 and accuracy[1] < 0.7, accuracy  # the Bayes accuracy of member 0 is 0.92
    assert (gated.argmax(1) == labels).mean() > 0.9
    assert _nll(gated, labels) < _nll(heads.mean(axis=1), labels)  # the gate beats the uniform average


def _members_right_by_context(n, rng):
    """Two members that always disagree, each right (0.9) in one context: channel 1's DC offset (+-0.5 in
    uV / 100, under noise of 0.5) says which; channels 0 and 2 are noise. The outputs alone cannot tell."""
    labels, context = rng.integers(0, 2, n), rng.integers(0, 2, n)
    guesses = [np.where(context == m, labels, 1 - labels) for m in range(2)]
    p = np.full((n, 2, 2), 0.1)
    for m in range(2):
        p[np.arange(n), m, guesses[m]] = 0.9
    signal = rng.normal(0, 0.5, (n, 3, 64))
    signal[:, 1] += np.where(context == 0, 0.5, -0.5)[:, None]
    return p, labels, signal, context


def test_gate_on_an_eeg_channel_subset_finds_the_member_that_is_right():
    rng = np.random.default_rng(2)
    data = {
        name: _members_right_by_context(n, rng) for name, n in (("train", 128), ("val", 32), ("test", 128))
    }

    def fit(inputs, channels):
        outputs = {
            name: MemberOutputs(p, labels, ONSET, signal=signal, gate_channels=channels)
            for name, (p, labels, signal, _) in data.items()
        }
        cfg = _gate_config(gate_inputs=inputs, gate_hidden=8)
        cfg["optim"].update(epochs=6, batch_size=16, micro_batch_size=16, base_lr=0.1)
        gate, _ = train_gate(cfg, ONSET, outputs)
        with torch.no_grad():
            x = torch.stack([outputs["test"][i][0] for i in range(len(outputs["test"]))])
            return gate.weights(x).numpy(), gate(x).exp().numpy()

    p, labels, _, context = data["test"]
    nll, right = {"uniform": _nll(p.mean(axis=1), labels)}, {}
    for name, inputs, channels in (
        ("channel 1", "channels", [1]),  # the informative channel
        ("both, channel 1", "both", [1]),
        ("channels 0, 2", "channels", [0, 2]),  # noise channels: no better than the uniform average
        ("outputs", "outputs", None),  # the members always disagree: no better either
    ):
        weights, gated = fit(inputs, channels)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
        right[name] = weights[np.arange(len(context)), context].mean()
        nll[name] = _nll(gated, labels)
    assert min(right["channel 1"], right["both, channel 1"]) > 0.85, right
    assert max(nll["channel 1"], nll["both, channel 1"]) < 0.3, nll
    assert min(nll["channels 0, 2"], nll["outputs"]) > np.log(2) - 0.05, nll
    assert nll["uniform"] == pytest.approx(np.log(2))


def test_gate_channels_by_name_or_index_and_a_bad_one_names_the_setting():
    names = ["FP1-F7", "F7-T7", "T7-P7"]
    assert resolve_gate_channels([], names, 3) == [0, 1, 2]
    assert resolve_gate_channels(["t7-p7", 0], names, 3) == [2, 0]
    with pytest.raises(UsageError, match=r"ensemble.gate_channels.*'CZ'.*FP1-F7, F7-T7, T7-P7"):
        resolve_gate_channels(["CZ"], names, 3)
    with pytest.raises(UsageError, match=r"ensemble.gate_channels.*3 is not a channel.*indices 0 to 2"):
        resolve_gate_channels([3], names, 3)


def test_gate_output_is_the_log_of_the_weighted_sum():
    gate = GatedEnsemble(3, 4, hidden=5)
    p = torch.softmax(torch.randn(6, 3, 4), dim=-1)
    w = gate.weights(p)
    torch.testing.assert_close(gate(p).exp(), (w.unsqueeze(-1) * p).sum(1))


@pytest.fixture(scope="module")
def member_runs(tmp_path_factory):
    """Two members of different models (m4cea_tiny and braindecode.EEGNet) on one synthetic cohort."""
    pytest.importorskip("braindecode")
    recordings = [(f"s{i}", f"r{i}", ["background", "background", "seizure", "seizure"]) for i in range(6)]
    data = make_labelled_data(tmp_path_factory.mktemp("synth"), recordings)
    runs = tmp_path_factory.mktemp("runs")
    common = ["--task", "onset_detection", "--data", str(data), "--epochs", "1"]
    models = {
        "m4cea": ["model.name=m4cea_tiny", "model.n_patches=5"],
        "eegnet": ["model.name=braindecode.EEGNet"],
    }
    for name, overrides in models.items():
        for seed in (42, 7) if name == "eegnet" else (42,):
            output = ["--output", str(runs / name)]
            finetune_main([*common, "--seed", str(seed), *output, "--set", *TINY_FINETUNE, *overrides])
    return data, runs


def test_ensemble_of_two_runs_writes_members_gate_weights_and_baselines(member_runs, tmp_path):
    data, runs = member_runs
    members = [str(runs / m / "onset_detection/seed42") for m in ("m4cea", "eegnet")]
    results = ensemble_main(
        ["--task", "onset_detection", "--seed", "42", "--data", str(data), "--members", *members,
         "--output", str(tmp_path), "--epochs", "2", "--set", *TINY_FINETUNE]
    )  # fmt: skip
    assert [m["model"] for m in results["members"]] == ["m4cea_tiny", "braindecode.EEGNet"]
    weights = results["gate"]["mean_weights"]
    assert len(weights) == 2 and abs(sum(weights) - 1.0) < 1e-6
    assert set(results["baselines"]) == {"uniform", "best_single"}
    member = json.loads((runs / "m4cea" / "onset_detection/seed42" / "results.json").read_text())
    assert results["n"] == member["n"]  # the members' test set, in the tables' n column
    assert results["baselines"]["best_single"]["model"] in ("m4cea_tiny", "braindecode.EEGNet")
    assert set(results["test"]) == set(ONSET.metrics) | {"loss"}
    assert results["parameters"]["trainable"] == results["parameters"]["total"] > 0
    assert (tmp_path / "onset_detection/seed42/predictions.csv").is_file()


def test_member_of_another_seed_is_an_error_naming_it(member_runs, tmp_path):
    data, runs = member_runs
    odd = runs / "eegnet/onset_detection/seed7"
    members = [str(runs / "m4cea/onset_detection/seed42"), str(odd)]
    with pytest.raises(UsageError, match=f"{odd}.*braindecode.EEGNet.*seed"):
        ensemble_main(
            ["--task", "onset_detection", "--seed", "42", "--data", str(data), "--members", *members,
             "--output", str(tmp_path), "--set", *TINY_FINETUNE]
        )  # fmt: skip


def _ensemble_argv(data, runs, output, *overrides, epochs=2):
    members = [str(runs / m / "onset_detection/seed42") for m in ("m4cea", "eegnet")]
    return ["--task", "onset_detection", "--seed", "42", "--data", str(data), "--members", *members,
            "--output", str(output), "--epochs", str(epochs),
            "--set", *TINY_FINETUNE, *overrides]  # fmt: skip


FEATURES_AND_CHANNELS = [
    "ensemble.inputs=features",
    "ensemble.gate_inputs=both",
    "ensemble.gate_channels=[c3,5]",
]
BEST = "checkpoint-best.pth"


def test_ensemble_of_member_features_with_a_gate_on_named_channels(member_runs, tmp_path):
    data, runs = member_runs
    results = ensemble_main(
        _ensemble_argv(data, runs, tmp_path, *FEATURES_AND_CHANNELS, "data.num_workers=1")
    )
    assert results["gate"]["channels"] == ["C3", "C5"]
    assert results["gate"]["inputs"].startswith("members' pooled features through FFN heads (hidden 32)")
    assert results["model"] == results["config"]["model"]["name"] == "ensemble"
    state = load_checkpoint(tmp_path / "onset_detection/seed42/checkpoint-best.pth")["model"]
    # the FFN heads' LayerNorm widths: m4cea_tiny's pooled features (its width, 64), EEGNet's final_layer
    # input, flattened
    eegnet = build_model(load_member(runs / "eegnet/onset_detection/seed42").cfg, ONSET).eval()
    logits, features = pooled_features(eegnet, torch.zeros(3, eegnet.n_chans, eegnet.n_times))
    conv_classifier = eegnet.model.final_layer.conv_classifier
    assert features.shape == (3, conv_classifier.in_channels * conv_classifier.kernel_size[1])
    assert logits.shape == (3, 2)
    assert [tuple(state[f"heads.{m}.0.weight"].shape) for m in range(2)] == [(64,), (features.shape[1],)]
    assert tuple(state["signal_net.net.0.weight"].shape) == (16, 2, 7)  # 2 channels in, width 16
    assert (
        results["parameters"]["trainable"]
        == results["parameters"]["total"]
        == sum(v.numel() for v in state.values())
    )
    weights = results["gate"]["mean_weights"]
    assert len(weights) == 2 and abs(sum(weights) - 1.0) < 1e-6
    assert set(results["baselines"]) == {"uniform", "best_single"}


@pytest.mark.parametrize(
    "override, message",
    [
        ("ensemble.inputs=logits", r"'ensemble.inputs'.*\['probabilities', 'features'\].*'logits'"),
        ("ensemble.gate_inputs=signal", r"'ensemble.gate_inputs'.*\['outputs', 'channels', 'both'\]"),
        ("ensemble.gate_channels=[true]", r"'ensemble.gate_channels'.*channel names or 0-based indices"),
    ],
)
def test_bad_ensemble_setting_is_an_error_naming_the_key(override, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        ensemble_main(_ensemble_argv(tmp_path, tmp_path, tmp_path, override))


@pytest.mark.slow  # two torchrun processes
def test_torchrun_two_processes_equal_one_process(member_runs, tmp_path):
    """torchrun --nproc_per_node=2 (gloo): micro-batches of 2 per rank = 1 process, 2 micro-batches of 2."""
    data, runs = member_runs
    one = ensemble_main(_ensemble_argv(data, runs, tmp_path / "one", *FEATURES_AND_CHANNELS, epochs=3))
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", str(ROOT / "finetune" / "ensemble_main.py")]
    cmd += _ensemble_argv(data, runs, tmp_path / "two", *FEATURES_AND_CHANNELS, epochs=3)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("gate epoch 3/3") == 1  # logged by rank 0 only
    with open(tmp_path / "two/onset_detection/seed42/results.json", encoding="utf-8") as f:
        two = json.load(f)
    assert (one["training"]["world_size"], two["training"]["world_size"]) == (1, 2)
    assert two["training"]["optimizer_steps"] == one["training"]["optimizer_steps"] == 3 * 4  # 16 windows
    assert two["split"] == one["split"]
    for name in ("val", "test"):
        assert two[name]["loss"] == pytest.approx(one[name]["loss"], rel=1e-5)
    np.testing.assert_allclose(two["gate"]["mean_weights"], one["gate"]["mean_weights"], atol=1e-5)
    a, b = (load_checkpoint(tmp_path / f"{n}/onset_detection/seed42/{BEST}")["model"] for n in ("one", "two"))
    seed_everything(42)  # the gate's initial weights, as train_gate draws them
    initial = GatedEnsemble(
        2, 2, 16, inputs="features", member_dims=(64, 64), gate_inputs="both", signal_shape=(2, 1000)
    ).state_dict()
    moved = max((a[k] - initial[k]).abs().max().item() for k in a)
    differ = max((a[k] - b[k]).abs().max().item() for k in a)
    # Measured: moved 5.0e-3, differ 6e-8 (float sums in another order); a lost micro-batch or a missing
    # gradient average would move the weights by about the learning rate (7.8e-4 here), far above tolerance.
    assert moved > 1e-3 and differ < 5e-6, (moved, differ)
