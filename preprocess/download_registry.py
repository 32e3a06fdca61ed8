"""The datasets :mod:`preprocess.download` knows, and their published checksum listings.

:data:`DATASETS`: the open datasets (where their files are, how subjects are named) and the corpora that
need registration. The listings (``SHA256SUMS.txt`` files, Zenodo file lists) are read with every path
checked to stay inside the dataset folder and every hash in pooch's ``ALG:HEX`` notation.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath

__all__ = [
    "DATASETS",
    "HEX_LENGTHS",
    "REGISTRY_DIR",
    "OpenDataset",
    "RegisteredCorpus",
    "RemoteFile",
    "checked_hash",
    "get_dataset",
    "checked_relpath",
    "read_sha256sums",
    "read_zenodo_listing",
]

#: Hash algorithms accepted in checksums (pooch's ``ALG:HEX`` notation) and their hex lengths.
HEX_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64}

REGISTRY_DIR = Path(__file__).resolve().parent / "registry"


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset.

    Attributes
    ----------
    path : str
        Relative POSIX path, the same under the publisher's base URL and under the destination.
    url : str
        Download URL.
    known_hash : str | None
        ``"sha256:HEX"`` or ``"md5:HEX"`` (pooch's notation), or None where none is published.
    """

    path: str
    url: str
    known_hash: str | None


@dataclasses.dataclass(frozen=True)
class OpenDataset:
    """An openly downloadable dataset and where its hashes come from.

    Attributes
    ----------
    name, title : str
        Command-line name and full title.
    host : str
        ``"physionet"`` (files listed by a ``SHA256SUMS.txt``) or ``"zenodo"`` (files and md5s listed
        by the record's API).
    base_url : str
        PhysioNet: the dataset version's folder. Zenodo: the site root (``https://zenodo.org/``).
    record_id : str | None
        Zenodo record (a pinned version, not the concept record).
    checksums_file : Path | None
        PhysioNet: a ``SHA256SUMS.txt`` shipped in the project, or None to fetch the publisher's.
    checksums_file_sha256 : str | None
        Expected sha256 of ``checksums_file`` (the publisher's file, unchanged).
    subject_pattern : str | None
        Regex on a file's relative path whose group 1 is the subject id; None: no subject selection.
    normalize_subject : callable
        Maps a command-line subject to the id captured by ``subject_pattern`` (None if invalid).
    exclude_pattern : str | None
        Regex of relative paths never downloaded.
    subject_help : str
        What ``--subjects`` takes, for messages.
    source : str
        Licence and citation.
    """

    name: str
    title: str
    host: str
    base_url: str
    record_id: str | None = None
    checksums_file: Path | None = None
    checksums_file_sha256: str | None = None
    subject_pattern: str | None = None
    normalize_subject: Callable[[str], str | None] = str.lower
    exclude_pattern: str | None = None
    subject_help: str = ""
    source: str = ""


@dataclasses.dataclass(frozen=True)
class RegisteredCorpus:
    """A corpus that needs registration: :func:`registered_instructions` says how to obtain it."""

    name: str
    title: str
    rsync_path: str
    version: str
    tasks: str
    contents: str


def _number(prefix: str, width: int) -> Callable[[str], str | None]:
    """Subject normaliser: ``"7"``, ``"07"`` or ``prefix + "7"`` -> the zero-padded number."""

    def normalize(subject: str) -> str | None:
        text = subject.strip().lower()
        if prefix and text.startswith(prefix):
            text = text[len(prefix) :]
        return f"{int(text):0{width}d}" if text.isdigit() else None

    return normalize


DATASETS: dict[str, OpenDataset | RegisteredCorpus] = {
    "chbmit": OpenDataset(
        name="chbmit",
        title="CHB-MIT Scalp EEG Database 1.0.0",
        host="physionet",
        base_url="https://physionet.org/files/chbmit/1.0.0/",
        checksums_file=REGISTRY_DIR / "chbmit-1.0.0-SHA256SUMS.txt",
        checksums_file_sha256="f1698efeb9fef887e55cedf6eda13386d9a888db663aec48b2aa194b7b753d2b",
        subject_pattern=r"^(chb\d\d)/",
        normalize_subject=str.lower,
        subject_help="cases chb01 ... chb24 (chb21 is chb01 recorded later)",
        source="PhysioNet, ODC-By 1.0; cite Shoeb 2009 and Goldberger et al. 2000",
    ),
    "sleep_edf": OpenDataset(
        name="sleep_edf",
        title="Sleep-EDF Expanded 1.0.0, sleep-cassette recordings",
        host="physionet",
        base_url="https://physionet.org/files/sleep-edfx/1.0.0/",
        subject_pattern=r"^sleep-cassette/SC4(\d\d)\d",
        normalize_subject=_number("", 2),
        exclude_pattern=r"^sleep-telemetry/",
        subject_help="sleep-cassette subject numbers 0 ... 82 (ss in SC4ssN)",
        source="PhysioNet, ODC-By 1.0; cite Kemp et al. 2000 and Goldberger et al. 2000",
    ),
    "helsinki_neonatal": OpenDataset(
        name="helsinki_neonatal",
        title="Helsinki neonatal EEG with seizure annotations",
        host="zenodo",
        base_url="https://zenodo.org/",
        record_id="4940267",
        subject_pattern=r"^eeg(\d+)\.edf$",
        normalize_subject=_number("eeg", 1),
        subject_help="babies 1 ... 79 (eegN.edf)",
        source="Zenodo, CC-BY 4.0; cite Stevenson et al., Sci. Data 6, 190039 (2019)",
    ),
    "cork_hie": OpenDataset(
        name="cork_hie",
        title="Cork neonatal EEG graded for HIE background severity",
        host="zenodo",
        base_url="https://zenodo.org/",
        record_id="7477575",
        source="Zenodo, CC-BY 4.0; cite O'Toole et al., Sci. Data 10, 129 (2023)",
    ),
    "tusz": RegisteredCorpus(
        name="tusz",
        title="TUH EEG Seizure Corpus (TUSZ)",
        rsync_path="data/tuh_eeg/tuh_eeg_seizure",
        version="v2.0.3",
        tasks="seizure_type",
        contents="EDF with .csv/.csv_bi seizure annotations",
    ),
    "tuev": RegisteredCorpus(
        name="tuev",
        title="TUH EEG Events Corpus (TUEV)",
        rsync_path="data/tuh_eeg/tuh_eeg_events",
        version="v2.0.1",
        tasks="epileptiform_detection",
        contents="EDF with .rec event annotations",
    ),
    "tuar": RegisteredCorpus(
        name="tuar",
        title="TUH EEG Artifact Corpus (TUAR)",
        rsync_path="data/tuh_eeg/tuh_eeg_artifact",
        version="v3.0.1",
        tasks="artifact_detection",
        contents="EDF with .csv artefact annotations",
    ),
}


def get_dataset(name: str) -> OpenDataset | RegisteredCorpus:
    if name not in DATASETS:
        raise ValueError(
            f"Invalid value for the 'name' parameter. Allowed values are "
            f"{', '.join(DATASETS)}, but got {name!r} instead."
        )
    return DATASETS[name]


def checked_relpath(path: str, source: str | os.PathLike) -> str:
    """A publisher's relative path, refused if it could escape the destination folder."""
    pure = PurePosixPath(path)
    if not path or "\\" in path or pure.is_absolute() or any(part in ("", ".", "..") for part in pure.parts):
        raise ValueError(f"{source}: refusing the file path {path!r} (absolute or with '..').")
    return pure.as_posix()


def checked_hash(value: str, source: str) -> str:
    """``ALG:HEX`` with a known algorithm and a hex digest of the right length, lower case."""
    alg, _, digest = value.strip().partition(":")
    alg, digest = alg.lower(), digest.lower()
    if alg not in HEX_LENGTHS or not re.fullmatch(f"[0-9a-f]{{{HEX_LENGTHS[alg]}}}", digest):
        raise ValueError(
            f"{source}: invalid hash {value!r}; expected ALG:HEX with ALG one of "
            f"{', '.join(HEX_LENGTHS)} (e.g. md5:{'0' * 32})."
        )
    return f"{alg}:{digest}"


def read_sha256sums(path: str | os.PathLike) -> dict[str, str]:
    """Read a PhysioNet ``SHA256SUMS.txt`` (``sha256sum`` format) into {relative path: ``sha256:HEX``}.

    Parameters
    ----------
    path : path-like
        The file: one ``<64 hex digits> <relative path>`` per line (``sha256sum``'s two-space and
        ``*`` forms are accepted too), blank lines ignored.

    Returns
    -------
    hashes : dict of str to str
        In file order.

    Raises
    ------
    ValueError
        If a line cannot be parsed (the message names the file and the line number) or a path is
        absolute or contains ``..``.
    FileNotFoundError
        If ``path`` does not exist.
    """
    hashes = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            match = re.fullmatch(r"([0-9a-fA-F]{64}) [ *]?(\S.*)", line.rstrip("\r\n"))
            if match is None:
                raise ValueError(
                    f"{path}, line {number}: cannot parse {line.strip()[:80]!r}; expected "
                    "'<sha256> <file>'. Delete the file if it is a damaged download."
                )
            hashes[checked_relpath(match.group(2), path)] = f"sha256:{match.group(1).lower()}"
    return hashes


def read_zenodo_listing(path: str | os.PathLike) -> dict[str, str | None]:
    """Read a Zenodo record's API answer into {file name: ``md5:HEX`` or None}.

    Both forms Zenodo has served are read: the legacy one (``files`` entries with ``key`` and
    ``checksum: "md5:HEX"``) and the InvenioRDM one (``filename`` and a bare ``checksum``), as a list
    or under ``entries``.

    Parameters
    ----------
    path : path-like
        The saved answer of ``https://zenodo.org/api/records/RECORD_ID``.

    Returns
    -------
    hashes : dict of str to (str | None)
        None for a file the listing gives no checksum for.

    Raises
    ------
    ValueError
        If the file is not JSON with a list of files, an entry has no name, a name would escape the
        destination, or a checksum is malformed.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}: not a Zenodo record listing (invalid JSON: {err}). Delete it if it is "
            "a damaged download."
        ) from err
    files = data.get("files", data) if isinstance(data, dict) else None
    if isinstance(files, dict):
        files = files.get("entries")
    if isinstance(files, dict):
        files = list(files.values())
    if not isinstance(files, list) or not files:
        raise ValueError(f"{path}: no file list in the Zenodo record listing (expected 'files').")
    hashes: dict[str, str | None] = {}
    for number, entry in enumerate(files):
        name = entry.get("key") or entry.get("filename") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise ValueError(f"{path}: file entry {number} has no 'key' or 'filename'.")
        checksum = entry.get("checksum")
        if checksum:
            checksum = checksum if ":" in checksum else f"md5:{checksum}"
            checksum = checked_hash(checksum, f"{path}, {name}")
        hashes[checked_relpath(name, path)] = checksum or None
    return hashes
