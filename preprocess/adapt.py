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
does not import ``models`` (see the import layers in the README).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from preprocess.segments import scale_window
from runtime.config import UsageError

__all__ = ["WindowAdapter"]


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
    n_times : int
        Samples per adapted window.

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
        if self.n_times % patch or self.n_times > patch * most or (
            contract.fixed_patches and self.n_times != patch * most
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
