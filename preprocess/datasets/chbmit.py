"""CHB-MIT Scalp EEG Database (paediatric seizures; PhysioNet open data, ODC-By 1.0).

Shoeb A., "Application of machine learning to epileptic seizure onset detection and treatment",
MIT PhD thesis, 2009; Goldberger A. et al., PhysioBank, PhysioToolkit, and PhysioNet, Circulation 2000.

This module fetches single records with pooch (checked against PhysioNet's published sha256) and
writes their seizure times as an events CSV for ``preprocess_main.py --events``.

Usage::

    python preprocess/datasets/chbmit.py fetch --records chb01_03 chb01_04 --cache DIR
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runtime.files import atomic_write  # noqa: E402

__all__ = ["BASE_URL", "RECORDS", "fetch_records", "write_events"]

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
        raise ValueError(f"Invalid value for the 'records' parameter. Allowed values are {list(RECORDS)}, "
                         f"but got {unknown} instead.")
    folder = _cache_dir(cache)
    paths = []
    for record in records:
        case = record.split("_")[0]
        path = pooch.retrieve(
            url=f"{BASE_URL}{case}/{record}.edf", known_hash=f"sha256:{RECORDS[record]['sha256']}",
            fname=f"{record}.edf", path=folder, progressbar=True,
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
