"""Sleep-EDF (expanded) sleep stages (PhysioNet open data, ODC-By 1.0).

Kemp B., Zwinderman A. H., Tuk B., Kamphuisen H. A. C., Oberye J. J. L., "Analysis of a sleep-dependent
neuronal feedback loop: the slow-wave microcontinuity of the EEG", IEEE Trans. Biomed. Eng. 47(9),
1185-1194 (2000); Goldberger A. et al., PhysioNet, Circulation 2000.

Each night is a PSG file (``SC4ssNE0-PSG.edf``: Fpz-Cz and Pz-Oz EEG at 100 Hz, EOG, EMG...) and a
hypnogram (``SC4ssNxx-Hypnogram.edf``: EDF+ annotations only, scored in 30-s epochs by the
Rechtschaffen & Kales rules). Files are paired by their first six characters (``SC4001``: study,
subject ``ss``, night ``N``); the telemetry study ``ST7ssN`` is paired the same way. The subject is
the study and subject number (``SC00``, ``ST01``).

Stages go to AASM (``configs/datasets/sleep_edf.yaml``): W, N1, N2, N3 (R&K stages 3 and 4), REM;
movement time and unscored (``?``) epochs are dropped and counted (``notes``). Epochs past the end of
the PSG (the hypnogram of SC4001 runs 6900 s of ``?`` past it) are cut at its end and counted.
``--dataset-option wake_edge_min=30`` keeps only the wake within 30 minutes of the first and last sleep
epoch, as DeepSleepNet (Supratak et al. 2017) and its successors do (default: all wake).

Preprocessing the adapter sets (``config_overrides``):

- montage ``sleep_edf_2ch`` (Fpz-Cz, Pz-Oz);
- 30-s windows every 30 s (``window_s: 30``, ``stride_s: 30``): one window per scored epoch, aligned
  with the hypnogram, as in the sleep-staging literature (30 s at 1000 Hz = 150 patches of 0.2 s per
  channel). The ``sleep_staging`` task averages the windows of each 30-s epoch, so
  ``--set window_s=5 --set stride_s=5`` (six windows per epoch) works too; the default 4-s windows
  would straddle epoch boundaries (30 is not a multiple of 4) and lose the straddling windows;
- ``h_freq: 40`` Hz and no notch: the EEG is sampled at 100 Hz, so 70 Hz and the 50 Hz notch lie at or
  above its Nyquist frequency.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from preprocess.datasets.base import (
    AnnotationError,
    DatasetAdapter,
    LayoutError,
    Option,
    check_label_coverage,
    load_label_map,
    recording_duration_s,
    register,
)
from preprocess.events import Event

__all__ = ["EPOCH_S", "SleepEdfAdapter", "hypnogram_epochs", "read_hypnogram", "stage_events"]

#: Scoring epoch of the hypnograms, in s.
EPOCH_S = 30.0

_PSG = re.compile(r"^(S[CT]\d{4})\w{2}-PSG\.edf$", re.IGNORECASE)
_HYPNOGRAM = re.compile(r"^(S[CT]\d{4})\w{2}-Hypnogram\.edf$", re.IGNORECASE)


def read_hypnogram(path: str | os.PathLike) -> list[tuple[float, float, str]]:
    """Read a Sleep-EDF hypnogram (EDF+ annotations, with ``mne.read_annotations``).

    Returns
    -------
    annotations : list of (onset_s, duration_s, description)
        In file order; descriptions as written (``"Sleep stage W"``, ``"Movement time"``).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    AnnotationError
        If it cannot be read as EDF+ annotations, or holds none.
    """
    import mne

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Hypnogram not found: {path}")
    try:
        annotations = mne.read_annotations(path)
    except Exception as err:  # MNE raises many types for a corrupt file; name the file
        raise AnnotationError(f"cannot read the hypnogram {path}: {type(err).__name__}: {err}") from None
    if len(annotations) == 0:
        raise AnnotationError(f"The hypnogram {path} holds no annotation.")
    return [
        (float(o), float(d), str(s))
        for o, d, s in zip(annotations.onset, annotations.duration, annotations.description, strict=True)
    ]


def stage_events(
    annotations: list[tuple[float, float, str]],
    stage_map: dict[str, str | None],
    source: str,
    end_s: float | None = None,
    wake_edge_min: float | None = None,
) -> tuple[list[Event], Counter]:
    """AASM stage events from hypnogram annotations.

    Parameters
    ----------
    annotations : list of (onset_s, duration_s, description)
        From :func:`read_hypnogram`.
    stage_map : dict
        Description -> stage, or None to drop (counted by description).
    source : str
        The hypnogram's name, for messages.
    end_s : float | None
        The PSG's duration: annotations are cut there (the cut epochs are counted).
    wake_edge_min : float | None
        Keep only wake within this many minutes before the first / after the last sleep epoch.

    Returns
    -------
    events : list of Event
        One per kept annotation (an annotation spans whole 30-s epochs).
    counts : Counter
        Epochs per stage kept (``"W"``...), dropped per description (``"dropped: Sleep stage ?"``),
        ``"cut: past the recording"`` and ``"cut: wake edges"``.

    Raises
    ------
    AnnotationError
        On a description the map does not know, or an annotation that is not whole 30-s epochs.
    """
    counts: Counter = Counter()
    kept: list[Event] = []
    for onset, duration, description in annotations:
        if description not in stage_map:
            raise AnnotationError(
                f"{source}: unknown hypnogram label {description!r} at {onset:g} s; the "
                f"map knows {list(stage_map)} (configs/datasets/sleep_edf.yaml)."
            )
        epochs = duration / EPOCH_S
        if abs(epochs - round(epochs)) > 1e-6 or abs(onset / EPOCH_S - round(onset / EPOCH_S)) > 1e-6:
            raise AnnotationError(
                f"{source}: {description!r} at {onset:g} s for {duration:g} s is not whole "
                f"{EPOCH_S:g}-s epochs."
            )
        stage = stage_map[description]
        if stage is None:
            counts[f"dropped: {description}"] += round(epochs)
            continue
        if end_s is not None and onset + duration > end_s:
            inside = max(0.0, (end_s - onset) // EPOCH_S * EPOCH_S)
            counts["cut: past the recording"] += round((duration - inside) / EPOCH_S)
            duration = inside
            if duration <= 0:
                continue
        kept.append(Event(onset, duration, stage))
    if wake_edge_min is not None:
        sleep = [e for e in kept if e.label != "W"]
        if sleep:
            first, last = sleep[0].onset_s, sleep[-1].onset_s + sleep[-1].duration_s
            lo, hi = first - wake_edge_min * 60.0, last + wake_edge_min * 60.0
            trimmed = []
            for e in kept:
                a, b = max(e.onset_s, lo), min(e.onset_s + e.duration_s, hi)
                counts["cut: wake edges"] += round((e.duration_s - max(b - a, 0.0)) / EPOCH_S)
                if b > a:
                    trimmed.append(Event(a, b - a, e.label))
            kept = trimmed
    for e in kept:
        counts[e.label] += round(e.duration_s / EPOCH_S)
    return kept, counts


def hypnogram_epochs(path: str | os.PathLike, stage_map: dict | None = None) -> Counter:
    """30-s epochs per AASM stage of one hypnogram, and the dropped epochs per description."""
    stage_map = stage_map or load_label_map("sleep_edf")["stages"]
    _, counts = stage_events(read_hypnogram(path), stage_map, str(path))
    return counts


@register
class SleepEdfAdapter(DatasetAdapter):
    """Sleep-EDF (sleep_staging): hypnograms to AASM 30-s epochs, PSG paired with its hypnogram."""

    name = "sleep_edf"
    tasks = ("sleep_staging",)
    montage = "sleep_edf_2ch"
    layout = (
        "SC4ssNE0-PSG.edf with its SC4ssNxx-Hypnogram.edf (and ST7ssNJ0-PSG.edf with "
        "ST7ssNxx-Hypnogram.edf) anywhere under ROOT, as in PhysioNet's sleep-edfx/1.0.0 "
        "(sleep-cassette/, sleep-telemetry/)."
    )
    options = {
        "wake_edge_min": Option(
            None, "keep wake only this many minutes around sleep (DeepSleepNet: 30)", kind=(int, float)
        ),
        "label_map": Option("sleep_edf", "label map name in configs/datasets or a YAML path"),
    }

    def _pairs(self, root) -> dict[str, tuple[Path | None, Path | None]]:
        def compute():
            root_path = Path(root)
            if not root_path.is_dir():
                raise LayoutError(
                    f"The sleep_edf root {root_path} is not a folder. Expected layout: {self.layout}"
                )
            pairs: dict[str, list] = {}
            for path in sorted(root_path.rglob("*.edf")):
                for index, pattern in ((0, _PSG), (1, _HYPNOGRAM)):
                    match = pattern.match(path.name)
                    if match:
                        key = match.group(1).upper()
                        slot = pairs.setdefault(key, [None, None])
                        if slot[index] is not None:
                            raise LayoutError(
                                f"Two {'PSG' if index == 0 else 'hypnogram'} files for {key}: "
                                f"{slot[index]} and {path}."
                            )
                        slot[index] = path
            if not any(psg for psg, _ in pairs.values()):
                raise self.layout_error(root_path, "No PSG file (*-PSG.edf)")
            return {k: tuple(v) for k, v in pairs.items()}

        return self.cached(("pairs", str(root)), compute)

    def find_recordings(self, root) -> list[Path]:
        return sorted(psg for psg, _ in self._pairs(root).values() if psg is not None)

    def events(self, root, task, *, montage=None, classes=None) -> dict[str, list[Event]]:
        self.check_task(task)
        pairs = self._pairs(root)
        psgs = [psg.name for psg, _ in pairs.values() if psg]
        hypnograms = {
            psg.name if psg else f"{key}E0-PSG.edf (absent; hypnogram {hyp.name})": hyp
            for key, (psg, hyp) in pairs.items()
            if hyp
        }
        check_label_coverage(psgs, hypnograms, "the *-Hypnogram.edf files", self.opts["partial"], self.name)
        stage_map = load_label_map(self.opts["label_map"])["stages"]
        totals: Counter = Counter()
        events = {}
        for psg, hypnogram in pairs.values():
            if psg is None or hypnogram is None:
                continue
            rec_events, counts = stage_events(
                read_hypnogram(hypnogram),
                stage_map,
                hypnogram.name,
                recording_duration_s(psg),
                self.opts["wake_edge_min"],
            )
            events[psg.name] = rec_events
            totals.update(counts)
        self.notes["epochs"] = {k: int(v) for k, v in sorted(totals.items())}
        return events

    def subjects(self, root) -> dict[str, str]:
        return {p.name: p.name[:2].upper() + p.name[3:5] for p in self.find_recordings(root)}

    def config_overrides(self, task: str) -> dict:
        return {"window_s": EPOCH_S, "stride_s": EPOCH_S, "h_freq": 40.0, "notch_freq": None}
