"""Train / validation / test splits of a manifest without leakage.

Three ways to split the windows (manifest rows) of a labelled preprocessing output:

``subject_wise`` (default; DESIGN.md section 5)
    Every subject goes whole into one of train, val, test: no subject is in two splits (asserted).
    ``round(test_fraction * n_subjects)`` subjects (at least 1) are tested, ``round(val_fraction *
    n_subjects)`` (at least 1) validate, the rest train (at least 1). The subjects are put in a
    random order drawn from ``split.seed`` (not the training seed, so the five training seeds share one
    test set) that spreads the subjects of each label stratum evenly (systematic stratified sampling:
    subject ``k`` of a stratum of ``m`` gets the key ``(k + u) / m``, ``u`` uniform, strata = each
    subject's most frequent label), then test, val and train are cut from that order. A stratum of
    several subjects therefore lands in several splits, which random subject draws often miss when
    subjects are few.

``patient_specific`` (single-subject data, classic on CHB-MIT)
    Train and test within one subject; no window in two splits (asserted). With
    ``patient_specific_by: recording`` the subject's recordings are split like subjects above (at
    least three recordings). With ``patient_specific_by: time_block`` each recording is cut in time
    into three contiguous blocks, train first, then val, then test (chronological: the model never
    sees the future of what it is tested on), with ``round(fraction * n_windows)`` windows (at least
    1) in val and test. Windows that overlap a window of the previous block in time (overlapping
    windows, ``stride_s < window_s``) are dropped so that no sample is in two splits. The split seed
    is unused by ``time_block``. Data of several subjects is split within each subject (every
    subject in every split: a subject-dependent model).

official splits (``split.protocol: official``, the data folder's ``split.csv``)
    :func:`assigned_split` takes a mapping ``subject or recording -> split name``.

**Subject disjointness is checked for every protocol except ``patient_specific``** (whose point is to
train and test within a subject): a split that puts one subject's windows in two of train, val, test
(e.g. a ``split.csv`` by recording that sends one child's recordings to train and test) is an error
naming the subjects and their splits, unless ``split.allow_subject_overlap: true``. That is needed for
published splits that overlap, such as CHB-MIT's customary BIOT split (chb21 is chb01 1.5 years later,
:mod:`preprocess.datasets.chbmit`); the overlap is then kept in :attr:`Split.subject_overlap`, written in
``results.json`` (``split.subject_overlap``) and shown by the table.

Rounding is half up (``floor(x + 0.5)``). The split is returned as a :class:`Split` of manifest row
indices; :meth:`Split.describe` gives the JSON-ready summary saved in ``results.json``.
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from runtime.config import UsageError
from runtime.seeding import derive_seed

__all__ = [
    "PATIENT_SPECIFIC_BY",
    "PROTOCOLS",
    "SPLIT_NAMES",
    "Split",
    "assigned_split",
    "check_split_config",
    "make_split",
    "patient_specific_split",
    "split_counts",
    "subject_wise_split",
    "read_split_file",
    "SPLIT_FILE",
    "check_subject_overlap",
    "subject_overlap",
]

#: The three splits, in order.
SPLIT_NAMES = ("train", "val", "test")

#: Allowed values of ``split.protocol``; ``official`` reads the data folder's ``split.csv``.
PROTOCOLS = ("subject_wise", "patient_specific", "official")

#: The file of official or customary splits that dataset adapters write beside the manifest.
SPLIT_FILE = "split.csv"

#: Allowed values of ``split.patient_specific_by``.
PATIENT_SPECIFIC_BY = ("recording", "time_block")

# Two times closer than this (s) are equal (start_s comes from CSV text).
_TIME_TOL_S = 1e-6


@dataclass(frozen=True)
class Split:
    """Which manifest rows train, validate and test.

    Attributes
    ----------
    protocol : str
        ``"subject_wise"``, ``"patient_specific"`` or ``"assigned"`` (official splits).
    indices : dict of str to ndarray of int64
        ``"train"``, ``"val"``, ``"test"`` -> sorted manifest row indices; pairwise disjoint.
    seed : int | None
        The split seed (None when no randomness was used).
    by : str | None
        ``patient_specific``: ``"recording"`` or ``"time_block"``; ``assigned``: the key of the mapping
        (``"subject"`` or ``"recording"``).
    fractions : dict
        ``val_fraction`` and ``test_fraction`` asked for (empty for assigned splits).
    dropped : ndarray of int64
        Rows in no split (windows overlapping a window of another block, ``time_block`` only).
    subject_overlap : dict of str to list of str
        Subjects in more than one split (accepted with ``split.allow_subject_overlap``) -> their splits;
        empty otherwise (and for ``patient_specific``, where it is the protocol).
    """

    protocol: str
    indices: dict
    seed: int | None = None
    by: str | None = None
    fractions: dict = field(default_factory=dict)
    dropped: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    subject_overlap: dict = field(default_factory=dict)

    def rows(self, rows: Sequence[Mapping], name: str) -> list:
        """The manifest rows of split ``name`` (``"train"``, ``"val"`` or ``"test"``), in row order."""
        if name not in SPLIT_NAMES:
            raise UsageError(
                f"Invalid value for the 'name' parameter. Allowed values are {list(SPLIT_NAMES)}, "
                f"but got {name!r} instead."
            )
        return [rows[i] for i in self.indices[name]]

    def describe(self, rows: Sequence[Mapping]) -> dict:
        """JSON-ready summary: protocol, seed, fractions and, per split, its subjects and recordings.

        Returns
        -------
        summary : dict
            ``protocol``, ``by``, ``seed``, ``val_fraction``, ``test_fraction``, ``n_dropped``,
            ``subject_overlap`` (subject -> splits, see :attr:`subject_overlap`) and for each of train,
            val, test: ``n_windows``, ``labels`` (label -> windows), ``subjects`` and
            ``recordings`` (sorted lists).
        """
        out = {
            "protocol": self.protocol,
            "by": self.by,
            "seed": self.seed,
            **self.fractions,
            "n_dropped": int(self.dropped.size),
            "subject_overlap": {k: list(v) for k, v in sorted(self.subject_overlap.items())},
        }
        for name in SPLIT_NAMES:
            part = self.rows(rows, name)
            out[name] = {
                "n_windows": len(part),
                "labels": dict(sorted(Counter(str(r["label"]) for r in part).items())),
                "subjects": sorted({str(r["subject"]) for r in part}),
                "recordings": sorted({str(r["recording"]) for r in part}),
            }
        return out


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def check_split_config(section: Mapping) -> None:
    """Check the values of a config's ``split`` section.

    Raises
    ------
    ValueError
        If ``protocol`` or ``patient_specific_by`` is unknown, ``seed`` is not an integer >= 0, a
        fraction is not in (0, 1), ``val_fraction + test_fraction >= 1``, or
        ``allow_subject_overlap`` is not a boolean.
    """
    if section.get("protocol") not in PROTOCOLS:
        raise UsageError(
            f"Invalid value for the 'split.protocol' parameter. Allowed values are "
            f"{list(PROTOCOLS)}, but got {section.get('protocol')!r} instead."
        )
    if section.get("patient_specific_by") not in PATIENT_SPECIFIC_BY:
        raise UsageError(
            f"Invalid value for the 'split.patient_specific_by' parameter. Allowed values are "
            f"{list(PATIENT_SPECIFIC_BY)}, but got {section.get('patient_specific_by')!r} instead."
        )
    seed = section.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(
            f"Invalid value for the 'split.seed' parameter. Allowed values are integers >= 0, "
            f"but got {seed!r} instead."
        )
    _check_fractions(section.get("val_fraction"), section.get("test_fraction"))
    _check_allow_overlap(section)


def _check_allow_overlap(section: Mapping) -> bool:
    allow = section.get("allow_subject_overlap", False)
    if not isinstance(allow, bool):
        raise UsageError(
            f"Invalid value for the 'split.allow_subject_overlap' parameter. Allowed values are "
            f"[True, False], but got {allow!r} instead."
        )
    return allow


def _check_fractions(val_fraction, test_fraction) -> None:
    for name, value in (("split.val_fraction", val_fraction), ("split.test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise UsageError(
                f"Invalid value for the '{name}' parameter. Allowed values are numbers in "
                f"(0, 1), but got {value!r} instead."
            )
    if val_fraction + test_fraction >= 1:
        raise UsageError(
            f"Invalid values for 'split.val_fraction' and 'split.test_fraction': their sum must be "
            f"below 1 to leave data for training, but got {val_fraction} + {test_fraction}."
        )


def split_counts(
    n: int, val_fraction: float, test_fraction: float, what: str = "subjects", where: str = ""
) -> tuple[int, int, int]:
    """Sizes of train, val and test for ``n`` items (subjects, recordings or windows).

    Parameters
    ----------
    n : int
        Items to share.
    val_fraction, test_fraction : float
        In (0, 1), sum below 1.
    what : str
        Name of the items, for the error message.
    where : str
        Where they come from (e.g. ``" of subject 'chb01'"``), for the error message.

    Returns
    -------
    n_train, n_val, n_test : int
        ``n_test = max(1, round(test_fraction * n))``, ``n_val = max(1, round(val_fraction * n))``,
        ``n_train = n - n_val - n_test``.

    Raises
    ------
    ValueError
        If ``n_train < 1``: fewer items than the three splits need; the message gives the numbers.
    """
    _check_fractions(val_fraction, test_fraction)
    n_test = max(1, _round_half_up(test_fraction * n))
    n_val = max(1, _round_half_up(val_fraction * n))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise UsageError(
            f"Cannot split {n} {what}{where} into train, val and test: with val_fraction={val_fraction} and "
            f"test_fraction={test_fraction} the split needs at least {n_val + n_test + 1} {what} "
            f"({n_val} val, {n_test} test, at least 1 train), but got {n}. Use more data, smaller fractions, "
            f"or another split.protocol."
        )
    return n_train, n_val, n_test


def _majority_labels(rows: Sequence[Mapping], groups: Sequence[str], key: str) -> dict:
    """Most frequent label of each group (ties: the smaller label string), as the stratum."""
    counts: dict[str, Counter] = {g: Counter() for g in groups}
    for row in rows:
        counts[str(row[key])][str(row["label"])] += 1
    return {g: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for g, c in counts.items()}


def _stratified_order(groups: Sequence[str], strata: Mapping[str, str], rng: np.random.Generator) -> list:
    """Groups in a seeded random order in which each stratum is spread evenly (systematic sampling)."""
    keys = {}
    for stratum in sorted(set(strata.values())):
        members = [g for g in groups if strata[g] == stratum]
        order = rng.permutation(len(members))
        offset = rng.random()
        for k, i in enumerate(order):
            keys[members[i]] = (k + offset) / len(members)
    tie_break = rng.random(len(groups))
    return [g for _, _, g in sorted((keys[g], tie_break[i], g) for i, g in enumerate(groups))]


def _assign_groups(rows, key, groups, val_fraction, test_fraction, rng, what, where=""):
    """Split ``groups`` (values of ``rows[i][key]``) into train/val/test: ``group -> split name``."""
    groups = sorted(groups)
    n_train, n_val, n_test = split_counts(len(groups), val_fraction, test_fraction, what, where)
    order = _stratified_order(groups, _majority_labels(rows, groups, key), rng)
    names = ["test"] * n_test + ["val"] * n_val + ["train"] * n_train
    return dict(zip(order, names, strict=True))


def _by_value(rows: Sequence[Mapping], key: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        try:
            value = row[key]
        except KeyError:
            raise UsageError(f"Manifest row {i} ({row.get('path', '?')}) has no '{key}' column.") from None
        if value is None or str(value) == "":
            raise UsageError(
                f"Manifest row {i} ({row.get('path', '?')}) has an empty '{key}': every window "
                f"needs a {key} id to be split without leakage."
            )
        out.setdefault(str(value), []).append(i)
    return out


def _indices_from_assignment(rows, key, assignment) -> dict:
    buckets = {name: [] for name in SPLIT_NAMES}
    for i, row in enumerate(rows):
        buckets[assignment[str(row[key])]].append(i)
    return {name: np.asarray(buckets[name], dtype=np.int64) for name in SPLIT_NAMES}


def _check_rows(rows: Sequence[Mapping]) -> None:
    if len(rows) == 0:
        raise UsageError("Invalid value for the 'rows' parameter: the manifest lists no window to split.")


def _assert_disjoint(split: Split, rows: Sequence[Mapping], n_rows: int) -> None:
    """Internal invariants: no row in two splits, every row in a split or dropped, no empty split."""
    seen = np.concatenate([split.indices[name] for name in SPLIT_NAMES] + [split.dropped])
    assert seen.size == n_rows and np.array_equal(np.sort(seen), np.arange(n_rows)), (
        "a window is in two splits or in none"
    )
    for name in SPLIT_NAMES:
        assert split.indices[name].size > 0, f"the {name} split is empty"
    if split.protocol == "subject_wise":
        subjects = [{str(rows[i]["subject"]) for i in split.indices[name]} for name in SPLIT_NAMES]
        assert not (subjects[0] & subjects[1] or subjects[0] & subjects[2] or subjects[1] & subjects[2]), (
            "a subject is in two splits"
        )


def subject_overlap(split: Split, rows: Sequence[Mapping]) -> dict[str, list[str]]:
    """Subjects whose windows are in more than one split.

    Parameters
    ----------
    split : Split
    rows : sequence of dict
        The manifest rows ``split`` indexes (with ``subject``).

    Returns
    -------
    overlap : dict of str to list of str
        Subject -> the splits it is in (in ``train, val, test`` order), for the subjects in two or
        three splits; sorted by subject; empty when the splits are subject-disjoint.
    """
    where: dict[str, list[str]] = {}
    for name in SPLIT_NAMES:
        for subject in sorted({str(rows[i]["subject"]) for i in split.indices[name]}):
            where.setdefault(subject, []).append(name)
    return {subject: names for subject, names in sorted(where.items()) if len(names) > 1}


def check_subject_overlap(split: Split, rows: Sequence[Mapping], allow: bool = False) -> Split:
    """Refuse (or record) subjects in two splits, for every protocol except ``patient_specific``.

    A subject's windows in training and in test leak: the model is tested on a child it has seen
    (DESIGN.md section 5). ``patient_specific`` splits are within subjects by design and pass unchanged.

    Parameters
    ----------
    split : Split
    rows : sequence of dict
        The manifest rows ``split`` indexes.
    allow : bool
        ``split.allow_subject_overlap``: accept the overlap (published splits that have one, e.g.
        CHB-MIT's BIOT split where chb21 is chb01) and record it.

    Returns
    -------
    split : Split
        ``split`` with :attr:`Split.subject_overlap` set (empty when disjoint).

    Raises
    ------
    runtime.config.UsageError
        If a subject is in two splits and ``allow`` is False; the message names up to 10 subjects
        with their splits and the setting to change.
    """
    if split.protocol == "patient_specific":
        return split
    overlap = subject_overlap(split, rows)
    if overlap and not allow:
        listed = "; ".join(
            f"{subject} in {' and '.join(names)}" for subject, names in list(overlap.items())[:10]
        )
        more = f" (and {len(overlap) - 10} more)" if len(overlap) > 10 else ""
        raise UsageError(
            f"The {split.protocol} split puts {len(overlap)} subject(s) in more than one split, so the "
            f"model would be tested on children it was trained or validated on: {listed}{more}. Give each "
            f"subject one split (split.csv by subject, or by recording with all of a subject's recordings "
            f"in one split), or, for a published split that has this overlap, set "
            f"split.allow_subject_overlap=true (the overlap is then written in results.json and the table)."
        )
    return replace(split, subject_overlap=overlap)


def subject_wise_split(
    rows: Sequence[Mapping], val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> Split:
    """Split subjects (and with them all their windows) into train, val and test.

    Parameters
    ----------
    rows : sequence of dict
        Manifest rows with ``subject`` and ``label``.
    val_fraction, test_fraction : float
        Fractions of the subjects, in (0, 1), sum below 1.
    seed : int
        Split seed (``split.seed``), independent of the training seed.

    Returns
    -------
    split : Split
        No subject in two splits (asserted).

    Raises
    ------
    ValueError
        If there are fewer subjects than the split needs (the message gives the numbers), a row has
        no subject, or a fraction is invalid.
    """
    _check_rows(rows)
    by_subject = _by_value(rows, "subject")
    rng = np.random.default_rng(derive_seed(seed, "split", "subject_wise"))
    assignment = _assign_groups(rows, "subject", by_subject, val_fraction, test_fraction, rng, "subjects")
    split = Split(
        "subject_wise",
        _indices_from_assignment(rows, "subject", assignment),
        seed=seed,
        fractions={"val_fraction": val_fraction, "test_fraction": test_fraction},
    )
    _assert_disjoint(split, rows, len(rows))
    return split


def _window_lengths(rows: Sequence[Mapping], indices: Sequence[int]) -> np.ndarray:
    out = np.empty(len(indices))
    for j, i in enumerate(indices):
        row = rows[i]
        try:
            out[j] = float(row["n_times"]) / float(row["sfreq"])
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            out[j] = np.nan
        if not out[j] > 0:
            raise UsageError(
                f"Manifest row {i} ({row.get('path', '?')}) gives no window length (n_times="
                f"{row.get('n_times')!r}, sfreq={row.get('sfreq')!r}); the time_block split needs "
                f"it to keep windows of different blocks apart."
            )
    return out


def _time_blocks(rows, indices, val_fraction, test_fraction, recording):
    """Chronological train/val/test blocks of one recording, less windows overlapping the previous block."""
    indices = np.asarray(indices, dtype=np.int64)
    starts = np.array([float(rows[i]["start_s"]) for i in indices])
    order = np.argsort(starts, kind="stable")
    indices, starts = indices[order], starts[order]
    ends = starts + _window_lengths(rows, indices)
    n_train, n_val, n_test = split_counts(
        len(indices), val_fraction, test_fraction, "windows", f" of the recording {recording!r}"
    )
    bounds = np.cumsum([0, n_train, n_val, n_test])
    blocks, dropped = {}, []
    for b, name in enumerate(SPLIT_NAMES):
        lo, hi = bounds[b], bounds[b + 1]
        keep = np.ones(hi - lo, dtype=bool)
        if b > 0:  # drop windows that start before the previous block's last window ends
            keep = starts[lo:hi] >= ends[lo - 1] - _TIME_TOL_S
        blocks[name] = indices[lo:hi][keep]
        dropped.extend(indices[lo:hi][~keep].tolist())
        if not blocks[name].size:
            raise UsageError(
                f"The {name} block of the recording {recording!r} is empty once windows that overlap "
                f"the previous block are dropped ({hi - lo} window(s), all overlapping): use longer "
                f"recordings, larger fractions or non-overlapping windows (stride_s = window_s)."
            )
    return blocks, dropped


def patient_specific_split(
    rows: Sequence[Mapping],
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    by: str = "recording",
    seed: int = 0,
) -> Split:
    """Split one subject's windows (each subject's, for several) by recording or by contiguous time blocks.

    Parameters
    ----------
    rows : sequence of dict
        Manifest rows with ``subject``, ``recording``, ``start_s`` (s), ``label`` and, for
        ``by="time_block"``, ``n_times`` and ``sfreq`` (Hz).
    val_fraction, test_fraction : float
        Fractions of each subject's recordings (``by="recording"``) or of each recording's windows
        (``by="time_block"``).
    by : {"recording", "time_block"}
        See the module docstring.
    seed : int
        Split seed (``by="recording"``); unused by ``time_block`` (chronological).

    Returns
    -------
    split : Split
        No window in two splits (asserted); ``split.dropped`` holds windows overlapping another block.

    Raises
    ------
    ValueError
        If a subject has fewer recordings, or a recording fewer windows, than the three splits need
        (the message names it and gives the numbers), or ``by`` is unknown.

    References
    ----------
    Shoeb, "Application of machine learning to epileptic seizure onset detection and treatment", PhD
    thesis, MIT, 2009 (patient-specific detectors on CHB-MIT).
    """
    _check_rows(rows)
    if by not in PATIENT_SPECIFIC_BY:
        raise UsageError(
            f"Invalid value for the 'split.patient_specific_by' parameter. Allowed values are "
            f"{list(PATIENT_SPECIFIC_BY)}, but got {by!r} instead."
        )
    buckets = {name: [] for name in SPLIT_NAMES}
    dropped: list[int] = []
    for subject, subject_rows in _by_value(rows, "subject").items():
        by_recording = _by_value([rows[i] for i in subject_rows], "recording")
        if by == "recording":
            rng = np.random.default_rng(derive_seed(seed, "split", "patient_specific", subject))
            local = [rows[i] for i in subject_rows]
            assignment = _assign_groups(
                local,
                "recording",
                by_recording,
                val_fraction,
                test_fraction,
                rng,
                "recordings",
                f" of the subject {subject!r}",
            )
            for recording, positions in by_recording.items():
                buckets[assignment[recording]].extend(subject_rows[p] for p in positions)
        else:
            for recording, positions in sorted(by_recording.items()):
                blocks, lost = _time_blocks(
                    rows, [subject_rows[p] for p in positions], val_fraction, test_fraction, recording
                )
                for name in SPLIT_NAMES:
                    buckets[name].extend(blocks[name].tolist())
                dropped.extend(lost)
    split = Split(
        "patient_specific",
        {name: np.sort(np.asarray(buckets[name], dtype=np.int64)) for name in SPLIT_NAMES},
        seed=seed if by == "recording" else None,
        by=by,
        fractions={"val_fraction": val_fraction, "test_fraction": test_fraction},
        dropped=np.sort(np.asarray(dropped, dtype=np.int64)),
    )
    _assert_disjoint(split, rows, len(rows))
    return split


def assigned_split(
    rows: Sequence[Mapping],
    assignment: Mapping[str, str],
    key: str = "subject",
    allow_subject_overlap: bool = False,
) -> Split:
    """Use given (official) splits: a mapping of subject or recording ids to split names.

    Parameters
    ----------
    rows : sequence of dict
        Manifest rows.
    assignment : mapping of str to str
        ``id -> "train" | "val" | "test"``; every id of the manifest must be present (extra ids are
        allowed: a dataset's official list may cover recordings that were rejected).
    key : {"subject", "recording"}
        Which manifest column the ids are.
    allow_subject_overlap : bool
        Accept subjects in two splits (:func:`check_subject_overlap`).

    Returns
    -------
    split : Split
        ``protocol="assigned"``, ``by=key``, :attr:`Split.subject_overlap` set.

    Raises
    ------
    ValueError
        If ``key`` is not allowed, a value is not a split name, an id of the manifest is missing from
        ``assignment``, a split is empty, or (unless ``allow_subject_overlap``) a subject is in two
        splits.
    """
    _check_rows(rows)
    if key not in ("subject", "recording"):
        raise UsageError(
            f"Invalid value for the 'key' parameter. Allowed values are ['subject', 'recording'], "
            f"but got {key!r} instead."
        )
    bad = sorted({str(v) for v in assignment.values() if v not in SPLIT_NAMES})
    if bad:
        raise UsageError(
            f"Invalid split names {bad} in the assignment. Allowed values are {list(SPLIT_NAMES)}."
        )
    groups = _by_value(rows, key)
    missing = sorted(g for g in groups if g not in assignment)
    if missing:
        raise UsageError(
            f"The assignment gives no split for {len(missing)} {key}(s) of the manifest: "
            f"{missing[:10]}{' ...' if len(missing) > 10 else ''}."
        )
    split = Split(
        "assigned", _indices_from_assignment(rows, key, {str(k): v for k, v in assignment.items()}), by=key
    )
    empty = [name for name in SPLIT_NAMES if split.indices[name].size == 0]
    if empty:
        raise UsageError(f"The assignment leaves the split(s) {empty} without windows.")
    _assert_disjoint(split, rows, len(rows))
    return check_subject_overlap(split, rows, allow_subject_overlap)


def read_split_file(path: str | os.PathLike) -> tuple[dict[str, str], str]:
    """Read official splits: a CSV with a ``recording`` or ``subject`` column and a ``split`` column.

    Parameters
    ----------
    path : path-like
        ``split.csv`` written by a dataset adapter (``preprocess_main.py --dataset``) or by hand.

    Returns
    -------
    assignment : dict
        Id -> ``"train" | "val" | "test"``.
    key : {"recording", "subject"}
        Which manifest column the ids are.

    Raises
    ------
    FileNotFoundError
        If the file does not exist (the message says how to get one).
    ValueError
        If the columns are not ``recording,split`` or ``subject,split``, or an id is given twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"split.protocol=official needs {path}: preprocess with --dataset NAME (adapters with an "
            "official "
            "split write it) or write a CSV with the columns recording,split or subject,split."
        )
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        key = next((k for k in ("recording", "subject") if k in columns), None)
        if key is None or "split" not in columns:
            raise UsageError(
                f"{path} must have the columns recording,split or subject,split; it has {columns}."
            )
        assignment: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            ident = row[key].strip()
            if ident in assignment:
                raise UsageError(f"{path}, line {line}: the {key} {ident!r} is given twice.")
            assignment[ident] = row["split"].strip()
    return assignment, key


def make_split(
    rows: Sequence[Mapping],
    section: Mapping,
    assignment: Mapping[str, str] | None = None,
    assignment_key: str = "subject",
) -> Split:
    """The split a config asks for.

    Parameters
    ----------
    rows : sequence of dict
        Manifest rows.
    section : mapping
        The config's ``split`` section: ``protocol``, ``seed``, ``val_fraction``, ``test_fraction``,
        ``patient_specific_by``, ``allow_subject_overlap`` (default False).
    assignment : mapping of str to str | None
        Official splits (:func:`assigned_split`); when given, ``section``'s protocol is not used.
    assignment_key : {"subject", "recording"}
        The ids of ``assignment``.

    Returns
    -------
    split : Split
        Subject-disjoint except for ``patient_specific`` (or as allowed, recorded in
        :attr:`Split.subject_overlap`).

    Raises
    ------
    ValueError
        On invalid config values (:func:`check_split_config`), data the protocol cannot split, or a
        subject in two splits (:func:`check_subject_overlap`).
    """
    allow = _check_allow_overlap(section)
    if assignment is not None:
        return assigned_split(rows, assignment, assignment_key, allow)
    check_split_config(section)
    if section["protocol"] == "official":
        raise UsageError(
            f"split.protocol=official needs the official assignment ({SPLIT_FILE} of the data folder, "
            "read with read_split_file)."
        )
    if section["protocol"] == "subject_wise":
        split = subject_wise_split(rows, section["val_fraction"], section["test_fraction"], section["seed"])
        return check_subject_overlap(split, rows, allow)
    return patient_specific_split(
        rows,
        section["val_fraction"],
        section["test_fraction"],
        by=section["patient_specific_by"],
        seed=section["seed"],
    )
