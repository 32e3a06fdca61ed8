"""Soft labels (HMS expert votes): the KL loss and metric, soft targets in the loader, the HMS baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import rel_entr, softmax

from finetune.data import FinetuneDataset, build_eval_loader
from finetune.engine import evaluate, soft_window_losses, window_losses
from finetune.finetune_main import main
from finetune.metrics import evaluate_predictions, kl_divergence
from preprocess.segments import read_manifest, write_manifest
from tasks import encode_label_probs, get_task
from tests.finetune.labelled_data import make_labelled_data

HMS = get_task("harmful_brain_activity")


def _distributions(rng, n, k=6):
    p = rng.dirichlet(np.full(k, 0.5), size=n)
    p[0] = [1, 0, 0, 0, 0, 0]  # zeros: 0 * log 0 = 0
    return p


def test_kl_loss_is_kldivloss_batchmean_and_rel_entr():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 6)) * 3
    p = _distributions(rng, 5)
    losses = soft_window_losses(torch.tensor(logits), torch.tensor(p))
    reference = rel_entr(p, softmax(logits, axis=1)).sum(axis=1)
    np.testing.assert_allclose(losses.numpy(), reference, rtol=1e-5)
    batchmean = torch.nn.KLDivLoss(reduction="batchmean")(
        torch.log_softmax(torch.tensor(logits), 1), torch.tensor(p)
    )
    assert losses.mean().item() == pytest.approx(batchmean.item(), rel=1e-5)
    # window_losses dispatches on the target dtype; class weights weigh the argmax class.
    weights = torch.tensor([2.0, 1, 1, 1, 1, 1])
    weighted = window_losses(torch.tensor(logits), torch.tensor(p, dtype=torch.float32), weights)
    np.testing.assert_allclose(weighted.numpy(), reference * weights.numpy()[p.argmax(1)], rtol=1e-5)


def test_kl_divergence_metric_is_the_competition_score():
    rng = np.random.default_rng(1)
    p, q = _distributions(rng, 8), rng.dirichlet(np.ones(6), size=8)
    assert kl_divergence(p, q) == pytest.approx(rel_entr(p, q).sum(axis=1).mean(), rel=1e-12)
    q[0] = [0, 0.5, 0.5, 0, 0, 0]  # a predicted 0 where the truth is 1: clipped at 1e-15, finite
    assert kl_divergence(p[:1], q[:1]) == pytest.approx(-np.log(1e-15))
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="shapes"):
        kl_divergence(p, q[:, :5])


def _rows(n):
    rng = np.random.default_rng(2)
    p = _distributions(rng, n)
    rows = [
        dict(
            path=f"w{i}.pkl",
            subject=f"s{i}",
            recording=f"r{i}",
            start_s=0.0,
            n_chans=16,
            n_times=1000,
            sfreq=1000.0,
            label=HMS.classes[int(p[i].argmax())],
            label_probs=dict(zip(HMS.classes, p[i].tolist(), strict=True)),
        )
        for i in range(n)
    ]
    return rows, p


def test_evaluate_predictions_reports_kl_beside_the_argmax_metrics():
    rows, p = _rows(6)
    rows[1] = {k: v for k, v in rows[1].items() if k != "label_probs"}  # a hard label: one-hot
    truth = encode_label_probs(rows, HMS)
    np.testing.assert_array_equal(truth[1], np.eye(6)[HMS.classes.index(rows[1]["label"])])
    q = np.random.default_rng(3).dirichlet(np.ones(6), size=6)
    results = evaluate_predictions(HMS, rows, q)
    assert results["kl_divergence"] == pytest.approx(rel_entr(truth, q).sum(axis=1).mean())
    assert set(results) >= {"kl_divergence", "balanced_accuracy", "cohen_kappa"}
    rows[2]["label_probs"] = {"seizure": 0.5, "spike": 0.5}
    with pytest.raises(ValueError, match="Invalid label_probs in manifest row 2"):
        encode_label_probs(rows, HMS)


def test_soft_targets_through_the_loader_and_evaluate(tmp_path):
    data = make_labelled_data(tmp_path / "d", [("s0", "r0", ["seizure", "lpd", "gpd"])], classes=HMS.classes)
    rows = read_manifest(data)
    probs = [{"seizure": 0.5, "lpd": 0.5}, None, {"gpd": 1.0}]
    for row, soft in zip(rows, probs, strict=True):
        if soft:
            row["label_probs"] = soft
    write_manifest(rows, data / "manifest.csv")
    rows = read_manifest(data)
    assert rows[0]["label_probs"] == {"seizure": 0.5, "lpd": 0.5} and "label_probs" not in rows[1]
    dataset = FinetuneDataset(data, rows, HMS, 16, 1000)
    x, target, index = dataset[0]
    assert target.dtype == torch.float32 and target.tolist() == [0.5, 0.5, 0, 0, 0, 0]
    assert dataset[1][1].tolist() == [0, 1, 0, 0, 0, 0]  # a hard label is one-hot
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 1000, 6))
    loss, q = evaluate(model, build_eval_loader(dataset, batch_size=2), torch.device("cpu"))
    assert loss == pytest.approx(kl_divergence(dataset.label_probs, q), rel=1e-6)


def test_hms_mobilenetv3_fine_tunes_with_the_kl_loss(tmp_path):
    """The HMS baseline through fine-tuning on a tiny soft-labelled cohort (1-s windows, 6 subjects)."""
    classes = ["seizure", "lpd", "gpd", "lrda", "grda"]
    recordings = [(f"s{i}", f"r{i}", [classes[(i + k) % 5] for k in range(4)]) for i in range(6)]
    data = make_labelled_data(tmp_path / "hms", recordings, classes=HMS.classes)
    rows = read_manifest(data)
    for row in rows:  # votes: 70 % for the label, the rest on "other"
        row["label_probs"] = {row["label"]: 0.7, "other": 0.3}
    write_manifest(rows, data / "manifest.csv")
    argv = [
        "--task",
        "harmful_brain_activity",
        "--seed",
        "42",
        "--data",
        str(data),
        "--output",
        str(tmp_path / "runs"),
        "--epochs",
        "2",
        "--set",
        "model.name=hms_mobilenetv3",
        "model.n_patches=5",
        "data.num_workers=0",
        "optim.batch_size=4",
        "optim.micro_batch_size=2",
        "optim.warmup_epochs=0",
        "logging.log_every=1",
        "logging.tensorboard=false",
        "split.val_fraction=0.34",
        "split.test_fraction=0.34",
    ]
    results = main(argv)
    assert list(results["test"]) == ["kl_divergence", "balanced_accuracy", "cohen_kappa", "loss"]
    # The evaluation loss is the mean KL divergence of the soft labels: the competition's score.
    assert results["test"]["kl_divergence"] == pytest.approx(results["test"]["loss"], rel=1e-6)
    assert 0 < results["test"]["kl_divergence"] < 10
    saved = json.loads((tmp_path / "runs/harmful_brain_activity/seed42/results.json").read_text())
    assert saved["test"]["kl_divergence"] == results["test"]["kl_divergence"]
