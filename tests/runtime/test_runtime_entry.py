"""run_entry: bad input (UsageError, a missing user file) exits 2; anything else is a bug with a traceback."""

from __future__ import annotations

import pytest

from runtime.config import ConfigError, UsageError, check_values
from runtime.entry import run_command, run_entry


def _setup_raising(err):
    def setup(args):
        raise err

    return setup


@pytest.mark.parametrize(
    "err", [UsageError("bad --data"), ConfigError("unknown key"), FileNotFoundError("no such file")]
)
def test_usage_errors_exit_2_with_the_message(err, capsys):
    assert run_entry(_setup_raising(err), lambda run: None, None, prog="x.py") == 2
    assert capsys.readouterr().err == f"x.py: error: {err}\n"


@pytest.mark.parametrize("err", [ValueError("a bug"), TypeError("a bug"), KeyError("a bug")])
def test_other_errors_are_bugs_and_propagate(err):
    with pytest.raises(type(err)):
        run_entry(_setup_raising(err), lambda run: None, None, prog="x.py")


def test_usage_error_is_a_value_error():
    assert issubclass(UsageError, ValueError) and issubclass(ConfigError, UsageError)


def test_check_values_names_the_key_and_the_allowed_values():
    cfg = {"optim": {"epochs": 0, "betas": [0.9, 0.99]}, "amp": None}
    check_values(cfg, {"optim.betas": (lambda v: len(v) == 2, "two floats")})
    with pytest.raises(ConfigError, match=r"'optim\.epochs'\. Allowed values are >= 1, but got 0 instead"):
        check_values(cfg, {"optim.epochs": (lambda v: v >= 1, ">= 1")})
    with pytest.raises(ConfigError, match=r"'amp'.*got None"):  # None compared with a number: invalid
        check_values(cfg, {"amp": (lambda v: v > 0, "> 0")})


def test_run_command_is_one_phase_with_the_same_exit_statuses(capsys):
    seen = []
    assert run_command(seen.append, "args", prog="embed.py") == 0 and seen == ["args"]
    assert run_command(_setup_raising(UsageError("bad --checkpoint")), None, prog="embed.py") == 2
    assert capsys.readouterr().err == "embed.py: error: bad --checkpoint\n"
    with pytest.raises(ValueError):
        run_command(_setup_raising(ValueError("a bug")), None, prog="embed.py")
