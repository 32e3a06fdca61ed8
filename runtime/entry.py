"""The command-line entry of the training scripts: setup, training, distributed cleanup, exit status.

:func:`run_entry` is the ``main``/``cli`` body shared by ``pretrain/pretrain_main.py`` and
``finetune/finetune_main.py``: run the setup phase, then training, and destroy the process group in
any case. As a command-line entry, a usage error of the setup phase (:data:`USAGE_ERRORS`: bad input,
:class:`runtime.config.UsageError`, or a user path that does not exist) is printed once (rank 0) as
``"<prog>: error: <message>"`` on stderr, the way argparse reports its own errors, and gives exit
status 2. Any other exception is a bug: it propagates with its traceback. :func:`run_command` is the same
for the one-phase commands (``finetune/embed.py``, ``finetune/probe.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from runtime.config import UsageError
from runtime.logging import setup_logging

__all__ = ["USAGE_ERRORS", "run_command", "run_entry"]

#: Errors of the setup phase reported as usage errors (exit status 2); anything else shows its traceback.
USAGE_ERRORS = (UsageError, FileNotFoundError)


def run_entry(
    setup: Callable[[Any], Any],
    train: Callable[[Any], Any],
    args: Any,
    prog: str | None = None,
) -> Any:
    """Run ``train(setup(args))``, then destroy the process group (also on errors).

    Parameters
    ----------
    setup : callable
        ``setup(args) -> run``: the setup phase (config, data, model; may initialise the process group).
    train : callable
        ``train(run) -> result``: the training phase.
    args : argparse.Namespace
        Parsed command-line arguments.
    prog : str | None
        None: a function entry, errors propagate and the result of ``train`` is returned. A program
        name (``"pretrain_main.py"``): a command-line entry, which returns the exit status: 0 after
        training, 2 after a :data:`USAGE_ERRORS` error of the setup phase (printed on rank 0).

    Returns
    -------
    result : Any
        What ``train`` returns (``prog`` None), or the exit status (``prog`` given).
    """
    import torch  # here, not at the top: preprocess_main.py imports USAGE_ERRORS and runs without torch

    from runtime.distributed import cleanup_distributed

    try:
        if prog is None:
            return train(setup(args))
        try:
            run = setup(args)
        except USAGE_ERRORS as err:
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            if rank == 0:
                print(f"{prog}: error: {err}", file=sys.stderr)
            return 2
        train(run)
        return 0
    finally:
        cleanup_distributed()


def run_command(work: Callable[[Any], Any], args: Any, prog: str) -> int:
    """Run a one-phase command-line entry: console logging, ``work(args)``, its exit status.

    Parameters
    ----------
    work : callable
        ``work(args)``: all the command does; a :data:`USAGE_ERRORS` error anywhere in it is a usage
        error.
    args : argparse.Namespace
        Parsed command-line arguments.
    prog : str
        The program name in error messages (``"embed.py"``).

    Returns
    -------
    status : int
        0 when ``work`` returned, 2 after a usage error (printed as ``"<prog>: error: <message>"``).
    """
    setup_logging(0, None)
    return run_entry(work, lambda result: result, args, prog=prog)
