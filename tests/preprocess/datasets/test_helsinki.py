"""Helsinki neonatal EEG: the real seizure and artefact annotations, label rules, labelled runs."""

import json
import zipfile
from collections import Counter

import numpy as np
import pytest
import scipy.io

from preprocess.channels import load_montage
from preprocess.datasets import get_adapter, helsinki
from preprocess.datasets.base import AnnotationError, LayoutError, load_label_map
from preprocess.segments import load_segment, read_manifest
from preprocess.synthetic import TEN_TWENTY
from tests.helpers import shared_path

#: The 19 electrodes as the Helsinki EDF files name them.
HELSINKI_CHANNELS = [f"EEG {name}-REF" for name in TEN_TWENTY]


@pytest.fixture(scope="module")
def seizure_annotations():
    return helsinki.read_seizure_annotations(shared_path("data", "helsinki_neonatal", "annotations_2017.mat"))


@pytest.fixture(scope="module")
def artefact_annotations():
    return helsinki.read_artefact_annotations(
        shared_path("data", "helsinki_neonatal", "artefact_annotations_webb2021.zip")
    )


def test_real_seizure_annotations_of_79_babies(seizure_annotations):
    assert list(seizure_annotations) == [f"eeg{i}" for i in range(1, 80)]
    lengths = [a.shape[1] for a in seizure_annotations.values()]
    assert all(a.shape[0] == 3 and a.dtype == np.uint8 for a in seizure_annotations.values())
    assert (lengths[0], min(lengths), max(lengths), sum(lengths)) == (6993, 3133, 15416, 402825)  # 111.9 h
    babies = {
        rule: sum(bool(helsinki.seizure_mask(a, rule).any()) for a in seizure_annotations.values())
        for rule in ("consensus", "majority", "any", "A", "B", "C")
    }
    # 39 babies have a seizure by consensus (Stevenson et al. 2019), 57 by at least one annotator.
    assert babies == {"consensus": 39, "majority": 46, "any": 57, "A": 46, "B": 45, "C": 53}


def test_consensus_seizure_events(seizure_annotations):
    adapter_events = {
        b: helsinki.mask_to_events(helsinki.seizure_mask(a, "consensus"), "seizure")
        for b, a in seizure_annotations.items()
    }
    assert sum(len(e) for e in adapter_events.values()) == 343
    assert sum(e.duration_s for events in adapter_events.values() for e in events) == 39259.0
    assert [(e.onset_s, e.duration_s) for e in adapter_events["eeg1"][:2]] == [(103.0, 18.0), (328.0, 119.0)]


def test_the_csv_version_reads_the_same(seizure_annotations, tmp_path):
    babies = ["eeg1", "eeg2", "eeg3"]
    n = max(seizure_annotations[b].shape[1] for b in babies)
    for row, annotator in enumerate("ABC"):
        lines = [",".join(b[3:] for b in babies)]
        for k in range(n):
            cells = [seizure_annotations[b][row] for b in babies]
            lines.append(",".join(str(c[k]) if k < len(c) else "" for c in cells))
        (tmp_path / f"annotations_2017_{annotator}.csv").write_text("\n".join(lines) + "\n")
    read = helsinki.read_seizure_annotations(tmp_path / "annotations_2017_A.csv")
    assert list(read) == babies
    for baby in babies:
        np.testing.assert_array_equal(read[baby], seizure_annotations[baby])
    text = (tmp_path / "annotations_2017_B.csv").read_text().splitlines()
    text[5] = "0,x,0"
    (tmp_path / "annotations_2017_B.csv").write_text("\n".join(text))
    with pytest.raises(AnnotationError, match=r"annotations_2017_B.csv, line 6: cannot parse 'x' for eeg2"):
        helsinki.read_seizure_annotations(tmp_path / "annotations_2017_A.csv")


def test_real_artefact_annotations(artefact_annotations):
    assert list(artefact_annotations) == [f"eeg{i}" for i in range(1, 80)]
    assert sum(len(a["rows"]) for a in artefact_annotations.values()) == 3271
    codes = Counter(int(c) for a in artefact_annotations.values() for _, _, row in a["rows"] for c in row)
    assert codes == {0: 42938, 3: 4016, 1: 3678, 4: 3656, 5: 3142, 2: 1250, 7: 196, 6: 2}
    eeg1 = artefact_annotations["eeg1"]
    assert len(eeg1["channels"]) == 18 and eeg1["channels"][:2] == ["Fp1-F3", "F3-C3"]
    assert len(eeg1["rows"]) == 19 and eeg1["rows"][0][:2] == (147.0, 3.0)


def _seconds(annotations, labels="binary", montage=None, clean_rule="any"):
    code_labels = {int(k): v for k, v in load_label_map("helsinki_artefacts")[labels].items()}
    channels = load_montage(montage).ch_names if montage else None
    totals, per_label = Counter(), Counter()
    for annotation in annotations.values():
        seconds, counts = helsinki.artefact_labels_per_second(annotation, code_labels, channels, clean_rule)
        totals.update(counts)
        per_label.update(s for s in seconds if s)
    return totals, per_label


def test_artefact_codes_to_seconds(artefact_annotations):
    # All 18 annotated channels: 80472 s with an artefact on some channel; clean 64142 s (any channel
    # annotated clean, none artefact) or 12180 s (all 18 channels annotated clean).
    totals, per_label = _seconds(artefact_annotations)
    assert per_label == {"artefact": 80472, "clean": 64142}
    assert _seconds(artefact_annotations, clean_rule="all")[1]["clean"] == 12180
    assert _seconds(artefact_annotations, montage="neonatal_double_banana")[1] == per_label
    # The 16 channels of the default montage (no Fz-Cz, Cz-Pz).
    assert _seconds(artefact_annotations, montage="double_banana")[1] == {"artefact": 79138, "clean": 62024}
    totals, per_label = _seconds(artefact_annotations, "types", "double_banana")
    assert per_label == {
        "emg": 49443,
        "clean": 62024,
        "movement": 8498,
        "electrode": 7863,
        "biological": 6113,
        "device": 3893,
    }
    assert totals["mixed_type_s"] == 3328  # two types on different channels: left unlabelled


def test_an_unknown_artefact_code_names_the_file_and_line(tmp_path):
    header = "Time,Duration," + ",".join(["Fp1-F3", "F3-C3"]) + ",Time_secs,Duration_secs"
    folder = tmp_path / "webb"
    folder.mkdir()
    (folder / "eeg1_summary.txt").write_text(f"{header}\nx,y,1,1,0,10\nx,y,8,0,10,5\n")
    with pytest.raises(AnnotationError, match=r"eeg1_summary.txt, line 3: unknown artefact code\(s\) \[8\]"):
        helsinki.read_artefact_annotations(folder)


def _helsinki_root(root, make_edf, babies=(1, 2), duration_s=40.0):
    for i in babies:
        make_edf(root / f"eeg{i}.edf", HELSINKI_CHANNELS, duration_s=duration_s, seed=i)
    return root


def _mat(path, arrays):
    cells = np.empty((1, len(arrays)), dtype=object)
    for i, array in enumerate(arrays):
        cells[0, i] = np.asarray(array, dtype=np.uint8)
    scipy.io.savemat(path, {"annotat_new": cells})


def test_labelled_run_of_the_seizure_adapter_with_label_rules(tmp_path, make_edf, capsys, run_cli):
    root = _helsinki_root(tmp_path / "root", make_edf)
    baby1 = np.zeros((3, 40), dtype=np.uint8)
    baby1[:, 8:20] = 1  # all three annotators: 8-20 s
    baby1[:2, 20:24] = 1  # A and B only: 20-24 s
    _mat(root / "annotations_2017.mat", [baby1, np.zeros((3, 40))])
    for rule, seizure_windows in (("consensus", 3), ("majority", 4)):
        out = tmp_path / rule
        status, text = run_cli(
            capsys,
            "--dataset",
            "helsinki_seizures",
            "--task",
            "onset_detection",
            "--input",
            root,
            "--output",
            out,
            "--dataset-option",
            f"rule={rule}",
        )
        assert status == 0, text
        labels = Counter((r["recording"], r["label"]) for r in read_manifest(out))
        assert labels == {
            ("eeg1.edf", "seizure"): seizure_windows,
            ("eeg1.edf", "background"): 10 - seizure_windows,
            ("eeg2.edf", "background"): 10,
        }
        summary = json.loads((out / "dataset_summary.json").read_text())
        assert summary["notes"] == {"rule": rule, "babies_with_seizures": 1}
        assert summary["subjects"] == 2
    out = tmp_path / "eighteen"
    status, text = run_cli(
        capsys,
        "--dataset",
        "helsinki_seizures",
        "--task",
        "onset_detection",
        "--input",
        root,
        "--output",
        out,
        "--set",
        "montage=neonatal_double_banana",
    )
    assert status == 0, text
    segment = load_segment(out / read_manifest(out)[0]["path"])
    assert segment["data"].shape == (18, 4000) and segment["ch_names"][-2:] == ["FZ-CZ", "CZ-PZ"]


def test_recordings_and_annotations_must_match(tmp_path, make_edf):
    root = _helsinki_root(tmp_path / "root", make_edf, babies=(1,), duration_s=10.0)
    _mat(root / "annotations_2017.mat", [np.zeros((3, 10)), np.zeros((3, 10))])
    adapter = get_adapter("helsinki_seizures")
    with pytest.raises(LayoutError, match=r"lists 1 recording\(s\) absent .*eeg2.edf.*partial=true"):
        adapter.events(root, "onset_detection")
    partial = get_adapter("helsinki_seizures", partial=True)
    assert list(partial.events(root, "onset_detection")) == ["eeg1.edf"]
    make_edf(root / "eeg3.edf", HELSINKI_CHANNELS, duration_s=10.0)
    with pytest.raises(
        LayoutError,
        match=r"1 recording\(s\) of the helsinki_seizures root are missing from "
        r"the label file .*annotations_2017.mat: eeg3.edf",
    ):
        get_adapter("helsinki_seizures", partial=True).events(root, "onset_detection")
    bare = _helsinki_root(tmp_path / "bare", make_edf, (1,), 10.0)
    with pytest.raises(LayoutError, match=r"No seizure annotation file .*Expected layout: ROOT/eeg1.edf"):
        get_adapter("helsinki_seizures").events(bare, "onset_detection")


def test_labelled_run_of_the_artefact_adapter(tmp_path, make_edf, capsys, run_cli):
    root = _helsinki_root(tmp_path / "root", make_edf)
    channels = helsinki.read_artefact_annotations(
        shared_path("data", "helsinki_neonatal", "artefact_annotations_webb2021.zip")
    )["eeg1"]["channels"]
    header = "Time,Duration," + ",".join(channels) + ",Time_secs,Duration_secs"

    def row(onset, duration, codes):
        return f"t,d,{','.join(map(str, codes))},{onset},{duration}"

    clean, emg_fp1, hfv = [1] * 18, [3] + [0] * 17, [6] + [0] * 17
    fz_cz_emg = [0] * 16 + [3, 0]  # an artefact on Fz-Cz only: not a channel of the 16-channel montage
    with zipfile.ZipFile(root / "artefact_annotations_webb2021.zip", "w") as archive:
        archive.writestr(
            "eeg1_summary.txt",
            "\n".join([header, row(0, 16, clean), row(16, 8, emg_fp1), row(24, 16, clean), row(24, 4, hfv)])
            + "\n",
        )
        archive.writestr(
            "eeg2_summary.txt", "\n".join([header, row(0, 40, clean), row(8, 4, fz_cz_emg)]) + "\n"
        )
    out = tmp_path / "out"
    status, text = run_cli(
        capsys,
        "--dataset",
        "helsinki_artefacts",
        "--task",
        "artifact_detection",
        "--input",
        root,
        "--output",
        out,
    )
    assert status == 0, text
    labels = Counter((r["recording"], r["label"]) for r in read_manifest(out))
    # eeg1: clean 0-16 (4 windows), EMG 16-24 (2), clean 24-40 with HFV ignored (4); eeg2: all clean.
    assert labels == {("eeg1.edf", "clean"): 8, ("eeg1.edf", "artefact"): 2, ("eeg2.edf", "clean"): 10}
    notes = json.loads((out / "dataset_summary.json").read_text())["notes"]
    assert (notes["artefact_s"], notes["clean_s"]) == (8, 72)
    out = tmp_path / "types"
    status, text = run_cli(
        capsys,
        "--dataset",
        "helsinki_artefacts",
        "--task",
        "artifact_detection",
        "--input",
        root,
        "--output",
        out,
        "--dataset-option",
        "labels=types",
        "--set",
        "montage=neonatal_double_banana",
    )
    assert status == 0, text
    labels = Counter((r["recording"], r["label"]) for r in read_manifest(out))
    # With the 18-channel montage the Fz-Cz EMG of eeg2 (8-12 s) counts: one window.
    assert labels == {
        ("eeg1.edf", "clean"): 8,
        ("eeg1.edf", "emg"): 2,
        ("eeg2.edf", "clean"): 9,
        ("eeg2.edf", "emg"): 1,
    }
