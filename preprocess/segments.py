"""The data contract between preprocessing and training: pickled segments and the manifest.

One pickle per window holds a plain dict (DESIGN.md section 4)::

    {"data": float32 ndarray (n_chans, n_times) in uV, "mfde": float64 ndarray (n_chans * n_patches,),
     "ch_names": [str], "sfreq": float (Hz), "recording": str, "subject": str, "start_s": float,
     "label": str | None, "filled_channels": [str]}

and, for a soft-labelled window (e.g. HMS expert votes), ``"label_probs": {class: probability}``.

``DIR/manifest.csv`` has one row per segment (``path`` relative to DIR, ``subject``, ``recording``,
``start_s``, ``label``, ...) and drives splits and loading.

Pickles run code when loaded, so segments are read with :class:`RestrictedUnpickler`, which builds
numpy arrays and plain Python values and refuses everything else.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
from pathlib import Path

import numpy as np

from runtime.config import UsageError
from runtime.files import atomic_write

__all__ = [
    "MANIFEST_COLUMNS",
    "RestrictedUnpickler",
    "format_label_probs",
    "parse_label_probs",
    "UnsafePickleError",
    "load_segment",
    "read_manifest",
    "save_segment",
    "scale_window",
    "write_manifest",
]

#: Columns of ``manifest.csv``, in order. ``filled_channels``: the montage pairs of the window's recording
#: filled with zeros (``missing_channels: zeros``), joined by ``;``, empty when none. ``label_probs``: the
#: window's soft label as ``class=probability`` pairs joined by ``;`` (:func:`format_label_probs`), empty
#: for a hard label.
MANIFEST_COLUMNS = (
    "path",
    "subject",
    "recording",
    "start_s",
    "label",
    "n_chans",
    "n_times",
    "sfreq",
    "filled_channels",
    "label_probs",
)

#: Pickle is protocol 4: numpy arrays then need only ``_reconstruct``/``ndarray``/``dtype``.
PICKLE_PROTOCOL = 4

# (module, name) pairs a segment pickle may ask for: numpy's array and scalar reconstruction.
_ALLOWED_GLOBALS = frozenset(
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
) | frozenset(
    [
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("builtins", "bytearray"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles: encode(str, "latin1"), harmless
    ]
)


class UnsafePickleError(pickle.UnpicklingError):
    """A segment pickle asked for a global that is not a numpy array or a plain Python value."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays, numpy scalars and plain Python values.

    Any other global (``os.system``, ``builtins.eval``, arbitrary classes) raises
    :class:`UnsafePickleError` instead of being imported, so a malicious file cannot run code.
    """

    def find_class(self, module: str, name: str):  # noqa: D102 (pickle API)
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refused to load the global '{module}.{name}': segment pickles may only hold numpy arrays, "
            "numbers, strings, lists and dicts"
        )


def load_segment(path: str | os.PathLike) -> dict:
    """Load one pickled segment with the restricted unpickler.

    Parameters
    ----------
    path : path-like
        A ``.pkl`` file written by :func:`save_segment` (or by the official M4CEA code).

    Returns
    -------
    segment : dict
        At least ``data`` (ndarray, shape (n_chans, n_times), uV) and ``mfde``
        (ndarray, shape (n_chans * n_patches,)).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    UnsafePickleError
        If the pickle asks for anything but numpy arrays and plain values (message names the file).
    ValueError
        If the file is not a pickle, is truncated, or holds no dict with ``data`` and ``mfde``.
    """
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        segment = RestrictedUnpickler(io.BytesIO(raw)).load()
    except UnsafePickleError as err:
        raise UnsafePickleError(f"Unsafe segment pickle {path}: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(f"Segment file {path} is not a readable segment pickle: {err}") from None
    if not isinstance(segment, dict) or "data" not in segment or "mfde" not in segment:
        raise ValueError(f"Segment file {path} does not hold a dict with 'data' and 'mfde'.")
    return segment


def save_segment(segment: dict, path: str | os.PathLike) -> None:
    """Write one segment dict as a pickle, atomically (temporary name, then rename)."""
    with atomic_write(path, "wb") as f:
        pickle.dump(segment, f, protocol=PICKLE_PROTOCOL)


def write_manifest(rows: list[dict], path: str | os.PathLike) -> None:
    """Write manifest rows (dicts with :data:`MANIFEST_COLUMNS`) to a CSV file, atomically.

    ``label=None`` is written as an empty cell, ``filled_channels`` (a list of pair names) joined by ``;``.
    """
    with atomic_write(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            cells = {k: ("" if row.get(k) is None else row[k]) for k in MANIFEST_COLUMNS}
            cells["filled_channels"] = ";".join(row.get("filled_channels") or ())
            cells["label_probs"] = format_label_probs(row.get("label_probs"))
            writer.writerow(cells)


def format_label_probs(probs: dict | None) -> str:
    """A soft label as a manifest cell: ``class=probability`` pairs joined by ``;`` (``""`` for None).

    Probabilities are written with ``repr`` so that :func:`parse_label_probs` gives the same floats back.
    """
    if not probs:
        return ""
    return ";".join(f"{name}={float(p)!r}" for name, p in probs.items())


def parse_label_probs(cell: str | None, source: str | os.PathLike = "manifest") -> dict | None:
    """Inverse of :func:`format_label_probs`: a ``label_probs`` cell -> dict (None when empty).

    Raises
    ------
    ValueError
        If a pair is not ``class=number`` (the message names ``source`` and the cell).
    """
    if not cell:
        return None
    probs = {}
    for pair in cell.split(";"):
        name, sep, value = pair.partition("=")
        try:
            probs[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise UsageError(f"Invalid label_probs cell {cell!r} in {source}: expected class=probability "
                             "pairs joined by ';'.")
    return probs


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Read a manifest CSV into a list of row dicts.

    ``start_s`` and ``sfreq`` become floats, ``n_chans``/``n_times`` ints, an empty ``label`` None,
    ``filled_channels`` a list of pair names (empty when the column is empty or absent), ``label_probs`` a
    dict class -> probability (the key only in rows whose cell is filled: soft-labelled windows).
    ``path`` may be the CSV file or the preprocessing output folder that holds ``manifest.csv``.

    Raises
    ------
    FileNotFoundError
        If there is no manifest (message names the path).
    ValueError
        If a required column is missing.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"No manifest at {path}: point to a preprocessing output folder (preprocess/preprocess_main.py)."
        )
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [
            c
            for c in ("path", "subject", "recording", "start_s", "label")
            if c not in (reader.fieldnames or [])
        ]
        if missing:
            raise UsageError(f"Manifest {path} lacks the columns {missing}.")
        rows = []
        for row in reader:
            row["start_s"] = float(row["start_s"])
            for key, cast in (("sfreq", float), ("n_chans", int), ("n_times", int)):
                if row.get(key):
                    row[key] = cast(row[key])
            row["label"] = row["label"] or None
            row["filled_channels"] = [n for n in (row.get("filled_channels") or "").split(";") if n]
            probs = parse_label_probs(row.pop("label_probs", None), path)
            if probs is not None:
                row["label_probs"] = probs
            rows.append(row)
    return rows


def scale_window(data: np.ndarray, quantile: float = 0.95, eps: float = 1e-8) -> np.ndarray:
    """Per-sample normalisation of the official loader: each channel / (95th percentile of |x| + eps).

    Parameters
    ----------
    data : ndarray, shape (..., n_chans, n_times)
        Window(s) in uV.
    quantile : float
        Quantile of ``|data|`` per channel (official: 0.95).
    eps : float
        Added to the divisor so flat channels stay finite (official: 1e-8).

    Returns
    -------
    scaled : ndarray, same shape and dtype as ``data``
        Dimensionless.

    References
    ----------
    Official M4CEA loader (Evigouse/M4CEA_Project), ``x / (np.quantile(np.abs(x), q=0.95, axis=-1,
    keepdims=True) + 1e-8)``.
    """
    scale = np.quantile(np.abs(data), quantile, axis=-1, keepdims=True) + eps
    return (data / scale).astype(data.dtype, copy=False)
