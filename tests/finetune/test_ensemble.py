"""Gated ensembles: the gate prefers the informative member; the entry point's outputs and member checks."""

from __future__ import annotations

import numpy as np
import pytest

from finetune.ensemble import GatedEnsemble, MemberOutputs, train_gate
from finetune.ensemble_main import main as ensemble_main
from finetune.finetune_main import main as finetune_main
from runtime.config import CONFIG_DIR, UsageError, load_config
from tasks import get_task
from tests.finetune.labelled_data import make_labelled_data

ONSET = get_task("onset_detection")
BASE = [
    "data.num_workers=0",
    "optim.batch_size=4",
    "optim.micro_batch_size=2",
    "optim.base_lr=0.05",
    "optim.warmup_epochs=0",
    "optim.layer_decay=1.0",
    "logging.log_every=1",
    "logging.tensorboard=false",
]


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


def test_gate_output_is_the_log_of_the_weighted_sum():
    import torch

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
            finetune_main(
                [*common, "--seed", str(seed), "--output", str(runs / name), "--set", *BASE, *overrides]
            )
    return data, runs


def test_ensemble_of_two_runs_writes_members_gate_weights_and_baselines(member_runs, tmp_path):
    data, runs = member_runs
    members = [str(runs / m / "onset_detection/seed42") for m in ("m4cea", "eegnet")]
    results = ensemble_main(
        ["--task", "onset_detection", "--seed", "42", "--data", str(data), "--members", *members,
         "--output", str(tmp_path), "--epochs", "2", "--set", *BASE]
    )  # fmt: skip
    assert [m["model"] for m in results["members"]] == ["m4cea_tiny", "braindecode.EEGNet"]
    weights = results["gate"]["mean_weights"]
    assert len(weights) == 2 and abs(sum(weights) - 1.0) < 1e-6
    assert set(results["baselines"]) == {"uniform", "best_single"}
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
             "--output", str(tmp_path), "--set", *BASE]
        )  # fmt: skip
