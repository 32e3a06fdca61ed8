"""CHB-MIT Scalp EEG Database (paediatric seizures; PhysioNet open data, ODC-By 1.0).

Shoeb A., "Application of machine learning to epileptic seizure onset detection and treatment",
MIT PhD thesis, 2009; Goldberger A. et al., PhysioBank, PhysioToolkit, and PhysioNet, Circulation 2000.

Three things live here:

- the seizure labels: :func:`read_summary` parses a case's ``chbNN-summary.txt`` (every variant of the
  24 published files: numbered and unnumbered seizure lines, channel changes, times past midnight
  written as ``24:15:00``, files without times), :func:`read_seizure_annotations` reads the binary
  WFDB ``.edf.seizures`` annotations (with the ``wfdb`` package) and :func:`check_seizure_annotations`
  checks that both agree;
- the dataset adapter ``chbmit`` (task ``onset_detection``) for the PhysioNet layout
  ``ROOT/chbNN/chbNN_MM.edf`` + ``ROOT/chbNN/chbNN-summary.txt``: seizures are ``seizure`` events, the
  rest of every recording is ``background``; the subject is the case, except that chb21 is the same
  child as chb01 (PhysioNet's SUBJECT-INFO: "chb21 was obtained 1.5 years after chb01, from the same
  female subject"). Split: none by default (fine-tuning makes its subject-wise split), or with
  ``--dataset-option split=biot`` the customary one of BIOT (Yang et al., NeurIPS 2023) and CBraMod
  (Wang et al., ICLR 2025): chb21-22 validation, chb23-24 test, the rest training (it keeps
  chb01 in training and chb21, the same child, in validation, as published: fine-tuning refuses it
  unless ``--set split.allow_subject_overlap=true``, and records the overlap). CHB-MIT was recorded in
  Boston: the adapter sets the 60 Hz notch (``--set notch_freq=50`` gives the official code's setting);
- single-record downloads for the quickstart (pooch, checked against PhysioNet's sha256) and
  :func:`write_events`.

Usage::

    python preprocess/preprocess_main.py --dataset chbmit --task onset_detection --input ROOT --output DIR
    python preprocess/datasets/chbmit.py fetch --records chb01_03 chb01_04 --cache DIR
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from preprocess.datasets.base import (  # noqa: E402
    AnnotationError,
    DatasetAdapter,
    LayoutError,
    Option,
    check_label_coverage,
    register,
)
from preprocess.events import Event  # noqa: E402
from runtime.files import atomic_write  # noqa: E402

__all__ = [
    "BASE_URL",
    "BIOT_SPLIT",
    "RECORDS",
    "SUBJECT_ALIASES",
    "ChbMitAdapter",
    "check_seizure_annotations",
    "fetch_records",
    "read_seizure_annotations",
    "read_summary",
    "subject_of",
    "write_events",
]

#: Cases recorded from a child that has another case: case -> subject (PhysioNet SUBJECT-INFO).
SUBJECT_ALIASES = {"chb21": "chb01"}

#: The customary split of BIOT / CBraMod: case -> split (all other cases: train).
BIOT_SPLIT = {"chb21": "val", "chb22": "val", "chb23": "test", "chb24": "test"}

#: Seconds of disagreement tolerated between a summary (whole seconds) and the .seizures samples.
ANNOTATION_TOLERANCE_S = 1.0

_TIME = r"(\d{1,2}):(\d{2}):(\d{2})"
_PATTERNS = {
    "sampling": re.compile(r"Data Sampling Rate:\s*(\d+(?:\.\d+)?)\s*Hz$"),
    "rule": re.compile(r"\*+$"),
    "channels": re.compile(r"Channels (?:in EDF Files|changed)\s*:$"),
    "channel": re.compile(r"Channel\s+(\d+)\s*:\s*(.*)$"),
    "file": re.compile(r"File Name:\s*(\S+\.edf)$"),
    "start": re.compile(r"File Start Time:\s*" + _TIME + "$"),
    "end": re.compile(r"File End Time:\s*" + _TIME + "$"),
    "n_seizures": re.compile(r"Number of Seizures in File:\s*(\d+)$"),
    "seizure": re.compile(r"Seizure(?:\s+(\d+))?\s+(Start|End)\s+Time:\s*(\d+(?:\.\d+)?)\s*seconds$"),
}


def _seconds(match: re.Match) -> int:
    hours, minutes, seconds = (int(g) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def read_summary(path: str | os.PathLike) -> list[dict]:
    """Parse a CHB-MIT ``chbNN-summary.txt``.

    Parameters
    ----------
    path : path-like
        A summary file as published on PhysioNet.

    Returns
    -------
    records : list of dict
        One per ``File Name`` entry, in file order, with the keys ``file`` (``"chb01_03.edf"``),
        ``start_time`` and ``end_time`` (the clock text, e.g. ``"24:14:46"`` for a time past midnight,
        or None when the summary gives none, as chb24's), ``duration_s`` (float: end minus start, modulo
        24 h; None without times), ``n_seizures`` (int), ``seizures`` (list of ``(onset_s, offset_s)``
        floats, s from the start of the file), ``channels`` (the channel names in effect, updated by
        every ``Channels changed`` block), ``sfreq`` (Hz) and ``line`` (line number of ``File Name``).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    AnnotationError
        On a line that cannot be parsed, a seizure line outside a file entry, an end without a start,
        an end before its start, seizure starts numbered out of order, a seizure count that differs from
        ``Number of Seizures in File``, or a seizure ending after the file's end; the message names the
        file and the line number.

    References
    ----------
    .. [1] Shoeb A., MIT PhD thesis, 2009; PhysioNet CHB-MIT Scalp EEG Database v1.0.0.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CHB-MIT summary not found: {path}")
    records: list[dict] = []
    channels: list[str] = []
    reading_channels = False
    sfreq = None
    pending: tuple[float, int] | None = None  # seizure start (s) and its line

    def fail(number: int, message: str) -> AnnotationError:
        return AnnotationError(f"{path}, line {number}: {message}")

    def close(record: dict | None, number: int) -> None:
        if record is None:
            return
        if pending is not None:
            raise fail(pending[1], f"seizure start without an end in {record['file']}")
        if record["n_seizures"] is not None and record["n_seizures"] != len(record["seizures"]):
            raise fail(
                record["line"],
                f"{record['file']} declares {record['n_seizures']} seizure(s) but "
                f"lists {len(record['seizures'])}",
            )
        if record["start_time"] and record["end_time"]:
            record["duration_s"] = float((record["_end"] - record["_start"]) % 86400)
            for onset, offset in record["seizures"]:
                if offset > record["duration_s"] + ANNOTATION_TOLERANCE_S:
                    raise AnnotationError(
                        f"{path}, line {record['line']}: event outside the recording {record['file']}: "
                        f"seizure {onset:g}-{offset:g} s, but the file lasts {record['duration_s']:g} s "
                        f"({record['start_time']} to {record['end_time']})."
                    )
        record.pop("_start", None)
        record.pop("_end", None)

    record: dict | None = None
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    for number, raw_line in enumerate(lines, start=1):
        line = raw_line.strip()
        if not line:
            reading_channels = False
            continue
        kind, match = next(((k, m) for k, p in _PATTERNS.items() if (m := p.match(line))), (None, None))
        if kind is None:
            raise fail(number, f"cannot parse {raw_line!r}")
        if kind == "sampling":
            sfreq = float(match.group(1))
        elif kind == "channels":
            channels, reading_channels = [], True
        elif kind == "channel":
            if not reading_channels:
                raise fail(number, f"channel line outside a channel list: {raw_line!r}")
            channels.append(match.group(2).strip())
        elif kind == "file":
            close(record, number)
            pending = None
            record = {
                "file": match.group(1),
                "start_time": None,
                "end_time": None,
                "duration_s": None,
                "n_seizures": None,
                "seizures": [],
                "channels": list(channels),
                "sfreq": sfreq,
                "line": number,
            }
            records.append(record)
        elif kind in ("start", "end", "n_seizures", "seizure"):
            if record is None:
                raise fail(number, f"{raw_line!r} before any 'File Name' line")
            if kind == "start":
                record["start_time"], record["_start"] = line.split(":", 1)[1].strip(), _seconds(match)
            elif kind == "end":
                record["end_time"], record["_end"] = line.split(":", 1)[1].strip(), _seconds(match)
            elif kind == "n_seizures":
                record["n_seizures"] = int(match.group(1))
            else:
                index, which, seconds = match.group(1), match.group(2), float(match.group(3))
                expected = len(record["seizures"]) + 1
                # Only start lines are checked: chb09_08's second seizure ends with "Seizure 1 End Time".
                if which == "Start" and index is not None and int(index) != expected:
                    raise fail(
                        number, f"seizure {index} of {record['file']} where seizure {expected} was expected"
                    )
                if which == "Start":
                    if pending is not None:
                        raise fail(
                            number, f"a second seizure start before the end of the first in {record['file']}"
                        )
                    pending = (seconds, number)
                else:
                    if pending is None:
                        raise fail(number, f"seizure end without a start in {record['file']}")
                    if seconds < pending[0]:
                        raise fail(
                            number,
                            f"seizure ends ({seconds:g} s) before it starts "
                            f"({pending[0]:g} s) in {record['file']}",
                        )
                    record["seizures"].append((pending[0], seconds))
                    pending = None
    close(record, len(lines))
    return records


def read_seizure_annotations(path: str | os.PathLike) -> list[tuple[float, float]]:
    """Read a binary WFDB seizure annotation file (``chb01_03.edf.seizures``).

    Each seizure is a pair of annotations: ``[`` at its onset and ``]`` at its end (sample numbers at
    the annotation's time resolution, 256 Hz in CHB-MIT). Read with ``wfdb.rdann``.

    Parameters
    ----------
    path : path-like
        The ``.seizures`` file.

    Returns
    -------
    seizures : list of (float, float)
        ``(onset_s, offset_s)`` in s from the start of the recording.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    AnnotationError
        If the file cannot be read as a WFDB annotation file, or its ``[``/``]`` marks do not pair up.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Seizure annotation file not found: {path}")
    record, _, extension = path.name.partition(".")
    with warnings.catch_warnings():  # wfdb 4.3 uses a pandas keyword that pandas 3 deprecates
        warnings.filterwarnings("ignore", message="The inplace keyword")
        import wfdb

        try:
            annotation = wfdb.rdann(str(path.parent / record), extension)
        except Exception as err:  # wfdb raises many types on a corrupt file; name the file
            raise AnnotationError(
                f"cannot read the WFDB annotation file {path}: {type(err).__name__}: {err}"
            ) from None
    fs = float(annotation.fs or 256.0)
    seizures, onset = [], None
    for sample, symbol in zip(annotation.sample, annotation.symbol, strict=True):
        if symbol == "[" and onset is None:
            onset = sample / fs
        elif symbol == "]" and onset is not None:
            seizures.append((float(onset), float(sample / fs)))
            onset = None
        else:
            raise AnnotationError(f"unpaired seizure mark {symbol!r} at sample {sample} in {path}")
    if onset is not None:
        raise AnnotationError(f"seizure onset without an end in {path}")
    return seizures


def check_seizure_annotations(
    records: list[dict], annotation: str | os.PathLike, summary: str | os.PathLike = ""
) -> None:
    """Check a ``.edf.seizures`` file against the summary's records (to :data:`ANNOTATION_TOLERANCE_S`).

    Raises
    ------
    AnnotationError
        If the file's recording is not in ``records`` or the seizure times differ (both files named).
    """
    annotation = Path(annotation)
    name = annotation.name[: -len(".seizures")]
    record = next((r for r in records if r["file"] == name), None)
    if record is None:
        raise AnnotationError(f"{annotation} annotates {name}, which the summary {summary} does not list.")
    found = read_seizure_annotations(annotation)
    expected = record["seizures"]
    agree = len(found) == len(expected) and all(
        abs(a - c) <= ANNOTATION_TOLERANCE_S and abs(b - d) <= ANNOTATION_TOLERANCE_S
        for (a, b), (c, d) in zip(found, expected, strict=True)
    )
    if not agree:
        raise AnnotationError(
            f"The seizures of {annotation} ({found}) disagree with the summary {summary} ({expected}) "
            f"for {name}."
        )


def subject_of(case: str) -> str:
    """Subject of a case (``chb21`` -> ``chb01``, other cases are their own subject)."""
    return SUBJECT_ALIASES.get(case, case)


@register
class ChbMitAdapter(DatasetAdapter):
    """CHB-MIT (onset_detection): seizures from the case summaries, checked against ``.edf.seizures``.

    Layout (PhysioNet): ``ROOT/chbNN/chbNN_MM.edf`` beside ``ROOT/chbNN/chbNN-summary.txt``; optional
    ``.edf.seizures`` beside the EDF files (checked against the summary) and ``ROOT/RECORDS-WITH-SEIZURES``.
    A recording missing from its case summary is an error, except where ``RECORDS-WITH-SEIZURES`` says
    it has no seizure: chb24's summary lists only its files with seizures.
    """

    name = "chbmit"
    tasks = ("onset_detection",)
    montage = "double_banana"
    layout = (
        "ROOT/chbNN/chbNN_MM.edf with ROOT/chbNN/chbNN-summary.txt in each case folder (the "
        "PhysioNet layout of chbmit/1.0.0), optionally ROOT/RECORDS-WITH-SEIZURES and "
        "chbNN_MM.edf.seizures files."
    )
    options = {
        "split": Option(
            "none",
            "none (fine-tuning's subject-wise split) or biot (chb21-22 val, chb23-24 test)",
            choices=("none", "biot"),
        ),
    }

    def _cases(self, root) -> list[Path]:
        root = Path(root)
        if not root.is_dir():
            raise LayoutError(f"The chbmit root {root} is not a folder. Expected layout: {self.layout}")
        folders = sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"chb\d{2}", p.name))
        cases = [c for c in folders if (c / f"{c.name}-summary.txt").is_file()]
        if not cases:
            raise self.layout_error(root, "No case folder chbNN with its chbNN-summary.txt")
        unlabelled = [c.name for c in folders if c not in cases and any(c.glob("*.edf"))]
        if unlabelled:
            raise LayoutError(
                f"The case folder(s) {unlabelled} of the chbmit root {root} hold recordings "
                "but no chbNN-summary.txt (their seizure labels): add it (PhysioNet "
                "publishes one per case)."
            )
        return cases

    def find_recordings(self, root) -> list[Path]:
        recordings = [p for case in self._cases(root) for p in sorted(case.glob("*.edf"))]
        if not recordings:
            raise self.layout_error(root, "No EDF recording in the case folders")
        return recordings

    def _labels(self, root) -> dict[str, tuple[str, list[tuple[float, float]]]]:
        """Recording file name -> (case, seizures), checked against the disk and the .seizures files."""

        def compute():
            root_path = Path(root)
            with_seizures = None
            listing = root_path / "RECORDS-WITH-SEIZURES"
            if listing.is_file():
                lines = listing.read_text().splitlines()
                with_seizures = {Path(line.strip()).name for line in lines if line.strip()}
            labels = {}
            for case in self._cases(root):
                summary = case / f"{case.name}-summary.txt"
                records = read_summary(summary)
                on_disk = {p.name for p in case.glob("*.edf")}
                known = {r["file"] for r in records}
                for name in sorted(on_disk - known):
                    if with_seizures is not None and name not in with_seizures:
                        known.add(name)  # a seizure-free file that the summary leaves out (chb24)
                        labels[name] = (case.name, [])
                    elif with_seizures is None:
                        raise LayoutError(
                            f"The recording {case / name} is missing from its summary {summary}. "
                            "chb24's summary lists only its files with seizures: put PhysioNet's "
                            f"RECORDS-WITH-SEIZURES in {root_path} to label the others as seizure-free."
                        )
                check_label_coverage(on_disk, known, summary, self.opts["partial"], self.name)
                for record in records:
                    if record["file"] in on_disk:
                        labels[record["file"]] = (case.name, record["seizures"])
                for annotation in sorted(case.glob("*.edf.seizures")):
                    if annotation.name[: -len(".seizures")] in on_disk:
                        check_seizure_annotations(records, annotation, summary)
            return labels

        return self.cached(("labels", str(root)), compute)

    def events(self, root, task, *, montage=None, classes=None) -> dict[str, list[Event]]:
        self.check_task(task)
        labels = self._labels(root)
        self.notes["recordings_with_seizures"] = sum(1 for _, s in labels.values() if s)
        return {
            name: [Event(on, off - on, "seizure") for on, off in seizures]
            for name, (_, seizures) in labels.items()
        }

    def subjects(self, root) -> dict[str, str]:
        return {name: subject_of(case) for name, (case, _) in self._labels(root).items()}

    def split(self, root) -> dict[str, str] | None:
        if self.opts["split"] == "none":
            return None
        return {name: BIOT_SPLIT.get(case, "train") for name, (case, _) in self._labels(root).items()}

    def default_label(self, task: str) -> str | None:
        return "background"

    def config_overrides(self, task: str) -> dict:
        return {"notch_freq": 60.0}


#: PhysioNet's folder of the database (version 1.0.0).
BASE_URL = "https://physionet.org/files/chbmit/1.0.0/"

#: Records this module can fetch: sha256 from PhysioNet's SHA256SUMS.txt and the seizures
#: (onset_s, offset_s) from the case's summary file.
RECORDS = {
    "chb01_03": {
        "sha256": "4c4a95a9b4331aeaadadd538763eb2e735950d9aa615b85ee6246c784be8ae90",
        "seizures": [(2996.0, 3036.0)],
    },
    "chb01_04": {
        "sha256": "d91d190b2362697fe2cdef922a593baabadcb12fde437bd8d50c01b084ca9030",
        "seizures": [(1467.0, 1494.0)],
    },
}


def _cache_dir(cache: str | os.PathLike | None) -> Path:
    import pooch

    return Path(cache) if cache else Path(pooch.os_cache("m4cea")) / "chbmit"


def fetch_records(records: list[str], cache: str | os.PathLike | None = None) -> list[Path]:
    """Download CHB-MIT records (EDF) into ``cache``, verifying their sha256.

    Parameters
    ----------
    records : list of str
        Record names, keys of :data:`RECORDS` (``"chb01_03"``).
    cache : path-like | None
        Download folder (default: the user's cache, ``~/.cache/m4cea/chbmit``). Files already there
        with the right hash are not downloaded again.

    Returns
    -------
    paths : list of Path
        The EDF files, in the order of ``records``.

    Raises
    ------
    ValueError
        If a record is not in :data:`RECORDS`.
    """
    import pooch

    unknown = [r for r in records if r not in RECORDS]
    if unknown:
        raise ValueError(
            f"Invalid value for the 'records' parameter. Allowed values are {list(RECORDS)}, "
            f"but got {unknown} instead."
        )
    folder = _cache_dir(cache)
    paths = []
    for record in records:
        case = record.split("_")[0]
        path = pooch.retrieve(
            url=f"{BASE_URL}{case}/{record}.edf",
            known_hash=f"sha256:{RECORDS[record]['sha256']}",
            fname=f"{record}.edf",
            path=folder,
            progressbar=True,
        )
        paths.append(Path(path))
    return paths


def write_events(records: list[str], path: str | os.PathLike, subject: str | None = None) -> Path:
    """Write the seizures of ``records`` as an events CSV (label ``seizure``; the rest is background).

    Use with ``--set labels.default=background`` so that time outside seizures is labelled.
    """
    with atomic_write(path, "w") as f:
        f.write("recording,subject,onset_s,duration_s,label\n")
        for record in records:
            for onset, offset in RECORDS[record]["seizures"]:
                f.write(f"{record}.edf,{subject or record.split('_')[0]},{onset},{offset - onset},seizure\n")
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch CHB-MIT records and their seizure events.")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download records and write events.csv beside them")
    fetch.add_argument("--records", nargs="+", default=list(RECORDS))
    fetch.add_argument("--cache", help="download folder (default: ~/.cache/m4cea/chbmit)")
    args = parser.parse_args(argv)
    try:
        paths = fetch_records(args.records, args.cache)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_events(args.records, paths[0].parent / "events.csv")
    print(paths[0].parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
