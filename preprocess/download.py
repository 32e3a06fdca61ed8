"""Download the open EEG datasets behind the eight tasks, verifying every file's published hash.

Usage::

    python preprocess/download.py NAME --dest DIR [--subjects ID [ID ...]] [--dry-run]
        [--base-url URL] [--known-hash FILE=ALG:HEX ...] [--unverified] [--retries N] [--quiet]

``NAME`` is one of :data:`DATASETS`:

- ``chbmit``: CHB-MIT Scalp EEG Database 1.0.0 (PhysioNet). Hashes: PhysioNet's ``SHA256SUMS.txt``,
  shipped unchanged in ``preprocess/registry/`` (its own sha256 is checked before use), so every
  file is checked against a hash pinned in this project. ``--subjects chb01 chb02`` selects cases
  (EDF, ``.edf.seizures`` and the case's summary); the index files at the top are always fetched.
- ``sleep_edf``: Sleep-EDF Expanded 1.0.0 (PhysioNet), the sleep-cassette (SC) recordings. Hashes:
  PhysioNet's ``SHA256SUMS.txt``, fetched first (kept as ``DIR/SHA256SUMS.txt``), then every file is
  checked against it. ``--subjects 0 1`` selects SC subjects (``SC4ssN...``, ss = 00-82).
- ``helsinki_neonatal``: neonatal EEG with seizure annotations (Stevenson et al. 2019), Zenodo
  record 4940267. ``cork_hie``: neonatal EEG graded for HIE (O'Toole et al. 2023), Zenodo record
  7477575. Hashes: the md5 checksums Zenodo publishes in the record's file listing, fetched first
  (kept as ``DIR/zenodo-record-ID.json``). ``--subjects 1 4`` selects Helsinki babies
  (``eeg1.edf``...); zip archives are extracted into ``DIR``.

A listing fetched first (Sleep-EDF's ``SHA256SUMS.txt``, a Zenodo file list) has no published hash
of its own: it is the root of trust, fetched over HTTPS from the publisher and kept in ``DIR``
(delete it to fetch it again).
- ``tusz``, ``tuev``, ``tuar``: TUH corpora, which need registration: instructions are printed and
  nothing is downloaded.

Files are saved under ``DIR`` with the publisher's layout (``DIR/chb01/chb01_03.edf``). A file is
downloaded to ``FILE.part`` (resumed with an HTTP Range request after an interruption), then verified
by pooch and only then renamed to its final name; a file whose hash does not match is deleted. A
rerun skips files that are present with the right hash. A file with no published hash is refused
unless its hash is given with ``--known-hash`` or ``--unverified`` is passed (its sha256 is then
printed, marked UNVERIFIED).

Exit status: 0 when every file is present and verified, 1 when some failed (after trying the others),
2 for usage errors (unknown dataset or subject, a file without a published hash).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from preprocess.download_registry import (  # noqa: E402
    DATASETS,
    OpenDataset,
    RegisteredCorpus,
    RemoteFile,
    checked_hash,
    checked_relpath,
    get_dataset,
    read_sha256sums,
    read_zenodo_listing,
)
from runtime.files import atomic_write  # noqa: E402

__all__ = [
    "DATASETS",
    "ChecksumError",
    "DownloadSummary",
    "MissingChecksumError",
    "OpenDataset",
    "RegisteredCorpus",
    "RemoteFile",
    "ResumableDownloader",
    "download_dataset",
    "fetch_file",
    "plan_files",
    "read_sha256sums",
    "read_zenodo_listing",
    "registered_instructions",
]

logger = logging.getLogger("preprocess.download")


class ChecksumError(ValueError):
    """A downloaded file's hash differs from the published one (the download was deleted)."""


class MissingChecksumError(ValueError):
    """Files have no published hash and the user gave neither ``--known-hash`` nor ``--unverified``."""


@contextlib.contextmanager
def _pooch_quiet() -> Iterator[None]:
    """Hold back pooch's own INFO messages (this module logs its own) and restore its level after."""
    import pooch

    pooch_logger = pooch.get_logger()
    level = pooch_logger.level
    pooch_logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        pooch_logger.setLevel(level)


def _verified_checksums_file(spec: OpenDataset) -> Path:
    """The shipped ``SHA256SUMS.txt`` of ``spec``, after checking it is the publisher's file."""
    import pooch

    path = Path(spec.checksums_file)
    if not path.is_file():
        raise FileNotFoundError(f"The checksum registry {path} of {spec.name} is missing from the project.")
    if spec.checksums_file_sha256 and (digest := pooch.file_hash(str(path))) != spec.checksums_file_sha256:
        raise ChecksumError(
            f"The checksum registry {path} was modified: its sha256 is {digest}, "
            f"PhysioNet's file has {spec.checksums_file_sha256}."
        )
    return path


def _index(
    spec: OpenDataset, dest: Path, base_url: str, retries: int, progressbar: bool
) -> dict[str, str | None]:
    """{relative path: known hash} of every file of ``spec``, fetching the publisher's listing if needed."""
    import pooch

    if spec.host == "physionet" and spec.checksums_file is not None:
        return read_sha256sums(_verified_checksums_file(spec))
    if spec.host == "physionet":
        fname, url, reader = "SHA256SUMS.txt", f"{base_url}SHA256SUMS.txt", read_sha256sums
    else:
        fname, url = f"zenodo-record-{spec.record_id}.json", f"{base_url}api/records/{spec.record_id}"
        reader = read_zenodo_listing
    path = dest / fname
    if not path.exists():
        # The listing itself has no published hash: it is the root of trust, fetched over HTTPS.
        dest.mkdir(parents=True, exist_ok=True)
        logger.info("Fetching the file list and hashes of %s from %s", spec.name, url)
        fetcher = pooch.create(
            path=dest, base_url=base_url, registry={fname: None}, urls={fname: url}, retry_if_failed=retries
        )
        downloader = ResumableDownloader(dest / f"{fname}.part", progressbar=progressbar)
        with _pooch_quiet():
            fetcher.fetch(fname, downloader=downloader)
    return reader(path)


def _subject_ids(spec: OpenDataset, paths: Sequence[str]) -> dict[str, str]:
    """{relative path: subject id} for the files of ``spec`` that belong to a subject."""
    pattern = re.compile(spec.subject_pattern) if spec.subject_pattern else None
    found = {}
    for path in paths:
        match = pattern.search(path) if pattern else None
        if match:
            found[path] = match.group(1)
    return found


def _select(spec: OpenDataset, index: dict[str, str | None], subjects: Sequence[str] | None) -> list[str]:
    """The relative paths to fetch: every file, or the files of ``subjects`` and the shared ones."""
    exclude = re.compile(spec.exclude_pattern) if spec.exclude_pattern else None
    paths = [p for p in index if not (exclude and exclude.search(p))]
    if not subjects:
        return paths
    if spec.subject_pattern is None:
        raise ValueError(
            f"Invalid value for the 'subjects' parameter: {spec.name} cannot be selected by "
            f"subject (its recordings come in archives), but got {list(subjects)} instead."
        )
    owner = _subject_ids(spec, paths)
    available = sorted(set(owner.values()))
    wanted = {s: spec.normalize_subject(s) for s in subjects}
    unknown = [s for s, norm in wanted.items() if norm not in available]
    if unknown:
        raise ValueError(
            f"Invalid value for the 'subjects' parameter. Allowed values are "
            f"{spec.subject_help}: {' '.join(available)}, but got {unknown} instead."
        )
    keep = set(wanted.values())
    return [p for p in paths if p not in owner or owner[p] in keep]


def plan_files(
    name: str,
    dest: str | os.PathLike,
    subjects: Sequence[str] | None = None,
    base_url: str | None = None,
    retries: int = 2,
    progressbar: bool = True,
) -> list[RemoteFile]:
    """List the files of dataset ``name`` to download, with their URLs and published hashes.

    Only the dataset's listing is downloaded (into ``dest``): Sleep-EDF's ``SHA256SUMS.txt`` or the
    Zenodo record's file listing; CHB-MIT's list is shipped with the project.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS` naming an :class:`OpenDataset`.
    dest : path-like
        Destination folder.
    subjects : sequence of str | None
        Subjects to fetch (None: all); files that belong to no subject are always included.
    base_url : str | None
        Replaces the dataset's base URL (a mirror, or a test server).
    retries : int
        Extra attempts after a network error.
    progressbar : bool
        Show a tqdm progress bar while fetching the listing.

    Returns
    -------
    files : list of RemoteFile
        In the publisher's order.

    Raises
    ------
    ValueError
        For an unknown or registration-only dataset, unknown subjects, or an unreadable listing.
    """
    spec = get_dataset(name)
    if isinstance(spec, RegisteredCorpus):
        raise ValueError(
            f"{name} needs registration and cannot be downloaded here:\n{registered_instructions(name)}"
        )
    base_url = _with_slash(base_url or spec.base_url)
    index = _index(spec, Path(dest), base_url, retries, progressbar)
    paths = _select(spec, index, subjects)
    if spec.host == "zenodo":
        files_url = f"{base_url}records/{spec.record_id}/files/"
        return [RemoteFile(p, f"{files_url}{p}?download=1", index[p]) for p in paths]
    return [RemoteFile(p, f"{base_url}{p}", index[p]) for p in paths]


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


class ResumableDownloader:
    """A pooch downloader that keeps a ``.part`` file and resumes it with an HTTP Range request.

    pooch calls it with a temporary file beside the destination; the bytes go to ``part_path``
    (appended after the bytes already there when the server honours ``Range``), and the complete
    ``.part`` is renamed onto pooch's temporary file, which pooch then verifies and renames to the
    final name, or deletes when the hash differs. An interrupted download therefore leaves only the
    ``.part`` file, which the next attempt continues.

    Parameters
    ----------
    part_path : path-like
        Where the partial download is kept between attempts (``FILE.part``).
    progressbar : bool
        Show a tqdm progress bar (bytes) on stderr, as pooch's own downloader does.
    hash_alg : str | None
        Algorithm (``"sha256"``, ``"md5"``) of the digest of the complete file kept in
        :attr:`digest`, for error messages.
    timeout_s : float
        Connect and read timeout in seconds.
    chunk_size : int
        Bytes read per iteration; an interrupted read loses at most this much of what arrived.

    Attributes
    ----------
    digest : str | None
        ``ALG:HEX`` of the last complete download (None before).
    """

    def __init__(
        self,
        part_path: str | os.PathLike,
        progressbar: bool = True,
        hash_alg: str | None = None,
        timeout_s: float = 60.0,
        chunk_size: int = 1 << 16,
    ) -> None:
        self.part_path = Path(part_path)
        self.progressbar = progressbar
        self.hash_alg = hash_alg
        self.timeout_s = timeout_s
        self.chunk_size = chunk_size
        self.digest: str | None = None

    def __call__(
        self, url: str, output_file: str, pooch_instance: object, check_only: bool = False
    ) -> bool | None:
        """Download ``url`` into ``output_file`` (pooch's downloader protocol)."""
        import requests

        if check_only:
            return requests.head(url, timeout=self.timeout_s, allow_redirects=True).status_code == 200
        part = self.part_path
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Accept-Encoding": "identity"}  # byte offsets must be those of the file itself
        if offset:
            headers["Range"] = f"bytes={offset}-"
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout_s) as response:
            if offset and response.status_code == 416:
                logger.info("%s is already complete; verifying it", part.name)
            else:
                response.raise_for_status()
                if offset and response.status_code == 206:
                    start = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
                    if not start or int(start.group(1)) != offset:
                        part.unlink()
                        raise requests.exceptions.RequestException(
                            f"{url}: asked for bytes {offset}- but got "
                            f"{response.headers.get('Content-Range')!r}; the partial download was discarded"
                        )
                    logger.info("Resuming %s at byte %d", part.name, offset)
                else:
                    offset = 0  # a full answer: the server ignored the Range, start again
                self._stream(response, part, offset)
        if self.hash_alg:
            self.digest = f"{self.hash_alg}:{_file_digest(part, self.hash_alg)}"
        os.replace(part, output_file)
        return None

    def _stream(self, response, part: Path, offset: int) -> None:
        import requests
        from tqdm import tqdm

        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        part.parent.mkdir(parents=True, exist_ok=True)
        with (
            open(part, "ab" if offset else "wb") as f,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                desc=part.name[: -len(".part")],
                disable=not self.progressbar,
                leave=True,
                ncols=79,
                file=sys.stderr,
            ) as bar,
        ):
            for chunk in response.iter_content(chunk_size=self.chunk_size):
                f.write(chunk)
                bar.update(len(chunk))
        size = part.stat().st_size
        if total is not None and size != total:
            raise requests.exceptions.ConnectionError(
                f"{response.url}: connection closed after {size} of {total} bytes; rerun to resume"
            )


def _file_digest(path: Path, alg: str) -> str:
    digest = hashlib.new(alg)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_file(
    remote: RemoteFile,
    dest: str | os.PathLike,
    retries: int = 2,
    progressbar: bool = True,
) -> tuple[Path, bool]:
    """Download one file into ``dest`` with pooch unless it is there with the right hash.

    Parameters
    ----------
    remote : RemoteFile
        The file; ``remote.known_hash`` None downloads without verification (the caller decides).
    dest : path-like
        Destination folder; the file goes to ``dest / remote.path``.
    retries : int
        Extra attempts after a network error or a hash mismatch (each resumes the ``.part`` file).
    progressbar : bool
        Show a tqdm progress bar.

    Returns
    -------
    path : Path
        The verified file.
    downloaded : bool
        False when a file with the right hash was already there (nothing was requested).

    Raises
    ------
    ChecksumError
        If the downloaded bytes do not have the published hash; the message names the file and both
        hashes, and no file is left under the final name.
    requests.exceptions.RequestException
        If the download fails (the ``.part`` file is kept for the next attempt).
    """
    import pooch

    dest = Path(dest)
    target = dest / remote.path
    alg, _, expected = remote.known_hash.partition(":") if remote.known_hash else (None, "", "")
    if target.exists():
        if alg is None:
            return target, False
        digest = pooch.file_hash(str(target), alg=alg)
        if digest == expected:
            return target, False
        logger.warning(
            "%s is present but its %s is %s, not the published %s: downloading it again",
            remote.path,
            alg,
            digest,
            expected,
        )
        target.unlink()
    downloader = ResumableDownloader(
        target.with_name(target.name + ".part"), progressbar=progressbar, hash_alg=alg
    )
    fetcher = pooch.create(
        path=dest,
        base_url="",
        registry={remote.path: remote.known_hash},
        urls={remote.path: remote.url},
        retry_if_failed=retries,
    )
    logger.info("Downloading %s from %s", remote.path, remote.url)
    try:
        with _pooch_quiet():
            fetcher.fetch(remote.path, downloader=downloader)
    except ValueError as err:
        if "hash" not in str(err).lower():
            raise
        got = downloader.digest or f"another hash ({err})"
        raise ChecksumError(
            f"Rejected {remote.path} from {remote.url}: hash mismatch, expected {remote.known_hash} but got "
            f"{got}. The download was deleted; {target} was not written."
        ) from err
    return target, True


@dataclasses.dataclass
class DownloadSummary:
    """What :func:`download_dataset` did.

    Attributes
    ----------
    dataset : str
        Dataset name.
    dest : Path
        Destination folder.
    hash_source : str
        Where the hashes the files were verified against come from.
    downloaded, present, extracted : list of str
        Relative paths downloaded (and verified), already present with the right hash, and zip
        archives extracted.
    failed : dict of str to str
        Relative path -> reason.
    unverified : dict of str to str
        Relative path -> sha256 of files downloaded without a published hash (``--unverified``).
    planned : list of str
        With ``dry_run``: the files that would be fetched, with their hashes.
    """

    dataset: str
    dest: Path
    hash_source: str
    downloaded: list[str] = dataclasses.field(default_factory=list)
    present: list[str] = dataclasses.field(default_factory=list)
    extracted: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    unverified: dict[str, str] = dataclasses.field(default_factory=dict)
    planned: list[str] = dataclasses.field(default_factory=list)

    def to_text(self) -> str:
        """A human-readable report (one line per failure and unverified file)."""
        if self.planned:
            return "\n".join(
                [
                    f"{self.dataset}: {len(self.planned)} files would be fetched into {self.dest}",
                    *self.planned,
                ]
            )
        n_ok = len(self.downloaded) + len(self.present) - len(self.unverified)
        lines = [
            f"{self.dataset} -> {self.dest}: {len(self.downloaded)} downloaded, {len(self.present)} "
            f"already present, {len(self.failed)} failed; zip archives extracted: {len(self.extracted)}",
            f"{n_ok} files verified against {self.hash_source}",
        ]
        lines += [f"FAILED {path}: {reason}" for path, reason in self.failed.items()]
        lines += [
            f"UNVERIFIED {path}: sha256:{digest} (no published hash; compare it with the publisher's)"
            for path, digest in self.unverified.items()
        ]
        return "\n".join(lines)


def _hash_source(spec: OpenDataset, base_url: str) -> str:
    if spec.host == "physionet" and spec.checksums_file is not None:
        return f"PhysioNet's SHA256SUMS.txt shipped in {Path(spec.checksums_file).name}"
    if spec.host == "physionet":
        return f"PhysioNet's SHA256SUMS.txt from {base_url}SHA256SUMS.txt"
    return f"the md5 checksums of Zenodo record {spec.record_id} ({base_url}api/records/{spec.record_id})"


def _extract(archive: Path, dest: Path, known_hash: str) -> bool:
    """Extract a zip into ``dest`` unless a marker says this exact archive was extracted already."""
    marker = dest / f".{archive.name}.extracted"
    if marker.exists() and marker.read_text(encoding="utf-8").strip() == known_hash:
        return False
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            checked_relpath(member.rstrip("/"), archive)
        zf.extractall(dest)
    with atomic_write(marker, "w") as f:
        f.write(known_hash + "\n")
    return True


def download_dataset(
    name: str,
    dest: str | os.PathLike,
    subjects: Sequence[str] | None = None,
    *,
    base_url: str | None = None,
    known_hashes: dict[str, str] | None = None,
    allow_unverified: bool = False,
    retries: int = 2,
    extract: bool = True,
    dry_run: bool = False,
    progressbar: bool = True,
) -> DownloadSummary:
    """Download an open dataset into ``dest``, verifying each file against its published hash.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS` naming an :class:`OpenDataset`.
    dest : path-like
        Destination folder (the publisher's layout is kept below it).
    subjects : sequence of str | None
        Subjects to fetch (None: all).
    base_url : str | None
        Replaces the publisher's base URL (a mirror; the tests' local server).
    known_hashes : dict of str to str | None
        ``ALG:HEX`` for files the publisher gives no hash for (relative path -> hash).
    allow_unverified : bool
        Download files that have no published or known hash, recording their sha256 in
        ``summary.unverified``; otherwise such files raise :class:`MissingChecksumError` before
        anything is downloaded.
    retries : int
        Extra attempts per file after a network error or hash mismatch.
    extract : bool
        Extract downloaded zip archives into ``dest``.
    dry_run : bool
        Only list the files (the listing is still fetched).
    progressbar : bool
        Show tqdm progress bars.

    Returns
    -------
    summary : DownloadSummary
        ``summary.failed`` is empty when every file is present and verified.

    Raises
    ------
    ValueError
        For an unknown dataset or subject, a registration-only corpus, a bad ``known_hashes`` entry.
    MissingChecksumError
        If files have no hash and ``allow_unverified`` is False.
    """
    import requests

    spec = get_dataset(name)
    if isinstance(spec, RegisteredCorpus):
        raise ValueError(f"{name} needs registration:\n{registered_instructions(name)}")
    dest = Path(dest)
    base = _with_slash(base_url or spec.base_url)
    files = plan_files(name, dest, subjects, base, retries=retries, progressbar=progressbar)
    known_hashes = {p: checked_hash(h, f"--known-hash {p}") for p, h in (known_hashes or {}).items()}
    listed = {f.path: f for f in files}
    for path in known_hashes:
        if path not in listed:
            raise ValueError(
                f"Invalid value for the 'known_hashes' parameter: {path!r} is not a file of "
                f"{name} (selected files: {', '.join(sorted(listed)[:10])}...)."
            )
        if listed[path].known_hash is not None:
            raise ValueError(
                f"{path} has a published hash ({listed[path].known_hash}); --known-hash is "
                "only for files without one."
            )
    files = [dataclasses.replace(f, known_hash=f.known_hash or known_hashes.get(f.path)) for f in files]
    missing = [f.path for f in files if f.known_hash is None]
    if missing and not allow_unverified:
        raise MissingChecksumError(
            f"{name}: the publisher gives no hash for {', '.join(missing)}, so these files cannot be "
            "verified. Pass the publisher's checksum with --known-hash FILE=ALG:HEX, or accept them "
            "unverified with --unverified (their sha256 is then printed and marked UNVERIFIED). Nothing "
            "was downloaded."
        )
    summary = DownloadSummary(name, dest, _hash_source(spec, base))
    if dry_run:
        summary.planned = [f"{f.path}  {f.known_hash or 'UNVERIFIED (no published hash)'}" for f in files]
        return summary
    for number, remote in enumerate(files, start=1):
        logger.debug("[%d/%d] %s", number, len(files), remote.path)
        try:
            path, downloaded = fetch_file(remote, dest, retries=retries, progressbar=progressbar)
        except requests.exceptions.RequestException as err:  # (an OSError: caught first)
            summary.failed[remote.path] = f"{type(err).__name__}: {err} (rerun to resume)"
            logger.error("%s: %s", remote.path, err)
            continue
        except (ChecksumError, OSError, ValueError) as err:
            summary.failed[remote.path] = str(err)
            logger.error("%s", err)
            continue
        (summary.downloaded if downloaded else summary.present).append(remote.path)
        if remote.known_hash is None:
            summary.unverified[remote.path] = _file_digest(path, "sha256")
        if extract and path.suffix.lower() == ".zip":
            marker_hash = remote.known_hash or f"sha256:{summary.unverified[remote.path]}"
            try:
                if _extract(path, dest, marker_hash):
                    summary.extracted.append(remote.path)
            except (zipfile.BadZipFile, ValueError) as err:
                summary.failed[remote.path] = f"cannot extract: {err}"
    return summary


def registered_instructions(name: str, dest: str | os.PathLike | None = None) -> str:
    """How to obtain a registration-only TUH corpus (nothing is downloaded).

    Parameters
    ----------
    name : str
        ``"tusz"``, ``"tuev"`` or ``"tuar"``.
    dest : path-like | None
        Destination folder to show in the rsync command.

    Returns
    -------
    text : str
        The steps: registration at the TUH EEG corpus site, then rsync.
    """
    spec = get_dataset(name)
    if not isinstance(spec, RegisteredCorpus):
        raise ValueError(f"{name} is openly downloadable: python preprocess/download.py {name} --dest DIR")
    target = str(dest) if dest else f"DIR/{spec.name}"
    return "\n".join(
        [
            f"{spec.title}: {spec.contents} (task {spec.tasks}).",
            "It is distributed by the Neural Engineering Data Consortium (Temple University) to registered",
            "users only and may not be redistributed, so this tool does not download it. To obtain it:",
            "  1. Request access at https://isip.piconepress.com/projects/nedc/html/tuh_eeg/ : fill in and",
            "     sign the data request form found there and email it as instructed (help@nedcdata.org).",
            "  2. When the request is approved you receive the rsync login (user nedc-tuh-eeg; the password",
            "     or the SSH key you register with them).",
            f"  3. rsync -auxvL nedc-tuh-eeg@www.isip.piconepress.com:{spec.rsync_path}/{spec.version}/"
            f" {target}/",
            f"     ({spec.version} at the time of writing: use the newest version listed on the corpus page,",
            "     and keep its official train/dev/eval split folders as they are.)",
            "  4. Then read it with the TUH adapter in preprocess/datasets/ (see docs/preprocessing.md).",
        ]
    )


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Download an open EEG dataset, verifying every file's published hash.",
        epilog=f"datasets: {', '.join(DATASETS)}. See docs/preprocessing.md (Downloads).",
    )
    parser.add_argument("name", metavar="NAME", help=f"dataset: {', '.join(DATASETS)}")
    parser.add_argument("--dest", metavar="DIR", help="destination folder (required for open datasets)")
    parser.add_argument("--subjects", nargs="+", metavar="ID", help="subjects to fetch (default: all)")
    parser.add_argument("--base-url", metavar="URL", help="mirror to use instead of the publisher's URL")
    parser.add_argument(
        "--known-hash",
        action="append",
        default=[],
        metavar="FILE=ALG:HEX",
        help="hash of a file the publisher lists without one (repeatable)",
    )
    parser.add_argument(
        "--unverified",
        action="store_true",
        help="download files without a published hash too, printing their sha256",
    )
    parser.add_argument("--retries", type=int, default=2, help="extra attempts per file (default 2)")
    parser.add_argument("--no-extract", action="store_true", help="keep zip archives unextracted")
    parser.add_argument("--dry-run", action="store_true", help="list the files and hashes, download nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _parse_known_hashes(items: Sequence[str]) -> dict[str, str]:
    known = {}
    for item in items:
        path, sep, value = item.partition("=")
        if not sep or not path:
            raise ValueError(
                f"Invalid value for the '--known-hash' parameter: expected FILE=ALG:HEX, "
                f"but got {item!r} instead."
            )
        known[path] = value
    return known


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    handler = logging.StreamHandler()  # this call's stderr; removed on return
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        return _run(args)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    import requests

    try:
        spec = get_dataset(args.name)
        if isinstance(spec, RegisteredCorpus):
            print(registered_instructions(args.name, args.dest))
            return 0
        if not args.dest:
            raise ValueError(f"The --dest parameter is required to download {args.name}.")
        if args.retries < 0:
            raise ValueError(
                f"Invalid value for the '--retries' parameter: expected 0 or more, "
                f"but got {args.retries} instead."
            )
        summary = download_dataset(
            args.name,
            args.dest,
            args.subjects,
            base_url=args.base_url,
            known_hashes=_parse_known_hashes(args.known_hash),
            allow_unverified=args.unverified,
            retries=args.retries,
            extract=not args.no_extract,
            dry_run=args.dry_run,
            progressbar=not args.quiet,
        )
    except requests.exceptions.RequestException as err:  # the listing could not be fetched
        print(f"error: could not fetch the file list of {args.name}: {err}", file=sys.stderr)
        return 1
    except (ChecksumError, OSError) as err:  # includes a missing or unwritable folder
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ValueError as err:  # usage: unknown dataset or subject, missing checksums, bad --known-hash
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary.to_text())
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
