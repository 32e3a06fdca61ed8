"""Readers and layout shared by the TUH EEG corpora adapters (TUSZ, TUEV, TUAR).

Obeid I., Picone J., "The Temple University Hospital EEG Data Corpus", Front. Neurosci. 10, 196 (2016).
The corpora need registration (https://isip.piconepress.com/projects/nedc/html/tuh_eeg/) and are never
redistributed: the tests write small files in the documented formats.

Annotation files:

- ``.csv`` / ``.csv_bi`` (TUSZ v2, TUAR v3): comment lines ``# key = value`` (``# duration = 301.00
  secs``), a header ``channel,start_time,stop_time,label,confidence``, then one event per row; ``.csv``
  events are per channel (``FP1-F7``), ``.csv_bi`` events are whole-recording terms (``TERM``).
- ``.rec`` (TUEV v2): ``channel,start_s,stop_s,code`` per row, ``channel`` an index of the TCP montage,
  ``code`` 1-6 (SPSW, GPED, PLED, EYEM, ARTF, BCKG).

Official splits come from the folder layout: ``edf/train``, ``edf/dev``, ``edf/eval`` -> ``train``,
``val``, ``test``. The corpora were recorded in Philadelphia: the adapters set the 60 Hz notch.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from preprocess.datasets.base import AnnotationError, DatasetAdapter, LayoutError, check_label_coverage

__all__ = ["SPLIT_FOLDERS", "TuhLayout", "read_rec", "read_tuh_csv", "tuh_subject"]

#: Folder names of the official splits -> split names of split.csv.
SPLIT_FOLDERS = {"train": "train", "dev": "val", "eval": "test"}

_DURATION = re.compile(r"#\s*duration\s*=\s*([0-9.]+)\s*(?:secs?)?", re.IGNORECASE)


def read_tuh_csv(path: str | os.PathLike) -> tuple[float | None, list[tuple[str, float, float, str, int]]]:
    """Read a TUH ``.csv`` / ``.csv_bi`` annotation file.

    Returns
    -------
    duration_s : float | None
        The recording's duration from the ``# duration`` comment (None if absent).
    rows : list of (channel, start_s, stop_s, label, line)
        Labels lower case, as written (``fnsz``, ``seiz``, ``eyem_musc``...); ``line`` is the row's line
        number in the file (for messages).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    AnnotationError
        If the header is missing, a row cannot be parsed, a stop precedes its start, or a row ends after
        the ``# duration`` (file and line named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TUH annotation file not found: {path}")
    duration, rows, header_seen = None, [], False
    with open(path, encoding="utf-8-sig") as f:
        lines = f.read().splitlines()
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            match = _DURATION.match(line)
            if match:
                duration = float(match.group(1))
            continue
        cells = [c.strip() for c in line.split(",")]
        if not header_seen:
            if cells[:4] != ["channel", "start_time", "stop_time", "label"]:
                raise AnnotationError(
                    f"{path}, line {number}: expected the header "
                    f"'channel,start_time,stop_time,label,confidence', got {raw!r}."
                )
            header_seen = True
            continue
        try:
            channel, start, stop, label = cells[0], float(cells[1]), float(cells[2]), cells[3].lower()
        except (ValueError, IndexError):
            raise AnnotationError(f"{path}, line {number}: cannot parse {raw!r}.") from None
        if not label or stop < start or start < 0:
            raise AnnotationError(
                f"{path}, line {number}: invalid event {raw!r} (empty label, negative "
                "time or stop before start)."
            )
        if duration is not None and stop > duration + 1e-3:
            raise AnnotationError(
                f"{path}, line {number}: event outside the recording: {label} ends at "
                f"{stop:g} s, but the file's duration is {duration:g} s."
            )
        rows.append((channel, start, stop, label, number))
    if not header_seen:
        raise AnnotationError(f"{path}: no header line 'channel,start_time,stop_time,label,confidence'.")
    return duration, rows


def read_rec(path: str | os.PathLike) -> list[tuple[int, float, float, int, int]]:
    """Read a TUEV ``.rec`` file: rows ``channel,start_s,stop_s,code``.

    Returns
    -------
    rows : list of (channel, start_s, stop_s, code, line)
        ``line`` is the row's line number in the file (for messages).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    AnnotationError
        If a row cannot be parsed or a stop precedes its start (file and line named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TUEV annotation file not found: {path}")
    rows = []
    with open(path, encoding="utf-8-sig") as f:
        for number, raw in enumerate(f.read().splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                channel, start, stop, code = (float(c) for c in raw.split(","))
                if not (channel.is_integer() and code.is_integer()):
                    raise ValueError
            except ValueError:
                raise AnnotationError(
                    f"{path}, line {number}: cannot parse {raw!r} (expected channel,start,stop,code)."
                ) from None
            if stop < start or start < 0:
                raise AnnotationError(
                    f"{path}, line {number}: invalid event {raw!r} (negative time or stop before start)."
                )
            rows.append((int(channel), start, stop, int(code), number))
    return rows


def tuh_subject(path: str | os.PathLike) -> str:
    """Patient of a TUH file name: its part before the first ``_`` (``aaaaaaac_s001_t000``: ``aaaaaaac``)."""
    return Path(path).name.split("_")[0]


class TuhLayout(DatasetAdapter):
    """Recordings with an annotation file beside each, under ROOT (or ROOT/edf)."""

    #: Suffix of the annotation file beside each recording, per task.
    annotation_suffix: dict[str, str] = {}
    #: Whether recordings must lie under a split folder (train/dev/eval).
    needs_split_folders = True

    def find_recordings(self, root) -> list[Path]:
        root = Path(root)
        if not root.is_dir():
            raise LayoutError(f"The {self.name} root {root} is not a folder. Expected layout: {self.layout}")
        suffixes = set(self.annotation_suffix.values())
        found = sorted(root.rglob("*.edf"))
        if not any(p.with_suffix(s).is_file() for p in found for s in suffixes):
            kinds = "/".join(sorted(suffixes))
            raise self.layout_error(root, f"No EDF recording with a {kinds} annotation beside it")
        if self.needs_split_folders:
            outside = [p for p in found if self.split_folder(p) is None]
            if outside:
                raise self.layout_error(
                    root,
                    f"{len(outside)} recording(s) outside the split folders "
                    f"{list(SPLIT_FOLDERS)} (e.g. {outside[0]})",
                )
        return found

    @staticmethod
    def split_folder(path: Path) -> str | None:
        """The official split folder (``train``, ``dev``, ``eval``) a recording lies in."""
        return next((part for part in reversed(path.parent.parts) if part in SPLIT_FOLDERS), None)

    def annotation_files(self, root, task: str) -> dict[str, Path]:
        """Recording file name -> its annotation file for ``task``, checked both ways against the disk."""
        suffix = self.annotation_suffix[task]
        root = Path(root)
        recordings = self.find_recordings(root)
        annotations = {p.with_suffix(".edf").name: p for p in root.rglob(f"*{suffix}") if p.suffix == suffix}
        check_label_coverage(
            {p.name for p in recordings},
            annotations,
            f"the {suffix} files under {root}",
            self.opts["partial"],
            self.name,
        )
        return {p.name: p.with_suffix(suffix) for p in recordings}

    def subjects(self, root) -> dict[str, str]:
        return {p.name: tuh_subject(p) for p in self.find_recordings(root)}

    def split(self, root) -> dict[str, str] | None:
        return {p.name: SPLIT_FOLDERS[self.split_folder(p)] for p in self.find_recordings(root)}

    def config_overrides(self, task: str) -> dict:
        return {"notch_freq": 60.0}
