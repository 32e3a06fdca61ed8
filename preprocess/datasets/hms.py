"""HMS harmful brain activity (Kaggle "HMS - Harmful Brain Activity Classification", 2024).

Jing J. et al., "Development of expert-level classification of seizures and rhythmic and periodic
patterns during EEG interpretation", Neurology 100(17), 2023. Long ICU EEGs of Massachusetts General
Hospital; 50-s samples annotated by several experts, each voting for one of seizure, LPD, GPD, LRDA, GRDA
or other; the votes are the sample's soft label.

Adapter ``hms`` (harmful_brain_activity). Layout as the competition distributes it::

    ROOT/train.csv         eeg_id, eeg_sub_id, eeg_label_offset_seconds, spectrogram_id, ...,
                           label_id, patient_id, expert_consensus, seizure_vote, lpd_vote, gpd_vote,
                           lrda_vote, grda_vote, other_vote
    ROOT/train_eegs/<eeg_id>.parquet   19 referential electrodes (Fp1 ... O2, old names T3/T4/T5/T6)
                                       + EKG, one row per sample at 200 Hz, uV

Each row of ``train.csv`` labels the central 10 s of the 50-s sample that starts at
``eeg_label_offset_seconds``, i.e. ``[offset + 20, offset + 30)`` s: one event with the hard label
``expert_consensus`` (mapped to the task's class names: Seizure -> seizure, LPD -> lpd...) and the soft
label of the votes divided by their sum (``p_<class>`` in ``DIR/events.csv``, ``label_probs`` in each
window's pickle and the manifest). Rows of one EEG may overlap: a window inside two rows' central 10 s of
the same consensus gets the mean of their vote distributions (:func:`preprocess.events.window_label_probs`),
one across two consensus labels is dropped (``labels.straddle``). The subject is ``patient_id``; the
double banana is built from the referential electrodes; the notch is 60 Hz (US recordings). The parquet
tables are read by :func:`preprocess.parquet.read_parquet_eeg` (MNE has no parquet reader).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from preprocess.datasets.base import (
    AnnotationError,
    DatasetAdapter,
    Option,
    check_label_coverage,
    register,
)
from preprocess.events import Event

__all__ = ["CONSENSUS_LABELS", "HMS_COLUMNS", "HmsAdapter", "read_hms_table"]

#: ``expert_consensus`` values -> class names of the task harmful_brain_activity.
CONSENSUS_LABELS = {
    "Seizure": "seizure",
    "LPD": "lpd",
    "GPD": "gpd",
    "LRDA": "lrda",
    "GRDA": "grda",
    "Other": "other",
}

#: Vote columns, in the task's class order.
VOTE_COLUMNS = tuple(f"{label}_vote" for label in CONSENSUS_LABELS.values())

#: Columns of ``train.csv`` the adapter reads.
HMS_COLUMNS = ("eeg_id", "eeg_label_offset_seconds", "patient_id", "expert_consensus", *VOTE_COLUMNS)

#: The labelled part of a sample: seconds from its start, and length (central 10 s of 50 s).
LABEL_START_S, LABEL_DURATION_S = 20.0, 10.0


def read_hms_table(path: str | os.PathLike) -> dict[str, dict]:
    """Read the competition's ``train.csv`` into per-EEG events and subjects.

    Parameters
    ----------
    path : path-like
        The label table (columns :data:`HMS_COLUMNS`; others are ignored).

    Returns
    -------
    table : dict
        ``<eeg_id>.parquet`` -> ``{"subject": patient_id as str, "events": [Event, ...]}``; each event
        covers ``[offset + 20, offset + 30)`` s with the consensus class and the vote fractions.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    AnnotationError
        On a missing column, or a row (file and line named) with an empty or non-integer eeg_id, a
        negative or non-numeric offset, an unknown consensus, negative or non-numeric votes, no vote, or
        an EEG given two patients.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HMS label table not found: {path}")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in HMS_COLUMNS if c not in frame.columns]
    if missing:
        raise AnnotationError(
            f"{path}, line 1: the HMS table lacks the columns {missing}; it has {list(frame.columns)}."
        )
    table: dict[str, dict] = {}
    for number, row in enumerate(frame[list(HMS_COLUMNS)].itertuples(index=False, name=None), start=2):
        eeg_id, offset, patient, consensus, *votes = (str(v).strip() for v in row)
        where = f"{path}, line {number}"
        if not eeg_id.isdigit():
            raise AnnotationError(f"{where}: invalid eeg_id {eeg_id!r}; expected an integer id.")
        try:
            offset_s = float(offset)
            counts = np.array([float(v) for v in votes])
        except ValueError:
            raise AnnotationError(
                f"{where}: eeg_label_offset_seconds {offset!r} and the votes {votes} must be numbers."
            ) from None
        if not np.isfinite(offset_s) or offset_s < 0:
            raise AnnotationError(f"{where}: invalid eeg_label_offset_seconds {offset!r}; must be >= 0.")
        if not np.all(np.isfinite(counts)) or counts.min() < 0 or counts.sum() <= 0:
            raise AnnotationError(
                f"{where}: invalid votes {dict(zip(VOTE_COLUMNS, votes, strict=True))}; "
                "expected counts >= 0 with at least one vote."
            )
        if consensus not in CONSENSUS_LABELS:
            raise AnnotationError(
                f"{where}: invalid expert_consensus {consensus!r}; allowed values are "
                f"{list(CONSENSUS_LABELS)}."
            )
        if not patient:
            raise AnnotationError(f"{where}: empty patient_id for eeg_id {eeg_id}.")
        name = f"{eeg_id}.parquet"
        entry = table.setdefault(name, {"subject": patient, "events": []})
        if entry["subject"] != patient:
            raise AnnotationError(
                f"{where}: eeg_id {eeg_id} has two patients, {entry['subject']!r} and {patient!r}."
            )
        probs = dict(zip(CONSENSUS_LABELS.values(), (counts / counts.sum()).tolist(), strict=True))
        entry["events"].append(
            Event(offset_s + LABEL_START_S, LABEL_DURATION_S, CONSENSUS_LABELS[consensus], probs)
        )
    return table


@register
class HmsAdapter(DatasetAdapter):
    """HMS harmful brain activity (harmful_brain_activity): expert-vote soft labels of 10-s segments."""

    name = "hms"
    tasks = ("harmful_brain_activity",)
    montage = "double_banana"
    layout = (
        "ROOT/train.csv (eeg_id, eeg_label_offset_seconds, patient_id, expert_consensus, seizure_vote, "
        "lpd_vote, gpd_vote, lrda_vote, grda_vote, other_vote, ...) and ROOT/train_eegs/<eeg_id>.parquet "
        "(19 electrodes Fp1 ... O2 + EKG, 200 Hz, uV), as the Kaggle competition distributes them."
    )
    options = {
        "labels": Option("train.csv", "the label table, relative to ROOT or absolute"),
        "eegs": Option("train_eegs", "the folder of <eeg_id>.parquet tables, relative to ROOT or absolute"),
    }

    def _path(self, root, key) -> Path:
        return Path(root) / self.opts[key]

    def find_recordings(self, root) -> list[Path]:
        root = Path(root)
        folder = self._path(root, "eegs")
        if not folder.is_dir():
            raise self.layout_error(root, f"No EEG folder {self.opts['eegs']}")
        found = sorted(folder.glob("*.parquet"))
        if not found:
            raise self.layout_error(root, f"No <eeg_id>.parquet table in {folder}")
        return found

    def _table(self, root) -> tuple[Path, dict]:
        def compute():
            path = self._path(root, "labels")
            if not path.is_file():
                raise self.layout_error(root, f"No label table {self.opts['labels']}")
            return path, read_hms_table(path)

        return self.cached(("table", str(root)), compute)

    def events(self, root, task, *, montage=None, classes=None) -> dict[str, list[Event]]:
        self.check_task(task)
        path, table = self._table(root)
        recordings = [p.name for p in self.find_recordings(root)]
        check_label_coverage(recordings, table, path, self.opts["partial"], self.name)
        present = set(recordings)
        self.notes["labelled_segments"] = sum(len(v["events"]) for k, v in table.items() if k in present)
        return {name: entry["events"] for name, entry in table.items() if name in present}

    def subjects(self, root) -> dict[str, str]:
        _, table = self._table(root)
        return {p.name: table[p.name]["subject"] for p in self.find_recordings(root) if p.name in table}

    def config_overrides(self, task: str) -> dict:
        return {"notch_freq": 60.0}  # US recordings (Massachusetts General Hospital)
