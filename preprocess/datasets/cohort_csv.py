"""Private cohorts as a folder of recordings and one events CSV (the ``--events`` mechanism).

Adapter ``csv`` (any task): the recordings are every file under ROOT that the pipeline reads
(:func:`preprocess.pipeline.find_recordings`), and the labels the CSV of :mod:`preprocess.events`
(``recording, subject, onset_s, duration_s, label``; an empty ``onset_s`` labels the whole recording,
e.g. a syndrome or an HIE grade): ``ROOT/events.csv`` or ``--dataset-option events=FILE``
(``--events FILE`` on the command line). Every recording must have at least one row (its subject comes
from there), and every row's recording must exist (``partial=true`` allows rows of absent ones).
"""

from __future__ import annotations

import csv
from pathlib import Path

from preprocess.datasets.base import DatasetAdapter, LayoutError, Option, check_label_coverage, register
from preprocess.events import Event, read_events_csv
from tasks import TASKS

__all__ = ["CsvAdapter"]


@register
class CsvAdapter(DatasetAdapter):
    """A cohort folder with an events CSV (any task)."""

    name = "csv"
    tasks = TASKS
    layout = (
        "recordings anywhere under ROOT (any format MNE reads) and ROOT/events.csv with the columns "
        "recording, subject, onset_s, duration_s, label (or --dataset-option events=FILE)."
    )
    options = {"events": Option(None, "the events CSV (default ROOT/events.csv)", kind=str)}

    def find_recordings(self, root) -> list[Path]:
        from preprocess.pipeline import find_recordings

        root = Path(root)
        if not root.is_dir():
            raise LayoutError(f"The csv root {root} is not a folder. Expected layout: {self.layout}")
        found = find_recordings([root])
        if not found:
            raise self.layout_error(root, "No recording")
        return found

    def _events_path(self, root) -> Path:
        path = Path(self.opts["events"]) if self.opts["events"] else Path(root) / "events.csv"
        if not path.is_file():
            raise self.layout_error(root, f"No events CSV {path}")
        return path

    def _table(self, root, classes):
        def compute():
            path = self._events_path(root)
            table, subjects = read_events_csv(path, list(classes))
            names = {p.name.lower(): p.name for p in self.find_recordings(root)}
            stems = {p.stem.lower(): p.name for p in self.find_recordings(root)}
            resolved = {}
            for key in table:
                name = names.get(key) or stems.get(key) or key
                resolved[name] = key
            check_label_coverage(list(names.values()), resolved, path, self.opts["partial"], self.name)
            return resolved, table, subjects

        return self.cached(("table", str(root), tuple(classes)), compute)

    def events(self, root, task, *, montage=None, classes=None) -> dict[str, list[Event]]:
        self.check_task(task)
        resolved, table, _ = self._table(root, classes if classes is not None else self.classes(task))
        on_disk = {p.name for p in self.find_recordings(root)}
        return {name: table[key] for name, key in resolved.items() if name in on_disk}

    def subjects(self, root) -> dict[str, str]:
        with open(self._events_path(root), newline="", encoding="utf-8-sig") as f:
            given = {
                (row.get("recording") or "").strip().lower(): (row.get("subject") or "").strip()
                for row in csv.DictReader(f)
            }
        subjects = {}
        for path in self.find_recordings(root):
            subject = given.get(path.name.lower()) or given.get(path.stem.lower())
            subjects[path.name] = subject or path.stem
        return subjects
