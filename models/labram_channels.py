"""LaBraM's channel table: the official 10-20 list, the double banana's rows, and the family's input contract.

The position table of LaBraM (Jiang, Zhao, Lu, ICLR 2024; official ``utils.standard_1020``) has one row per
channel name of the official list, plus row 0 for the CLS token. Bipolar pairs of the double banana: the
list names them, but 8 of the 16 index past the 129-row table (braindecode drops them); by default each
pair takes the row of the electrode halfway between its two electrodes (:data:`BIPOLAR_MIDPOINTS`).
"""

from __future__ import annotations

from .contract import InputContract

__all__ = [
    "BIPOLAR_MIDPOINTS",
    "DOUBLE_BANANA",
    "LABRAM_INPUT",
    "STANDARD_1020",
    "channel_positions",
]

# The official channel list (utils.standard_1020): channel ``name`` uses row ``index(name) + 1`` of the
# position table (row 0 is the CLS token). The table has 129 rows, so the last 8 names (bipolar pairs)
# have no row.
# fmt: off
STANDARD_1020 = (
    "FP1", "FPZ", "FP2",
    "AF9", "AF7", "AF5", "AF3", "AF1", "AFZ", "AF2", "AF4", "AF6", "AF8", "AF10",
    "F9", "F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8", "F10",
    "FT9", "FT7", "FC5", "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8", "FT10",
    "T9", "T7", "C5", "C3", "C1", "CZ", "C2", "C4", "C6", "T8", "T10",
    "TP9", "TP7", "CP5", "CP3", "CP1", "CPZ", "CP2", "CP4", "CP6", "TP8", "TP10",
    "P9", "P7", "P5", "P3", "P1", "PZ", "P2", "P4", "P6", "P8", "P10",
    "PO9", "PO7", "PO5", "PO3", "PO1", "POZ", "PO2", "PO4", "PO6", "PO8", "PO10",
    "O1", "OZ", "O2", "O9", "CB1", "CB2",
    "IZ", "O10", "T3", "T5", "T4", "T6", "M1", "M2", "A1", "A2",
    "CFC1", "CFC2", "CFC3", "CFC4", "CFC5", "CFC6", "CFC7", "CFC8",
    "CCP1", "CCP2", "CCP3", "CCP4", "CCP5", "CCP6", "CCP7", "CCP8",
    "T1", "T2", "FTT9h", "TTP7h", "TPP9h", "FTT10h", "TPP8h", "TPP10h",
    "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP2-F8", "F8-T8", "T8-P8", "P8-O2",
    "FP1-F3", "F3-C3", "C3-P3", "P3-O1", "FP2-F4", "F4-C4", "C4-P4", "P4-O2",
)
# fmt: on
_N_POSITION_ROWS = 129  # CLS + 128 channels: the official table's size
_N_TIME_ROWS = 16  # the official time table: at most 16 patches (16 s at 200 Hz)
_LOOKUP = {name.upper(): index + 1 for index, name in enumerate(STANDARD_1020)}

#: The project's canonical montage (DESIGN.md section 4), the default channel set of the registered sizes.
DOUBLE_BANANA = (
    "FP1-F7",
    "F7-T7",
    "T7-P7",
    "P7-O1",
    "FP2-F8",
    "F8-T8",
    "T8-P8",
    "P8-O2",
    "FP1-F3",
    "F3-C3",
    "C3-P3",
    "P3-O1",
    "FP2-F4",
    "F4-C4",
    "C4-P4",
    "P4-O2",
)

#: Position row of each double-banana pair with ``bipolar="midpoint"``: the 10-10 electrode halfway
#: between the pair's two electrodes (a bipolar derivation measures the field between them). All 16 are
#: distinct rows inside the 129-row table, and rows of electrodes that 64-channel pretraining corpora use.
BIPOLAR_MIDPOINTS = {
    "FP1-F7": "AF7",
    "F7-T7": "FT7",
    "T7-P7": "TP7",
    "P7-O1": "PO7",
    "FP2-F8": "AF8",
    "F8-T8": "FT8",
    "T8-P8": "TP8",
    "P8-O2": "PO8",
    "FP1-F3": "AF3",
    "F3-C3": "FC3",
    "C3-P3": "CP3",
    "P3-O1": "PO3",
    "FP2-F4": "AF4",
    "F4-C4": "FC4",
    "C4-P4": "CP4",
    "P4-O2": "PO4",
}
_BIPOLAR_MODES = ("midpoint", "official")

#: LaBraM's input (all sizes, tokenizer included): 200 Hz, 1-s patches, at most 16, uV / 100.
LABRAM_INPUT = InputContract(
    family="labram",
    sfreq=200.0,
    patch_samples=200,
    max_patches=_N_TIME_ROWS,
    fixed_patches=False,
    uv_scale=0.01,
    normalisation="microvolts divided by 100 (official engines: samples / 100)",
    channel_names=tuple(name.upper() for name in STANDARD_1020[: _N_POSITION_ROWS - 1]),
)


def channel_positions(ch_names, bipolar="midpoint"):
    """Rows of LaBraM's channel-position table for a list of channel names.

    Referential names (``"Fp1"``, ``"CZ"``, ``"T3"``...) use their row in the official list (upper case,
    row = list index + 1; old and new 10-20 names are distinct rows there, as in the official code).
    Double-banana pairs (``"FP1-F7"``...): the official list names all 16, but only the first 8 fall
    inside its 129-row table (rows 121-128); ``FP1-F3`` ... ``P4-O2`` would be rows 129-136 and the
    official code fails on them (braindecode drops them). ``bipolar="midpoint"`` (default) keeps all 16 by
    placing each pair at the electrode halfway between its two electrodes (:data:`BIPOLAR_MIDPOINTS`):
    one consistent rule, 16 distinct rows, pretrained rows. ``bipolar="official"`` uses the pairs' own rows
    (the official behaviour, e.g. to reproduce an official model fine-tuned on the first 8 pairs) and
    refuses the 8 without a row.

    Parameters
    ----------
    ch_names : sequence of str
        Channel names in the order of the input's channels (case-insensitive).
    bipolar : {"midpoint", "official"}
        How bipolar pairs are placed (see above).

    Returns
    -------
    rows : list of int
        One row per channel, in ``[1, 128]`` (row 0 is the CLS token's).

    Raises
    ------
    ValueError
        If a name is unknown, repeated, has no row, or ``bipolar`` is invalid.
    TypeError
        If ``ch_names`` is not a sequence of strings.

    References
    ----------
    .. [1] Official ``utils.get_input_chans`` and ``utils.standard_1020``,
       https://github.com/935963004/LaBraM
    """
    if bipolar not in _BIPOLAR_MODES:
        raise ValueError(
            f"Invalid value for the 'bipolar' parameter. Allowed values are {_BIPOLAR_MODES}, "
            f"but got {bipolar!r} instead."
        )
    if isinstance(ch_names, str) or not all(isinstance(name, str) for name in ch_names):
        raise TypeError(
            f"Invalid value for the 'ch_names' parameter. Expected a sequence of channel names "
            f"(str), but got {ch_names!r} instead."
        )
    names = [name.strip().upper() for name in ch_names]
    if not names:
        raise ValueError(
            "Invalid value for the 'ch_names' parameter. At least one channel is needed, "
            "but got an empty list instead."
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"Invalid value for the 'ch_names' parameter: {repeated} appear more than once.")
    rows, unknown, outside = [], [], []
    for name in names:
        if bipolar == "midpoint" and name in BIPOLAR_MIDPOINTS:
            name = BIPOLAR_MIDPOINTS[name]
        row = _LOOKUP.get(name)
        if row is None:
            unknown.append(name)
        elif row >= _N_POSITION_ROWS:
            outside.append(name)
        rows.append(row)
    if unknown:
        raise ValueError(
            f"Invalid value for the 'ch_names' parameter: {unknown} are not in LaBraM's 10-20 "
            f"list (models.labram.STANDARD_1020; bipolar pairs: {sorted(BIPOLAR_MIDPOINTS)})."
        )
    if outside:
        raise ValueError(
            f"Invalid value for the 'ch_names' parameter: {outside} have no row in LaBraM's "
            f"129-row position table with bipolar='official'; use bipolar='midpoint' to place "
            f"the double-banana pairs at their midpoint electrodes."
        )
    return rows
