"""TUH EEG Artifact Corpus (TUAR v3): artefacts against clean EEG.

Hamid A., Gagliano K., Rahman S., Tulin N., Tchiong V., Obeid I., Picone J., "The Temple University
Artifact Corpus: an annotated corpus of EEG artifacts", IEEE Signal Processing in Medicine and Biology
Symposium (2020); Obeid I., Picone J., Front. Neurosci. 10, 196 (2016). Registration required; never
redistributed.

Layout (v3.0): ``ROOT/edf/<montage>/<name>.edf`` with ``<name>.csv`` beside (per-channel events:
``eyem``, ``chew``, ``shiv``, ``musc``, ``elpp``, ``elec``... and combined labels such as ``eyem_musc``).

Adapter ``tuar`` (artifact_detection): labels map by ``configs/datasets/tuar.yaml`` (combined labels
split at ``_``), events are merged over channels. ``labels=binary`` (default): time where any channel
has an artefact is ``artefact``; ``labels=types``: its type (``emg``, ``movement``, ``electrode``,
``device``, ``biological``), time with two types on different channels unlabelled and counted. TUAR
annotates artefacts only: the recording time no event covers is ``clean`` (written as explicit
``clean`` events, so that time left unlabelled by a conflict of types is not made clean). No
official split (fine-tuning's subject-wise split applies); the subject is the patient.
"""

from __future__ import annotations

from preprocess.datasets.base import Option, load_label_map, recording_duration_s, register
from preprocess.datasets.tuh import TuhLayout
from preprocess.datasets.tusz import tuh_csv_events
from preprocess.events import Event

__all__ = ["TuarAdapter"]


@register
class TuarAdapter(TuhLayout):
    """TUAR v3 (artifact_detection): per-channel artefact events, the rest clean."""

    name = "tuar"
    tasks = ("artifact_detection",)
    layout = "ROOT/edf/<montage>/<name>.edf with <name>.csv beside each recording (TUAR v3.0)."
    annotation_suffix = {"artifact_detection": ".csv"}
    needs_split_folders = False
    options = {
        "labels": Option(
            "binary",
            "binary (clean/artefact) or types (clean, device, emg, movement, electrode, biological)",
            choices=("binary", "types"),
        ),
        "label_map": Option("tuar", "label map name in configs/datasets or a YAML path"),
    }

    def _label_map(self) -> dict:
        table = load_label_map(self.opts["label_map"])[self.opts["labels"]]
        return {str(k).lower(): v for k, v in table.items()}

    def classes(self, task: str) -> tuple[str, ...]:
        if self.opts["labels"] == "binary":
            return super().classes(task)
        return ("clean", *dict.fromkeys(v for v in self._label_map().values() if v not in (None, "clean")))

    def events(self, root, task, *, montage=None, classes=None) -> dict[str, list[Event]]:
        self.check_task(task)
        label_map = self._label_map()
        events, conflict = {}, 0.0
        for name, path in self.annotation_files(root, task).items():
            events[name], seconds = tuh_csv_events(
                path,
                label_map,
                None,
                split_combined=True,
                fill="clean",
                end_s=recording_duration_s(path.with_suffix(".edf")),
            )
            conflict += seconds
        self.notes["conflict_s"] = conflict
        return events

    def split(self, root) -> None:
        return None
