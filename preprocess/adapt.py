"""Stored windows adapted to a model family's input contract: one preprocessed folder serves every model.

A preprocessing output holds the paper's windows (1000 Hz, the montage's channel order, microvolts). Each
model family declares what it expects in a :class:`models.contract.InputContract` (sampling rate, patch
size, most patches, scaling); the data loaders build one :class:`WindowAdapter` from it and apply it to
every window they read:

1. polyphase resampling from the stored rate to the contract's (``scipy.signal.resample_poly``: an
   anti-aliasing Kaiser-windowed FIR, zero phase; 1000 -> 200 Hz is up 1, down 5);
2. scaling: a fixed factor of the microvolts (LaBraM: uV / 100) or, when the contract has none, the
   official M4CEA per-channel normalisation (:func:`preprocess.segments.scale_window`).

Channels keep the stored order: models that place channels by name (LaBraM's position table) are built
with the stored ``ch_names``. This module reads only the contract's plain attributes, so preprocessing
does not import ``models`` (see the import layers in docs/development.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from preprocess.segments import (
    SCALE_EPS,
    abs_quantile,
    load_window,
    load_windows_into,
    scale_window,
    window_name,
)
from runtime.config import UsageError

__all__ = ["WindowAdapter", "adapter_for_windows"]


class WindowAdapter:
    """Resample and scale stored windows for one model family.

    Parameters
    ----------
    contract : models.contract.InputContract
        The family's contract (``models.get_input_contract(name)``); its ``sfreq``, ``patch_samples``,
        ``max_patches``, ``fixed_patches``, ``uv_scale`` and ``family`` are read.
    sfreq_in : float
        Sampling rate of the stored windows, in Hz (the manifest's ``sfreq``, 1000 for the paper's
        preprocessing).
    n_times_in : int
        Samples per stored window (4000 = 4 s at 1000 Hz).

    Attributes
    ----------
    up, down : int
        Resampling factors, ``sfreq_out / sfreq_in = up / down`` (1 and 1 when the rates agree).
    n_times_in, n_times : int
        Samples per stored and per adapted window.

    Raises
    ------
    UsageError
        If the rates give no whole number of output samples, or the adapted window is not a whole
        number of the contract's patches, is longer than it accepts, or (for a fixed positional table)
        not exactly as long; the message names the window length and the setting to change.

    Examples
    --------
    >>> from models import get_input_contract
    >>> adapter = WindowAdapter(get_input_contract("labram_base"), sfreq_in=1000.0, n_times_in=4000)
    >>> adapter.n_times, (adapter.up, adapter.down)
    (800, (1, 5))
    """

    def __init__(self, contract, sfreq_in: float, n_times_in: int) -> None:
        self.contract = contract
        self.sfreq_in, self.sfreq = float(sfreq_in), float(contract.sfreq)
        self.n_times_in = int(n_times_in)
        ratio = Fraction(self.sfreq / self.sfreq_in).limit_denominator(10_000)
        self.up, self.down = ratio.numerator, ratio.denominator
        out = Fraction(int(n_times_in) * self.up, self.down)
        window_s = n_times_in / self.sfreq_in
        if out.denominator != 1:
            raise UsageError(
                f"Windows of {n_times_in} samples at {self.sfreq_in:g} Hz give no whole number of samples at "
                f"{self.sfreq:g} Hz, the rate of the {contract.family} model: choose a window_s that does "
                f"(preprocessing's --set window_s=...)."
            )
        self.n_times = int(out)
        patch, most = int(contract.patch_samples), int(contract.max_patches)
        if (
            self.n_times % patch
            or self.n_times > patch * most
            or (contract.fixed_patches and self.n_times != patch * most)
        ):
            need = f"exactly {most}" if contract.fixed_patches else f"1 to {most}"
            raise UsageError(
                f"Windows of {window_s:g} s ({self.n_times} samples at {self.sfreq:g} Hz) do not fit the "
                f"{contract.family} model, which takes {need} patches of {patch} samples "
                f"({patch / self.sfreq:g} s): preprocess with another window_s (--set window_s=...)."
            )

    @property
    def identity_rate(self) -> bool:
        """True when no resampling is needed."""
        return self.up == self.down

    def __call__(self, data: np.ndarray) -> np.ndarray:
        """Adapt one window (or a stack of windows).

        Parameters
        ----------
        data : ndarray, shape (..., n_chans, n_times_in)
            Stored window(s), in microvolts.

        Returns
        -------
        adapted : ndarray of float32, shape (..., n_chans, n_times)
            Resampled to the contract's rate and scaled as the family expects.
        """
        data = np.asarray(data, dtype=np.float32)
        if not self.identity_rate:
            data = resample_poly(data, self.up, self.down, axis=-1).astype(np.float32, copy=False)
        if self.contract.uv_scale is None:
            return scale_window(data)
        return data * np.float32(self.contract.uv_scale)

    def adapt_in_place(self, window: np.ndarray, magnitude: np.ndarray | None = None) -> None:
        """Adapt one stored window in place (no resampling: :attr:`identity_rate` only).

        Parameters
        ----------
        window : ndarray of float32, shape (n_chans, n_times_in)
            A stored window in microvolts; overwritten with ``self(window)``, to the bit.
        magnitude : ndarray of float32, shape (n_chans, 1) | None
            Its per-channel 95th percentile of ``|window|`` (:func:`preprocess.segments.abs_quantile`),
            as HDF5 shards store it (``abs_q95``): the scaling is then one division.

        Raises
        ------
        ValueError
            If the adapter resamples (the adapted window has another length).
        """
        if not self.identity_rate:
            raise ValueError(
                f"Invalid call: windows resampled from {self.sfreq_in:g} Hz to {self.sfreq:g} Hz cannot be "
                "adapted in place; use adapt_batch."
            )
        if self.contract.uv_scale is not None:
            window *= np.float32(self.contract.uv_scale)
            return
        if magnitude is None:
            magnitude = abs_quantile(window)
        np.divide(window, magnitude + SCALE_EPS, out=window)

    def adapt_batch(self, windows: np.ndarray, magnitudes: np.ndarray | None = None) -> np.ndarray:
        """Adapt a batch of windows, in place where the rate is kept: the same values as :meth:`__call__`.

        Parameters
        ----------
        windows : ndarray of float32, shape (batch, n_chans, n_times_in)
            Stored windows in microvolts; overwritten when no resampling is needed.
        magnitudes : ndarray of float32, shape (batch, n_chans, 1) | None
            The per-channel 95th percentile of ``|windows|``
            (:func:`preprocess.segments.abs_quantile`), as HDF5 shards store it (``abs_q95``): the
            per-channel scaling is then one division. Ignored when the rate changes or the contract has
            a fixed factor.

        Returns
        -------
        adapted : ndarray of float32, shape (batch, n_chans, n_times)
            Equal, window by window, to ``self(windows[i])``.
        """
        if not self.identity_rate:
            windows = resample_poly(windows, self.up, self.down, axis=-1).astype(np.float32, copy=False)
            if self.contract.uv_scale is not None:
                return windows * np.float32(self.contract.uv_scale)
            return scale_window(windows)
        for i, window in enumerate(windows):  # window by window: each stays in the cache
            self.adapt_in_place(window, None if magnitudes is None else magnitudes[i])
        return windows

    def read_batch(
        self, root: str | os.PathLike, rows: Sequence[Mapping], out: np.ndarray
    ) -> list[np.ndarray]:
        """Read the windows of manifest rows into ``out``, adapted: the loaders' micro-batch.

        Where the rate is kept, each window is read straight into ``out`` and adapted there while it is in
        the cache (:meth:`adapt_in_place`, with the ``abs_q95`` that shards store); otherwise the stored
        windows are read into a buffer first and resampled (:meth:`adapt_batch`).

        Parameters
        ----------
        root : path-like
            The preprocessing output folder.
        rows : sequence of mapping
            Manifest rows, pickles or shards in any mix (:func:`preprocess.segments.load_windows_into`).
        out : ndarray of float32, shape (len(rows), n_chans, n_times)
            Receives the adapted windows, in the order of ``rows`` (e.g. a loader's shared-memory batch).

        Returns
        -------
        mfde : list of ndarray
            Each window's MFDE weights, as stored.

        Raises
        ------
        ValueError
            If a stored window's shape is not ``(n_chans, n_times_in)``; as
            :func:`preprocess.segments.load_windows_into`.
        FileNotFoundError
            If a pickle or shard is missing.
        """
        if self.identity_rate:
            mfde, _ = load_windows_into(root, rows, out, self.adapt_in_place)
            return mfde
        stored = np.empty((len(rows), out.shape[1], self.n_times_in), np.float32)
        mfde, magnitudes = load_windows_into(root, rows, stored)
        out[...] = self.adapt_batch(stored, magnitudes)
        return mfde


def _column(rows: Sequence[Mapping], key: str) -> list:
    return sorted(
        {row[key] for row in rows if isinstance(row.get(key), (int, float)) and row[key] == row[key]}
    )


def adapter_for_windows(
    contract, root: str | os.PathLike, rows: Sequence[Mapping], n_chans: int, n_times: int | None = None
) -> WindowAdapter:
    """The adapter of a folder's windows, after checking them against the model, before any training.

    Reads the manifest's ``n_chans``, ``n_times`` and ``sfreq`` columns of every row and the first window
    (its ``data`` shape, and its ``sfreq`` when the manifest has none).

    Parameters
    ----------
    contract : models.contract.InputContract
        The model's contract (``models.get_input_contract(model_config)``).
    root : path-like
        Preprocessing output folder (the rows' ``path`` is relative to it).
    rows : sequence of dict
        Manifest rows (:func:`preprocess.segments.read_manifest`), at least one.
    n_chans : int
        Channels the model takes (the stored windows must have as many, in the model's order).
    n_times : int | None
        Samples per window the model takes after adaptation (M4CEA: 4000), or None when any length that
        fits the contract works (LaBraM: up to 16 patches of 1 s).

    Returns
    -------
    adapter : WindowAdapter
        For the folder's rate and window length; ``adapter.n_times`` is the adapted length.

    Raises
    ------
    UsageError
        If windows have another channel count, several lengths or rates, no known rate, or give a length
        the model does not take; the message names a file, the values found and the setting to change.
    FileNotFoundError
        If the first window's file is missing.
    """
    root = Path(root)
    first_path = root / window_name(rows[0])
    first = load_window(root, rows[0])
    wrong = [value for value in _column(rows, "n_chans") if value != n_chans]
    if wrong:
        example = next(row["path"] for row in rows if row.get("n_chans") in wrong)
        raise UsageError(
            f"The data folder {root} holds windows with n_chans={wrong} (e.g. {example}), but the model "
            f"expects n_chans={n_chans}: preprocess with the model's montage, or set the model's channels "
            "to match the data."
        )
    sfreqs = _column(rows, "sfreq") or [float(first.get("sfreq") or 0.0)]
    if len(sfreqs) != 1 or not sfreqs[0] > 0:
        raise UsageError(
            f"The windows of {root} must share one known sampling rate, but the manifest's sfreq column "
            f"gives {sfreqs} Hz: preprocess the folder with one configuration."
        )
    sfreq_in = sfreqs[0]
    want_in = None if n_times is None else n_times * sfreq_in / float(contract.sfreq)
    lengths = _column(rows, "n_times")
    shape = tuple(getattr(first["data"], "shape", ()))
    if want_in is not None and any(value != want_in for value in lengths):
        found = [value for value in lengths if value != want_in]
        example = next(row["path"] for row in rows if row.get("n_times") in found)
        raise UsageError(
            f"The data folder {root} holds windows with n_times={found} (e.g. {example}), but the model "
            f"expects n_times={n_times} at {float(contract.sfreq):g} Hz ({want_in:g} samples at "
            f"{sfreq_in:g} Hz): preprocess with the model's window, or set the model's size "
            "(model.n_patches, model.patch_samples) to match the data."
        )
    if len(lengths) > 1:
        raise UsageError(
            f"The data folder {root} holds windows of several lengths, n_times={lengths}: preprocess it with "
            "one window_s."
        )
    n_times_in = lengths[0] if lengths else (shape[-1] if shape else 0)
    if shape != (n_chans, n_times_in) or (want_in is not None and n_times_in != want_in):
        expected = (n_chans, int(want_in) if want_in is not None else n_times_in)
        raise UsageError(
            f"The window {first_path} has shape {shape} (n_chans, n_times), but the model expects "
            f"{expected} at {sfreq_in:g} Hz: preprocess with the model's montage and window, or set the "
            "model's size to match the data."
        )
    return WindowAdapter(contract, sfreq_in=sfreq_in, n_times_in=n_times_in)
