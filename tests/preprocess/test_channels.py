import numpy as np
import pytest

from preprocess.channels import (
    MissingChannelsError,
    load_montage,
    montage_matrix,
    normalize_channel_name,
    normalize_channel_names,
)


@pytest.mark.parametrize(
    "raw_name, expected",
    [
        ("Fp1", "FP1"),
        ("EEG Fp1-Ref", "FP1"),
        ("EEG FP1-REF", "FP1"),
        ("EEG Fp1-LE", "FP1"),
        ("Cz-AVG", "CZ"),
        ("T3", "T7"),
        ("EEG T6-REF", "P8"),
        ("T8-P8-0", "T8-P8"),
        ("T8-P8-1", "T8-P8"),
        ("C3-T5", "C3-P7"),
        ("F7-T3", "F7-T7"),
        (" fp2-f8 ", "FP2-F8"),
        ("F4-A1", "F4-A1"),
        ("Fp1.", "FP1"),  # PhysioNet EEGMMIDB pads names to 4 characters with dots
        ("T7..", "T7"),
        ("Fcz.", "FCZ"),
        ("fp1", "FP1"),
        ("EEG Fp1-REF.", "FP1"),
    ],
)
def test_normalize_channel_name(raw_name, expected):
    assert normalize_channel_name(raw_name) == expected


def test_double_banana_is_the_design_card_montage():
    montage = load_montage("double_banana")
    assert (
        montage.ch_names
        == (
            "FP1-F7 F7-T7 T7-P7 P7-O1 FP2-F8 F8-T8 T8-P8 P8-O2 "
            "FP1-F3 F3-C3 C3-P3 P3-O1 FP2-F4 F4-C4 C4-P4 P4-O2"
        ).split()
    )


def test_bipolar_recording_is_picked_in_montage_order_first_duplicate_wins():
    montage = load_montage(["T8-P8", "FP1-F7", "F7-T7"])
    ch_names = ["FP1-F7", "F7-T7", "T8-P8-0", "P8-O2", "T8-P8-1"]
    matrix, filled = montage_matrix(ch_names, montage)
    assert filled == []
    np.testing.assert_array_equal(matrix, [[0, 0, 1, 0, 0], [1, 0, 0, 0, 0], [0, 1, 0, 0, 0]])


def test_reversed_pair_is_negated_and_referential_pairs_are_rereferenced():
    montage = load_montage(["T7-P7", "FP1-F7"])
    matrix, _ = montage_matrix(["P7-T7", "EEG Fp1-REF", "EEG F7-REF"], montage)
    data = np.array([[1.0, 2.0], [10.0, 20.0], [3.0, 5.0]])
    np.testing.assert_array_equal(matrix @ data, [[-1.0, -2.0], [7.0, 15.0]])


def test_missing_electrode_is_an_error_naming_it():
    montage = load_montage("double_banana")
    with pytest.raises(MissingChannelsError, match=r"O1") as info:
        montage_matrix(
            [f"EEG {e}-REF" for e in "Fp1 Fp2 F7 F3 F4 F8 T3 C3 C4 T4 T5 P3 P4 T6 O2".split()], montage
        )
    assert "P7-O1" in str(info.value) and "P3-O1" in str(info.value)


def test_missing_electrode_filled_with_zeros_when_asked():
    montage = load_montage(["FP1-F7", "P7-O1"])
    matrix, filled = montage_matrix(["FP1", "F7", "P7"], montage, missing="zeros")
    assert filled == ["P7-O1"]
    np.testing.assert_array_equal(matrix, [[1, -1, 0], [0, 0, 0]])


@pytest.mark.parametrize("missing", ["error", "zeros"])
def test_no_pair_built_is_an_error_naming_the_montage(missing):
    with pytest.raises(MissingChannelsError, match=r"no pair of the montage 'double_banana' can be.*X1"):
        montage_matrix(["X1", "X2", "ECG"], load_montage("double_banana"), missing=missing)


def test_bad_montage_values():
    with pytest.raises(ValueError, match="Allowed values are"):
        load_montage("no_such_montage")
    with pytest.raises(ValueError, match="ANODE-CATHODE"):
        load_montage(["FP1"])
    with pytest.raises(ValueError, match="repeats"):
        load_montage(["FP1-F7", "Fp1-F7"])
    with pytest.raises(ValueError, match="missing_channels"):
        montage_matrix(["FP1-F7"], load_montage(["FP1-F7"]), missing="drop")


# PhysioNet EEG Motor Movement/Imagery (EEGMMIDB) channel labels, as its EDF files store them.
EEGMMIDB = (
    "Fc5. Fc3. Fc1. Fcz. Fc2. Fc4. Fc6. C5.. C3.. C1.. Cz.. C2.. C4.. C6.. Cp5. Cp3. Cp1. Cpz. Cp2. "
    "Cp4. Cp6. Fp1. Fpz. Fp2. Af7. Af3. Afz. Af4. Af8. F7.. F5.. F3.. F1.. Fz.. F2.. F4.. F6.. F8.. "
    "Ft7. Ft8. T7.. T8.. T9.. T10. Tp7. Tp8. P7.. P5.. P3.. P1.. Pz.. P2.. P4.. P6.. P8.. Po7. Po3. "
    "Poz. Po4. Po8. O1.. Oz.. O2.. Iz.."
).split()


def test_eegmmidb_labels_build_the_double_banana():
    # Before: "Fp1." and "T7.." matched no electrode, and the recording was refused for missing channels.
    matrix, filled = montage_matrix(EEGMMIDB, load_montage("double_banana"))
    assert filled == []
    index = {name: i for i, name in enumerate(EEGMMIDB)}
    assert matrix[0, index["Fp1."]] == 1 and matrix[0, index["F7.."]] == -1  # FP1-F7


def test_ear_referenced_channels_are_rereferenced_when_they_share_the_reference():
    names = ["FP1-A1", "F7-A1", "fp2-a1", "F8-A1"]
    assert normalize_channel_names(names) == ["FP1", "F7", "FP2", "F8"]
    matrix, filled = montage_matrix(names, load_montage(["FP1-F7", "FP2-F8"]))
    assert filled == []
    np.testing.assert_array_equal(matrix, [[1, -1, 0, 0], [0, 0, 1, -1]])
    # Two references cannot be subtracted into a pair: the names are kept and the pair is missing.
    mixed = ["FP1-A1", "F7-A2"]
    assert normalize_channel_names(mixed) == ["FP1-A1", "F7-A2"]
    with pytest.raises(
        MissingChannelsError, match=r"no pair of the montage .* needs the electrodes \['F7', 'FP1'\]"
    ):
        montage_matrix(mixed, load_montage(["FP1-F7"]))


def test_biosemi_abc_labels_are_never_ten_twenty_sites():
    biosemi = [f"{bank}{i}" for bank in "ABCD" for i in range(1, 33)] + ["EXG1", "EXG2"]
    names = normalize_channel_names(biosemi)
    assert names[:3] == ["BIOSEMI_A1", "BIOSEMI_A2", "BIOSEMI_A3"] and names[-2:] == ["EXG1", "EXG2"]
    assert not {"A1", "A2", "C3", "C4"} & set(names)
    # Before: BioSemi's C3/C4 and A1/A2 (cap positions) were taken for 10-20 C3-C4 and the ears.
    with pytest.raises(MissingChannelsError):
        montage_matrix(biosemi, load_montage(["C3-C4", "C3-A1"]))
    # A 10-20 recording with ear electrodes, EOG E1/E2, or EGI's E1..E32 labels is left alone.
    ten_twenty = ["Fp1", "C3", "A1", "A2", "E1", "E2"]
    assert normalize_channel_names(ten_twenty) == [name.upper() for name in ten_twenty]
    egi = [f"E{i}" for i in range(1, 33)]
    assert normalize_channel_names(egi) == egi
