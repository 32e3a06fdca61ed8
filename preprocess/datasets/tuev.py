"""TUH EEG Events Corpus (TUEV v2): epileptiform discharges against background.

Harati A., Golmohammadi M., Lopez S., Obeid I., Picone J., "Improved EEG event classification using
differential energy", IEEE Signal Processing in Medicine and Biology Symposium (2015); Obeid I., Picone
J., Front. Neurosci. 10, 196 (2016). Registration required; never redistributed.

Layout (v2.0): ``ROOT/edf/{train,eval}/<patient>/<name>.edf`` with ``<name>.rec`` beside: rows
``channel,start_s,stop_s,code`` (codes 1 SPSW, 2 GPED, 3 PLED, 4 EYEM, 5 ARTF, 6 BCKG; 1-s events per
channel of the TCP montage).

Adapter ``tuev`` (epileptiform_detection): codes map to ``epileptiform`` (1-3) and ``background`` (4-6)
(``configs/datasets/tuev.yaml``). Each event is widened by ``context_s`` on both sides (default 2 s: the
5-s segment around each 1-s event of BIOT, Yang et al. 2023, and CBraMod, Wang et al. 2025), clipped to
the recording, then events of all channels are merged: time where any channel is epileptiform is
``epileptiform``, other annotated time ``background``, unannotated time unlabelled. With the default
4-s windows on a 4-s grid only windows that lie wholly inside the merged events are labelled (isolated
events may give none; ``--set stride_s=1`` gives overlapping windows).

Split: TUEV has train and eval only. eval -> test; of the training patients a fraction
``val_fraction`` (default 0.2, as BIOT / CBraMod) drawn with ``split_seed`` (default 0) -> val, the rest
-> train. The subject is the patient (the file name's first part).
"""

from __future__ import annotations

import numpy as np

from preprocess.datasets.base import (
    AnnotationError,
    Option,
    intervals_to_events,
    load_label_map,
    recording_duration_s,
    register,
)
from preprocess.datasets.tuh import SPLIT_FOLDERS, TuhLayout, read_rec, tuh_subject
from preprocess.events import Event

__all__ = ["TuevAdapter", "rec_events"]


def rec_events(path, code_labels: dict, context_s: float = 0.0, end_s: float | None = None) -> list[Event]:
    """Events of one ``.rec`` file: codes mapped, widened by ``context_s``, epileptiform first over channels.

    Raises
    ------
    AnnotationError
        On a code the map does not know (file and line named), and as :func:`read_rec`.
    """
    intervals = []
    for _, start, stop, code, line in read_rec(path):
        if code not in code_labels:
            raise AnnotationError(
                f"{path}, line {line}: unknown event code {code}; the map knows "
                f"{sorted(code_labels)} (configs/datasets/tuev.yaml)."
            )
        intervals.append((max(0.0, start - context_s), stop + context_s, code_labels[code]))
    events, _ = intervals_to_events(intervals, ("epileptiform", "background"), end_s=end_s)
    return events


@register
class TuevAdapter(TuhLayout):
    """TUEV v2 (epileptiform_detection): ``.rec`` events, eval as test, a seeded val cut from train."""

    name = "tuev"
    tasks = ("epileptiform_detection",)
    layout = "ROOT/edf/{train,eval}/<patient>/<name>.edf with <name>.rec beside each recording (TUEV v2.0)."
    annotation_suffix = {"epileptiform_detection": ".rec"}
    options = {
        "context_s": Option(2.0, "seconds added before and after each event (BIOT/CBraMod: 2)"),
        "val_fraction": Option(0.2, "fraction of the training patients used for validation"),
        "split_seed": Option(0, "seed of the validation patients' draw"),
        "label_map": Option("tuev", "label map name in configs/datasets or a YAML path"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        if not 0.0 <= self.opts["val_fraction"] < 1.0:
            raise ValueError(
                f"Invalid value for the 'val_fraction' option of the dataset 'tuev': it must "
                f"lie in [0, 1), but got {self.opts['val_fraction']!r} instead."
            )
        if self.opts["context_s"] < 0:
            raise ValueError(
                f"Invalid value for the 'context_s' option of the dataset 'tuev': it must be "
                f">= 0, but got {self.opts['context_s']!r} instead."
            )

    def events(self, root, task, *, montage=None, classes=None) -> dict[str, list[Event]]:
        self.check_task(task)
        code_labels = {int(k): v for k, v in load_label_map(self.opts["label_map"])[task].items()}
        return {
            name: rec_events(
                path, code_labels, self.opts["context_s"], recording_duration_s(path.with_suffix(".edf"))
            )
            for name, path in self.annotation_files(root, task).items()
        }

    def split(self, root) -> dict[str, str]:
        recordings = self.find_recordings(root)
        train_patients = sorted({tuh_subject(p) for p in recordings if self.split_folder(p) == "train"})
        rng = np.random.default_rng(self.opts["split_seed"])
        n_val = int(np.floor(self.opts["val_fraction"] * len(train_patients) + 0.5))
        val = set(rng.permutation(train_patients)[:n_val].tolist()) if train_patients else set()
        return {
            p.name: ("val" if tuh_subject(p) in val else "train")
            if self.split_folder(p) == "train"
            else SPLIT_FOLDERS[self.split_folder(p)]
            for p in recordings
        }
