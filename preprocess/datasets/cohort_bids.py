"""Private cohorts in BIDS (EEG-BIDS), read with mne-bids.

Pernet C. R. et al., "EEG-BIDS, an extension to the brain imaging data structure for
electroencephalography", Sci. Data 6, 103 (2019); Appelhoff S. et al., "MNE-BIDS: organizing
electrophysiological data into the BIDS format and facilitating their analysis", J. Open Source Softw.
4(44), 1896 (2019).

Adapter ``bids`` (any task): recordings are the ``sub-*/[ses-*/]eeg/*_eeg.<ext>`` files that
``mne_bids.find_matching_paths`` finds (EDF, BDF, BrainVision, EEGLAB, FIF); the subject is
``sub-<label>``. Labels come from

- each recording's ``*_events.tsv`` (columns ``onset``, ``duration`` and the label column
  ``label_column``, default ``trial_type``): one event per row; a row with ``onset`` ``n/a`` labels the
  whole recording (``label_column=null`` ignores the events files); and/or
- ``participants.tsv`` (``--dataset-option participant_column=syndrome``): a recording-level label per
  participant (e.g. the syndrome for syndrome_classification).

Labels must be the task's classes (or ``labels.classes`` of the run), or be mapped by a YAML file
``--dataset-option label_map=FILE`` (label -> class, or null to ignore the rows). An unknown label is an
error naming the file and row. A ``split`` column in ``participants.tsv`` (train/val/test) is used as
the split. Recordings without any event get ``labels.default`` (``--set labels.default=...``) or stay
unlabelled.
"""

from __future__ import annotations

import csv
from pathlib import Path

from preprocess.datasets.base import (
    SPLIT_NAMES,
    AnnotationError,
    DatasetAdapter,
    LayoutError,
    Option,
    load_label_map,
    register,
)
from preprocess.events import Event
from tasks import TASKS

__all__ = ["BidsAdapter", "read_tsv"]

#: Recording formats EEG-BIDS allows.
BIDS_EEG_EXTENSIONS = (".edf", ".bdf", ".vhdr", ".set", ".fif")


def read_tsv(path) -> list[dict]:
    """Rows of a BIDS ``.tsv`` file as dicts (``n/a`` kept as written)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@register
class BidsAdapter(DatasetAdapter):
    """A BIDS cohort (any task): ``*_events.tsv`` and/or a ``participants.tsv`` column as labels."""

    name = "bids"
    tasks = TASKS
    layout = (
        "a BIDS dataset: ROOT/participants.tsv, "
        "ROOT/sub-<label>/[ses-<label>/]eeg/sub-<label>_..._eeg.<edf|bdf|vhdr|set|fif> "
        "with sub-<label>_..._events.tsv beside."
    )
    options = {
        "label_column": Option(
            "trial_type", "column of *_events.tsv holding the label (null: ignore the events files)", kind=str
        ),
        "participant_column": Option(
            None, "column of participants.tsv giving each subject's recordings one label", kind=str
        ),
        "label_map": Option(None, "YAML file mapping labels to classes (null ignores a label)", kind=str),
    }

    def _paths(self, root):
        def compute():
            from mne_bids import find_matching_paths

            root_path = Path(root)
            if not root_path.is_dir():
                raise LayoutError(
                    f"The bids root {root_path} is not a folder. Expected layout: {self.layout}"
                )
            paths = find_matching_paths(
                root_path, datatypes="eeg", suffixes="eeg", extensions=BIDS_EEG_EXTENSIONS
            )
            paths = sorted((p for p in paths if p.fpath.is_file()), key=lambda p: str(p.fpath))
            if not paths:
                raise self.layout_error(root_path, "No EEG recording sub-*/[ses-*/]eeg/*_eeg.<ext>")
            return paths

        return self.cached(("paths", str(root)), compute)

    def find_recordings(self, root) -> list[Path]:
        return [p.fpath for p in self._paths(root)]

    def subjects(self, root) -> dict[str, str]:
        return {p.fpath.name: f"sub-{p.subject}" for p in self._paths(root)}

    def _participants(self, root) -> tuple[Path, list[dict]]:
        path = Path(root) / "participants.tsv"
        if not path.is_file():
            raise self.layout_error(root, "No participants.tsv")
        return path, read_tsv(path)

    def _map(self, label: str, classes, where: str) -> str | None:
        mapping = self.cached(
            "label_map", lambda: load_label_map(self.opts["label_map"]) if self.opts["label_map"] else {}
        )
        if label in mapping:
            return mapping[label]
        if label in classes:
            return label
        raise AnnotationError(
            f"Unknown label {label!r} in {where}. Allowed labels are {list(classes)}; map "
            "it with --dataset-option label_map=FILE (a YAML of label: class, null to "
            "ignore)."
        )

    def events(self, root, task, *, montage=None, classes=None) -> dict[str, list[Event]]:
        self.check_task(task)
        classes = list(classes if classes is not None else self.classes(task))
        column = self.opts["label_column"]
        events: dict[str, list[Event]] = {}
        for bids_path in self._paths(root) if column else ():
            name = bids_path.fpath.name
            tsv = bids_path.copy().update(suffix="events", extension=".tsv").fpath
            if not Path(tsv).is_file():
                continue
            rows = read_tsv(tsv)
            if rows and column not in rows[0]:
                raise AnnotationError(
                    f"{tsv}, line 1: no label column {column!r} (columns "
                    f"{list(rows[0])}); set --dataset-option label_column=..."
                )
            for number, row in enumerate(rows, start=2):
                where = f"{tsv}, line {number}"
                label = self._map((row.get(column) or "").strip(), classes, where)
                if label is None:
                    continue
                try:
                    onset_text, duration_text = row["onset"].strip(), (row.get("duration") or "n/a").strip()
                    onset = None if onset_text in ("n/a", "") else float(onset_text)
                    duration = 0.0 if duration_text in ("n/a", "") else float(duration_text)
                except (KeyError, ValueError):
                    raise AnnotationError(
                        f"{where}: invalid onset/duration {row.get('onset')!r}, "
                        f"{row.get('duration')!r} (seconds or n/a)."
                    ) from None
                events.setdefault(name, []).append(Event(onset, duration, label))
        participant_column = self.opts["participant_column"]
        if participant_column:
            path, participants = self._participants(root)
            if participants and participant_column not in participants[0]:
                raise AnnotationError(
                    f"{path}, line 1: no column {participant_column!r} (columns {list(participants[0])})."
                )
            by_subject = {}
            for number, row in enumerate(participants, start=2):
                value = (row.get(participant_column) or "").strip()
                if value not in ("", "n/a"):
                    where = f"{path}, line {number}"
                    by_subject[row["participant_id"].strip()] = self._map(value, classes, where)
            subjects = self.subjects(root)
            unlisted = sorted({s for s in subjects.values() if s not in by_subject})
            if unlisted:
                raise LayoutError(
                    f"{len(unlisted)} subject(s) with recordings have no "
                    f"{participant_column!r} in {path}: {unlisted[:8]}."
                )
            for name, subject in subjects.items():
                if by_subject[subject] is not None:
                    events.setdefault(name, []).append(Event(None, 0.0, by_subject[subject]))
        return events

    def split(self, root) -> dict[str, str] | None:
        path = Path(root) / "participants.tsv"
        if not path.is_file():
            return None
        participants = read_tsv(path)
        if not participants or "split" not in participants[0]:
            return None
        by_subject = {}
        for number, row in enumerate(participants, start=2):
            value = (row["split"] or "").strip()
            if value not in SPLIT_NAMES:
                raise AnnotationError(
                    f"{path}, line {number}: split {value!r} is not one of {list(SPLIT_NAMES)}."
                )
            by_subject[row["participant_id"].strip()] = value
        subjects = self.subjects(root)
        return {name: by_subject[subject] for name, subject in subjects.items() if subject in by_subject}
