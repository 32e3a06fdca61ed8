"""Channel names and the canonical bipolar montage.

Clinical EEG files name the same electrode in many ways (``Fp1``, ``EEG FP1-REF``, ``EEG Fp1-LE``,
``T3`` for ``T7``) and store either bipolar derivations (``FP1-F7``) or referential channels. This module
normalises names and builds the montage as one matrix ``M`` so that ``montage_data = M @ data``: a
bipolar channel of the file is picked (or negated if stored reversed), otherwise the pair is
re-referenced from two referential channels.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from runtime.checks import check_choice
from runtime.config import CONFIG_DIR, UsageError

__all__ = [
    "Montage",
    "load_montage",
    "normalize_channel_name",
    "normalize_channel_names",
    "montage_matrix",
    "MissingChannelsError",
]

#: Old 10-20 names -> new (American Clinical Neurophysiology Society 2006) names.
OLD_TO_NEW = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}

# Prefixes and reference suffixes that do not change which electrode a channel is.
_PREFIX = re.compile(r"^(EEG|EEG:)\s*", re.IGNORECASE)
_REF_SUFFIX = re.compile(r"[-_ ](REF|LE|AVG|AR|AV|CAR)$", re.IGNORECASE)
_DUPLICATE_SUFFIX = re.compile(r"-\d+$")
# Ear and mastoid references written after a referential channel's electrode (FP1-A1, C3-M2).
_EAR_REFERENCES = ("A1", "A2", "M1", "M2")
# BioSemi's "ABC" labels (A1..A32, B1..B32, ... H1..H32 for 256 channels) name cap positions, not 10-20 sites.
_BIOSEMI_LABEL = re.compile(r"^[A-H]([1-9]|[12]\d|3[0-2])$")
#: Prefix given to BioSemi ABC labels so that they never match a 10-20 site (``A1`` is an ear electrode).
BIOSEMI_PREFIX = "BIOSEMI_"


class MissingChannelsError(UsageError):
    """A recording lacks electrodes that the montage needs (a :class:`runtime.config.UsageError`)."""


@dataclass(frozen=True)
class Montage:
    """A bipolar montage: an ordered list of ``(anode, cathode)`` electrode pairs.

    Attributes
    ----------
    name : str
        The montage's name (``double_banana``).
    pairs : tuple of (str, str)
        Normalised electrode names; channel ``i`` is ``pairs[i][0] - pairs[i][1]``.
    """

    name: str
    pairs: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def ch_names(self) -> list[str]:
        """Channel names ``"FP1-F7"``, in montage order."""
        return [f"{a}-{b}" for a, b in self.pairs]

    @property
    def n_chans(self) -> int:
        return len(self.pairs)


def _normalize_electrode(name: str) -> str:
    name = name.strip().rstrip(".").strip().upper()  # PhysioNet EEGMMIDB pads names with dots: "T7.."
    return OLD_TO_NEW.get(name, name)


def normalize_channel_name(name: str) -> str:
    """Normalise a channel name of a recording.

    Upper case, no ``EEG`` prefix, no reference suffix (``-REF``, ``-LE``, ``-AVG``...), no
    duplicate counter (CHB-MIT's ``T8-P8-0``), no trailing dots (PhysioNet EEGMMIDB's ``Fp1.``, ``T7..``),
    old 10-20 names replaced (T3/T4/T5/T6 = T7/T8/P7/P8). An ear reference (``FP1-A1``) is kept: whether
    it can be dropped depends on the recording's other channels (:func:`normalize_channel_names`).

    Parameters
    ----------
    name : str
        As stored in the file, e.g. ``"EEG Fp1-Ref"``, ``"T8-P8-0"``, ``"C3-T5"``.

    Returns
    -------
    name : str
        ``"FP1"`` for a referential channel, ``"T8-P8"`` or ``"C3-P7"`` for a bipolar one.

    Examples
    --------
    >>> normalize_channel_name("EEG Fp1-LE")
    'FP1'
    >>> normalize_channel_name("T8-P8-0")
    'T8-P8'
    >>> normalize_channel_name("Fc5.")
    'FC5'
    """
    name = _PREFIX.sub("", name.strip().rstrip(".")).strip()
    name = _REF_SUFFIX.sub("", name).strip()
    parts = [p for p in name.split("-") if p.strip()]
    if len(parts) == 3 and parts[2].strip().isdigit():  # T8-P8-0: a duplicated derivation
        parts = parts[:2]
    return "-".join(_normalize_electrode(p) for p in parts)


def normalize_channel_names(ch_names: list[str]) -> list[str]:
    """Normalise the channel names of one recording, deciding from the whole set what each name means.

    Each name is normalised by :func:`normalize_channel_name`; then, from the set of names:

    - **ear references**: when every channel written ``X-A1``, ``X-A2``, ``X-M1`` or ``X-M2`` (an
      electrode referred to an ear or mastoid) uses the same reference, it is a referential channel of
      electrode ``X`` and is named ``X`` (so ``FP1-A1`` and ``F7-A1`` give ``FP1-F7``). With mixed
      references (``F4-A1``, ``CZ-A2``) the names are kept: two channels with different references
      cannot be subtracted into a bipolar pair.
    - **BioSemi labels**: a recording labelled in BioSemi's ABC scheme (``A1..A32``, ``B1..B32``...:
      at least half of its channels are such labels, four of them in ``A3..A32``, which no 10-20 or EGI
      ``E1..E256`` recording has) has its ABC labels prefixed with ``BIOSEMI_`` so that none is taken
      for a 10-20 site (BioSemi's ``A1`` is a cap position, not the left ear; its ``C3`` is not 10-20
      C3). Their positions are in BioSemi's cap layout, which this project does not map to 10-20.

    Parameters
    ----------
    ch_names : list of str
        A recording's channel names as stored.

    Returns
    -------
    names : list of str
        Normalised names, in the same order.

    Examples
    --------
    >>> normalize_channel_names(["Fp1-A1", "F7-A1"])
    ['FP1', 'F7']
    >>> normalize_channel_names(["F4-A1", "CZ-A2"])
    ['F4-A1', 'CZ-A2']
    """
    names = [normalize_channel_name(name) for name in ch_names]
    abc = [i for i, name in enumerate(names) if _BIOSEMI_LABEL.match(name)]
    a_bank = [i for i in abc if names[i].startswith("A") and names[i] not in ("A1", "A2")]
    if len(abc) * 2 >= len(names) and len(a_bank) >= 4:
        for i in abc:
            names[i] = BIOSEMI_PREFIX + names[i]
    ear = {}
    for i, name in enumerate(names):
        parts = name.split("-")
        if len(parts) == 2 and parts[1] in _EAR_REFERENCES and parts[0] not in _EAR_REFERENCES:
            ear[i] = parts
    if len({ref for _, ref in ear.values()}) == 1:
        for i, (electrode, _) in ear.items():
            names[i] = electrode
    return names


def _parse_pair(text: str, source: str) -> tuple[str, str]:
    parts = normalize_channel_name(text).split("-")
    if len(parts) != 2:
        raise ValueError(
            f"Invalid montage pair {text!r} in {source}: expected 'ANODE-CATHODE' like 'FP1-F7'."
        )
    return parts[0], parts[1]


def load_montage(montage: str | os.PathLike | list) -> Montage:
    """Load a montage by name (``configs/montages/<name>.yaml``), by YAML path, or from a list of pairs.

    Parameters
    ----------
    montage : str | path-like | list of str
        ``"double_banana"``, ``"path/to/my_montage.yaml"`` (a mapping with ``pairs``), or
        ``["FP1-F7", "F7-T7", ...]``.

    Returns
    -------
    montage : Montage

    Raises
    ------
    ValueError
        If the name is unknown (the message lists the available montages), a pair is malformed,
        or a pair repeats.
    """
    if isinstance(montage, (list, tuple)):
        name, entries, source = "custom", list(montage), "the montage list"
    else:
        path = Path(montage)
        if not path.suffix:
            path = CONFIG_DIR / "montages" / f"{montage}.yaml"
        if not path.is_file():
            available = sorted(p.stem for p in (CONFIG_DIR / "montages").glob("*.yaml"))
            raise ValueError(
                f"Invalid value for the 'montage' parameter. Allowed values are {available} or a path to a "
                f"YAML file, but got {str(montage)!r} instead."
            )
        with open(path, encoding="utf-8") as f:
            spec = yaml.safe_load(f) or {}
        if not isinstance(spec, dict) or not isinstance(spec.get("pairs"), list):
            raise ValueError(f"Montage file {path} must hold a mapping with a list 'pairs'.")
        name, entries, source = spec.get("name", path.stem), spec["pairs"], str(path)
    pairs = tuple(_parse_pair(str(p), source) for p in entries)
    if not pairs:
        raise ValueError(f"The montage in {source} has no pairs.")
    if len(set(pairs)) != len(pairs):
        raise ValueError(f"The montage in {source} repeats a pair: {[f'{a}-{b}' for a, b in pairs]}.")
    return Montage(name=str(name), pairs=pairs)


def montage_matrix(
    ch_names: list[str], montage: Montage, missing: str = "error"
) -> tuple[np.ndarray, list[str]]:
    """Linear map from a recording's channels to the montage's bipolar channels.

    For each pair ``A-B`` of the montage, in order of preference: the recording's bipolar channel
    ``A-B`` (its first copy when duplicated), the reversed channel ``B-A`` negated, or the difference of
    referential channels ``A`` and ``B`` (re-referencing).

    Parameters
    ----------
    ch_names : list of str
        The recording's channel names as stored (normalised here).
    montage : Montage
        The target montage.
    missing : ``"error"`` | ``"zeros"``
        What to do with a pair that cannot be built: raise, or give it a zero row.

    Returns
    -------
    matrix : ndarray, shape (n_pairs, n_channels)
        ``montage_data = matrix @ data`` with data of shape (n_channels, n_times); entries are 0, 1, -1.
    filled : list of str
        Montage channel names filled with zeros (empty unless ``missing="zeros"``).

    Raises
    ------
    MissingChannelsError
        With ``missing="error"``, naming the montage pairs and electrodes that are missing; whatever
        ``missing`` is, if no pair of the montage can be built (naming the montage and the channels).
    ValueError
        If ``missing`` is not one of the allowed values.
    """
    check_choice("missing_channels", missing, ("error", "zeros"))
    index: dict[str, int] = {}
    for i, name in enumerate(normalize_channel_names(ch_names)):
        index.setdefault(name, i)  # keep the first of duplicates
    matrix = np.zeros((montage.n_chans, len(ch_names)))
    filled, absent = [], set()
    for row, (a, b) in enumerate(montage.pairs):
        if f"{a}-{b}" in index:
            matrix[row, index[f"{a}-{b}"]] = 1.0
        elif f"{b}-{a}" in index:
            matrix[row, index[f"{b}-{a}"]] = -1.0
        elif a in index and b in index:
            matrix[row, index[a]] = 1.0
            matrix[row, index[b]] = -1.0
        else:
            filled.append(f"{a}-{b}")
            absent.update(e for e in (a, b) if e not in index)
    if len(filled) == montage.n_chans:
        raise MissingChannelsError(
            f"missing channels: no pair of the montage '{montage.name}' can be built from the recording's "
            f"channels {list(ch_names)} (normalised: {sorted(index)}); it needs the electrodes "
            f"{sorted(absent)}. "
            "Choose a montage of these electrodes with --set montage=NAME_OR_FILE, or rename the channels."
        )
    if filled and missing == "error":
        raise MissingChannelsError(
            f"missing channels for the montage '{montage.name}': pairs {filled} cannot be built "
            f"(electrodes {sorted(absent)} absent; the recording has {sorted(index)}). "
            "Set missing_channels=zeros to fill them with zeros (preprocessing: --set "
            "missing_channels=zeros; finetune/predict.py: --set preprocess.missing_channels=zeros)."
        )
    return matrix, filled
