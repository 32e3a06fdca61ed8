"""Helsinki University Hospital neonatal EEG: seizures (3 annotators) and artefacts (Webb et al. 2021).

Stevenson N. J., Tapani K., Lauronen L., Vanhatalo S., "A dataset of neonatal EEG recordings with
seizure annotations", Sci. Data 6, 190039 (2019), Zenodo 10.5281/zenodo.2547147 (CC-BY 4.0): 79
term neonates (``eeg1.edf`` ... ``eeg79.edf``, 19 referential electrodes of the 10-20 system, 256 Hz),
each second annotated for seizures by three experts (A, B, C) in ``annotations_2017.mat``
(``annotat_new``: one (3, n_seconds) array per baby) and in ``annotations_2017_{A,B,C}.csv``.

Webb L., Kauppila M., Roberts J. A., Vanhatalo S., Stevenson N. J., "Automated detection of artefacts
in neonatal EEG with residual neural networks", Comput. Methods Programs Biomed. 208, 106194 (2021):
per-channel artefact codes for the same recordings (``eegN_summary.txt`` in
``artefact_annotations_webb2021.zip``; 1 clean, 2 device interference, 3 EMG, 4 movement, 5 electrode,
6 high-frequency ventilation (dropped by the authors: ignored here), 7 biological rhythm; 0 no
annotation on that channel).

Two adapters (task, labels):

``helsinki_seizures`` (onset_detection)
    A second is ``seizure`` by the label rule ``--dataset-option rule=...``: ``consensus`` (all three
    annotators, the default; the paper's HUH task and Stevenson et al.'s reference), ``majority`` (at
    least two), ``any`` (at least one) or one annotator by name (``A``, ``B``, ``C``, in the order of
    ``annotat_new``). Runs of seizure seconds become events; the rest is ``background``.

``helsinki_artefacts`` (artifact_detection)
    Per-channel codes become window labels on a 1-s grid: a second is ``artefact`` when any channel
    of the montage in use carries an artefact code (2-5, 7) at that second, ``clean`` when none does
    and the montage channels annotated clean satisfy ``clean_rule`` (``any``: at least one, the
    default; ``all``: every montage channel annotated clean), and unlabelled otherwise (time nobody
    annotated stays out of the labelled output). With ``labels=types`` artefact seconds take their
    type (``device``, ``emg``, ``movement``, ``electrode``, ``biological``, map in
    ``configs/datasets/helsinki_artefacts.yaml``); a second with two types on different channels is
    left unlabelled and counted (``notes.mixed_type_s``). Channels of the annotations that are not in
    the montage (Fz-Cz, Cz-Pz with the 16-channel default) are not considered.

Montage: all 16 pairs of the canonical double banana exist in the 19-electrode recordings, so both
adapters keep the project's default ``double_banana`` (the channel set of the pre-trained model, and
the paper's 16 channels). ``--set montage=neonatal_double_banana`` gives the 18-channel neonatal
bipolar montage of the dataset papers (adds Fz-Cz and Cz-Pz) for a model with ``model.n_chans=18``.

Layout: ``ROOT/eegN.edf`` and ``ROOT/annotations_2017.mat`` (or the three CSVs) as on Zenodo; for the
artefacts also the Webb zip (or its extracted ``eegN_summary.txt`` files) anywhere under ROOT, or
``--dataset-option annotations=PATH``.
"""

from __future__ import annotations

import csv
import io
import os
import re
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from preprocess.channels import normalize_channel_name
from preprocess.datasets.base import (
    AnnotationError,
    DatasetAdapter,
    LayoutError,
    Option,
    check_label_coverage,
    load_label_map,
    mask_to_events,
    register,
)
from preprocess.events import Event

__all__ = [
    "ANNOTATORS",
    "ARTEFACT_CODES",
    "HelsinkiArtefactsAdapter",
    "HelsinkiSeizuresAdapter",
    "artefact_labels_per_second",
    "read_artefact_annotations",
    "read_seizure_annotations",
    "seizure_mask",
]

#: The three annotators, in the row order of ``annotat_new`` and the CSV suffixes.
ANNOTATORS = ("A", "B", "C")

#: Webb et al. (2021) artefact codes.
ARTEFACT_CODES = {
    0: "none",
    1: "clean",
    2: "device",
    3: "emg",
    4: "movement",
    5: "electrode",
    6: "hf_ventilation",
    7: "biological",
}

_RECORDING = re.compile(r"eeg(\d+)\.edf$", re.IGNORECASE)


def _baby(name: str) -> str:
    return f"eeg{int(name)}"


def read_seizure_annotations(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the per-second seizure annotations of the three annotators.

    Parameters
    ----------
    path : path-like
        ``annotations_2017.mat`` (variable ``annotat_new``, read with ``scipy.io.loadmat``), or one of
        ``annotations_2017_A.csv`` / ``..._A_fixed.csv`` (the three CSVs beside it are read; each has a
        header row of baby numbers and one row per second, empty after a recording's end).

    Returns
    -------
    annotations : dict
        ``"eeg1"`` ... -> ndarray of uint8, shape (3, n_seconds): 1 where annotator A, B, C (rows)
        marked a seizure in second ``k`` (``[k, k+1)`` s).

    Raises
    ------
    FileNotFoundError
        If a file is missing.
    AnnotationError
        If the file does not hold the expected variable or shape, a value is not 0/1, or a CSV cell
        cannot be parsed (file and line named), or the three CSVs disagree on babies or lengths.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Helsinki seizure annotations not found: {path}")
    if path.suffix.lower() == ".mat":
        import scipy.io

        content = scipy.io.loadmat(path)
        if "annotat_new" not in content:
            variables = sorted(k for k in content if not k.startswith("__"))
            raise AnnotationError(f"{path} has no variable 'annotat_new' (it has {variables}).")
        cells = np.asarray(content["annotat_new"]).ravel()
        annotations = {}
        for i, cell in enumerate(cells, start=1):
            array = np.asarray(cell)
            if array.ndim != 2 or array.shape[0] != len(ANNOTATORS):
                raise AnnotationError(
                    f"{path}: annotat_new entry {i} has shape {array.shape}, expected (3, n_seconds)."
                )
            if not np.isin(array, (0, 1)).all():
                raise AnnotationError(f"{path}: annotat_new entry {i} holds values other than 0 and 1.")
            annotations[f"eeg{i}"] = array.astype(np.uint8)
        return annotations
    match = re.match(r"(.*_)([ABC])((?:_fixed)?\.csv)$", path.name)
    if not match:
        raise AnnotationError(f"{path}: expected annotations_2017.mat or annotations_2017_A.csv (B, C).")
    prefix, suffix = match.group(1), match.group(3)
    per_annotator = [_read_annotator_csv(path.with_name(f"{prefix}{a}{suffix}")) for a in ANNOTATORS]
    babies = list(per_annotator[0])
    annotations = {}
    for baby in babies:
        rows = [p.get(baby) for p in per_annotator]
        if any(r is None for r in rows) or len({len(r) for r in rows}) != 1:
            raise AnnotationError(
                f"The three annotators' CSVs beside {path} disagree on the seconds of {baby}."
            )
        annotations[baby] = np.stack(rows).astype(np.uint8)
    return annotations


def _read_annotator_csv(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"Helsinki seizure annotations not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise AnnotationError(f"{path} is empty.")
    try:
        babies = [_baby(h.strip().strip('"')) for h in rows[0]]
    except ValueError:
        raise AnnotationError(
            f"{path}, line 1: expected baby numbers as the header, got {rows[0][:5]}..."
        ) from None
    columns: list[list[int]] = [[] for _ in babies]
    ended = [False] * len(babies)
    for number, row in enumerate(rows[1:], start=2):
        for j in range(len(babies)):
            cell = row[j].strip() if j < len(row) else ""
            if cell in ("", "NaN", "nan"):
                ended[j] = True
                continue
            try:
                value = float(cell)
            except ValueError:
                raise AnnotationError(
                    f"{path}, line {number}: cannot parse {cell!r} for {babies[j]}."
                ) from None
            if value not in (0.0, 1.0) or ended[j]:
                raise AnnotationError(
                    f"{path}, line {number}: invalid annotation {cell!r} for {babies[j]} "
                    "(expected 0 or 1, and nothing after a recording's end)."
                )
            columns[j].append(int(value))
    return {baby: np.asarray(col, dtype=np.uint8) for baby, col in zip(babies, columns, strict=True)}


def seizure_mask(annotation: np.ndarray, rule: str) -> np.ndarray:
    """Per-second seizure mask of one baby by a label rule.

    Parameters
    ----------
    annotation : ndarray, shape (3, n_seconds)
        0/1 marks of annotators A, B, C.
    rule : ``"consensus"`` | ``"majority"`` | ``"any"`` | ``"A"`` | ``"B"`` | ``"C"``
        All three, at least two, at least one, or one annotator.

    Returns
    -------
    mask : ndarray of bool, shape (n_seconds,)

    Raises
    ------
    ValueError
        If ``rule`` is not one of the allowed values.
    """
    votes = np.asarray(annotation).astype(int)
    if rule in ANNOTATORS:
        return votes[ANNOTATORS.index(rule)] == 1
    needed = {"consensus": len(ANNOTATORS), "majority": 2, "any": 1}.get(rule)
    if needed is None:
        raise ValueError(
            f"Invalid value for the 'rule' parameter. Allowed values are "
            f"{['consensus', 'majority', 'any', *ANNOTATORS]}, but got {rule!r} instead."
        )
    return votes.sum(axis=0) >= needed


class _HelsinkiLayout(DatasetAdapter):
    """Recordings and subjects of the Helsinki layout (``ROOT/eegN.edf``, one baby each)."""

    montage = "double_banana"

    def find_recordings(self, root) -> list[Path]:
        root = Path(root)
        if not root.is_dir():
            raise LayoutError(f"The {self.name} root {root} is not a folder. Expected layout: {self.layout}")
        found = [p for p in root.rglob("*") if p.is_file() and _RECORDING.match(p.name)]
        if not found:
            raise self.layout_error(root, "No recording eegN.edf")
        return sorted(found, key=lambda p: int(_RECORDING.match(p.name).group(1)))

    def subjects(self, root) -> dict[str, str]:
        return {p.name: p.stem.lower() for p in self.find_recordings(root)}

    def _annotated_recordings(self, root, task) -> tuple[dict, dict[str, str]]:
        """The annotations per baby and the recordings (lower-case name -> name), coverage checked.

        Raises
        ------
        ValueError
            If ``task`` is not one of the adapter's tasks.
        LayoutError
            If a recording has no annotation, or (unless the ``partial`` option) an annotation names a
            missing recording (:func:`check_label_coverage`).
        """
        self.check_task(task)
        path, annotations = self.annotations(root)
        recordings = {p.name.lower(): p.name for p in self.find_recordings(root)}
        labelled = [f"{baby}.edf" for baby in annotations]
        check_label_coverage(recordings, labelled, path, self.opts["partial"], self.name)
        return annotations, recordings

    def _find_one(self, root, patterns: tuple[str, ...], what: str) -> Path:
        for pattern in patterns:
            found = sorted(Path(root).rglob(pattern))
            if found:
                return found[0]
        raise self.layout_error(root, f"No {what} ({' or '.join(patterns)})")


@register
class HelsinkiSeizuresAdapter(_HelsinkiLayout):
    """Helsinki neonatal seizures (onset_detection) by a label rule over the three annotators."""

    name = "helsinki_seizures"
    tasks = ("onset_detection",)
    layout = (
        "ROOT/eeg1.edf ... ROOT/eeg79.edf with ROOT/annotations_2017.mat (or annotations_2017_A.csv, "
        "_B.csv, _C.csv), as on Zenodo (10.5281/zenodo.2547147)."
    )
    options = {
        "rule": Option(
            "consensus",
            "seizure when: consensus (all 3 annotators), majority, any, or annotator A, B, C",
            choices=("consensus", "majority", "any", *ANNOTATORS),
        ),
    }

    def annotations(self, root) -> tuple[Path, dict[str, np.ndarray]]:
        """The annotation file found under ``root`` and its content (:func:`read_seizure_annotations`)."""

        def compute():
            path = self._find_one(
                root,
                ("annotations_2017.mat", "annotations_2017_A.csv", "annotations_2017_A_fixed.csv"),
                "seizure annotation file",
            )
            return path, read_seizure_annotations(path)

        return self.cached(("annotations", str(root)), compute)

    def events(self, root, task, *, montage=None, classes=None) -> dict[str, list[Event]]:
        annotations, recordings = self._annotated_recordings(root, task)
        events = {}
        for baby, annotation in annotations.items():
            name = recordings.get(f"{baby}.edf")
            if name is not None:
                events[name] = mask_to_events(seizure_mask(annotation, self.opts["rule"]), "seizure")
        self.notes["rule"] = self.opts["rule"]
        self.notes["babies_with_seizures"] = sum(1 for e in events.values() if e)
        return events

    def default_label(self, task: str) -> str | None:
        return "background"


# -- artefacts ------------------------------------------------------------------------------------------


def read_artefact_annotations(path: str | os.PathLike) -> dict[str, dict]:
    """Read the per-channel artefact annotations of Webb et al. (2021).

    Parameters
    ----------
    path : path-like
        The zip of ``eegN_summary.txt`` files, or a folder holding them.

    Returns
    -------
    annotations : dict
        ``"eeg1"`` ... (in number order) -> ``{"channels": [...], "rows": [...], "source": str}``:
        the 18 channel names as written (``"Fp1-F3"``), a list of ``(onset_s, duration_s, codes)`` with
        ``codes`` an int array of shape (n_channels,), and the file name.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    AnnotationError
        If a file lacks the columns ``Time_secs``/``Duration_secs``, a row cannot be parsed, or a code
        is not one of :data:`ARTEFACT_CODES` (file and line named).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Artefact annotations not found: {path}")
    texts: dict[str, tuple[str, str]] = {}
    if path.is_dir():
        for file in path.rglob("eeg*_summary.txt"):
            texts[file.name] = (str(file), file.read_text(encoding="utf-8-sig"))
    else:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if re.search(r"(^|/)eeg\d+_summary\.txt$", member):
                    texts[Path(member).name] = (f"{path}:{member}", archive.read(member).decode("utf-8-sig"))
    if not texts:
        raise AnnotationError(f"{path} holds no eegN_summary.txt file.")
    annotations = {}
    number_of = {name: int(re.search(r"\d+", name).group()) for name in texts}
    for name, (source, text) in sorted(texts.items(), key=lambda item: number_of[item[0]]):
        baby = name.split("_")[0].lower()
        annotations[baby] = _parse_artefact_file(text, source)
    return annotations


def _parse_artefact_file(text: str, source: str) -> dict:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise AnnotationError(f"{source} is empty.")
    header = [h.strip() for h in rows[0]]
    for column in ("Time_secs", "Duration_secs"):
        if column not in header:
            raise AnnotationError(f"{source}, line 1: no column {column!r} (columns: {header}).")
    on, du = header.index("Time_secs"), header.index("Duration_secs")
    channel_columns = [i for i, h in enumerate(header) if "-" in h and h not in ("Time", "Duration")]
    channels = [header[i] for i in channel_columns]
    parsed = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            onset, duration = float(row[on]), float(row[du])
            codes = np.array([int(float(row[i])) for i in channel_columns])
        except (ValueError, IndexError):
            raise AnnotationError(f"{source}, line {number}: cannot parse {','.join(row)!r}.") from None
        unknown = sorted(set(codes.tolist()) - set(ARTEFACT_CODES))
        if unknown:
            raise AnnotationError(
                f"{source}, line {number}: unknown artefact code(s) {unknown}; the codes "
                f"are {ARTEFACT_CODES}."
            )
        if onset < 0 or duration < 0:
            raise AnnotationError(
                f"{source}, line {number}: negative time {onset} s or duration {duration} s."
            )
        parsed.append((onset, duration, codes))
    return {"channels": channels, "rows": parsed, "source": source}


def artefact_labels_per_second(
    annotation: dict,
    code_labels: dict[int, str | None],
    channels: list[str] | None = None,
    clean_rule: str = "any",
    n_seconds: int | None = None,
) -> tuple[list[str | None], Counter]:
    """Label every second of one recording from per-channel artefact codes.

    Parameters
    ----------
    annotation : dict
        One recording of :func:`read_artefact_annotations`.
    code_labels : dict
        Artefact code -> label (``"artefact"`` or a type); codes mapped to None (HFV) are ignored.
        Code 1 is clean and 0 no annotation, whatever the map says.
    channels : list of str | None
        Normalised bipolar names (``"FP1-F3"``) of the channels to consider (either orientation);
        None: all annotated channels.
    clean_rule : ``"any"`` | ``"all"``
        Clean needs at least one / every considered channel annotated clean (and no artefact).
    n_seconds : int | None
        Length of the label list; default: the end of the last annotation.

    Returns
    -------
    labels : list of (str | None)
        One label per second ``[k, k+1)``: ``"clean"``, an artefact label, or None.
    counts : Counter
        Seconds ``artefact_s`` (any artefact), ``clean_s``, ``mixed_type_s`` (two artefact labels at
        once: left None), ``unannotated_s``.
    """
    wanted = None
    if channels is not None:
        wanted = set(channels) | {"-".join(reversed(c.split("-"))) for c in channels}
    considered = np.array(
        [
            i
            for i, c in enumerate(annotation["channels"])
            if wanted is None or normalize_channel_name(c) in wanted
        ],
        dtype=int,
    )
    end = int(np.ceil(max((a + d for a, d, _ in annotation["rows"]), default=0.0)))
    n = end if n_seconds is None else n_seconds
    names = list(dict.fromkeys(v for k, v in sorted(code_labels.items()) if v and k not in (0, 1)))
    label_bits = np.zeros(n, dtype=np.int64)  # bit b: artefact label names[b] on some considered channel
    clean_channels = np.zeros((n, len(considered)), dtype=bool)
    for onset, duration, codes in annotation["rows"]:
        first, last = int(np.floor(onset)), min(int(np.ceil(onset + duration)), n)
        row = np.asarray(codes)[considered]
        clean_channels[first:last, row == 1] = True
        for code in set(row.tolist()) - {0, 1}:
            if code_labels.get(code) is not None:
                label_bits[first:last] |= 1 << names.index(code_labels[code])
    n_labels = np.zeros(n, dtype=np.int64)
    for b in range(len(names)):
        n_labels += (label_bits >> b) & 1
    annotated = clean_channels.all(axis=1) if clean_rule == "all" else clean_channels.any(axis=1)
    clean = (n_labels == 0) & annotated & (len(considered) > 0)
    labels: list[str | None] = [None] * n
    for k in np.flatnonzero(n_labels == 1):
        labels[k] = names[int(label_bits[k]).bit_length() - 1]
    for k in np.flatnonzero(clean):
        labels[k] = "clean"
    counts = Counter(
        {
            "artefact_s": int((n_labels > 0).sum()),
            "clean_s": int(clean.sum()),
            "mixed_type_s": int((n_labels > 1).sum()),
            "unannotated_s": int(((n_labels == 0) & ~clean).sum()),
        }
    )
    return labels, counts


def _labels_to_events(labels: list[str | None]) -> list[Event]:
    events, start = [], None
    for k, label in enumerate(labels + [None]):
        if start is not None and label != labels[start]:
            events.append(Event(float(start), float(k - start), labels[start]))
            start = None
        if label is not None and start is None:
            start = k
    return events


@register
class HelsinkiArtefactsAdapter(_HelsinkiLayout):
    """Helsinki neonatal artefacts (artifact_detection) from the Webb et al. (2021) per-channel codes."""

    name = "helsinki_artefacts"
    tasks = ("artifact_detection",)
    layout = (
        "ROOT/eeg1.edf ... ROOT/eeg79.edf (Zenodo 10.5281/zenodo.2547147) and, anywhere under ROOT, "
        "artefact_annotations_webb2021.zip or the eegN_summary.txt files of Webb et al. (2021)."
    )
    options = {
        "labels": Option(
            "binary",
            "binary (clean/artefact) or types (clean, device, emg, movement, electrode, biological)",
            choices=("binary", "types"),
        ),
        "clean_rule": Option(
            "any",
            "clean when no artefact and any / all montage channels annotated clean",
            choices=("any", "all"),
        ),
        "annotations": Option(None, "the Webb zip or folder (default: found under ROOT)", kind=str),
        "label_map": Option("helsinki_artefacts", "label map name in configs/datasets or a YAML path"),
    }

    def classes(self, task: str) -> tuple[str, ...]:
        if self.opts["labels"] == "binary":
            return super().classes(task)
        return ("clean", *dict.fromkeys(v for v in self._code_labels().values() if v is not None))

    def _code_labels(self) -> dict[int, str | None]:
        table = load_label_map(self.opts["label_map"])[self.opts["labels"]]
        return {int(code): label for code, label in table.items()}

    def annotations(self, root) -> tuple[Path, dict[str, dict]]:
        """The annotation zip/folder and its content (:func:`read_artefact_annotations`)."""

        def compute():
            given = self.opts["annotations"]
            if given:
                path = Path(given)
            else:
                found = sorted(Path(root).rglob("*artefact*annotation*.zip"))
                summaries = sorted(Path(root).rglob("eeg*_summary.txt"))
                if found:
                    path = found[0]
                elif summaries:
                    path = summaries[0].parent
                else:
                    raise self.layout_error(root, "No artefact annotations (a zip or eegN_summary.txt files)")
            return path, read_artefact_annotations(path)

        return self.cached(("annotations", str(root)), compute)

    def events(self, root, task, *, montage=None, classes=None) -> dict[str, list[Event]]:
        annotations, recordings = self._annotated_recordings(root, task)
        code_labels = self._code_labels()
        channels = montage.ch_names if montage is not None else None
        totals: Counter = Counter()
        events = {}
        for baby, annotation in annotations.items():
            name = recordings.get(f"{baby}.edf")
            if name is None:
                continue
            labels, counts = artefact_labels_per_second(
                annotation, code_labels, channels, self.opts["clean_rule"]
            )
            totals.update(counts)
            events[name] = _labels_to_events(labels)
        self.notes.update({k: int(v) for k, v in sorted(totals.items())})
        self.notes["channels_considered"] = channels or "all annotated"
        return events
