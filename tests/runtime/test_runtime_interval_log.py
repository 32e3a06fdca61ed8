"""The training engines' interval logger and the entry wrapper of the mains."""

import math

import pytest
import torch
from tqdm import tqdm

from runtime.config import ConfigError
from runtime.entry import run_entry
from runtime.metrics import IntervalLog


class _Writer:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, name, value, step):
        self.scalars.append((name, step, value))


def _log(writer, log_every=2):
    return IntervalLog(
        ["loss", "grad_norm"],
        device=torch.device("cpu"),
        log_every=log_every,
        world_size=1,
        global_batch=8,
        progress=tqdm(total=5, disable=True),
        log_writer=writer,
        nonfinite_message=lambda values, step: f"non-finite loss {values['loss']} at step {step}",
    )


def test_interval_log_reads_every_n_steps_and_averages_the_epoch():
    writer = _Writer()
    log = _log(writer)
    for step, loss in enumerate([1.0, 2.0, 3.0, 4.0, 5.0], start=11):
        log.update(torch.tensor([loss, 10 * loss]), step=step, lr=0.1)
    metrics = log.finish()
    assert metrics["loss"] == pytest.approx(3.0) and metrics["grad_norm"] == pytest.approx(30.0)
    assert metrics["n_steps"] == 5 and metrics["step"] == 15 and metrics["lr"] == 0.1
    losses = [(step, value) for name, step, value in writer.scalars if name == "train/loss"]
    assert losses == [(12, 1.5), (14, 3.5), (15, 5.0)]  # windows of 2 steps, then the last partial one


def test_interval_log_stops_on_a_non_finite_loss():
    log = _log(None, log_every=1)
    log.update(torch.tensor([1.0, 1.0]), step=1, lr=0.1)
    with pytest.raises(FloatingPointError, match="non-finite loss nan at step 2"):
        log.update(torch.tensor([math.nan, 1.0]), step=2, lr=0.1)


def test_run_entry_exit_statuses(capsys):
    def bad_setup(args):  # bad input: a UsageError (ConfigError is one)
        raise ConfigError(f"Unknown config key {args!r}")

    def buggy_setup(args):  # a plain ValueError is a bug: its traceback is shown (issue 12)
        raise ValueError(f"a bug {args!r}")

    assert run_entry(lambda a: a, lambda run: run * 2, 21) == 42
    assert run_entry(lambda a: a, lambda run: run, 1, prog="x.py") == 0
    assert run_entry(bad_setup, lambda run: run, "nope", prog="x.py") == 2
    assert "x.py: error: Unknown config key 'nope'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="nope"):
        run_entry(bad_setup, lambda run: run, "nope")
    with pytest.raises(ValueError, match="a bug"):
        run_entry(buggy_setup, lambda run: run, "nope", prog="x.py")
