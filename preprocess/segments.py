"""The data contract between preprocessing and training: pickled segments and the manifest.

One pickle per window holds a plain dict (DESIGN.md section 4)::

    {"data": float32 ndarray (n_chans, n_times) in uV, "mfde": float64 ndarray (n_chans * n_patches,),
     "ch_names": [str], "sfreq": float (Hz), "recording": str, "subject": str, "start_s": float,
     "label": str | None, "filled_channels": [str]}

and, for a soft-labelled window (e.g. HMS expert votes), ``"label_probs": {class: probability}``.

``DIR/manifest.csv`` has one row per segment (``path`` relative to DIR, ``subject``, ``recording``,
``start_s``, ``label``, ...) and drives splits and loading.

With ``output.format: hdf5`` a recording's windows are written instead as HDF5 shards of up to
``output.shard_size`` windows (:func:`save_shard`); the manifest row's ``path`` is then the shard and its
``shard_index`` the window's row in it (empty for pickles). :func:`load_window` reads a window of either
format from its manifest row, :func:`load_windows_into` a loader's micro-batch of them into one array;
every loader goes through them. A shard also stores each channel's 95th percentile of ``|x|``
(``abs_q95``), so that loaders scale its windows (:func:`scale_window`) with one division, and the soft
labels of its windows (``label_probs``).

Pickles run code when loaded, so segments are read with :class:`RestrictedUnpickler`, which builds
numpy arrays and plain Python values and refuses everything else.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import secrets
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np

from runtime.config import UsageError
from runtime.files import atomic_write

__all__ = [
    "MANIFEST_COLUMNS",
    "RestrictedUnpickler",
    "SCALE_EPS",
    "SCALE_QUANTILE",
    "abs_quantile",
    "load_windows_into",
    "format_label_probs",
    "parse_label_probs",
    "UnsafePickleError",
    "load_segment",
    "load_window",
    "read_manifest",
    "save_segment",
    "save_shard",
    "scale_window",
    "window_name",
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
    "shard_index",
)

#: Allowed values of ``output.format`` and ``output.dtype`` (configs/preprocess/m4cea.yaml).
OUTPUT_FORMATS = ("pickle", "hdf5")
SHARD_DTYPES = ("float32", "float16")

#: The official per-channel scaling (:func:`scale_window`): ``x / (quantile(|x|, 0.95) + 1e-8)``; shards store
#: the quantile of every channel (``abs_q95``).
SCALE_QUANTILE, SCALE_EPS = 0.95, 1e-8

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
            raise UsageError(
                f"Invalid label_probs cell {cell!r} in {source}: expected class=probability "
                "pairs joined by ';'."
            )
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
            row["shard_index"] = int(row["shard_index"]) if row.get("shard_index") else None
            rows.append(row)
    return rows


def abs_quantile(data: np.ndarray, quantile: float = 0.95) -> np.ndarray:
    """Per-channel quantile of ``|data|``, as ``np.quantile(np.abs(data), quantile, axis=-1, keepdims=True)``.

    Parameters
    ----------
    data : ndarray, shape (..., n_chans, n_times)
        Window(s) in uV.
    quantile : float
        In [0, 1] (the official scaling: 0.95).

    Returns
    -------
    magnitude : ndarray, shape (..., n_chans, 1), dtype of ``data``
        In uV; equal to the value of ``np.quantile`` (linear interpolation), computed in ``data``'s dtype.
    """
    magnitude = np.abs(data)
    n_times = magnitude.shape[-1]
    # np.quantile's linear interpolation between the order statistics lo and lo + 1, from one partition
    # at hi (the lower one is then the maximum left of it): ~8x faster than np.quantile, same values.
    position = quantile * (n_times - 1)
    lo = int(np.floor(position))
    hi = min(lo + 1, n_times - 1)
    magnitude.partition(hi, axis=-1)  # in place: magnitude is our own array
    upper = magnitude[..., hi : hi + 1]
    lower = upper if hi == lo else magnitude[..., :hi].max(axis=-1, keepdims=True)
    frac = position - lo
    step = upper - lower
    return lower + step * frac if frac < 0.5 else upper - step * (1 - frac)  # numpy's _lerp


def scale_window(
    data: np.ndarray, quantile: float = 0.95, eps: float = 1e-8, magnitude: np.ndarray | None = None
) -> np.ndarray:
    """Per-sample normalisation of the official loader: each channel / (95th percentile of |x| + eps).

    Parameters
    ----------
    data : ndarray, shape (..., n_chans, n_times)
        Window(s) in uV.
    quantile : float
        Quantile of ``|data|`` per channel (official: 0.95).
    eps : float
        Added to the divisor so flat channels stay finite (official: 1e-8).
    magnitude : ndarray, shape (..., n_chans, 1) | None
        ``abs_quantile(data, quantile)`` when already known (HDF5 shards store it, ``abs_q95``): the
        result is the same, without the partition of every channel.

    Returns
    -------
    scaled : ndarray, same shape and dtype as ``data``
        Dimensionless.

    References
    ----------
    Official M4CEA loader (Evigouse/M4CEA_Project), ``x / (np.quantile(np.abs(x), q=0.95, axis=-1,
    keepdims=True) + 1e-8)``.
    """
    if magnitude is None:
        magnitude = abs_quantile(data, quantile)
    return (data / (magnitude + eps)).astype(data.dtype, copy=False)


def window_name(row: dict) -> str:
    """Name of a manifest row's window for messages: its pickle, or ``shard[index]``."""
    index = row.get("shard_index")
    return row["path"] if index is None else f"{row['path']}[{index}]"


def load_window(root: str | os.PathLike, row: dict) -> dict:
    """Read the window of one manifest row, from its pickle or from its HDF5 shard.

    Parameters
    ----------
    root : path-like
        The preprocessing output folder (``row["path"]`` is relative to it).
    row : dict
        A manifest row (:func:`read_manifest`); ``shard_index`` None means a pickle.

    Returns
    -------
    segment : dict
        As :func:`load_segment`: ``data`` (ndarray, shape (n_chans, n_times), uV; float32 from a shard
        even if stored as float16), ``mfde`` (ndarray, shape (n_chans * n_patches,)), ``ch_names``,
        ``sfreq``, ``recording``, ``subject``, ``start_s``, ``label``, ``filled_channels``, and for a
        soft-labelled window ``label_probs`` (dict class -> probability; from a shard written before
        shards held them, the manifest row's).

    Raises
    ------
    FileNotFoundError
        If the pickle or shard is missing.
    ValueError
        If the file is unreadable or the shard has no row ``shard_index`` (the message names both).

    Notes
    -----
    Shards are opened lazily, once per process (so every DataLoader worker opens its own handles after
    the fork), and kept open in a small least-recently-used cache.
    """
    index = row.get("shard_index")
    if index is None:
        return load_segment(Path(root) / row["path"])
    window = _shard_reader(os.path.join(root, row["path"])).window(int(index))  # str: cheaper than Path
    if "label_probs" not in window and row.get("label_probs"):  # shards written before they held them
        window["label_probs"] = dict(row["label_probs"])
    return window


def load_windows_into(
    root: str | os.PathLike, rows: list[dict], out: np.ndarray, adapt=None
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Read the windows of several manifest rows into one array: the batched form of :func:`load_window`.

    Parameters
    ----------
    root : path-like
        The preprocessing output folder.
    rows : list of dict
        Manifest rows, pickles or shards in any mix and order.
    out : ndarray of float32, shape (len(rows), n_chans, n_times)
        Receives the windows, in uV, in the order of ``rows`` (float16 shards converted).
    adapt : callable | None
        ``adapt(window, magnitude)``, called on each window of ``out`` as soon as it is written (while it
        is in the cache), with its stored ``abs_q95`` (shape (n_chans, 1)) or None; it may change the
        window in place (:meth:`preprocess.adapt.WindowAdapter.adapt_in_place`).

    Returns
    -------
    mfde : list of ndarray, each shape (n_chans * n_patches,)
        The windows' MFDE weights, as stored.
    magnitudes : ndarray of float32, shape (len(rows), n_chans, 1) | None
        ``abs_quantile(out[i], SCALE_QUANTILE)`` of every window, read from the shards' ``abs_q95``; None
        when a row is a pickle or a shard written without it (the caller computes it then).

    Raises
    ------
    ValueError
        If a window's shape is not ``out.shape[1:]`` (the message names the window), or as
        :func:`load_window`.
    FileNotFoundError
        If a pickle or shard is missing.

    Notes
    -----
    A shard's windows are copied straight from its memory map into ``out`` (one copy, no per-window
    dict); a shard read through h5py (chunked or compressed, written by another tool) is read once per
    call, in one sorted selection of the rows asked for.
    """
    mfde, magnitudes = [], np.empty((len(rows), out.shape[1], 1), np.float32)
    known = True
    by_shard: dict = {}
    for position, row in enumerate(rows):
        index = row.get("shard_index")
        if index is None:
            segment = load_segment(Path(root) / row["path"])
            _put(out, position, np.asarray(segment["data"]), row)
            mfde.append(segment["mfde"])
            known = False
            if adapt is not None:
                adapt(out[position], None)
        else:
            by_shard.setdefault(row["path"], []).append((position, int(index), row))
            mfde.append(None)
    for path, members in by_shard.items():
        reader = _shard_reader(os.path.join(root, path))
        indices = [index for _, index, _ in members]
        for index in indices:
            reader.check_index(index)
        data = reader.data
        if not isinstance(data, np.ndarray):  # h5py dataset: one read of the sorted rows
            unique = sorted(set(indices))
            block = data[unique]
            data = {index: block[k] for k, index in enumerate(unique)}
        for position, index, row in members:
            _put(out, position, data[index], row)
            mfde[position] = reader.mfde[index]
            if reader.abs_q95 is None:
                known = False
            else:
                magnitudes[position, :, 0] = reader.abs_q95[index]
            if adapt is not None:
                adapt(out[position], None if reader.abs_q95 is None else magnitudes[position])
    return mfde, magnitudes if known else None


def _put(out: np.ndarray, position: int, data: np.ndarray, row: dict) -> None:
    if data.shape != out.shape[1:]:
        raise UsageError(
            f"The window {window_name(row)} has shape {data.shape} (n_chans, n_times), but the folder's "
            f"windows are {out.shape[1:]}: preprocess the folder with one montage and window."
        )
    out[position] = data


def save_shard(segments: list[dict], path: str | os.PathLike, dtype: str = "float32") -> None:
    """Write segments of one recording as one HDF5 shard, atomically (temporary name, then rename).

    Parameters
    ----------
    segments : list of dict
        Segment dicts as for :func:`save_segment`, all of one recording (same ``ch_names``, ``sfreq``,
        ``filled_channels``) and of one shape.
    path : path-like
        The shard file (``.h5``).
    dtype : {"float32", "float16"}
        Storage type of ``data`` (uV); float16 halves the size (relative error about 5e-4, values above
        65504 uV overflow, far beyond the rejection threshold ``reject.max_abs_uv``).

    Notes
    -----
    Layout: ``data`` (n, n_chans, n_times) and ``mfde`` (n, n_chans * n_patches) float64, both contiguous
    (not chunked, not compressed) so that readers may memory-map them; ``start_s`` float64, ``label``
    (empty string for no label), ``subject``, ``recording`` UTF-8 strings, each (n,); attributes
    ``ch_names``, ``filled_channels`` (lists of str), ``sfreq`` (Hz). ``abs_q95`` float32 (n, n_chans):
    :func:`abs_quantile` at :data:`SCALE_QUANTILE` of each channel of ``data`` as read back (after the
    float16 rounding), so that loaders scale a window with one division (:func:`scale_window`'s
    ``magnitude``: the same values). When a window has a soft label: ``label_probs`` float64
    (n, n_classes), its attribute ``classes`` (list of str, in the order of first appearance), a row of
    NaN for a window without one; shards written before these datasets are read as well
    (:func:`load_window` then takes the soft label from the manifest row).

    Raises
    ------
    ValueError
        If ``segments`` is empty or ``dtype`` is not allowed.
    """
    if dtype not in SHARD_DTYPES:
        raise ValueError(
            f"Invalid value for the 'output.dtype' parameter. Allowed values are {SHARD_DTYPES}, but got "
            f"{dtype!r} instead."
        )
    if not segments:
        raise ValueError(f"Invalid value for the 'segments' parameter: no window to write to {path}.")
    path = Path(path)
    first = segments[0]
    strings = h5py.string_dtype("utf-8")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            data = np.stack([np.asarray(s["data"]) for s in segments]).astype(dtype)
            f.create_dataset("data", data=data, track_times=False)
            magnitude = abs_quantile(data.astype(np.float32, copy=False), SCALE_QUANTILE)[..., 0]
            f.create_dataset("abs_q95", data=magnitude.astype(np.float32), track_times=False)
            mfde = np.stack([np.asarray(s["mfde"], np.float64) for s in segments])
            f.create_dataset("mfde", data=mfde, track_times=False)
            start_s = np.array([s["start_s"] for s in segments], np.float64)
            f.create_dataset("start_s", data=start_s, track_times=False)
            for key in ("label", "subject", "recording"):
                values = ["" if s[key] is None else str(s[key]) for s in segments]
                f.create_dataset(key, data=np.array(values, dtype=object), dtype=strings, track_times=False)
            soft = [s.get("label_probs") or {} for s in segments]
            classes = list(dict.fromkeys(name for probs in soft for name in probs))
            if classes:
                probs = np.full((len(segments), len(classes)), np.nan)
                for i, window_probs in enumerate(soft):
                    for name, p in window_probs.items():
                        probs[i, classes.index(name)] = float(p)
                f.create_dataset("label_probs", data=probs, track_times=False)
                f["label_probs"].attrs["classes"] = classes
            f.attrs["ch_names"] = list(first["ch_names"])
            f.attrs["filled_channels"] = list(first.get("filled_channels") or [])
            f.attrs["sfreq"] = float(first["sfreq"])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _ShardReader:
    """One open shard: its small arrays in memory and ``data`` memory-mapped (or read through h5py)."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise FileNotFoundError(f"Shard not found: {path} (listed in the manifest; preprocess again).")
        try:
            self._file = h5py.File(path, "r")
            f = self._file
            self.path = path
            self.mfde = f["mfde"][()]
            self.start_s = f["start_s"][()]
            self.strings = {k: f[k].asstr()[()] for k in ("label", "subject", "recording")}
            self.ch_names = [str(n) for n in f.attrs["ch_names"]]
            self.filled = [str(n) for n in f.attrs["filled_channels"]]
            self.sfreq = float(f.attrs["sfreq"])
            self.abs_q95 = f["abs_q95"][()] if "abs_q95" in f else None
            self.label_probs, self.classes = None, []
            if "label_probs" in f:
                self.label_probs = f["label_probs"][()]
                self.classes = [str(n) for n in f["label_probs"].attrs["classes"]]
            data = f["data"]
        except (OSError, KeyError) as err:
            raise ValueError(f"Shard {path} is not a readable window shard: {err}") from None
        offset = data.id.get_offset()
        if offset is not None and data.chunks is None and data.compression is None:
            mapped = np.memmap(path, dtype=data.dtype, mode="r", offset=offset, shape=data.shape)
            self.data = mapped.view(np.ndarray)  # plain views index faster than memmap's subclass
            self._file.close()  # the memory map needs no HDF5 handle
        else:  # written by another tool, chunked or compressed: read through h5py
            self.data = data

    def check_index(self, index: int) -> None:
        if not 0 <= index < len(self.start_s):
            raise ValueError(
                f"Shard {self.path} has {len(self.start_s)} windows, but the manifest asks for index {index}."
            )

    def window(self, index: int) -> dict:
        self.check_index(index)
        label = self.strings["label"][index]
        window = {
            "data": np.array(self.data[index], dtype=np.float32),
            "mfde": self.mfde[index],
            "ch_names": self.ch_names,
            "sfreq": self.sfreq,
            "recording": str(self.strings["recording"][index]),
            "subject": str(self.strings["subject"][index]),
            "start_s": float(self.start_s[index]),
            "label": str(label) or None,
            "filled_channels": self.filled,
        }
        if self.label_probs is not None and not np.isnan(self.label_probs[index]).all():
            probs = self.label_probs[index]
            window["label_probs"] = {c: float(p) for c, p in zip(self.classes, probs, strict=True) if p == p}
        return window


#: Open shards of this process: (pid, path) -> reader, least recently used first.
_SHARDS: OrderedDict = OrderedDict()
_MAX_OPEN_SHARDS = 64


def _shard_reader(path: str) -> _ShardReader:
    key = (os.getpid(), path)
    reader = _SHARDS.get(key)
    if reader is None:
        for stale in [k for k in _SHARDS if k[0] != key[0]]:  # inherited through a fork: never reused
            del _SHARDS[stale]
        reader = _SHARDS[key] = _ShardReader(Path(path))
        while len(_SHARDS) > _MAX_OPEN_SHARDS:
            _SHARDS.popitem(last=False)
    _SHARDS.move_to_end(key)
    return reader
