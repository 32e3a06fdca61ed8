"""Logging for multi-process runs: rank-0 filter, JSON-lines metrics and tensorboardX scalars.

Every module logs through the standard :mod:`logging` module (``logging.getLogger(__name__)``).
:func:`setup_logging` attaches handlers to the project's loggers once per process with a
:class:`RankZeroFilter`, so a message is printed once per run, not once per GPU; a record created
with ``extra={"all_ranks": True}`` passes on every rank (for rank-specific errors).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from runtime.files import atomic_write

__all__ = ["JsonLinesWriter", "RankZeroFilter", "create_summary_writer", "setup_logging"]

#: Top-level packages whose loggers :func:`setup_logging` configures.
PROJECT_LOGGERS = ("pretrain", "finetune", "preprocess", "models", "runtime", "scripts", "__main__")

_HANDLER_TAG = "_m4cea_handler"


class RankZeroFilter(logging.Filter):
    """Let records through on rank 0 only (and records flagged ``all_ranks`` on every rank).

    Parameters
    ----------
    rank : int
        This process's global rank.
    """

    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003 (logging API)
        return self.rank == 0 or bool(getattr(record, "all_ranks", False))


def setup_logging(
    rank: int = 0, output_dir: str | os.PathLike | None = None, level: int = logging.INFO
) -> None:
    """Attach a console handler (and a ``log.txt`` file handler on rank 0) to the project's loggers.

    Calling it again replaces the handlers it added before (tests run several trainings in one
    process), and leaves other handlers alone.

    Parameters
    ----------
    rank : int
        Global rank; only rank 0 prints, except records with ``extra={"all_ranks": True}``.
    output_dir : path-like | None
        Run folder; rank 0 also appends every message to ``output_dir/log.txt``.
    level : int
        Logging level, e.g. ``logging.INFO``.
    """
    where = "" if rank == 0 else f" [rank {rank}]"
    fmt = logging.Formatter(
        f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S"
    )
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if output_dir is not None and rank == 0:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(output_dir) / "log.txt", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(fmt)
        handler.addFilter(RankZeroFilter(rank))
        setattr(handler, _HANDLER_TAG, True)
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, _HANDLER_TAG, False)]:
            logger.removeHandler(old)
            old.close()
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


def _plain(value: Any) -> Any:
    """Turn tensors, numpy scalars and non-finite floats into JSON-safe values."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf": JSON has no literal for them
    return value


class JsonLinesWriter:
    """Append one JSON object per line to a file (one line per epoch), flushed at once.

    Parameters
    ----------
    path : path-like
        The ``.jsonl`` file; its folder is created.
    enabled : bool
        False on ranks other than 0: :meth:`write` then does nothing.

    Notes
    -----
    Lines are appended, so a resumed run continues the log of the run it resumes.
    """

    def __init__(self, path: str | os.PathLike, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        """Append ``record`` (a flat dict of numbers and strings) as one line."""
        if not self.enabled:
            return
        line = json.dumps({k: _plain(v) for k, v in record.items()}, sort_keys=False)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()

    def truncate_after(self, last_epoch: int, key: str = "epoch") -> int:
        """Drop the records of epochs after ``last_epoch``: what a resumed run will write again.

        A run killed between an epoch's line and its checkpoint, or while writing a line, leaves lines
        the checkpoint does not cover; resuming from that checkpoint reruns those epochs. The file is
        rewritten atomically (:func:`runtime.files.atomic_write`), keeping the records up to the first
        one whose ``key`` exceeds ``last_epoch`` or that is not complete JSON (a torn last line); with
        no record left it is removed.

        Parameters
        ----------
        last_epoch : int
            The last epoch to keep, as the records number it (pretraining numbers epochs from 1, so this is
            the number of epochs the checkpoint holds); 0 (or -1) for a run that starts over.
        key : str
            The record entry holding the epoch.

        Returns
        -------
        n_dropped : int
            Lines removed (0 when the file is absent or already ends at ``last_epoch``; always 0 on
            ranks other than 0).
        """
        if not self.enabled or not self.path.exists():
            return 0
        with open(self.path, encoding="utf-8") as f:
            lines = [line for line in f.read().splitlines(keepends=True) if line.strip()]
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break
            epoch = record.get(key) if isinstance(record, dict) else None
            if not isinstance(epoch, int) or epoch > last_epoch:
                break
            kept.append(line if line.endswith("\n") else line + "\n")
        if len(kept) == len(lines) and all(line.endswith("\n") for line in lines):
            return 0
        if kept:
            with atomic_write(self.path, "w") as f:
                f.writelines(kept)
        else:
            self.path.unlink()
        return len(lines) - len(kept)

    @staticmethod
    def read(path: str | os.PathLike) -> list[dict]:
        """Read every record of a JSON-lines file."""
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def create_summary_writer(log_dir: str | os.PathLike, enabled: bool = True):
    """Return a ``tensorboardX.SummaryWriter`` on ``log_dir``, or None when ``enabled`` is False.

    Parameters
    ----------
    log_dir : path-like
        Folder for the event files (e.g. ``OUTPUT/tensorboard``).
    enabled : bool
        False on ranks other than 0, or when tensorboard logging is switched off.
    """
    if not enabled:
        return None
    from tensorboardX import SummaryWriter

    return SummaryWriter(logdir=str(log_dir))
