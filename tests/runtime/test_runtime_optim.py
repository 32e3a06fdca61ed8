"""The optimiser step shared by the two engines: unscale, clip, step, zero."""

import math

import torch

from runtime.optim import clip_and_step


def _model_with_gradient(gradient):
    layer = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0]]))
    layer.weight.grad = torch.tensor([gradient])
    return layer


def test_clip_and_step_clips_to_the_norm_and_returns_the_norm_before_clipping():
    layer = _model_with_gradient([3.0, 4.0])  # norm 5
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    norm = clip_and_step(optimizer, scaler, list(layer.parameters()), max_norm=1.0)
    assert norm.item() == 5.0
    # the gradient was scaled to norm 1: (0.6, 0.8); SGD moved the weights by lr times that
    torch.testing.assert_close(layer.weight.detach(), torch.tensor([[1.0 - 0.3, 2.0 - 0.4]]))
    assert layer.weight.grad is None


def test_clip_and_step_with_an_infinite_threshold_only_measures():
    layer = _model_with_gradient([3.0, 4.0])
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    norm = clip_and_step(
        optimizer, torch.amp.GradScaler("cpu", enabled=False), list(layer.parameters()), max_norm=math.inf
    )
    assert norm.item() == 5.0
    torch.testing.assert_close(layer.weight.detach(), torch.tensor([[1.0 - 1.5, 2.0 - 2.0]]))


def test_optimiser_steps_in_epoch_counts_whole_accumulations():
    import pytest

    from runtime.optim import optimiser_steps_in_epoch

    assert optimiser_steps_in_epoch(10, 3, 8, epoch=0) == 3  # the last, partial accumulation is dropped
    assert optimiser_steps_in_epoch(10, 3, 8, epoch=0, max_steps=2) == 2
    with pytest.raises(ValueError, match=r"Epoch 4: this rank has 2 micro-batches of 8 windows, fewer than"):
        optimiser_steps_in_epoch(2, 3, 8, epoch=4)
