"""Reading recordings with MNE, and finding them in folders.

What is a recording is MNE's business, not ours: a file (or an EGI ``.mff`` / CTF ``.ds`` / MEF ``.mefd``
folder) whose name ends with a suffix of the reader table behind ``mne.io.read_raw`` (EDF/BDF/GDF, FIF,
BrainVision ``.vhdr`` / V-Amp ``.ahdr``, EEGLAB ``.set``, Neuroscan and ANT ``.cnt``, Nihon Kohden ``.EEG``,
Nexstim ``.nxe``, Curry, Persyst ``.lay``, ...). A file named on the command line goes to MNE as it is; a
folder scan (:func:`find_recordings`) takes from that table every file that holds a recording of its own
and leaves out:

- companion files of another recording: BrainVision ``.eeg`` beside its header, Persyst ``.dat`` named by
  its ``.lay``, Curry parameter and sensor files (``.dap``, ``.rs3``, ``.cef``, ``.cdt.dpa``, ``.cdt.cef``),
  continuation parts of a split FIF beside their first part (``rec_raw-1.fif``, ``*_split-02_*.fif``);
- files that share a generic suffix with MNE's non-EEG readers (``.txt``, ``.mat``, ``.hdr``, ``.bin``,
  ``.asc``): give such a file explicitly to read it; ``.dat`` is a recording only as Curry 7 data (a
  ``.dap`` beside it) or BCI2000 (its ``HeaderLen=`` header), ``.data`` only as Nicolet (a ``.head``
  beside it);
- files that hold no signal: annotation-only EDF+/BDF+ files (Sleep-EDF hypnograms, the
  ``*_annotations.edf`` that ``finetune/predict.py`` writes) and FIF files named by MNE's convention for
  other objects (``*_annot.fif``, ``*-eve.fif``, ``*-epo.fif``...), so that predict's outputs written
  inside an input folder are not read back as recordings;
- hidden files and folders (``.tmp`` of an interrupted run, macOS ``._rec.edf``).

Reader options (``reader`` in the preprocessing config, e.g. Neuroscan's ``data_format: int16``) are
passed to every MNE reader that accepts them; when a reader fails, its own message reaches the user.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import re
import warnings
from collections import defaultdict
from pathlib import Path

import mne

from runtime.config import UsageError

__all__ = [
    "PreprocessError",
    "check_reader_options",
    "find_recordings",
    "read_recording",
    "reader_table",
    "recording_id",
    "recording_id_clashes",
    "recording_suffix",
]

logger = logging.getLogger("m4cea.preprocess")

# What MNE's readers warn when a file holds less data than its header announces.
_TRUNCATION_SIGNS = ("does not match the file size", "truncated", "Truncated")

# Suffixes of MNE's table that other files share, or whose readers read no EEG (fNIRS, MEG, eye tracking):
# a folder scan takes them only when the content says so (see the module docstring).
_GENERIC_SUFFIXES = (".txt", ".mat", ".hdr", ".bin", ".asc")
# Curry files that describe a recording whose data lie in a ``.cdt`` or ``.dat`` file of the same stem.
_CURRY_COMPANIONS = (".dap", ".rs3", ".cef", ".cdt.dpa", ".cdt.cef")
# MNE's file naming convention for FIF files that hold something other than raw data.
_NON_RAW_FIF = re.compile(
    r"[-_](annot|eve|epo|ave|cov|fwd|inv|trans|ica|proj|sol|bem|src|dip|tfr|csd|morph)\.fif(\.gz)?$",
    re.IGNORECASE,
)
# Continuation files of a split FIF, which MNE reads from the first part: rec_raw-1.fif after rec_raw.fif
# (MNE's naming), ..._split-02_eeg.fif after ..._split-01_eeg.fif (BIDS).
_FIF_SPLIT_MNE = re.compile(r"-[1-9]\d*(?=\.fif(\.gz)?$)")
_FIF_SPLIT_BIDS = re.compile(r"_split-(?!0*1_)\d+_")
# Options that this module sets itself.
_RESERVED_OPTIONS = ("preload", "verbose")


class PreprocessError(UsageError):
    """A recording cannot be preprocessed (unreadable, not EEG, too short...); the message names it.

    A :class:`runtime.config.UsageError` (a ValueError): bad input, exit status 2 when it ends a command.
    """


@functools.cache
def reader_table() -> dict[str, dict[str, callable]]:
    """MNE's table of raw readers: lower-case suffix -> ``{format name: reader function}``.

    It is the table ``mne.io.read_raw`` dispatches on (``mne.io._read_raw._get_supported``), so every
    format a newer MNE learns to read is read here too.
    """
    from mne.io._read_raw import _get_supported

    return _get_supported()


def _hint_table() -> dict:
    """Suffixes MNE knows but does not read (BrainVision markers), with the reader it suggests."""
    from mne.io import _read_raw

    return getattr(_read_raw, "_suggested", {})


def recording_suffix(path: str | os.PathLike) -> str | None:
    """The longest suffix of MNE's reader table that ``path`` ends with (lower case), or None.

    Examples
    --------
    >>> recording_suffix("sub-01_eeg.fif.gz"), recording_suffix("Patient1.EEG"), recording_suffix("a.csv")
    ('.fif.gz', '.eeg', None)
    """
    name = Path(path).name.lower()
    matches = [ext for ext in reader_table() if name.endswith(ext) and len(name) > len(ext)]
    return max(matches, key=len) if matches else None


def recording_id(path: str | os.PathLike) -> str:
    """The recording's id: its file name without folder and extension (``chb01_03``).

    The extension is the longest suffix of MNE's reader table (``rec.fif.gz`` -> ``rec``,
    ``rec.cdt.dpa`` -> ``rec``), else the last suffix.
    """
    path = Path(path)
    suffix = recording_suffix(path) or path.suffix
    return path.name[: -len(suffix)] if suffix else path.name


def recording_id_clashes(recordings: list[str | os.PathLike]) -> dict[Path, str]:
    """Recordings that share a recording id with another one, each with a message naming the clash.

    Two exports of one recording (``rec.edf`` and ``rec.fif``), or two files of one name in different
    folders, would write the same outputs; the batch reports each of them as failed, with this
    message, and goes on with the others.

    Parameters
    ----------
    recordings : list of path-like

    Returns
    -------
    clashes : dict of Path -> str
        Only the clashing recordings; empty when every id is unique.
    """
    by_id: dict[str, list[Path]] = defaultdict(list)
    for path in map(Path, recordings):
        by_id[recording_id(path)].append(path)
    clashes = {}
    for rec_id, paths in by_id.items():
        if len(paths) > 1:
            for path in paths:
                others = ", ".join(str(p) for p in paths if p != path)
                clashes[path] = (
                    f"{path.name} and {others} are both recording {rec_id!r} (file name without "
                    "extension): keep one export of the recording in the input, or rename one file"
                )
    return clashes


def find_recordings(paths: list[str | os.PathLike]) -> list[Path]:
    """Recordings named by ``paths``: files (and recording folders) as given, other folders searched.

    Parameters
    ----------
    paths : list of path-like
        Recording files, recording folders (EGI ``.mff``, CTF ``.ds``, MEF ``.mefd``), or folders searched
        recursively with the rules of the module docstring.

    Returns
    -------
    recordings : list of Path
        Sorted, without duplicates (one file named twice, e.g. by a relative and an absolute path, once).

    Raises
    ------
    FileNotFoundError
        If a path does not exist.
    """
    found: set[Path] = set()
    for entry in map(Path, paths):
        if entry.is_file() or (entry.is_dir() and recording_suffix(entry)):
            found.add(entry)
        elif entry.is_dir():
            found.update(_scan(entry))
        else:
            raise FileNotFoundError(f"Input not found: {entry}")
    unique = {path.resolve(): path for path in sorted(found, reverse=True)}  # the first of a file's names
    return sorted(unique.values())


def _scan(root: Path) -> list[Path]:
    """The recordings in a folder tree (module docstring)."""
    found = []
    for folder, dirs, files in os.walk(root):
        folder = Path(folder)
        for name in list(dirs):
            if name.startswith("."):
                dirs.remove(name)
            elif recording_suffix(name) not in (None, *_GENERIC_SUFFIXES):  # a folder recording: .mff, .ds
                dirs.remove(name)
                found.append(folder / name)
        names = {name.lower(): name for name in files if not name.startswith(".")}
        companions = _companions(folder, names)
        for lower, name in names.items():
            if lower not in companions and _holds_recording(folder / name, names):
                found.append(folder / name)
    return found


def _companions(folder: Path, names: dict[str, str]) -> set[str]:
    """Lower-case names of the files in ``folder`` that belong to another recording there."""
    companions = set()
    for lower, name in names.items():
        suffix = recording_suffix(lower)
        stem = lower[: -len(suffix)] if suffix else lower
        if suffix in (".vhdr", ".ahdr"):
            companions.add(stem + ".eeg")
            data_file = _ini_value(folder / name, "DataFile")
            if data_file:
                companions.add(Path(data_file).name.lower())
        elif suffix == ".lay":
            companions.add(stem + ".dat")
            data_file = _ini_value(folder / name, "File")
            if data_file:
                companions.add(Path(data_file).name.lower())
        elif suffix in _CURRY_COMPANIONS:
            companions.add(lower)
        elif suffix in (".fif", ".fif.gz"):
            first_parts = (_FIF_SPLIT_MNE.sub("", lower), _FIF_SPLIT_BIDS.sub("_split-01_", lower))
            if any(first != lower and first in names for first in first_parts):
                companions.add(lower)
    return companions


def _ini_value(path: Path, key: str) -> str | None:
    """The value of ``key=`` in a text header (BrainVision ``DataFile``, Persyst ``File``), or None."""
    try:
        with open(path, encoding="latin-1") as f:
            for line in f:
                left, sep, right = line.partition("=")
                if sep and left.strip().lower() == key.lower():
                    return right.strip()
    except OSError:
        return None
    return None


def _holds_recording(path: Path, names: dict[str, str]) -> bool:
    """Whether a file of a folder scan is a recording of its own (module docstring)."""
    lower = path.name.lower()
    suffix = recording_suffix(lower)
    if suffix is None or suffix in _GENERIC_SUFFIXES:
        return False
    stem = lower[: -len(suffix)]
    if suffix == ".dat":
        return stem + ".dap" in names or _starts_with(path, b"HeaderLen=")
    if suffix == ".data":
        return stem + ".head" in names
    if suffix in (".fif", ".fif.gz"):
        return not _NON_RAW_FIF.search(lower)
    if suffix in (".edf", ".bdf"):
        return not _annotations_only(path)
    return True


def _starts_with(path: Path, prefix: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(prefix)) == prefix
    except OSError:
        return False


def _annotations_only(path: Path) -> bool:
    """Whether an EDF/BDF file's signals are all annotation channels (an EDF+ annotation file)."""
    try:
        with open(path, "rb") as f:
            header = f.read(256)
            n_signals = int(header[252:256].decode("ascii").strip())
            labels = f.read(16 * n_signals).decode("latin-1")
    except (OSError, ValueError):
        return False  # not a readable header: let MNE say what is wrong
    labels = [labels[i : i + 16].strip() for i in range(0, len(labels), 16)]
    return bool(labels) and all(label in ("EDF Annotations", "BDF Annotations") for label in labels)


def check_reader_options(options: dict | None) -> dict:
    """Check the ``reader`` options of the config: keyword arguments of MNE's raw readers.

    Parameters
    ----------
    options : dict | None
        e.g. ``{"data_format": "int16"}`` for Neuroscan ``.cnt`` (``--set reader.data_format=int16``).

    Returns
    -------
    options : dict
        A copy (empty for None).

    Raises
    ------
    ValueError
        If ``options`` is not a mapping, or a key is no parameter of any of MNE's raw readers, or is set
        by this module itself (``preload``, ``verbose``); the message lists the allowed keys.
    """
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ValueError(
            f"Invalid value for the 'reader' parameter. Allowed values are a mapping of MNE reader "
            f"options (e.g. reader.data_format=int16), but got {options!r} instead."
        )
    allowed = set()
    for readers in reader_table().values():
        for reader in readers.values():
            allowed.update(list(inspect.signature(reader).parameters)[1:])
    allowed.difference_update(_RESERVED_OPTIONS)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"Invalid key(s) {unknown} for the 'reader' parameter: allowed keys are the options of MNE's "
            f"raw readers ({sorted(allowed)}); preload and verbose are set by the pipeline."
        )
    return dict(options)


def read_recording(path: str | os.PathLike, reader_options: dict | None = None) -> mne.io.BaseRaw:
    """Open a recording lazily with MNE and keep its EEG channels.

    Parameters
    ----------
    path : path-like
        Any file (or folder: EGI ``.mff``) that ``mne.io.read_raw`` reads: EDF/BDF/GDF, FIF, BrainVision
        ``.vhdr``/``.ahdr``, EEGLAB ``.set``, Neuroscan/ANT ``.cnt``, Nihon Kohden ``.EEG``, Curry,
        Persyst ``.lay``, Nexstim ``.nxe``, ...; or a ``.parquet`` EEG table of the HMS layout
        (:func:`preprocess.parquet.read_parquet_eeg`).
    reader_options : dict | None
        Keyword arguments for MNE's reader (:func:`check_reader_options`); each reader gets those its
        signature accepts.

    Returns
    -------
    raw : mne.io.BaseRaw
        Not preloaded; EEG channels only.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    PreprocessError
        If MNE has no reader for the file name, the file is a companion of another recording (a
        BrainVision ``.eeg``, a Persyst ``.dat``), an epoched EEGLAB file, unreadable (with each reader's
        own message) or truncated, or holds no EEG channel.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Recording not found: {path}")
    options = check_reader_options(reader_options)
    if path.name.lower().endswith(".parquet"):  # an EEG table (HMS layout), which MNE cannot read
        from preprocess.parquet import read_parquet_eeg

        try:
            return read_parquet_eeg(path).pick("eeg")
        except ValueError as err:
            raise PreprocessError(str(err)) from err
    suffix = recording_suffix(path)
    _check_not_companion(path, suffix)
    if suffix is None:
        raise PreprocessError(
            f"unsupported file type {path.name!r}: mne.io.read_raw reads files ending with "
            f"{sorted(reader_table())}"
        )
    errors = []
    for kind, reader in reader_table()[suffix].items():
        params = inspect.signature(reader).parameters
        kwargs = {k: v for k, v in options.items() if k in params}
        kwargs.update({k: v for k, v in (("preload", False), ("verbose", "warning")) if k in params})
        try:
            with warnings.catch_warnings(record=True) as caught, _mne_log_muted():
                warnings.simplefilter("always")
                raw = reader(path, **kwargs)
            break
        except Exception as err:  # MNE's readers raise many types for a corrupt file; keep each message
            logger.debug("%s: mne.io.%s failed", path.name, reader.__name__, exc_info=True)
            errors.append((kind, reader.__name__, err))
    else:
        raise PreprocessError(_read_failure(path, suffix, errors)) from errors[-1][2]
    for warning in caught:
        message = str(warning.message)
        if any(sign in message for sign in _TRUNCATION_SIGNS):
            raise PreprocessError(f"truncated recording {path.name}: {message}")
        logger.debug("%s: %s", path.name, message)
    if not raw.ch_names or "eeg" not in raw.get_channel_types(unique=True):
        raise PreprocessError(
            f"{path.name} is not EEG: it has no EEG channel (channels: {raw.ch_names[:10]})"
        )
    return raw.pick("eeg")


def _check_not_companion(path: Path, suffix: str | None) -> None:
    """Refuse, naming the file to give instead, a file that is part of another recording."""
    stem = path.name[: -len(suffix)] if suffix else path.stem
    if suffix == ".eeg":
        for header in (".vhdr", ".ahdr", ".VHDR", ".AHDR"):
            if (path.parent / (stem + header)).is_file():
                raise PreprocessError(
                    f"{path.name} is the data file of the BrainVision recording {stem + header}: give "
                    f"{path.parent / (stem + header)} (the header) as --input instead"
                )
    if suffix == ".dat" and (path.parent / (stem + ".lay")).is_file():
        raise PreprocessError(
            f"{path.name} is the data file of the Persyst recording {stem}.lay: give "
            f"{path.parent / (stem + '.lay')} as --input instead"
        )
    hint = _hint_table().get(Path(path.name.lower()).suffix)
    if hint is not None:
        header = {".vmrk": ".vhdr", ".amrk": ".ahdr"}.get(path.suffix.lower(), "header")
        raise PreprocessError(
            f"{path.name} is the marker file of a BrainVision recording: give its {header} file "
            f"({path.parent / (stem + header)}) as --input instead"
        )


def _read_failure(path: Path, suffix: str, errors: list) -> str:
    """The message of an unreadable recording: every reader's own message, and the setting to change."""
    if suffix == ".set" and any("number of trials" in str(err).lower() for _, _, err in errors):
        return (
            f"{path.name} is an epoched EEGLAB dataset: preprocessing cuts its own windows from "
            "continuous EEG; export the continuous dataset (before epoching) from EEGLAB and give that "
            "file as --input"
        )
    lines, advised = [], []
    for kind, name, err in errors:
        message = str(err).strip() or repr(err)
        lines.append(f"mne.io.{name} ({kind}): {type(err).__name__}: {message}")
        reader = reader_table()[suffix][kind]
        options = list(inspect.signature(reader).parameters)[1:]  # what the reader's advice may name
        # An option the message names: "pass data_format='int16'", "Pass overrides={'sfreq': ...}"
        advised += [key for key in options if key not in _RESERVED_OPTIONS and _names_option(message, key)]
    text = f"unreadable recording {path.name}: " + "; ".join(lines)
    if advised:
        settings = ", ".join(f"--set reader.{key}=..." for key in dict.fromkeys(advised))
        text += f" (give the reader's options in the config's 'reader' mapping: {settings})"
    return text


def _names_option(message: str, key: str) -> bool:
    """Whether a reader's error message names its option ``key`` (``data_format``, ``overrides=``)."""
    return bool(re.search(rf"\b{key}\s*=", message) or ("_" in key and re.search(rf"\b{key}\b", message)))


@contextlib.contextmanager
def _mne_log_muted():
    """Drop MNE's log records for the duration (its warnings still reach ``warnings``)."""
    mne_logger = logging.getLogger("mne")
    mute = logging.Filter("nothing-passes")
    mne_logger.addFilter(mute)
    try:
        yield
    finally:
        mne_logger.removeFilter(mute)
