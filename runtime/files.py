"""Atomic file writes: a reader never sees a half-written file, a crash leaves no partial output; the removal
of a run's own outputs and temporaries when it starts again."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "remove_outputs", "remove_temporaries"]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Files get the permissions a plain open() would give (mkstemp alone would make them 0600).
_FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path`` and rename it onto ``path`` when the block succeeds.

    Parameters
    ----------
    path : path-like
        The final file. Its folder is created if needed.
    mode : str
        ``"wb"`` or ``"w"``.
    encoding : str | None
        Text encoding for ``mode="w"`` (default UTF-8).

    Raises
    ------
    PermissionError, OSError
        If the folder cannot be created or written; the message names the path.

    Notes
    -----
    On an exception inside the block the temporary file is removed and ``path`` is left as it was.
    The rename is atomic on POSIX file systems (``os.replace``).
    """
    path = Path(path)
    if mode not in ("w", "wb"):
        raise ValueError(
            f"Invalid value for the 'mode' parameter. Allowed values are 'w', 'wb', but got {mode!r}."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise type(err)(err.errno, f"Cannot write to the folder {path.parent}: {err.strerror}") from None
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, mode, encoding=encoding or ("utf-8" if mode == "w" else None)) as f:
            yield f
            f.flush()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_temporaries(folder: str | os.PathLike, name_glob: str = "*") -> list[Path]:
    """Remove the temporary files that :func:`atomic_write` calls killed mid-write left in ``folder``.

    Parameters
    ----------
    folder : path-like
        The folder (absent: nothing to do).
    name_glob : str
        Glob of the final names whose temporaries to remove (``"checkpoint-*.pth"``).

    Returns
    -------
    removed : list of Path

    Notes
    -----
    Only for a folder no other process writes to at the same time: a live writer's temporary file
    looks the same.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = sorted(folder.glob(f".{name_glob}.*.tmp"))
    for tmp in removed:
        tmp.unlink(missing_ok=True)
    return removed


def remove_outputs(folder: str | os.PathLike, names: Iterable[str]) -> None:
    """Remove the named files and folders of ``folder`` (a run's outputs, when it starts again), nothing else.

    Parameters
    ----------
    folder : path-like
        E.g. a fine-tuning run folder.
    names : iterable of str
        Names inside ``folder``; absent ones are skipped, folders removed with their contents.
    """
    for name in names:
        path = Path(folder) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
