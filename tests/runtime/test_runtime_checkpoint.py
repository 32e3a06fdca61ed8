"""runtime.checkpoint: atomic save, weights-only load, clear errors, restoring the training state."""

from __future__ import annotations

import pickle

import pytest
import torch

from runtime.checkpoint import load_checkpoint, restore_training_state, save_checkpoint
from runtime.seeding import get_rng_state


def _strict_load(model, state_dict):
    model.load_state_dict(state_dict, strict=True)


def _trained(seed=0, hidden=4):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_round_trip(tmp_path):
    model, optimizer = _trained()
    path = save_checkpoint(
        tmp_path / "ckpt" / "checkpoint-0003.pth",
        model=model,
        optimizer=optimizer,
        scaler=None,
        epoch=2,
        step=30,
        config={"optim": {"lr": 0.1}},
        rng=[get_rng_state()],
        data="/some/folder",
    )
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint-0003.pth"]  # no temporary file left
    ckpt = load_checkpoint(path)
    assert (ckpt["epoch"], ckpt["step"], ckpt["config"], ckpt["data"], ckpt["scaler"]) == (
        2,
        30,
        {"optim": {"lr": 0.1}},
        "/some/folder",
        None,
    )

    fresh, fresh_opt = _trained(seed=1)
    start_epoch, step = restore_training_state(
        ckpt, model=fresh, optimizer=fresh_opt, scaler=None, load_model_state=_strict_load
    )
    assert (start_epoch, step) == (3, 30)
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(
        fresh_opt.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )


def test_wrapped_model_is_saved_unwrapped(tmp_path):
    model, optimizer = _trained()

    class Compiled(torch.nn.Module):  # stands for torch.compile's OptimizedModule
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    save_checkpoint(
        tmp_path / "c.pth",
        model=Compiled(model),
        optimizer=optimizer,
        scaler=None,
        epoch=0,
        step=1,
        config={},
    )
    assert set(load_checkpoint(tmp_path / "c.pth")["model"]) == set(model.state_dict())


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="Checkpoint file not found: .*nowhere.pth"):
        load_checkpoint("/nonexistent/nowhere.pth")


def test_not_a_training_checkpoint(tmp_path):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "bare.pth")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        load_checkpoint(tmp_path / "bare.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="Cannot read the checkpoint"):
        load_checkpoint(tmp_path / "junk.pth")


def test_unsafe_object_is_refused(tmp_path):
    import argparse  # any class outside torch's weights-only allow-list

    torch.save(
        {"format": "m4cea-train-checkpoint", "payload": argparse.Namespace(a=1)}, tmp_path / "evil.pth"
    )
    with pytest.raises(ValueError, match="weights_only=True"):
        load_checkpoint(tmp_path / "evil.pth")


def test_failed_write_keeps_previous_file(tmp_path):
    model, optimizer = _trained()
    path = save_checkpoint(
        tmp_path / "c.pth", model=model, optimizer=optimizer, scaler=None, epoch=0, step=1, config={}
    )
    before = path.read_bytes()
    with pytest.raises((TypeError, AttributeError, pickle.PicklingError)):  # a lambda cannot be pickled
        save_checkpoint(
            path, model=model, optimizer=optimizer, scaler=None, epoch=1, step=2, config={"bad": lambda: 0}
        )
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pth"]


def test_other_architecture_is_a_clear_error(tmp_path):
    model, optimizer = _trained(hidden=4)
    save_checkpoint(
        tmp_path / "c.pth", model=model, optimizer=optimizer, scaler=None, epoch=0, step=1, config={}
    )
    other, other_opt = _trained(hidden=8)
    with pytest.raises(ValueError, match=r"c\.pth does not fit this model"):
        restore_training_state(
            load_checkpoint(tmp_path / "c.pth"),
            model=other,
            optimizer=other_opt,
            scaler=None,
            load_model_state=_strict_load,
            source=str(tmp_path / "c.pth"),
        )


def test_atomic_write_gives_ordinary_file_permissions(tmp_path):
    from runtime.files import atomic_write

    with atomic_write(tmp_path / "a.txt", "w") as f:
        f.write("x")
    plain = tmp_path / "b.txt"
    plain.write_text("x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
