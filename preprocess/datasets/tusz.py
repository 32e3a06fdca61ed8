"""TUH EEG Seizure Corpus (TUSZ v2): seizure types and seizure onsets.

Shah V., von Weltin E., Lopez S., McHugh J. R., Veloso L., Golmohammadi M., Obeid I., Picone J., "The
Temple University Hospital Seizure Detection Corpus", Front. Neuroinform. 12, 83 (2018); Obeid I.,
Picone J., Front. Neurosci. 10, 196 (2016). Registration required; never redistributed.

Layout (v2.0): ``ROOT/edf/{train,dev,eval}/<patient>/<session>/<montage>/<patient>_sNNN_tNNN.edf`` with
``.csv`` (per-channel events with the seizure type) and ``.csv_bi`` (whole-recording ``seiz``/``bckg``
terms) beside each recording. Official splits: train, dev (-> val), eval (-> test); patients do not
cross splits. The subject is the patient (the file name's first part).

Adapter ``tusz``:

``seizure_type``
    The per-channel ``.csv`` events are mapped to the task's classes by ``configs/datasets/tusz.yaml``
    (focal types fnsz, cpsz, spsz -> FNSZ; absz -> ABSZ; tcsz -> TCSZ; other types, background and
    unspecified seizures -> null, left unlabelled; there are no spasms in TUSZ) and merged over
    channels: time covered by one class gets it, time covered by two classes on different channels is
    left unlabelled and counted (``notes.conflict_s``). Time outside seizures is unlabelled.
``onset_detection``
    The ``.csv_bi`` terms: ``seiz`` -> ``seizure``, ``bckg`` -> ``background``.

A label the map does not know is an error naming the file and line; so is an event ending after the
``# duration`` the file declares.
"""

from __future__ import annotations

from preprocess.datasets.base import AnnotationError, Option, intervals_to_events, load_label_map, register
from preprocess.datasets.tuh import TuhLayout, read_tuh_csv
from preprocess.events import Event

__all__ = ["TuszAdapter", "tuh_csv_events"]


def tuh_csv_events(
    path, label_map: dict, priority=None, split_combined: bool = False, fill: str | None = None, end_s=None
) -> tuple[list[Event], float]:
    """Events of one TUH ``.csv``/``.csv_bi`` file, labels mapped and merged over channels.

    Parameters
    ----------
    path : path-like
        The annotation file (:func:`preprocess.datasets.tuh.read_tuh_csv`).
    label_map : dict
        File label -> class name, or None (unlabelled).
    priority : sequence of str | None
        Class precedence where channels disagree (:func:`preprocess.datasets.base.intervals_to_events`).
    split_combined : bool
        Split combined labels at ``_`` (TUAR's ``eyem_musc``) and map each part.
    fill : str | None
        Label of the recording time no row covers (TUAR: ``clean``); it gives way to every other label.
    end_s : float | None
        The recording's duration when the file declares none (needed by ``fill``).

    Returns
    -------
    events : list of Event
    conflict_s : float
        Seconds left unlabelled because channels disagree.

    Raises
    ------
    AnnotationError
        On a label the map does not know (file and line named), and as :func:`read_tuh_csv`.
    """
    duration, rows = read_tuh_csv(path)
    intervals = []
    for _, start, stop, label, line in rows:
        parts = label.split("_") if split_combined else [label]
        unknown = [p for p in parts if p not in label_map]
        if unknown:
            raise AnnotationError(
                f"{path}, line {line}: unknown label {label!r}; the label map knows {sorted(label_map)}."
            )
        for part in dict.fromkeys(parts):
            intervals.append((start, stop, label_map[part]))
    end = duration if duration is not None else end_s
    if fill is not None:
        if end is None:
            raise AnnotationError(
                f"{path}: no '# duration' line and no recording duration to fill with {fill!r}."
            )
        intervals.append((0.0, end, fill))
    return intervals_to_events(intervals, priority, end_s=end, weak=(fill,) if fill else ())


@register
class TuszAdapter(TuhLayout):
    """TUSZ v2 (seizure_type from ``.csv``, onset_detection from ``.csv_bi``), official splits."""

    name = "tusz"
    tasks = ("seizure_type", "onset_detection")
    layout = (
        "ROOT/edf/{train,dev,eval}/<patient>/<session>/<montage>/<name>.edf with <name>.csv and "
        "<name>.csv_bi beside each recording (TUSZ v2.0)."
    )
    annotation_suffix = {"seizure_type": ".csv", "onset_detection": ".csv_bi"}
    options = {"label_map": Option("tusz", "label map name in configs/datasets or a YAML path")}

    def events(self, root, task, *, montage=None, classes=None) -> dict[str, list[Event]]:
        self.check_task(task)
        label_map = {str(k).lower(): v for k, v in load_label_map(self.opts["label_map"])[task].items()}
        priority = ("seizure", "background") if task == "onset_detection" else None
        events, conflict = {}, 0.0
        for name, path in self.annotation_files(root, task).items():
            events[name], seconds = tuh_csv_events(path, label_map, priority)
            conflict += seconds
        self.notes["conflict_s"] = conflict
        return events

    def default_label(self, task: str) -> str | None:
        return "background" if task == "onset_detection" else None
