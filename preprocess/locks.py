"""Locks on a preprocessing output folder, so that runs sharing it never lose or mix windows.

Three kinds of lock, files under ``output/.locks`` taken with :mod:`filelock` (``flock``: the operating
system releases them when their holder dies, also on network file systems with lock support):

- ``run-<I>-of-<N>.lock``, held for a whole run of shard ``I/N`` (``0/1`` without ``--shard``): a second
  run of the same shard on the same folder is refused with a message naming the folder and the other
  run's pid and host (read from ``run-<I>-of-<N>.json``, written beside the lock while it is held).
  Shards sharing a folder on shared storage each hold their own and run side by side.
- ``recording-<id>.lock``, held while one recording is written: runs whose recordings overlap (say a
  plain run beside a ``--shard`` run) never write the same recording at once, and the temporaries of a
  recording whose lock is free belong to dead runs (:meth:`preprocess.pipeline.Preprocessor.process`).
- ``manifest.lock``, held while ``manifest.csv`` is rebuilt from the manifest parts, so that the last
  shard to finish writes a manifest with the rows of every shard.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from runtime.config import UsageError

__all__ = ["LOCK_DIR", "OutputInUseError", "manifest_lock", "recording_lock", "run_lock"]

#: Folder of the lock files inside an output folder.
LOCK_DIR = ".locks"


class OutputInUseError(UsageError):
    """Another run of the same shard is writing into the output folder (the message names it)."""


def _lock_path(output: str | os.PathLike, name: str) -> Path:
    folder = Path(output) / LOCK_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


@contextlib.contextmanager
def run_lock(output: str | os.PathLike, shard: tuple[int, int] = (0, 1)) -> Iterator[None]:
    """Hold the run lock of shard ``I/N`` on ``output`` for the duration of the block.

    Parameters
    ----------
    output : path-like
        The preprocessing output folder (it must exist).
    shard : (int, int)
        ``(I, N)`` of ``--shard I/N``; ``(0, 1)`` for a run without shards.

    Raises
    ------
    OutputInUseError
        If another live process holds the lock: the message names the folder, the shard and the other
        run's pid, host and start time, and says to wait for it or to use another ``--output``.
    """
    index, count = shard
    stem = f"run-{index}-of-{count}"
    lock = FileLock(_lock_path(output, f"{stem}.lock"))
    owner_path = Path(output) / LOCK_DIR / f"{stem}.json"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            owner = json.loads(owner_path.read_text(encoding="utf-8"))
            other = f"pid {owner['pid']} on host {owner['host']}, started {owner['started']}"
        except (OSError, ValueError, KeyError):  # written just after the other run took the lock
            other = "pid unknown"
        where = "" if count == 1 else f" for shard {index}/{count}"
        raise OutputInUseError(
            f"The output folder {output} is in use by another preprocessing run{where} ({other}): wait "
            "for it to finish (a rerun then resumes and skips what it completed), or use another --output."
        ) from None
    try:
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "shard": f"{index}/{count}",
        }
        owner_path.write_text(json.dumps(owner), encoding="utf-8")
        yield
    finally:
        owner_path.unlink(missing_ok=True)
        lock.release()


@contextlib.contextmanager
def recording_lock(output: str | os.PathLike, rec_id: str) -> Iterator[None]:
    """Hold the lock of one recording of ``output`` (waits while another run writes that recording)."""
    with FileLock(_lock_path(output, f"recording-{rec_id}.lock")):
        yield


@contextlib.contextmanager
def manifest_lock(output: str | os.PathLike) -> Iterator[None]:
    """Hold the lock of ``output/manifest.csv`` (waits while another shard rebuilds it)."""
    with FileLock(_lock_path(output, "manifest.lock")):
        yield
