"""TUH corpora (TUSZ, TUEV, TUAR): small files written in the documented formats (the corpora are not
redistributable), label maps, merged channels, official splits, bad inputs."""

import json
from collections import Counter

import pytest

from preprocess.datasets import get_adapter, tuev, tusz
from preprocess.datasets.base import AnnotationError, LayoutError, load_label_map
from preprocess.datasets.tuh import read_rec, read_tuh_csv
from preprocess.events import Event
from preprocess.segments import read_manifest
from preprocess.synthetic import TEN_TWENTY

TUH_LE = [f"EEG {name.upper()}-LE" for name in TEN_TWENTY] + ["EEG A1-LE", "EEG A2-LE"]
TUH_AR = [f"EEG {name.upper()}-REF" for name in TEN_TWENTY]


def _csv(path, rows, duration_s=40.0):
    """A TUH v2 .csv / .csv_bi file: comment header, column header, one event per row."""
    lines = [
        "# version = csv_v1.0.0",
        f"# bname = {path.stem}",
        f"# duration = {duration_s:.2f} secs",
        "# montage_file = $NEDC_NFC/lib/nedc_eas_default_montage.txt",
        "#",
        "channel,start_time,stop_time,label,confidence",
    ]
    lines += [f"{channel},{start:.4f},{stop:.4f},{label},1.0000" for channel, start, stop, label in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _tusz_recording(root, make_edf, split, patient, types, terms, seed=0):
    folder = root / "edf" / split / patient / "s001_2002" / "02_tcp_le"
    name = f"{patient}_s001_t000"
    make_edf(folder / f"{name}.edf", TUH_LE, duration_s=40.0, seed=seed)
    _csv(folder / f"{name}.csv", types)
    _csv(folder / f"{name}.csv_bi", terms)
    return folder / f"{name}.edf"


@pytest.fixture
def tusz_root(tmp_path, make_edf):
    root = tmp_path / "tusz" / "v2.0.3"
    _tusz_recording(
        root,
        make_edf,
        "train",
        "aaaaaaac",
        [
            ("FP1-F7", 0, 8, "bckg"),
            ("FP1-F7", 8, 20, "fnsz"),
            ("F7-T3", 10, 24, "cpsz"),
            ("FP1-F7", 20, 40, "bckg"),
        ],
        [("TERM", 0, 8, "bckg"), ("TERM", 8, 24, "seiz"), ("TERM", 24, 40, "bckg")],
    )
    _tusz_recording(
        root,
        make_edf,
        "dev",
        "aaaaaabb",
        [("FP1-F7", 0, 12, "absz"), ("C3-P3", 8, 20, "tcsz")],
        [("TERM", 0, 20, "seiz"), ("TERM", 20, 40, "bckg")],
        seed=1,
    )
    _tusz_recording(
        root,
        make_edf,
        "eval",
        "aaaaaacc",
        [("FP1-F7", 5, 30, "gnsz")],
        [("TERM", 0, 5, "bckg"), ("TERM", 5, 30, "seiz"), ("TERM", 30, 40, "bckg")],
        seed=2,
    )
    return root


def test_tusz_csv_and_seizure_type_events(tusz_root):
    path = next(tusz_root.rglob("aaaaaaac_s001_t000.csv"))
    duration, rows = read_tuh_csv(path)
    assert duration == 40.0 and rows[1] == ("FP1-F7", 8.0, 20.0, "fnsz", 8)
    adapter = get_adapter("tusz")
    events = adapter.events(tusz_root, "seizure_type")
    # Focal fnsz + cpsz on two channels merge into one FNSZ event; gnsz is no class of the task.
    assert events["aaaaaaac_s001_t000.edf"] == [Event(8.0, 16.0, "FNSZ")]
    # absz and tcsz overlap on different channels for 4 s: left unlabelled (a conflict).
    assert events["aaaaaabb_s001_t000.edf"] == [Event(0.0, 8.0, "ABSZ"), Event(12.0, 8.0, "TCSZ")]
    assert events["aaaaaacc_s001_t000.edf"] == []
    assert adapter.notes["conflict_s"] == 4.0
    assert adapter.split(tusz_root) == {
        "aaaaaaac_s001_t000.edf": "train",
        "aaaaaabb_s001_t000.edf": "val",
        "aaaaaacc_s001_t000.edf": "test",
    }
    assert adapter.subjects(tusz_root)["aaaaaabb_s001_t000.edf"] == "aaaaaabb"
    onsets = get_adapter("tusz").events(tusz_root, "onset_detection")
    assert onsets["aaaaaacc_s001_t000.edf"] == [
        Event(0.0, 5.0, "background"),
        Event(5.0, 25.0, "seizure"),
        Event(30.0, 10.0, "background"),
    ]


def test_tusz_labelled_run_with_the_official_split(tusz_root, tmp_path, capsys, run_cli):
    out = tmp_path / "out"
    status, text = run_cli(
        capsys, "--dataset", "tusz", "--task", "seizure_type", "--input", tusz_root, "--output", out
    )
    assert status == 0, text
    labels = Counter((r["recording"][:8], r["label"]) for r in read_manifest(out))
    assert labels == {
        ("aaaaaaac", "FNSZ"): 4,
        ("aaaaaaac", None): 6,
        ("aaaaaabb", "ABSZ"): 2,
        ("aaaaaabb", "TCSZ"): 2,
        ("aaaaaabb", None): 6,
    }
    # The eval recording has no seizure of the task's classes: left out.
    assert (out / "split.csv").read_text() == (
        "recording,split\naaaaaabb_s001_t000.edf,val\naaaaaaac_s001_t000.edf,train\n"
    )
    summary = json.loads((out / "dataset_summary.json").read_text())
    assert summary["left_out"] == ["aaaaaacc_s001_t000.edf"]
    assert summary["split"] == {"train": 1, "val": 1, "test": 0}
    assert summary["events_per_class"] == {"ABSZ": 1, "FNSZ": 1, "TCSZ": 1}
    assert "notch_freq: 60.0" in (out / "config.yaml").read_text()


@pytest.mark.parametrize(
    "rows, message",
    [
        ([("FP1-F7", 8, 20, "xyzsz")], r"aaaaaaac_s001_t000.csv, line 7: unknown label 'xyzsz'"),
        (
            [("FP1-F7", 8, 20, "fnsz"), ("FP1-F7", 30, 45, "fnsz")],
            r"aaaaaaac_s001_t000.csv, line 8: event outside the recording: fnsz ends at 45 s",
        ),
    ],
)
def test_tusz_bad_annotations_name_the_file_and_line(tusz_root, rows, message):
    _csv(next(tusz_root.rglob("aaaaaaac_s001_t000.csv")), rows)
    with pytest.raises(AnnotationError, match=message):
        get_adapter("tusz").events(tusz_root, "seizure_type")


def test_tuh_layout_errors(tusz_root, tmp_path, make_edf):
    next(tusz_root.rglob("aaaaaabb_s001_t000.csv")).unlink()
    with pytest.raises(LayoutError, match=r"missing from the label file the .csv files .*aaaaaabb_s001_t00"):
        get_adapter("tusz").events(tusz_root, "seizure_type")
    next(tusz_root.rglob("aaaaaabb_s001_t000.edf")).unlink()
    next(tusz_root.rglob("aaaaaabb_s001_t000.csv_bi")).unlink()
    terms = next(tusz_root.rglob("aaaaaacc_s001_t000.csv_bi"))
    terms.with_name("aaaaaadd_s001_t000.csv_bi").write_text(terms.read_text())  # its recording is absent
    with pytest.raises(LayoutError, match=r"lists 1 recording\(s\) absent .*aaaaaadd_s001_t000.edf"):
        get_adapter("tusz").events(tusz_root, "onset_detection")
    flat = tmp_path / "flat"
    make_edf(flat / "aaaaaaac_s001_t000.edf", TUH_LE, duration_s=8.0)
    _csv(flat / "aaaaaaac_s001_t000.csv", [], duration_s=8.0)
    with pytest.raises(LayoutError, match=r"outside the split folders .*Expected layout: ROOT/edf/\{train,"):
        get_adapter("tusz").find_recordings(flat)


def test_tuev_rec_events_and_split(tmp_path, make_edf):
    root = tmp_path / "tuev" / "v2.0.1"
    for i in range(5):
        folder = root / "edf" / "train" / f"aaaaaa{i:02d}"
        make_edf(folder / f"aaaaaa{i:02d}_00000001.edf", TUH_AR, duration_s=8.0, seed=i)
        (folder / f"aaaaaa{i:02d}_00000001.rec").write_text("0,2.0,3.0,6\n")
    folder = root / "edf" / "eval" / "bbbbbb00"
    make_edf(folder / "bbbbbb00_00000001.edf", TUH_AR, duration_s=30.0)
    rows = ["0,10.0,11.0,1", "1,10.0,11.0,6", "2,20.0,21.0,6", "3,28.0,29.0,5"]
    (folder / "bbbbbb00_00000001.rec").write_text("\n".join(rows) + "\n")
    rec = folder / "bbbbbb00_00000001.rec"
    assert read_rec(rec)[0] == (0, 10.0, 11.0, 1, 1)
    codes = {int(k): v for k, v in load_label_map("tuev")["epileptiform_detection"].items()}
    # Each 1-s event widened to 5 s (2 s before and after), clipped at the end; any epileptiform channel wins.
    assert tuev.rec_events(rec, codes, 2.0, 30.0) == [
        Event(8.0, 5.0, "epileptiform"),
        Event(18.0, 5.0, "background"),
        Event(26.0, 4.0, "background"),
    ]
    adapter = get_adapter("tuev")
    events = adapter.events(root, "epileptiform_detection")
    assert events["aaaaaa00_00000001.edf"] == [Event(0.0, 5.0, "background")]
    split = adapter.split(root)
    assert Counter(split.values()) == {"train": 4, "val": 1, "test": 1}
    assert split["bbbbbb00_00000001.edf"] == "test" and get_adapter("tuev").split(root) == split
    assert Counter(get_adapter("tuev", val_fraction=0.4, split_seed=1).split(root).values())["val"] == 2
    rec.write_text("0,10.0,11.0,7\n")
    with pytest.raises(AnnotationError, match=r"bbbbbb00_00000001.rec, line 1: unknown event code 7"):
        get_adapter("tuev").events(root, "epileptiform_detection")
    rec.write_text("0,10.0,11.0,1\n0;12;13;6\n")
    with pytest.raises(AnnotationError, match=r"bbbbbb00_00000001.rec, line 2: cannot parse '0;12;13;6'"):
        get_adapter("tuev").events(root, "epileptiform_detection")


def test_tuar_artefacts_binary_and_types(tmp_path, make_edf, capsys, run_cli):
    root = tmp_path / "tuar" / "v3.0.1"
    folder = root / "edf" / "01_tcp_ar"
    make_edf(folder / "aaaaaaju_s005_t000.edf", TUH_AR, duration_s=40.0)
    csv = _csv(
        folder / "aaaaaaju_s005_t000.csv",
        [("FP1-F7", 4, 12, "eyem"), ("T3-T5", 8, 16, "musc"), ("C3-P3", 28, 32, "eyem_musc")],
    )
    assert get_adapter("tuar").events(root, "artifact_detection")["aaaaaaju_s005_t000.edf"] == [
        Event(0.0, 4.0, "clean"),
        Event(4.0, 12.0, "artefact"),
        Event(16.0, 12.0, "clean"),
        Event(28.0, 4.0, "artefact"),
        Event(32.0, 8.0, "clean"),
    ]
    assert get_adapter("tuar").split(root) is None
    out = tmp_path / "out"
    status, text = run_cli(
        capsys,
        "--dataset",
        "tuar",
        "--task",
        "artifact_detection",
        "--input",
        root,
        "--output",
        out,
        "--dataset-option",
        "labels=types",
    )
    assert status == 0, text
    # Eye movement (biological) and muscle (emg) overlap on two channels at 8-12 s and in the combined
    # label at 28-32 s: those windows stay unlabelled, not clean.
    assert [r["label"] for r in read_manifest(out)] == [
        "clean",
        "biological",
        None,
        "emg",
        "clean",
        "clean",
        "clean",
        None,
        "clean",
        "clean",
    ]
    assert json.loads((out / "dataset_summary.json").read_text())["notes"] == {"conflict_s": 8.0}
    _csv(csv, [("FP1-F7", 4, 12, "eyem_blah")])
    with pytest.raises(AnnotationError, match=r"aaaaaaju_s005_t000.csv, line 7: unknown label 'eyem_blah'"):
        get_adapter("tuar").events(root, "artifact_detection")


def test_tusz_events_use_the_label_map():
    assert load_label_map("tusz")["seizure_type"]["cpsz"] == "FNSZ"
    assert tusz.TuszAdapter.annotation_suffix == {"seizure_type": ".csv", "onset_detection": ".csv_bi"}
