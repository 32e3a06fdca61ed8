"""Synthetic EEG recordings made with MNE, for tests, benchmarks and examples.

The signal is EEG-like, not EEG: per channel, 1/f-shaped background (an AR(1) process) plus a 10 Hz
alpha rhythm and 50 Hz line noise, about 20-50 uV, in volts as MNE stores it.
"""

from __future__ import annotations

import os
from pathlib import Path

import mne
import numpy as np
from scipy.signal import lfilter

__all__ = ["CHBMIT_CHANNELS", "TEN_TWENTY", "synthetic_raw", "write_edf", "write_long_edf"]

#: The 23 bipolar channels of a CHB-MIT recording, with its duplicated ``T8-P8``.
CHBMIT_CHANNELS = (
    "FP1-F7 F7-T7 T7-P7 P7-O1 FP1-F3 F3-C3 C3-P3 P3-O1 FP2-F4 F4-C4 C4-P4 P4-O2 FP2-F8 F8-T8 T8-P8-0 P8-O2 "
    "FZ-CZ CZ-PZ P7-T7 T7-FT9 FT9-FT10 FT10-T8 T8-P8-1"
).split()

#: The 19 electrodes of the 10-20 system, as a referential clinical file names them (old names).
TEN_TWENTY = "Fp1 Fp2 F7 F3 Fz F4 F8 T3 C3 Cz C4 T4 T5 P3 Pz P4 T6 O1 O2".split()


def synthetic_eeg(n_chans: int, n_times: int, sfreq: float, seed: int = 0) -> np.ndarray:
    """EEG-like data in uV.

    Returns
    -------
    data : ndarray, shape (n_chans, n_times), float64, uV
    """
    rng = np.random.default_rng(seed)
    background = lfilter([1.0], [1.0, -0.97], rng.standard_normal((n_chans, n_times)), axis=-1) * 4.0
    t = np.arange(n_times) / sfreq
    phases = rng.uniform(0, 2 * np.pi, (n_chans, 2))
    alpha = 15.0 * np.sin(2 * np.pi * 10.0 * t + phases[:, :1])
    line = 5.0 * np.sin(2 * np.pi * 50.0 * t + phases[:, 1:])
    return background + alpha + line


def synthetic_raw(
    ch_names: list[str] | tuple[str, ...] = CHBMIT_CHANNELS,
    sfreq: float = 256.0,
    duration_s: float = 60.0,
    seed: int = 0,
) -> mne.io.RawArray:
    """A synthetic recording as an MNE ``RawArray`` (EEG channels, volts).

    Parameters
    ----------
    ch_names : sequence of str
        Channel names as a clinical file would store them (bipolar ``FP1-F7`` or referential ``Fp1``).
    sfreq : float
        Sampling rate in Hz.
    duration_s : float
        Duration in s.
    seed : int
        Seed of the generator.
    """
    n_times = round(duration_s * sfreq)
    data = synthetic_eeg(len(ch_names), n_times, sfreq, seed) * 1e-6
    info = mne.create_info(list(ch_names), sfreq, ch_types="eeg")
    return mne.io.RawArray(data, info, verbose="error")


def write_edf(raw: mne.io.BaseRaw, path: str | os.PathLike) -> Path:
    """Write ``raw`` as EDF with MNE's exporter; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mne.export.export_raw(path, raw, fmt="edf", overwrite=True, verbose="error")
    return path


def write_long_edf(
    path: str | os.PathLike,
    duration_s: float,
    sfreq: float = 256.0,
    ch_names: list[str] | tuple[str, ...] = CHBMIT_CHANNELS,
) -> Path:
    """Write a long synthetic EDF (hours) channel by channel with edfio, MNE's EDF writer.

    MNE's ``export_raw`` needs the whole recording in memory as float64 (4 GB for 24 h of 23 channels at
    256 Hz), so long files are written signal by signal; edfio's int16 storage keeps the peak memory at
    about 1 GB for 24 h. Channel ``i`` is :func:`synthetic_eeg` with seed ``i``, in uV, physical range
    +/- 3000 uV.

    Parameters
    ----------
    path : path-like
        The ``.edf`` file.
    duration_s : float
        Length in s.
    sfreq : float
        Sampling rate in Hz.
    ch_names : sequence of str
        Channel labels (default: the 23 CHB-MIT bipolar channels).

    Returns
    -------
    path : Path
    """
    import edfio

    n_times = int(duration_s * sfreq)
    signals = []
    for i, name in enumerate(ch_names):
        data = synthetic_eeg(1, n_times, sfreq, seed=i)[0]
        signals.append(
            edfio.EdfSignal(
                data, sfreq, label=name, physical_dimension="uV", physical_range=(-3000.0, 3000.0)
            )
        )
        del data
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    edfio.Edf(signals).write(path)
    return path
