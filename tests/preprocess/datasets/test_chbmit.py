"""CHB-MIT: the 24 real summaries, the WFDB .seizures files, the adapter and a labelled run of the crops."""

import json
import shutil
from collections import Counter

import pytest

from preprocess.datasets import chbmit, get_adapter
from preprocess.datasets.base import AnnotationError, LayoutError
from preprocess.segments import load_segment, read_manifest
from tests.helpers import shared_path


@pytest.fixture(scope="module")
def summaries():
    meta = shared_path("data", "chbmit", "meta")
    return {p.name[:5]: chbmit.read_summary(p) for p in sorted(meta.glob("chb*-summary.txt"))}


def _listing(name):
    lines = shared_path("data", "chbmit", "meta", name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip()]


def test_all_24_summaries_parse_with_the_published_totals(summaries):
    assert sorted(summaries) == [f"chb{i:02d}" for i in range(1, 25)]
    records = [r for case in summaries.values() for r in case]
    assert len(records) == 676
    assert sum(len(r["seizures"]) for r in records) == 198
    with_seizures = {r["file"] for r in records if r["seizures"]}
    assert len(with_seizures) == 141
    assert all(r["n_seizures"] == len(r["seizures"]) for r in records)
    # PhysioNet publishes one .seizures file per file with seizures: exactly the summaries' 141.
    published = {
        line.split()[1].split("/")[1][: -len(".seizures")]
        for line in _listing("SHA256SUMS.txt")
        if line.endswith(".edf.seizures")
    }
    assert published == with_seizures
    # RECORDS-WITH-SEIZURES lists 141 files too, but chb07_18 where the summary and the .seizures
    # file say chb07_19 (a known inconsistency of the index file).
    listed = {line.split("/")[1] for line in _listing("RECORDS-WITH-SEIZURES")}
    assert len(listed) == 141
    assert listed - with_seizures == {"chb07_18.edf"} and with_seizures - listed == {"chb07_19.edf"}
    # RECORDS has 686 files: the summaries' 676 and ten seizure-free chb24 files its summary leaves out.
    in_records = {line.split("/")[1] for line in _listing("RECORDS")}
    assert len(in_records) == 686 and {r["file"] for r in records} <= in_records
    left_out = in_records - {r["file"] for r in records}
    assert len(left_out) == 10 and all(name.startswith("chb24_") for name in left_out)
    assert not left_out & listed


def test_summary_spot_checks(summaries):
    by_file = {r["file"]: r for case in summaries.values() for r in case}
    assert by_file["chb01_03.edf"]["seizures"] == [(2996.0, 3036.0)]
    assert by_file["chb01_03.edf"]["duration_s"] == 3600.0 and by_file["chb01_03.edf"]["sfreq"] == 256.0
    assert by_file["chb01_04.edf"]["seizures"] == [(1467.0, 1494.0)]
    assert by_file["chb06_04.edf"]["seizures"] == [(327.0, 347.0), (6211.0, 6231.0)]
    # Case chb12: 40 seizures in 13 of its 24 files, up to 6 in one hour; its montage changes 3 times.
    chb12 = summaries["chb12"]
    assert len(chb12) == 24 and sum(len(r["seizures"]) for r in chb12) == 40
    assert sum(1 for r in chb12 if r["seizures"]) == 13
    assert len(by_file["chb12_27.edf"]["seizures"]) == 6 and len(by_file["chb12_29.edf"]["seizures"]) == 6
    assert by_file["chb12_27.edf"]["seizures"][:2] == [(916.0, 951.0), (1097.0, 1124.0)]
    assert by_file["chb12_24.edf"]["channels"][:2] == ["FP1-F7", "F7-T7"]
    assert by_file["chb12_27.edf"]["channels"][:2] == ["F7-CS2", "T7-CS2"]
    assert by_file["chb12_28.edf"]["channels"][:2] == ["F7", "T7"]
    assert len({tuple(r["channels"]) for r in chb12}) == 4
    # Times past midnight are written 24:xx:xx; unnumbered ("Seizure Start Time") lines of chb01.
    late = by_file["chb01_13.edf"]
    assert (late["start_time"], late["end_time"]) == ("23:44:29", "24:44:29")
    assert by_file["chb01_13.edf"]["duration_s"] == 3600.0
    # chb09_08's second seizure ends with a line numbered 1 ("Seizure 1 End Time").
    assert by_file["chb09_08.edf"]["seizures"] == [(2951.0, 3030.0), (9196.0, 9267.0)]
    # chb24's summary has no file times; it lists 12 files with 16 seizures.
    assert all(r["start_time"] is None and r["duration_s"] is None for r in summaries["chb24"])
    assert sum(len(r["seizures"]) for r in summaries["chb24"]) == 16
    records = [r for case in summaries.values() for r in case]
    assert sum(r["duration_s"] for r in records if r["duration_s"]) == 3461900.0  # 961.6 h in 664 files


def test_seizure_annotation_files_agree_with_the_summaries(summaries):
    folder = shared_path("data", "chbmit", "seizures")
    assert chbmit.read_seizure_annotations(folder / "chb01_03.edf.seizures") == [(2996.0, 3036.0)]
    assert chbmit.read_seizure_annotations(folder / "chb01_04.edf.seizures") == [(1467.0, 1494.0)]
    assert chbmit.read_seizure_annotations(folder / "chb06_04.edf.seizures") == [
        (327.0, 347.0),
        (6211.0, 6231.0),
    ]
    for path in sorted(folder.glob("*.edf.seizures")):
        chbmit.check_seizure_annotations(summaries[path.name[:5]], path)


def test_seizure_annotations_that_disagree_are_an_error(summaries, tmp_path):
    wrong = tmp_path / "chb01_03.edf.seizures"
    shutil.copy(shared_path("data", "chbmit", "seizures", "chb06_04.edf.seizures"), wrong)
    with pytest.raises(AnnotationError, match=r"chb01_03.edf.seizures.*disagree"):
        chbmit.check_seizure_annotations(summaries["chb01"], wrong)
    corrupt = tmp_path / "chb01_04.edf.seizures"
    corrupt.write_bytes(b"\x00\x58\x17")
    with pytest.raises(AnnotationError, match="chb01_04.edf.seizures"):
        chbmit.read_seizure_annotations(corrupt)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda t: t.replace(
                "Number of Seizures in File: 1\nSeizure Start Time: 2996 seconds",
                "Number of Seizures in File: 1\nSeizure Begins: 2996 seconds",
            ),
            r"line 44: cannot parse 'Seizure Begins: 2996 seconds'",
        ),
        (
            lambda t: t.replace("Seizure End Time: 3036 seconds", "Seizure End Time: 2900 seconds"),
            r"line 45: seizure ends \(2900 s\) before it starts",
        ),
        (
            lambda t: t.replace(
                "Number of Seizures in File: 1\nSeizure Start Time: 2996",
                "Number of Seizures in File: 2\nSeizure Start Time: 2996",
            ),
            r"line 40: chb01_03.edf declares 2",
        ),
        (
            lambda t: t.replace(
                "Seizure Start Time: 2996 seconds", "Seizure Start Time: 4000 seconds"
            ).replace("Seizure End Time: 3036 seconds", "Seizure End Time: 4040 seconds"),
            r"line 40: event outside the recording chb01_03.edf",
        ),
    ],
)
def test_a_summary_line_that_cannot_be_parsed_names_the_file_and_line(tmp_path, edit, message):
    text = shared_path("data", "chbmit", "meta", "chb01-summary.txt").read_text()
    bad = tmp_path / "chb01-summary.txt"
    bad.write_text(edit(text))
    with pytest.raises(AnnotationError, match=f"chb01-summary.txt, {message}"):
        chbmit.read_summary(bad)


def _case(root, case, files, summary=None, seizures=()):
    """A case folder: the crops linked under the names the adapter expects, and a summary."""
    folder = root / case
    folder.mkdir(parents=True)
    for name, crop in files.items():
        (folder / name).symlink_to(shared_path("data", "chbmit", "edf", crop))
    if summary is None:
        shutil.copy(shared_path("data", "chbmit", "meta", f"{case}-summary.txt"), folder)
    else:
        (folder / f"{case}-summary.txt").write_text(summary)
    for name in seizures:
        shutil.copy(shared_path("data", "chbmit", "seizures", name), folder)
    return folder


SEIZURE_CROP = "chb01_03_seizure_2995-3036s.edf"
QUIET_CROP = "chb01_03_nonseizure_0-41s.edf"

#: A summary for the two 41-s crops (times from the crops' offsets in chb01_03: seizure 1-41 s).
CROPS_SUMMARY = """Data Sampling Rate: 256 Hz
*************************

Channels in EDF Files:
**********************
Channel 1: FP1-F7

File Name: chb01_01.edf
File Start Time: 13:43:04
File End Time: 13:43:45
Number of Seizures in File: 0

File Name: chb01_03.edf
File Start Time: 14:32:59
File End Time: 14:33:40
Number of Seizures in File: 1
Seizure 1 Start Time: 1 seconds
Seizure 1 End Time: 41 seconds
"""


def test_labelled_preprocessing_of_the_crops_through_the_dataset_path(tmp_path, capsys, run_cli):
    root, out = tmp_path / "root", tmp_path / "out"
    _case(root, "chb01", {"chb01_01.edf": QUIET_CROP, "chb01_03.edf": SEIZURE_CROP}, CROPS_SUMMARY)
    args = ["--dataset", "chbmit", "--task", "onset_detection", "--input", root, "--output", out]
    status, text = run_cli(capsys, *args, "--set", "h_freq=600")  # refused before anything is written
    assert status == 2 and "Invalid 'h_freq' 600.0 Hz" in text and not out.exists()
    status, text = run_cli(capsys, *args)
    assert status == 0, text
    assert "windows: 19; per class: background 10, seizure 9" in text
    assert (out / "events.csv").read_text().splitlines() == [
        "recording,subject,onset_s,duration_s,label",
        "chb01_01.edf,chb01,,0.0,background",
        "chb01_03.edf,chb01,1.0,40.0,seizure",
    ]
    assert not (out / "split.csv").exists()  # subject-wise splits are made at fine-tuning
    rows = read_manifest(out)
    labels = Counter((r["recording"], r["label"]) for r in rows)
    # The seizure crop: window 0-4 s straddles the onset at 1 s (dropped), 4-40 s are seizure.
    assert labels == {("chb01_01.edf", "background"): 10, ("chb01_03.edf", "seizure"): 9}
    assert {r["subject"] for r in rows} == {"chb01"}
    first = load_segment(out / rows[-9]["path"])
    assert (first["label"], first["start_s"], first["data"].shape) == ("seizure", 4.0, (16, 4000))
    summary = json.loads((out / "dataset_summary.json").read_text())
    assert summary["recordings"] == 2 and summary["subjects"] == 1
    assert summary["hours"] == pytest.approx(82 / 3600, abs=1e-4)
    assert summary["events_per_class"] == {"seizure": 1}
    assert summary["hours_per_class"] == {
        "background": pytest.approx(42 / 3600, abs=1e-4),
        "seizure": pytest.approx(40 / 3600, abs=1e-4),
    }
    assert summary["windows_per_class"] == {"background": 10, "seizure": 9}
    config = (out / "config.yaml").read_text()
    assert "montage: double_banana" in config and "notch_freq: 60.0" in config
    assert "default: background" in config


def test_the_real_summary_on_a_crop_reports_the_event_outside_the_recording(tmp_path, capsys, run_cli):
    root = tmp_path / "root"
    _case(root, "chb01", {"chb01_03.edf": SEIZURE_CROP}, seizures=["chb01_03.edf.seizures"])
    args = ["--dataset", "chbmit", "--task", "onset_detection", "--input", root, "--output", tmp_path / "out"]
    status, text = run_cli(capsys, *args)
    assert status == 2 and "partial=true" in text
    assert "lists 41 recording(s) absent from the chbmit root" in text
    status, text = run_cli(capsys, *args, "--dataset-option", "partial=true")
    assert status == 1
    assert (
        "event outside the recording chb01_03.edf: 'seizure' from 2996 s to 3036 s, but the recording "
        "lasts 41 s"
    ) in text


def test_subjects_customary_split_and_seizure_free_files_of_chb24(tmp_path):
    root = tmp_path / "root"
    names = {}
    for case in ("chb01", "chb21", "chb23"):
        first = chbmit.read_summary(shared_path("data", "chbmit", "meta", f"{case}-summary.txt"))[0]["file"]
        names[case] = first
        _case(root, case, {first: QUIET_CROP})
    adapter = get_adapter("chbmit", partial=True, split="biot")
    # chb21 is chb01 1.5 years later (SUBJECT-INFO): one subject.
    assert adapter.subjects(root) == {
        names["chb01"]: "chb01",
        names["chb21"]: "chb01",
        names["chb23"]: "chb23",
    }
    assert adapter.split(root) == {names["chb01"]: "train", names["chb21"]: "val", names["chb23"]: "test"}
    assert get_adapter("chbmit", partial=True).split(root) is None

    _case(root, "chb24", {"chb24_02.edf": QUIET_CROP})  # a file chb24's summary does not list
    with pytest.raises(LayoutError, match=r"chb24_02.edf is missing from its summary .*RECORDS-WITH-SEIZ"):
        get_adapter("chbmit", partial=True).events(root, "onset_detection")
    shutil.copy(shared_path("data", "chbmit", "meta", "RECORDS-WITH-SEIZURES"), root)
    events = get_adapter("chbmit", partial=True).events(root, "onset_detection")
    assert events["chb24_02.edf"] == [] and events[names["chb01"]] == []


def test_a_root_of_the_wrong_layout_says_what_was_expected(tmp_path):
    (tmp_path / "chb01_03.edf").symlink_to(shared_path("data", "chbmit", "edf", SEIZURE_CROP))
    with pytest.raises(LayoutError, match=r"No case folder chbNN .*Expected layout: ROOT/chbNN/chbNN_MM.edf"):
        get_adapter("chbmit").find_recordings(tmp_path)
    _case(tmp_path, "chb01", {"chb01_03.edf": SEIZURE_CROP})
    _case(tmp_path, "chb02", {"chb02_01.edf": QUIET_CROP})
    (tmp_path / "chb02" / "chb02-summary.txt").unlink()
    with pytest.raises(
        LayoutError,
        match=r"\['chb02'\] of the chbmit root .* hold recordings but no "
        r"chbNN-summary.txt",
    ):
        get_adapter("chbmit").find_recordings(tmp_path)
