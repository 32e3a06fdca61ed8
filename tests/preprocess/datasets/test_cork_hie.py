"""Cork neonatal HIE grading set: the grade table, recording-level labels, a labelled run."""

import json
from collections import Counter

import pytest

from preprocess.datasets import cork_hie, get_adapter
from preprocess.datasets.base import AnnotationError, LayoutError
from preprocess.segments import load_segment, read_manifest

#: The 9 electrodes of the Cork recordings (referential, old names).
CORK_CHANNELS = ["F3", "F4", "C3", "C4", "T3", "T4", "O1", "O2", "Cz"]


def _cork_root(root, make_edf, grades: dict[str, str]):
    for i, file_id in enumerate(grades):
        make_edf(root / "EDF_format" / f"{file_id}.edf", CORK_CHANNELS, duration_s=12.0, seed=i)
    (root / "eeg_grades.csv").write_text("file_ID,grade\n" + "".join(f"{k},{v}\n" for k, v in grades.items()))
    return root


def test_labelled_run_with_one_grade_per_recording(tmp_path, make_edf, capsys, run_cli):
    root = _cork_root(
        tmp_path / "root",
        make_edf,
        {"ID01_epoch1": "1", "ID01_epoch2": "2", "ID02_epoch1": "4", "ID03_epoch1": ""},
    )
    out = tmp_path / "out"
    status, text = run_cli(
        capsys, "--dataset", "cork_hie", "--task", "hie_grading", "--input", root, "--output", out
    )
    assert status == 0, text
    labels = Counter((r["recording"], r["subject"], r["label"]) for r in read_manifest(out))
    assert labels == {
        ("ID01_epoch1.edf", "ID01", "normal_mild"): 3,
        ("ID01_epoch2.edf", "ID01", "moderate"): 3,
        ("ID02_epoch1.edf", "ID02", "inactive"): 3,
    }
    segment = load_segment(out / read_manifest(out)[0]["path"])
    assert segment["ch_names"] == ["F4-C4", "C4-O2", "F3-C3", "C3-O1", "T8-C4", "C4-CZ", "CZ-C3", "C3-T7"]
    summary = json.loads((out / "dataset_summary.json").read_text())
    assert (summary["recordings"], summary["subjects"]) == (3, 2)
    assert summary["left_out"] == ["ID03_epoch1.edf"] and summary["notes"]["ungraded"] == ["ID03_epoch1.edf"]
    assert summary["events_per_class"] == {"normal_mild": 1, "moderate": 1, "inactive": 1}
    assert summary["hours_per_class"]["inactive"] == pytest.approx(12 / 3600, abs=1e-4)
    assert (out / "events.csv").read_text().splitlines()[1] == "ID01_epoch1.edf,ID01,,0.0,normal_mild"


def test_a_grade_outside_1_to_4_names_the_file_and_line(tmp_path):
    table = tmp_path / "eeg_grades.csv"
    table.write_text("file_ID,grade\nID01_epoch1,2\nID01_epoch2,5\n")
    with pytest.raises(AnnotationError, match=r"eeg_grades.csv, line 3: invalid grade '5' for ID01_epoch2"):
        cork_hie.read_grades(table)
    table.write_text("file,grade\nID01_epoch1,2\n")
    with pytest.raises(AnnotationError, match=r"lacks the columns \['file_ID'\]"):
        cork_hie.read_grades(table)


def test_recordings_and_the_grade_table_must_match(tmp_path, make_edf):
    root = _cork_root(tmp_path / "root", make_edf, {"ID01_epoch1": "1"})
    (root / "eeg_grades.csv").write_text("file_ID,grade\nID01_epoch1,1\nID09_epoch3,2\n")
    with pytest.raises(LayoutError, match=r"lists 1 recording\(s\) absent from the cork_hie root: ID09_e"):
        get_adapter("cork_hie").events(root, "hie_grading")
    make_edf(root / "EDF_format" / "ID05_epoch1.edf", CORK_CHANNELS, duration_s=12.0)
    with pytest.raises(LayoutError, match=r"missing from the label file .*eeg_grades.csv: ID05_epoch1"):
        get_adapter("cork_hie", partial=True).events(root, "hie_grading")
    (root / "eeg_grades.csv").unlink()
    with pytest.raises(LayoutError, match=r"No grade table eeg_grades.csv .*Expected layout: ROOT/eeg_grad"):
        get_adapter("cork_hie").events(root, "hie_grading")


def test_a_label_outside_the_run_classes_is_refused_before_writing(tmp_path, make_edf, capsys, run_cli):
    root = _cork_root(tmp_path / "root", make_edf, {"ID01_epoch1": "1", "ID02_epoch1": "4"})
    status, text = run_cli(
        capsys,
        "--dataset",
        "cork_hie",
        "--task",
        "hie_grading",
        "--input",
        root,
        "--output",
        tmp_path / "out",
        "--set",
        "labels.classes=[normal_mild,moderate,severe]",
    )
    assert status == 2
    assert "The cork_hie labels of ID02_epoch1.edf include ['inactive'], which are not in" in text
    assert not (tmp_path / "out").exists()
