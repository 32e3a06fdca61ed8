"""The fine-tuning engine: exact gradient accumulation, weighted/smoothed losses, evaluation, lr schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from finetune.data import FinetuneDataset, build_eval_loader, build_train_loader
from finetune.engine import (
    EngineSettings,
    balanced_class_weights,
    evaluate,
    set_train_mode,
    train_one_epoch,
    window_losses,
)
from finetune.run import build_optimizer
from models import create_model
from preprocess.segments import read_manifest
from runtime.optim import build_lr_scheduler, steps_per_accumulation
from tasks import get_task, load_task_config
from tests.finetune.labelled_data import make_labelled_data

ONSET = get_task("onset_detection")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """12 windows of 16 x 1000 samples: 9 background, 3 seizure (imbalanced, for the class weights)."""
    labels = ["background"] * 4 + ["seizure"] + ["background"]
    folder = make_labelled_data(
        tmp_path_factory.mktemp("engine"),
        [("s0", "r0", labels), ("s1", "r1", labels), ("s2", "r2", ["seizure", "background"])],
    )
    rows = read_manifest(folder)
    return FinetuneDataset(folder, rows[:12], ONSET, n_chans=16, n_times=1000)


def _tiny(seed=0):
    torch.manual_seed(seed)
    return create_model("m4cea_tiny", head="classification", n_outputs=2, n_patches=5)


@pytest.mark.parametrize("weighted", [False, True])
def test_accumulation_equals_one_large_batch(dataset, weighted):
    """8 windows per step: 1 micro-batch of 8 = 4 accumulated micro-batches of 2 (every one counts)."""
    weights = balanced_class_weights(dataset.labels, 2) if weighted else None
    params = {}
    for micro, accum in ((8, 1), (2, 4)):
        model = _tiny()
        loader, sampler = build_train_loader(dataset, micro_batch_size=micro, seed=5)
        sampler.set_epoch(0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        metrics = train_one_epoch(
            model,
            loader,
            optimizer,
            None,
            CPU,
            0,
            class_weights=weights,
            settings=EngineSettings(micro_batch_size=micro, accum_steps=accum, log_every=1),
        )
        assert metrics["n_steps"] == 1 and metrics["step"] == 1
        params[(micro, accum)] = ({k: v.detach().clone() for k, v in model.state_dict().items()}, metrics)

    (big, m_big), (small, m_small) = params[(8, 1)], params[(2, 4)]
    assert m_small["loss"] == pytest.approx(m_big["loss"], rel=1e-6)
    assert m_small["grad_norm"] == pytest.approx(m_big["grad_norm"], rel=1e-5)
    # The same step computed by hand: the mean weighted loss of the 8 windows, one backward.
    model = _tiny()
    loader, sampler = build_train_loader(dataset, micro_batch_size=8, seed=5)
    sampler.set_epoch(0)
    x, y, _ = next(iter(loader))
    model.train()
    loss = window_losses(model(x), y, weights).mean()
    loss.backward()
    assert loss.item() == pytest.approx(m_big["loss"], rel=1e-6)
    moved = 0.0
    for name, param in model.named_parameters():
        grad = torch.zeros_like(param) if param.grad is None else param.grad  # mask_token: unused here
        expected = param.detach() - 0.5 * grad
        torch.testing.assert_close(big[name], expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(small[name], expected, rtol=0, atol=1e-6)
        moved = max(moved, (expected - param.detach()).abs().max().item())
    assert moved > 1e-3  # a real update, far above the tolerance


def test_balanced_class_weights():
    weights = balanced_class_weights(np.array([0, 0, 0, 1]), 3)
    torch.testing.assert_close(weights, torch.tensor([4 / 6, 2.0, 0.0]))  # n / (n_present * n_c); absent: 0
    assert weights[[0, 0, 0, 1]].mean().item() == pytest.approx(1.0)


def test_window_losses_smoothing_and_weights():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-3.0, 1.0]])
    targets = torch.tensor([0, 1, 1])
    log_p = torch.log_softmax(logits, dim=1)
    eps = 0.1  # smoothed target: (1 - eps) one-hot + eps / n_classes
    expected = -((1 - eps) * log_p[torch.arange(3), targets] + eps / 2 * log_p.sum(dim=1))
    torch.testing.assert_close(window_losses(logits, targets, label_smoothing=eps), expected)
    weights = torch.tensor([1.0, 3.0])
    torch.testing.assert_close(
        window_losses(logits, targets, weights),
        -log_p[torch.arange(3), targets] * torch.tensor([1.0, 3.0, 3.0]),
    )


def test_evaluate_gives_probabilities_in_split_order_and_the_mean_loss(dataset):
    model = _tiny()
    loader = build_eval_loader(dataset, batch_size=5)
    loss, probabilities = evaluate(model, loader, CPU)
    assert not model.training
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    with torch.no_grad():
        logits = model(x)
    np.testing.assert_allclose(probabilities, torch.softmax(logits.double(), 1).numpy(), rtol=0, atol=1e-6)
    assert probabilities.shape == (12, 2) and np.allclose(probabilities.sum(axis=1), 1.0)
    y = torch.as_tensor(dataset.labels)
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    weights = balanced_class_weights(dataset.labels, 2)
    weighted, _ = evaluate(model, loader, CPU, class_weights=weights)
    assert weighted == pytest.approx(
        (F.cross_entropy(logits, y, reduction="none") * weights[y]).mean().item(), rel=1e-5
    )


def test_non_finite_loss_stops_with_a_clear_error():
    model = _tiny()
    x = torch.full((2, 16, 1000), float("nan"))
    loader = [(x, torch.tensor([0, 1]), torch.tensor([0, 1]))] * 2
    with pytest.raises(FloatingPointError, match=r"Non-finite fine-tuning loss nan in epoch 3"):
        train_one_epoch(
            model,
            loader,
            torch.optim.SGD(model.parameters(), lr=0.1),
            None,
            CPU,
            3,
            settings=EngineSettings(micro_batch_size=2, accum_steps=1, log_every=1),
        )


def test_too_few_micro_batches_for_one_step():
    model = _tiny()
    loader = [(torch.zeros(2, 16, 1000), torch.tensor([0, 1]), torch.tensor([0, 1]))]
    with pytest.raises(ValueError, match=r"1 micro-batches of 2 windows, fewer than the 4"):
        train_one_epoch(
            model,
            loader,
            torch.optim.SGD(model.parameters(), lr=0.1),
            None,
            CPU,
            0,
            settings=EngineSettings(micro_batch_size=2, accum_steps=4),
        )


def test_linear_probe_mode_keeps_the_backbone_in_eval():
    model = create_model("m4cea_tiny", head="classification", n_outputs=2, n_patches=5, drop_path_rate=0.2)
    set_train_mode(model, linear_probe=True)
    assert model.head.training and not model.blocks.training and not model.patch_embed.training
    assert not any(m.training for m in model.blocks.modules())
    set_train_mode(model)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("name", ["hms_mobilenetv3", "braindecode.ShallowFBCSPNet"])
def test_linear_probe_mode_trains_the_classifier_of_every_family(name):
    """The head of HMS and braindecode models is not a child called ``head``: get_classifier() names it."""
    if name.startswith("braindecode."):
        from models.zoo import create_zoo_model

        model = create_zoo_model(name, 2, n_chans=16, sfreq_in=1000.0, n_times_in=4000)
    else:
        model = create_model(name, head="classification", n_outputs=2)
    set_train_mode(model, linear_probe=True)
    classifier = model.get_classifier()
    assert all(m.training for m in classifier.modules())
    others = [m for m in model.modules() if not any(m is c for c in classifier.modules())]
    assert others and not any(m.training for m in others if m is not model)


def test_layer_decay_groups_and_per_step_schedule():
    """timm groups: layer l of m4cea_tiny (stem 0, blocks 1-2, norm+head 3) gets 0.5 ** (3 - l)."""
    cfg = load_task_config(
        "onset_detection",
        overrides=[
            "optim.base_lr=0.256",
            "optim.batch_size=100",
            "optim.layer_decay=0.5",
            "optim.warmup_epochs=1",
            "optim.epochs=3",
            "optim.min_lr=0.0",
        ],
    )
    model = _tiny()
    optimizer = build_optimizer(model, cfg, CPU)
    peak = 0.256 * 100 / 256
    scheduler = build_lr_scheduler(optimizer, cfg, steps_per_epoch=10)  # 10 warm-up steps, 20 of cosine

    def lr_of(name, step):
        scheduler.step_update(step)
        param = dict(model.named_parameters())[name]
        return next(g["lr"] for g in optimizer.param_groups if any(p is param for p in g["params"]))

    assert lr_of("head.weight", 5) == pytest.approx(peak * 5 / 10)
    assert lr_of("blocks.1.attn.qkv.weight", 5) == pytest.approx(peak * 0.5 * 5 / 10)
    assert lr_of("pos_embed", 10) == pytest.approx(peak * 0.125)
    assert lr_of("head.weight", 20) == pytest.approx(peak * (1 + math.cos(math.pi * 10 / 20)) / 2)
    assert lr_of("blocks.0.mlp.fc1.weight", 29) == pytest.approx(
        peak * 0.25 * (1 + math.cos(math.pi * 19 / 20)) / 2
    )
    decays = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert decays[id(named["head.weight"])] == cfg["optim"]["weight_decay"]
    assert decays[id(named["head.bias"])] == 0.0 and decays[id(named["pos_embed"])] == 0.0
    assert decays[id(named["patch_embed.scale_factor"])] == 0.0


def test_linear_probe_optimiser_holds_the_head_only():
    cfg = load_task_config("onset_detection")
    model = _tiny()
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith("head.")
    optimizer = build_optimizer(model, cfg, CPU)
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert held == {id(model.head.weight), id(model.head.bias)}


def test_steps_per_accumulation():
    assert steps_per_accumulation(64, 8, 2) == 4
    with pytest.raises(ValueError, match=r"optim.batch_size=64 .* micro_batch_size \* world_size = 24"):
        steps_per_accumulation(64, 8, 3)


def test_early_stopping_tracks_the_best_epoch_from_1_and_stops_after_patience():
    from finetune.engine import EarlyStopping

    stopping = EarlyStopping(patience=2, min_delta=0.1)
    assert [stopping.update(loss, epoch) for epoch, loss in enumerate([1.0, 0.95, 0.8, 0.85], start=1)] == [
        True,
        False,  # 0.95 is not 0.1 below 1.0
        True,
        False,
    ]
    assert (stopping.best_epoch, stopping.best_loss, stopping.should_stop) == (3, 0.8, False)
    stopping.update(0.79, 5)
    assert stopping.should_stop and stopping.best_epoch == 3
