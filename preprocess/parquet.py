"""EEG stored as a parquet table (the HMS competition's ``train_eegs/<eeg_id>.parquet``) as an MNE Raw.

MNE has no parquet reader: :func:`read_parquet_eeg` reads the table with pandas (pyarrow engine) and
builds an :class:`mne.io.RawArray` in volts, which the pipeline then treats like any recording
(:func:`preprocess.reading.read_recording` hands ``.parquet`` files here). One column per channel, one
row per sample, values in microvolts, a fixed sampling rate (200 Hz in HMS, which stores no time column).
"""

from __future__ import annotations

import os
from pathlib import Path

import mne
import numpy as np

__all__ = ["HMS_EEG_COLUMNS", "HMS_SFREQ", "ParquetLayoutError", "read_parquet_eeg"]

#: The 19 referential 10-20 electrodes of the HMS EEG tables (old names T3/T4/T5/T6), in file order.
HMS_EEG_COLUMNS = (
    "Fp1", "F3", "C3", "P3", "F7", "T3", "T5", "O1", "Fz", "Cz", "Pz",
    "Fp2", "F4", "C4", "P4", "F8", "T4", "T6", "O2",
)  # fmt: skip

#: Sampling rate of the HMS EEG tables, in Hz.
HMS_SFREQ = 200.0


class ParquetLayoutError(ValueError):
    """A parquet EEG table lacks the expected columns or holds non-numeric values (file named)."""


def read_parquet_eeg(
    path: str | os.PathLike,
    sfreq: float = HMS_SFREQ,
    eeg_columns: tuple[str, ...] = HMS_EEG_COLUMNS,
    ecg_columns: tuple[str, ...] = ("EKG",),
) -> mne.io.RawArray:
    """Read an EEG table (columns = channels, rows = samples, uV) into an MNE Raw in volts.

    Parameters
    ----------
    path : path-like
        A ``.parquet`` file.
    sfreq : float
        Sampling rate in Hz (HMS: 200).
    eeg_columns : tuple of str
        Columns that must be present, read as EEG channels (HMS: the 19 referential electrodes).
    ecg_columns : tuple of str
        Columns read as ECG channels when present (HMS: ``EKG``); other columns are ignored.

    Returns
    -------
    raw : mne.io.RawArray
        Preloaded, shape (n_channels, n_samples), in V; NaN samples of the table stay NaN (the pipeline
        rejects the windows that hold them).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ParquetLayoutError
        If the file is not a readable parquet table, lacks an EEG column, holds a non-numeric column or
        no sample.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"EEG table not found: {path}")
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ParquetLayoutError(f"{path} is not a readable parquet EEG table: {err}") from None
    missing = [c for c in eeg_columns if c not in table.columns]
    if missing:
        raise ParquetLayoutError(
            f"The EEG table {path} lacks the electrode columns {missing}; it has {list(table.columns)}. "
            f"Expected {list(eeg_columns)} (+ {list(ecg_columns)}) in uV at {sfreq:g} Hz."
        )
    if len(table) == 0:
        raise ParquetLayoutError(f"The EEG table {path} holds no sample.")
    names = list(eeg_columns) + [c for c in ecg_columns if c in table.columns]
    try:
        data_uv = table[names].to_numpy(dtype=np.float64).T
    except (ValueError, TypeError) as err:
        raise ParquetLayoutError(f"The EEG table {path} holds non-numeric values: {err}") from None
    info = mne.create_info(
        names, sfreq, ["eeg"] * len(eeg_columns) + ["ecg"] * (len(names) - len(eeg_columns))
    )
    return mne.io.RawArray(data_uv * 1e-6, info, verbose="error")
