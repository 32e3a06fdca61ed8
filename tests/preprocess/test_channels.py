import numpy as np
import pytest

from preprocess.channels import MissingChannelsError, load_montage, montage_matrix, normalize_channel_name


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
