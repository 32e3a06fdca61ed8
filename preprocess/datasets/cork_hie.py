"""Cork neonatal EEG graded for hypoxic-ischaemic encephalopathy (HIE) background severity.

O'Toole J. M., Mathieson S. R., Raurale S. A., Magarelli F., Marnane W. P., Lightbody G., Boylan G. B.,
"Neonatal EEG graded for severity of background abnormalities in hypoxic-ischaemic encephalopathy",
Sci. Data 10, 129 (2023); Zenodo 10.5281/zenodo.7477575 (CC-BY 4.0). 169 one-hour EEGs of 53 term
neonates (``IDxx_epochY``: baby ``xx``, epoch ``Y``), 9 electrodes (F3, F4, C3, C4, T3, T4, O1, O2,
Cz), 256 Hz; each hour graded by two experts in consensus: 1 normal or mildly abnormal, 2 moderately
abnormal, 3 severely abnormal, 4 inactive (``eeg_grades.csv``, columns ``file_ID`` and ``grade``).

Adapter ``cork_hie`` (hie_grading): one recording-level label per file from the grade table
(``configs/datasets/cork_hie.yaml``: 1-4 -> ``normal_mild``, ``moderate``, ``severe``, ``inactive``);
the subject is the baby (``ID10``). A file whose grade is empty in the table (a held-out file) is
left out of the labelled output and counted (``notes.ungraded``). Montage ``neonatal_cork_8ch``
(F4-C4, C4-O2, F3-C3, C3-O1, T4-C4, C4-Cz, Cz-C3, C3-T3); window rejection never removes quiet EEG,
so grade 4 (inactive, below 5-10 uV) stays in (DESIGN.md section 4).

Layout: ``ROOT/eeg_grades.csv`` and the EDF files (``ROOT/EDF_format/IDxx_epochY.edf``) as on Zenodo,
or the grade table given with ``--dataset-option grades=PATH``.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from preprocess.datasets.base import (
    AnnotationError,
    DatasetAdapter,
    LayoutError,
    Option,
    check_label_coverage,
    load_label_map,
    register,
)
from preprocess.events import Event

__all__ = ["CorkHieAdapter", "read_grades"]

_FILE_ID = re.compile(r"^(ID\d+)_epoch\d+$", re.IGNORECASE)


def read_grades(path: str | os.PathLike) -> dict[str, int | None]:
    """Read the grade table (``eeg_grades.csv``).

    Returns
    -------
    grades : dict
        ``file_ID`` (``"ID10_epoch2"``) -> grade 1-4, or None where the table leaves it empty.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    AnnotationError
        If the columns ``file_ID`` and ``grade`` are missing, or a row has an empty or repeated file id
        or a grade other than 1-4 (file and line named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Grade table not found: {path}")
    grades: dict[str, int | None] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("file_ID", "grade") if c not in (reader.fieldnames or [])]
        if missing:
            raise AnnotationError(
                f"{path}, line 1: the grade table lacks the columns {missing}; it has {reader.fieldnames}."
            )
        for number, row in enumerate(reader, start=2):
            file_id = (row["file_ID"] or "").strip()
            text = (row["grade"] or "").strip()
            if not file_id or file_id in grades:
                raise AnnotationError(f"{path}, line {number}: empty or repeated file_ID {file_id!r}.")
            if text in ("", "NA", "NaN", "nan"):
                grades[file_id] = None
                continue
            try:
                grade = float(text)
            except ValueError:
                grade = float("nan")
            if grade not in (1.0, 2.0, 3.0, 4.0):
                raise AnnotationError(
                    f"{path}, line {number}: invalid grade {text!r} for {file_id}; grades are 1-4."
                )
            grades[file_id] = int(grade)
    return grades


@register
class CorkHieAdapter(DatasetAdapter):
    """Cork neonatal HIE grading set (hie_grading): one grade per one-hour recording."""

    name = "cork_hie"
    tasks = ("hie_grading",)
    montage = "neonatal_cork_8ch"
    layout = (
        "ROOT/eeg_grades.csv (columns file_ID, grade) and the recordings IDxx_epochY.edf anywhere "
        "under ROOT (Zenodo 10.5281/zenodo.7477575: ROOT/EDF_format/)."
    )
    options = {
        "grades": Option(
            None, "the grade table (default: ROOT/eeg_grades.csv, or one found under ROOT)", kind=str
        ),
        "label_map": Option("cork_hie", "label map name in configs/datasets or a YAML path"),
    }

    def find_recordings(self, root) -> list[Path]:
        root = Path(root)
        if not root.is_dir():
            raise LayoutError(f"The cork_hie root {root} is not a folder. Expected layout: {self.layout}")
        found = sorted(p for p in root.rglob("*.edf") if _FILE_ID.match(p.stem))
        if not found:
            raise self.layout_error(root, "No recording IDxx_epochY.edf")
        return found

    def _table(self, root) -> tuple[Path, dict[str, int | None]]:
        def compute():
            path = self.opts["grades"]
            if path is None:
                candidates = [Path(root) / "eeg_grades.csv", *sorted(Path(root).rglob("eeg_grades.csv"))]
                path = next((c for c in candidates if c.is_file()), None)
                if path is None:
                    raise self.layout_error(root, "No grade table eeg_grades.csv")
            return Path(path), read_grades(path)

        return self.cached(("grades", str(root)), compute)

    def events(self, root, task, *, montage=None, classes=None) -> dict[str, list[Event]]:
        self.check_task(task)
        path, grades = self._table(root)
        recordings = {p.stem: p.name for p in self.find_recordings(root)}
        check_label_coverage(recordings, grades, path, self.opts["partial"], self.name)
        grade_labels = {int(k): v for k, v in load_label_map(self.opts["label_map"])["grades"].items()}
        events, ungraded = {}, []
        for file_id, grade in grades.items():
            if file_id not in recordings:
                continue
            if grade is None:
                ungraded.append(recordings[file_id])
                continue
            events[recordings[file_id]] = [Event(None, 0.0, grade_labels[grade])]
        self.notes["ungraded"] = sorted(ungraded)
        return events

    def subjects(self, root) -> dict[str, str]:
        return {p.name: _FILE_ID.match(p.stem).group(1).upper() for p in self.find_recordings(root)}
