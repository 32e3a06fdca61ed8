"""The pretraining step: targets and loss by hand, gradient accumulation, non-finite losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models import create_model, patch_spectrum
from pretrain.engine import EngineSettings, reconstruction_loss, train_one_epoch
from pretrain.masking import gumbel_noise, gumbel_topk_mask
from runtime.seeding import derive_seed

DEVICE = torch.device("cpu")


def test_targets_and_loss_by_hand():
    rng = np.random.default_rng(0)
    batch, n_chans, n_patches, patch_samples = 2, 3, 4, 16
    x = rng.standard_normal((batch, n_chans, n_patches * patch_samples)).astype(np.float32)
    n_tokens, n_freqs = n_chans * n_patches, patch_samples // 2 + 1
    pred_mag = rng.standard_normal((batch, n_tokens, n_freqs)).astype(np.float32)
    pred_phase = rng.standard_normal((batch, n_tokens, n_freqs)).astype(np.float32)
    mask = rng.random((batch, n_tokens)) < 0.5

    # By hand: token c * n_patches + p is samples [p * 16, (p + 1) * 16) of channel c.
    spectrum = np.empty((batch, n_tokens, n_freqs), dtype=np.complex128)
    for b in range(batch):
        for c in range(n_chans):
            for p in range(n_patches):
                spectrum[b, c * n_patches + p] = np.fft.rfft(
                    x[b, c, p * patch_samples : (p + 1) * patch_samples].astype(np.float64)
                )
    mag, phase = np.abs(spectrum), np.angle(spectrum)
    err_mag, err_phase = (pred_mag - mag) ** 2, (pred_phase - phase) ** 2

    target_mag, target_phase = patch_spectrum(torch.from_numpy(x), patch_samples)
    np.testing.assert_allclose(target_mag.numpy(), mag, rtol=1e-5, atol=1e-5)
    # Compare phases on the circle; bins of ~zero magnitude have an arbitrary phase.
    np.testing.assert_allclose(np.cos(target_phase.numpy() - phase)[mag > 1e-3], 1.0, atol=1e-5)

    args = (
        torch.from_numpy(pred_mag),
        torch.from_numpy(pred_phase),
        torch.from_numpy(mag).float(),
        torch.from_numpy(phase).float(),
    )
    loss_mag, loss_phase = reconstruction_loss(*args)
    assert loss_mag.item() == pytest.approx(err_mag.mean(), rel=1e-5)
    assert loss_phase.item() == pytest.approx(err_phase.mean(), rel=1e-5)
    loss_mag, loss_phase = reconstruction_loss(*args, mask=torch.from_numpy(mask))
    assert loss_mag.item() == pytest.approx(err_mag[mask].mean(), rel=1e-5)
    assert loss_phase.item() == pytest.approx(err_phase[mask].mean(), rel=1e-5)


def _batches(n_windows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((n_windows, 16, 4000)).astype(np.float32))
    w = torch.from_numpy(rng.dirichlet(np.ones(320), size=n_windows).astype(np.float32))
    return x, w


def _model_and_optimizer(lr=1e-3, sgd=False):
    torch.manual_seed(0)
    model = create_model("m4cea_tiny", head="pretrain")
    if sgd:
        return model, torch.optim.SGD(model.parameters(), lr=lr)
    return model, torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)


def _settings(micro, accum, **kw):
    return EngineSettings(
        micro_batch_size=micro,
        accum_steps=accum,
        n_tokens=320,
        patch_samples=200,
        n_masked=160,
        seed=0,
        log_every=1,
        **kw,
    )


@pytest.mark.parametrize("loss_tokens", ["all", "masked"])
def test_gradient_accumulation_equals_one_large_batch(loss_tokens):
    """Same parameters after one step of 8 windows as 1 x 8, 2 x 4 and 4 x 2 micro-batches.

    Plain SGD, so the update is the gradient itself: Adam's first step, lr * g / (|g| + eps), turns
    float32 rounding of near-zero gradients into differences of order lr.
    """
    x, w = _batches(8)
    results = []
    for micro, accum in ((8, 1), (4, 2), (2, 4)):
        model, optimizer = _model_and_optimizer(lr=0.05, sgd=True)
        loader = [(x[i : i + micro], w[i : i + micro]) for i in range(0, 8, micro)]
        metrics = train_one_epoch(
            model,
            loader,
            optimizer,
            DEVICE,
            0,
            settings=_settings(micro, accum, loss_tokens=loss_tokens),
            step=0,
        )
        assert metrics["n_steps"] == 1 and metrics["step"] == 1
        results.append((metrics, [p.detach().clone() for p in model.parameters()]))
    (ref_metrics, ref_params) = results[0]
    initial = [p.detach() for p in _model_and_optimizer()[0].parameters()]
    assert (
        max((a - b).abs().max().item() for a, b in zip(ref_params, initial, strict=True)) > 1e-4
    )  # a real update
    for metrics, params in results[1:]:
        assert metrics["loss"] == pytest.approx(ref_metrics["loss"], rel=1e-5)
        assert metrics["grad_norm"] == pytest.approx(ref_metrics["grad_norm"], rel=1e-4)
        for a, b in zip(params, ref_params, strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_masks_depend_on_position_in_global_batch_only():
    """Rank r's micro-batch a gets rows (a * micro + i) * world + r of the step's noise."""
    accum, micro, world, n_tokens = 2, 3, 2, 320
    gen = torch.Generator().manual_seed(derive_seed(0, "mask", 5))
    noise = gumbel_noise((accum, micro, world, n_tokens), gen).reshape(-1, n_tokens)
    gen.manual_seed(derive_seed(0, "mask", 5))
    per_rank = gumbel_noise((accum, micro, world, n_tokens), gen)
    for a in range(accum):
        for r in range(world):
            rows = [(a * micro + i) * world + r for i in range(micro)]
            assert torch.equal(per_rank[a, :, r], noise[rows])


def test_loss_decreases_on_a_fixed_batch():
    x, w = _batches(4)  # 4 windows: the same decrease as 8 (203.7 -> 198.9 over 6 steps), half the time
    model, optimizer = _model_and_optimizer(lr=3e-3)
    loader = [(x, w)] * 6
    settings = _settings(4, 1)
    first = train_one_epoch(model, loader[:1], optimizer, DEVICE, 0, settings=settings, step=0)["loss"]
    later = train_one_epoch(model, loader, optimizer, DEVICE, 1, settings=settings, step=1)
    assert later["loss"] < first and math.isfinite(later["loss"])


def test_non_finite_loss_stops_the_run():
    x, w = _batches(4)
    x[1, 3, 100] = float("nan")
    model, optimizer = _model_and_optimizer()
    with pytest.raises(
        FloatingPointError, match=r"Non-finite pretraining loss nan .*epoch 3 at optimiser step 8"
    ):
        train_one_epoch(model, [(x, w)], optimizer, DEVICE, 3, settings=_settings(4, 1), step=7)


def test_too_few_micro_batches():
    x, w = _batches(4)
    model, optimizer = _model_and_optimizer()
    with pytest.raises(ValueError, match="fewer than the 2 that one optimiser step needs"):
        train_one_epoch(model, [(x, w)], optimizer, DEVICE, 0, settings=_settings(4, 2), step=0)


def test_lr_schedule_is_stepped_per_optimiser_step():
    from timm.scheduler import CosineLRScheduler

    x, w = _batches(4)
    model, optimizer = _model_and_optimizer(lr=1e-3)
    scheduler = CosineLRScheduler(
        optimizer, t_initial=8, warmup_t=2, warmup_lr_init=0.0, warmup_prefix=True, t_in_epochs=False
    )
    loader = [(x[i : i + 1], w[i : i + 1]) for i in range(4)]
    metrics = train_one_epoch(
        model, loader, optimizer, DEVICE, 0, settings=_settings(1, 2), step=2, lr_scheduler=scheduler
    )
    assert metrics["n_steps"] == 2 and metrics["step"] == 4
    assert metrics["lr"] == pytest.approx(
        1e-3 * 0.5 * (1 + math.cos(math.pi * 1 / 8))
    )  # step 3: 1 step after warm-up


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strategy": "entropy"}, "'masking.strategy'"),
        ({"loss_tokens": "some"}, "'loss.tokens'"),
        ({"n_masked": 0, "loss_tokens": "masked"}, "needs masked tokens"),
        ({"n_masked": 400}, "'n_masked'"),
    ],
)
def test_invalid_settings(kwargs, match):
    base = dict(micro_batch_size=2, accum_steps=1, n_tokens=320, patch_samples=200, n_masked=160)
    with pytest.raises(ValueError, match=match):
        EngineSettings(**{**base, **kwargs})


def test_masked_tokens_change_the_input():
    """Sanity of the contract with the model: a different mask gives different predictions."""
    x, w = _batches(2)
    model, _ = _model_and_optimizer()
    model.eval()
    gen = torch.Generator().manual_seed(0)
    a = model(x, gumbel_topk_mask(w, 160, generator=gen))[0]
    b = model(x, gumbel_topk_mask(w, 160, generator=gen))[0]
    assert not torch.allclose(a, b)


def test_signal_target_reads_the_patches_and_its_loss_decreases():
    """pretrain.target=signal (MAE-style raw patches): target, prediction, masked loss, a short training."""
    from pretrain.engine import patch_signal, signal_loss, signal_prediction

    x, w = _batches(8)
    target = patch_signal(x, 200)
    assert target.shape == (8, 320, 200)
    torch.testing.assert_close(target[3, 2 * 20 + 5], x[3, 2, 1000:1200])  # token channel * 20 + patch
    magnitude, phase = torch.randn(8, 320, 101), torch.randn(8, 320, 101)
    prediction = signal_prediction(magnitude, phase, 200)
    torch.testing.assert_close(prediction[..., 101:], phase[..., :99])
    mask = torch.zeros(8, 320, dtype=torch.bool)
    mask[:, :7] = True
    err = (prediction - target).square().mean(-1)
    assert signal_loss(prediction, target, mask).item() == pytest.approx(err[mask].mean().item(), rel=1e-5)
    assert signal_loss(prediction, target).item() == pytest.approx(err.mean().item(), rel=1e-5)

    # A short training on two windows of 10-Hz rhythms (a learnable signal; white noise is not).
    t = torch.arange(4000) / 1000.0
    x = torch.sin(2 * torch.pi * 10.0 * t + torch.linspace(0, 3, 16)[:, None])
    x = x.expand(2, 16, 4000).contiguous()
    model, optimizer = _model_and_optimizer(lr=3e-3)
    settings = _settings(2, 1, target="signal", target_norm="frequency")
    first = train_one_epoch(model, [(x, w[:2])], optimizer, DEVICE, 0, settings=settings, step=0)
    assert set(first) >= {"loss", "loss_signal", "grad_norm"} and "loss_phase" not in first
    later = train_one_epoch(model, [(x, w[:2])] * 8, optimizer, DEVICE, 1, settings=settings, step=1)
    assert later["loss"] < 0.8 * first["loss"] and later["loss"] == later["loss_signal"]
    with pytest.raises(ValueError, match="'pretrain.target'"):
        _settings(8, 1, target="pixels")
