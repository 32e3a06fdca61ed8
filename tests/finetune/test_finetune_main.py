"""The fine-tuning entry point end to end: real CHB-MIT windows, pretrained checkpoints, repeatability,
outputs, the table, torchrun, and every bad input with its message and exit status."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from finetune.checkpoints import load_pretrained
from finetune.data import FinetuneDataset
from finetune.finetune_main import cli, main
from finetune.metrics import evaluate_predictions
from models import convert_official_state_dict, create_model
from preprocess.segments import read_manifest
from runtime.checkpoint import load_checkpoint
from runtime.logging import JsonLinesWriter
from tasks import TASKS, get_task
from tests.finetune.labelled_data import make_labelled_data, save_pretrain_checkpoint
from tests.helpers import ROOT, shared_path

ONSET = get_task("onset_detection")
# Real CHB-MIT windows of one subject (chb01): 10 background + 9 seizure windows of 4 s; each crop is cut
# in time into train (6 / 5 windows), val (2 / 2) and test (2 / 2).
REAL = [
    "model.name=m4cea_tiny",
    "data.num_workers=0",
    "optim.batch_size=4",
    "optim.micro_batch_size=2",
    "optim.base_lr=0.05",
    "optim.warmup_epochs=1",
    "split.protocol=patient_specific",
    "split.patient_specific_by=time_block",
    "split.val_fraction=0.2",
    "split.test_fraction=0.2",
    "logging.log_every=1",
]
# Synthetic windows of 1 s (16 x 1000 samples): m4cea_tiny with 5 patches per channel.
SYNTH = [
    "model.name=m4cea_tiny",
    "model.n_patches=5",
    "data.num_workers=0",
    "optim.batch_size=4",
    "optim.micro_batch_size=2",
    "optim.base_lr=0.05",
    "optim.warmup_epochs=0",
    "logging.log_every=1",
    "logging.tensorboard=false",
]


def _argv(
    data, output, *overrides, task="onset_detection", seed=42, epochs=3, pretrained=None, base=REAL, extra=()
):
    argv = [
        "--task",
        task,
        "--seed",
        str(seed),
        "--data",
        str(data),
        "--output",
        str(output),
        "--epochs",
        str(epochs),
        *extra,
        "--set",
        *base,
        *overrides,
    ]
    if pretrained is not None:
        argv += ["--pretrained", str(pretrained)]
    return argv


@pytest.fixture(scope="module")
def chbmit(chbmit_preprocessed):
    """The real CHB-MIT seizure and non-seizure crops, preprocessed with their events (one subject)."""
    return chbmit_preprocessed


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A pretraining checkpoint of m4cea_tiny in this project's format."""
    return save_pretrain_checkpoint(tmp_path_factory.mktemp("pretrain") / "checkpoint-0002.pth")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """6 subjects, one recording each: 2 background then 2 seizure windows of 1 s."""
    recordings = [(f"s{i}", f"r{i}", ["background", "background", "seizure", "seizure"]) for i in range(6)]
    return make_labelled_data(tmp_path_factory.mktemp("synth"), recordings)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def real_run(chbmit, tiny_checkpoint, runs):
    """onset_detection fine-tuned from the tiny pretraining checkpoint on real CHB-MIT windows, seed 42."""
    results = main(_argv(chbmit, runs, pretrained=tiny_checkpoint))
    return runs / "onset_detection" / "seed42", results


@pytest.fixture(scope="module")
def other_seed_run(real_run, chbmit, tiny_checkpoint, runs):
    """The same run as ``real_run`` with seed 2024, beside it in ``runs`` (one training for two tests)."""
    main(_argv(chbmit, runs, seed=2024, pretrained=tiny_checkpoint))
    return runs / "onset_detection" / "seed2024"


def _read_json(path):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_real_run_results_schema(real_run, chbmit, tiny_checkpoint):
    run_dir, returned = real_run
    results = _read_json(run_dir / "results.json")
    assert set(results) == {
        "task",
        "seed",
        "test",
        "val",
        "confusion_matrix",
        "undefined",
        "n_units",
        "event_scoring",
        "n",
        "ci95",
        "bootstrap",
        "warnings",
        "split",
        "checkpoint",
        "training",
        "parameters",
        "config",
    }
    assert results["task"] == "onset_detection" and results["seed"] == 42
    model = create_model("m4cea_tiny", head="classification", n_outputs=2)
    n_params = sum(p.numel() for p in model.parameters())  # all train but the mask token (never masks)
    assert results["parameters"] == {"trainable": n_params - model.mask_token.numel(), "total": n_params}
    metrics = ["balanced_accuracy", "auroc", "auprc", "event_sensitivity", "event_precision", "event_f1"]
    metrics += ["false_alarms_per_24h", "loss"]
    assert list(results["test"]) == list(results["val"]) == metrics
    assert results["n_units"] == {"val": 4, "test": 4}
    for name in ("val", "test"):
        assert 0 <= results[name]["balanced_accuracy"] <= 1 and 0 <= results[name]["auroc"] <= 1
        assert results[name]["event_sensitivity"] in (0.0, 1.0)  # one seizure event per split
        # scored against the seizure annotated in the data folder's events.csv (1-41 s of the crop)
        scoring = results["event_scoring"][name]
        assert scoring["reference"] == "annotated" and scoring["warnings"][-1].startswith("false_alarms")
        assert scoring["event"]["n_reference"] == 1
        assert scoring["event"]["sensitivity"] == results[name]["event_sensitivity"]
        assert scoring["evaluated_s"] == pytest.approx(16.0)  # four 4-s windows
        assert results[name]["loss"] > 0
        matrix = np.array(results["confusion_matrix"][name])
        assert matrix.shape == (2, 2) and matrix.sum(axis=1).tolist() == [2, 2]  # 2 background, 2 seizure
    assert results["confusion_matrix"]["classes"] == ["background", "seizure"]
    assert results["confusion_matrix"]["unit"] == "window"

    # Evidence (issue #11): n per split, a bootstrap interval per test metric, warnings (1 child, 4 units).
    assert results["n"]["test"] == {
        "units": 4,
        "subjects": 1,
        "recordings": 2,
        "windows": 4,
        "per_class": {"background": 2, "seizure": 2},
        "duration_s": 16.0,
    }
    assert results["n"]["train"]["windows"] == 11 and results["n"]["val"]["units"] == 4
    assert list(results["ci95"]) == metrics[:-1]  # no interval for the loss
    for metric in ("balanced_accuracy", "auroc", "auprc"):
        low, high = results["ci95"][metric]
        assert 0 <= low <= high <= 1
    assert results["bootstrap"]["resampled"]["auroc"] == "unit"  # one subject: its units
    assert results["bootstrap"]["n_resamples"] == 2000 and results["bootstrap"]["method"] == "percentile"
    assert len(results["warnings"]) == 4
    assert "1 subject(s), fewer than 3" in results["warnings"][0]
    assert "from 16 s of test EEG" in results["warnings"][3]

    split = results["split"]
    assert split["subject_overlap"] == {}
    assert (split["protocol"], split["by"], split["seed"]) == ("patient_specific", "time_block", None)
    assert [split[n]["n_windows"] for n in ("train", "val", "test")] == [11, 4, 4]
    assert split["test"]["labels"] == {"background": 2, "seizure": 2} and split["test"]["subjects"] == [
        "chb01"
    ]
    assert split["test"]["recordings"] == ["chb01_03_nonseizure_0-41s.edf", "chb01_03_seizure_2995-3036s.edf"]

    pretrained = results["checkpoint"]["pretrained"]
    assert pretrained["missing_keys"] == ["head.bias", "head.weight"]  # only the head is new
    assert pretrained["source_model"] == "m4cea_tiny" and pretrained["path"] == str(tiny_checkpoint)
    assert any(k.startswith("head_magnitude.") for k in pretrained["ignored_keys"])
    training = results["training"]
    assert (
        training["epochs_run"] == 3 and training["optimizer_steps"] == 3 * 2 and training["world_size"] == 1
    )

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config == results["config"]
    assert config["runtime"]["seed"] == 42 and config["optim"]["epochs"] == 3
    assert config["data"]["root"] == str(chbmit) and config["model"]["pretrained"] == str(tiny_checkpoint)
    assert returned["test"]["auroc"] == results["test"]["auroc"]


def test_real_run_best_checkpoint_reproduces_predictions_and_metrics(real_run, chbmit):
    run_dir, _ = real_run
    results = _read_json(run_dir / "results.json")
    records = JsonLinesWriter.read(run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3]  # numbered from 1, as in the log
    val_losses = [r["val_loss"] for r in records]
    assert results["checkpoint"]["epoch"] == int(np.argmin(val_losses)) + 1
    assert results["checkpoint"]["val_loss"] == pytest.approx(min(val_losses))

    checkpoint = load_checkpoint(run_dir / "checkpoint-best.pth")
    assert checkpoint["epoch"] == results["checkpoint"]["epoch"] - 1  # the file keeps the 0-based index
    assert checkpoint["task"] == "onset_detection" and checkpoint["classes"] == ["background", "seizure"]
    model = create_model("m4cea_tiny", head="classification", n_outputs=2)
    model.load_state_dict(checkpoint["model"])
    model.eval()

    predictions = _read_csv(run_dir / "predictions.csv")
    assert list(predictions[0]) == [
        "split",
        "path",
        "subject",
        "recording",
        "start_s",
        "label",
        "predicted",
        "p_background",
        "p_seizure",
    ]
    assert [p["split"] for p in predictions] == ["val"] * 4 + ["test"] * 4
    manifest = {row["path"]: row for row in read_manifest(chbmit)}
    for name in ("val", "test"):
        part = [p for p in predictions if p["split"] == name]
        rows = [manifest[p["path"]] for p in part]
        dataset = FinetuneDataset(chbmit, rows, ONSET, 16, 4000)
        with torch.no_grad():
            probabilities = torch.softmax(
                model(torch.stack([dataset[i][0] for i in range(len(rows))])).double(), dim=1
            ).numpy()
        written = np.array([[float(p["p_background"]), float(p["p_seizure"])] for p in part])
        np.testing.assert_allclose(written, probabilities, rtol=0, atol=1e-5)
        assert [p["predicted"] for p in part] == [ONSET.classes[int(q[1] >= 0.5)] for q in written]
        assert [p["label"] for p in part] == [r["label"] for r in rows]
        expected = evaluate_predictions(ONSET, rows, written)
        for metric in ONSET.metrics:
            assert results[name][metric] == pytest.approx(expected[metric], abs=1e-9)
        assert results["confusion_matrix"][name] == expected["confusion_matrix"]
        # Time blocks: val and test windows come after every training window of their recording.
        for p in part:
            assert float(p["start_s"]) >= 24.0


def test_real_run_files(real_run):
    run_dir, _ = real_run
    for name in ("confusion_matrix.png", "roc.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    log = (run_dir / "log.txt").read_text()
    assert "epoch 3/3" in log and "Test (4 window units" in log
    assert log.rstrip().splitlines()[-1].endswith("not a measured rate.")  # the warnings come last
    assert log.count("Not a result yet:") == 4


def test_same_seed_same_results_other_seed_same_split(
    real_run, other_seed_run, chbmit, tiny_checkpoint, tmp_path
):
    run_dir, _ = real_run
    main(_argv(chbmit, tmp_path, pretrained=tiny_checkpoint))
    first, again = (
        _read_json(run_dir / "results.json"),
        _read_json(tmp_path / "onset_detection/seed42/results.json"),
    )
    assert first["test"] == again["test"] and first["val"] == again["val"]
    assert (run_dir / "predictions.csv").read_text() == (
        tmp_path / "onset_detection/seed42/predictions.csv"
    ).read_text()
    a = load_checkpoint(run_dir / "checkpoint-best.pth")["model"]
    b = load_checkpoint(tmp_path / "onset_detection/seed42/checkpoint-best.pth")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    other = _read_json(other_seed_run / "results.json")
    assert other["split"] == first["split"]  # the split seed is not the training seed
    assert other["test"]["loss"] != first["test"]["loss"]  # but the training differs


def test_make_table_on_the_runs_folder(real_run, other_seed_run, runs, capsys):
    spec = importlib.util.spec_from_file_location("make_table", ROOT / "scripts" / "make_table.py")
    make_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_table)
    assert make_table.main([str(runs)]) == 0
    out = capsys.readouterr().out
    values = [
        _read_json(runs / f"onset_detection/seed{s}/results.json")["test"]["balanced_accuracy"]
        for s in (42, 2024)
    ]
    table = {row["task"]: row for row in _read_csv(runs / "table_main.csv")}
    assert list(table) == list(TASKS)
    assert table["onset_detection"]["status"] == "ok" and table["onset_detection"]["seeds"] == "42 2024"
    assert float(table["onset_detection"]["balanced_accuracy_mean"]) == pytest.approx(np.mean(values))
    assert float(table["onset_detection"]["balanced_accuracy_std"]) == pytest.approx(np.std(values, ddof=1))
    assert table["hie_grading"]["status"] == "missing"
    assert "| onset_detection | 2 |" in out and "missing seeds 3407, 4399, 114514" in out


def test_official_state_dicts_load_with_only_the_head_new(tmp_path):
    reference = torch.load(
        shared_path("reference", "official_m4cea_reference_seed0_depth2.pt"), weights_only=True
    )
    for key in ("pretrain_state_dict", "finetune_state_dict"):  # the 4-class official head is dropped too
        path = tmp_path / f"{key}.pth"
        torch.save(reference[key], path)
        model = create_model("m4cea_base", head="classification", n_outputs=2, depth=2)
        info = load_pretrained(model, path)
        assert info["missing_keys"] == ["head.bias", "head.weight"] and info["source_model"] is None
        converted = convert_official_state_dict(reference[key])
        state = model.state_dict()
        assert all(torch.equal(state[k], converted[k]) for k in state if not k.startswith("head."))


def test_fine_tune_from_an_official_state_dict(chbmit, tmp_path):
    reference = torch.load(
        shared_path("reference", "official_m4cea_reference_seed0_depth2.pt"), weights_only=True
    )
    torch.save(reference["pretrain_state_dict"], tmp_path / "official.pth")
    results = main(
        _argv(
            chbmit,
            tmp_path / "runs",
            "model.name=m4cea_base",
            "model.depth=2",
            epochs=1,
            pretrained=tmp_path / "official.pth",
        )
    )
    assert results["checkpoint"]["pretrained"]["missing_keys"] == ["head.bias", "head.weight"]
    assert results["n_units"]["test"] == 4 and math.isfinite(results["test"]["loss"])


def test_linear_probe_trains_the_head_only(synth, tmp_path):
    checkpoint = save_pretrain_checkpoint(tmp_path / "pretrain.pth", n_patches=5)
    results = main(
        _argv(synth, tmp_path / "runs", epochs=2, pretrained=checkpoint, base=SYNTH, extra=["--linear-probe"])
    )
    assert results["config"]["head"]["linear_probe"] is True
    best = load_checkpoint(tmp_path / "runs/onset_detection/seed42/checkpoint-best.pth")["model"]
    pretrained = load_checkpoint(checkpoint)["model"]
    backbone = [k for k in best if not k.startswith("head.")]
    assert len(backbone) > 20 and all(torch.equal(best[k], pretrained[k]) for k in backbone)
    torch.manual_seed(42)  # the head as initialised by the run (seed 42), before training
    initial = create_model("m4cea_tiny", head="classification", n_outputs=2, n_patches=5).state_dict()
    assert not torch.equal(best["head.weight"], initial["head.weight"])


def test_subject_wise_multiclass_with_balancing(tmp_path):
    """hie_grading per recording, 8 subjects (2 per grade): subject-wise, balanced sampler and weights."""
    grades = ["normal_mild", "moderate", "severe", "inactive"]
    data = make_labelled_data(
        tmp_path / "hie", [(f"s{i}", f"r{i}", [grades[i % 4]] * 3) for i in range(8)], classes=grades
    )
    results = main(
        _argv(
            data,
            tmp_path / "runs",
            "split.val_fraction=0.25",
            "split.test_fraction=0.25",
            "data.sampler=balanced",
            "loss.class_weights=balanced",
            "loss.label_smoothing=0.1",
            task="hie_grading",
            epochs=2,
            base=SYNTH,
        )
    )
    assert list(results["test"]) == ["balanced_accuracy", "cohen_kappa", "weighted_f1", "loss"]
    assert results["n_units"] == {"val": 2, "test": 2}  # recordings
    assert np.array(results["confusion_matrix"]["test"]).shape == (4, 4)
    split = results["split"]
    assert split["seed"] == 0 and [len(split[n]["subjects"]) for n in ("train", "val", "test")] == [4, 2, 2]
    assert not set(split["train"]["subjects"]) & set(split["test"]["subjects"])
    assert len(split["test"]["labels"]) == 2  # two grades in test (strata spread over the splits)
    run_dir = tmp_path / "runs/hie_grading/seed42"
    assert (run_dir / "confusion_matrix.png").exists() and not (run_dir / "roc.png").exists()


@pytest.mark.slow  # two torchrun processes: tens of seconds
def test_torchrun_two_processes_equal_one_process(synth, tmp_path):
    """torchrun --nproc_per_node=2 (gloo), micro-batches of 2 per rank = 1 process, 2 micro-batches of 2."""
    common = ["model.drop_path_rate=0.0"]  # drop-path draws differ between ranks (seed + rank)
    main(_argv(synth, tmp_path / "one", *common, epochs=2, base=SYNTH))
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node=2",
        str(ROOT / "finetune" / "finetune_main.py"),
        *_argv(synth, tmp_path / "two", *common, epochs=2, base=SYNTH),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("epoch 2/2: train loss") == 1  # logged by rank 0 only
    assert "on cpu x 2;" in done.stderr
    one = _read_json(tmp_path / "one/onset_detection/seed42/results.json")
    two = _read_json(tmp_path / "two/onset_detection/seed42/results.json")
    assert two["training"]["world_size"] == 2
    assert two["training"]["optimizer_steps"] == one["training"]["optimizer_steps"] == 2 * 4
    assert two["split"] == one["split"]
    for name in ("val", "test"):
        assert two[name]["loss"] == pytest.approx(one[name]["loss"], rel=1e-5)
    a = load_checkpoint(tmp_path / "one/onset_detection/seed42/checkpoint-best.pth")["model"]
    b = load_checkpoint(tmp_path / "two/onset_detection/seed42/checkpoint-best.pth")["model"]
    torch.manual_seed(42)
    initial = create_model("m4cea_tiny", head="classification", n_outputs=2, n_patches=5).state_dict()
    moved = max((a[k] - initial[k]).abs().max().item() for k in a)
    differ = max((a[k] - b[k]).abs().max().item() for k in a)
    # Measured: moved 3.4e-3, differ 5.7e-7. Float32 sums in another order (DDP's all-reduce vs accumulation)
    # differ slightly and AdamW (g / sqrt(v)) can amplify that on near-zero gradients; a lost micro-batch or a
    # wrong average would move most weights by ~lr (7.8e-4 here), over 100 times the tolerance.
    assert moved > 1e-3 and differ < 5e-6, (moved, differ)


# Bad input: exit status 2 and a message that names the problem ----------------------------------------


def _fails(argv, capsys, *fragments):
    assert cli(argv) == 2
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_unknown_task(chbmit, tmp_path, capsys):
    _fails(
        _argv(chbmit, tmp_path, task="onset"),
        capsys,
        "Invalid value for the 'task' parameter",
        "'hie_grading'",
        "but got 'onset'",
    )


def test_labels_outside_the_task(chbmit, tmp_path, capsys):
    _fails(
        _argv(chbmit, tmp_path, task="artifact_detection"),
        capsys,
        "Invalid labels for the task 'artifact_detection'",
        "'background', 'seizure'",
        "Allowed values are ['clean', 'artefact']",
    )


def test_data_without_labels(tmp_path, capsys):
    data = make_labelled_data(tmp_path / "unlabelled", [(f"s{i}", f"r{i}", [None, None]) for i in range(3)])
    _fails(
        _argv(data, tmp_path, base=SYNTH),
        capsys,
        "Invalid labels for the task 'onset_detection': None in 6 of 6 rows",
        "unlabelled windows (None) cannot be used",
    )


def test_single_class_test_split_gives_undefined_auroc_not_a_crash(tmp_path):
    """Every subject holds one class: the test subject cannot score AUROC/AUPRC (NaN -> null, with why)."""
    recordings = [(f"s{i}", f"r{i}", [("background", "seizure")[i % 2]] * 4) for i in range(6)]
    data = make_labelled_data(tmp_path / "one_class", recordings)
    main(_argv(data, tmp_path / "runs", epochs=1, base=SYNTH))
    run_dir = tmp_path / "runs/onset_detection/seed42"
    results = _read_json(run_dir / "results.json")
    assert results["n_units"]["test"] == 4 and len(results["split"]["test"]["labels"]) == 1
    assert results["test"]["auroc"] is None and results["test"]["auprc"] is None
    assert "only one class" in results["undefined"]["test"]["auroc"]
    assert 0 <= results["test"]["balanced_accuracy"] <= 1
    assert (run_dir / "confusion_matrix.png").exists() and not (run_dir / "roc.png").exists()
    assert "No ROC figure" in (run_dir / "log.txt").read_text()


def test_missing_data(tmp_path, capsys):
    _fails(_argv(tmp_path / "nowhere", tmp_path), capsys, "Data folder not found", "nowhere")
    # The design card's command without data: say which flag is missing.
    _fails(
        ["--task", "hie_grading", "--seed", "42", "--output", str(tmp_path)],
        capsys,
        "No data for the task 'hie_grading': pass --data DIR",
    )
    (tmp_path / "empty").mkdir()
    _fails(_argv(tmp_path / "empty", tmp_path), capsys, "No manifest at")


def test_checkpoint_of_another_architecture(chbmit, tiny_checkpoint, tmp_path, capsys):
    argv = _argv(chbmit, tmp_path, pretrained=tiny_checkpoint)
    argv[argv.index("model.name=m4cea_tiny")] = "model.name=m4cea_base"
    _fails(
        argv,
        capsys,
        "does not fit the model",
        "shape mismatch",
        "the checkpoint has 2 transformer blocks, the model 12",
        "--set model.name=m4cea_tiny",
    )
    _fails(
        _argv(chbmit, tmp_path, pretrained=tmp_path / "missing.pth"),
        capsys,
        "Pretrained checkpoint not found",
    )
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    _fails(
        _argv(chbmit, tmp_path, pretrained=tmp_path / "junk.pth"),
        capsys,
        "Cannot read the pretrained checkpoint",
    )


def test_config_errors(chbmit, tmp_path, capsys):
    _fails(_argv(chbmit, tmp_path, "optim.foo=1"), capsys, "Unknown config key 'optim.foo'")
    _fails(
        _argv(chbmit, tmp_path, "optim.epochs=two"), capsys, "Invalid type for the config key 'optim.epochs'"
    )
    _fails(_argv(chbmit, tmp_path, "loss.class_weights=inverse"), capsys, "'loss.class_weights'", "'inverse'")
    _fails(
        _argv(chbmit, tmp_path, "optim.batch_size=6", "optim.micro_batch_size=4"),
        capsys,
        "optim.batch_size=6 cannot be reached",
    )
    _fails(
        _argv(chbmit, tmp_path, "optim.batch_size=16", "optim.micro_batch_size=16"),
        capsys,
        "The training split holds 11 windows, fewer than one optimiser step of optim.batch_size=16",
    )
    _fails(_argv(chbmit, tmp_path, "model.n_patches=10"), capsys, "n_times=[4000]", "expects n_times=2000")


def test_too_few_subjects_for_a_subject_wise_split(chbmit, tmp_path, capsys):
    _fails(
        _argv(chbmit, tmp_path, "split.protocol=subject_wise"),
        capsys,
        "Cannot split 1 subjects into train, val and test",
        "at least 3 subjects",
    )


def test_finished_run_is_refused_unless_overwrite(real_run, chbmit, tiny_checkpoint, runs, capsys, tmp_path):
    run_dir, _ = real_run
    _fails(
        _argv(chbmit, runs, pretrained=tiny_checkpoint), capsys, "already holds a finished run", "--overwrite"
    )
    assert (run_dir / "results.json").exists()
    # --overwrite replaces it (here in a copy, with one epoch).
    shutil.copytree(runs / "onset_detection", tmp_path / "onset_detection")
    results = main(_argv(chbmit, tmp_path, epochs=1, extra=["--overwrite"]))
    assert results["training"]["epochs_run"] == 1
    assert len(JsonLinesWriter.read(tmp_path / "onset_detection/seed42/metrics.jsonl")) == 1


@pytest.mark.slow  # the shell script sets up its environment, then fine-tunes and tabulates
def test_reproduce_tables_script(real_run, chbmit, tiny_checkpoint, tmp_path):
    """Finished runs are kept, the missing seed is run, tasks without data are skipped, a braindecode model
    trains from scratch, the ensemble of the models' runs is fitted where both finished, then the tables:
    the first model's and one row per task and variant, the ensemble's baselines included."""
    run_dir, _ = real_run
    data_root = tmp_path / "data"
    data_root.mkdir()
    (data_root / "onset_detection").symlink_to(chbmit, target_is_directory=True)
    runs_dir = tmp_path / "runs"
    done_seeds = {
        "m4cea_tiny": (42, 2024, 3407, 4399),
        "m4cea_tiny-random_masking": (42, 2024, 3407, 4399, 114514),
        "braindecode.EEGNet": (42, 2024, 3407, 4399),
    }
    for variant, seeds in done_seeds.items():  # finished runs: copies of the seed-42 results
        for seed in seeds:
            (runs_dir / variant / "onset_detection" / f"seed{seed}").mkdir(parents=True)
            shutil.copy(run_dir / "results.json", runs_dir / variant / "onset_detection" / f"seed{seed}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = str(ROOT / "scripts" / "reproduce_tables.sh")
    options = ["--models", "m4cea_tiny,braindecode.EEGNet", "--ensemble"]
    options += ["--random-masking-pretrained", str(tiny_checkpoint)]
    cmd = ["bash", script, *options, str(tiny_checkpoint), str(data_root), str(runs_dir), "--epochs", "1"]
    cmd += ["--set", *(o for o in REAL if not o.startswith("model.name="))]  # each variant names its model
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "== m4cea_tiny, onset_detection, seed 42: already done" in done.stdout
    assert "== m4cea_tiny, onset_detection, seed 114514\n" in done.stdout
    assert "== m4cea_tiny-random_masking, onset_detection, seed 114514: already done" in done.stdout
    assert "== m4cea_tiny-no_tie: skipped, no checkpoint (--no-tie-pretrained FILE)" in done.stdout
    assert "== m4cea_tiny, hie_grading: skipped, no data" in done.stdout
    assert done.stdout.count("skipped, no data") == 24  # 3 variants x the 8 tasks without data
    assert "== braindecode.EEGNet, onset_detection, seed 114514\n" in done.stdout
    for seed in (42, 2024, 3407, 4399):  # copied results.json, no checkpoint: not a member run
        assert f"== ensemble, onset_detection, seed {seed}: skipped, member runs not finished" in done.stdout
    assert "== ensemble, onset_detection, seed 114514\n" in done.stdout
    eegnet = _read_json(runs_dir / "braindecode.EEGNet/onset_detection/seed114514/results.json")
    assert (
        eegnet["config"]["model"]["name"] == "braindecode.EEGNet"
        and eegnet["config"]["model"]["pretrained"] is None
    )
    ensemble = _read_json(runs_dir / "ensemble/onset_detection/seed114514/results.json")
    assert [m["model"] for m in ensemble["members"]] == ["m4cea_tiny", "braindecode.EEGNet"]
    assert ensemble["baselines"]["best_single"]["model"] in ("m4cea_tiny", "braindecode.EEGNet")
    new = _read_json(runs_dir / "m4cea_tiny" / "onset_detection" / "seed114514" / "results.json")
    assert new["seed"] == 114514 and new["training"]["epochs_run"] == 1
    table = {row["task"]: row for row in _read_csv(runs_dir / "table_main.csv")}
    assert table["onset_detection"]["seeds"] == "42 2024 3407 4399 114514"
    assert table["onset_detection"]["missing_seeds"] == "" and table["sleep_staging"]["status"] == "missing"
    assert "| onset_detection | 5 |" in done.stdout
    compared = _read_csv(runs_dir / "table_comparison.csv")
    onset = sorted(row["variant"] for row in compared if row["task"] == "onset_detection")
    assert onset == sorted(
        [
            "m4cea_tiny",
            "m4cea_tiny-random_masking",
            "braindecode.EEGNet",
            "ensemble",
            "ensemble: uniform average",
            "ensemble: best member",
        ]
    )
    uniform = next(row for row in compared if row["variant"] == "ensemble: uniform average")
    assert uniform["seeds"] == "114514" and float(uniform["balanced_accuracy_mean"]) == pytest.approx(
        ensemble["baselines"]["uniform"]["test"]["balanced_accuracy"]
    )
    usage = subprocess.run(
        ["bash", script, str(tiny_checkpoint)], capture_output=True, text=True, env=env, timeout=60
    )
    assert usage.returncode == 2 and "usage: bash scripts/reproduce_tables.sh [--models LIST]" in usage.stderr
    labram = subprocess.run(
        ["bash", script, str(tiny_checkpoint), str(data_root), str(runs_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert labram.returncode == 2 and "labram_base needs --labram-pretrained FILE" in labram.stderr
    alone = subprocess.run(
        [
            "bash",
            script,
            "--models",
            "m4cea_tiny",
            "--ensemble",
            str(tiny_checkpoint),
            str(data_root),
            str(runs_dir),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert alone.returncode == 2 and "--ensemble needs two or more models in --models" in alone.stderr


def test_official_split_from_the_data_folders_split_csv(tmp_path, capsys):
    """split.protocol=official takes the recording -> split assignment that dataset adapters write."""
    data = make_labelled_data(
        tmp_path / "data", [(f"s{i}", f"r{i}", ["background", "seizure"] * 2) for i in range(5)]
    )
    argv = _argv(
        data, tmp_path / "runs", "split.protocol=official", task="onset_detection", epochs=1, base=SYNTH
    )
    assert cli(argv) == 2
    assert "split.protocol=official needs" in capsys.readouterr().err
    (data / "split.csv").write_text(
        "recording,split\nr0,train\nr1,train\nr2,val\nr3,test\nr4,test\nr9,test\n"
    )
    results = main(argv)
    split = results["split"]
    assert [sorted(split[name]["recordings"]) for name in ("train", "val", "test")] == [
        ["r0", "r1"],
        ["r2"],
        ["r3", "r4"],
    ]


def test_a_rerun_removes_the_temporary_checkpoint_of_a_killed_run(synth, tmp_path):
    run_dir = tmp_path / "runs" / "onset_detection" / "seed42"
    run_dir.mkdir(parents=True)
    stale = run_dir / ".checkpoint-best.pth.k1ll3d.tmp"  # what atomic_write leaves when killed mid-save
    stale.write_bytes(b"PK\x03\x04 half a checkpoint")
    foreign = run_dir / "notes.txt"  # not a temporary of this run: kept
    foreign.write_text("mine")
    results = main(_argv(synth, tmp_path / "runs", epochs=1, base=SYNTH))
    assert results["training"]["epochs_run"] == 1
    assert not stale.exists() and foreign.read_text() == "mine"
    assert not list(run_dir.glob(".*.tmp"))


def test_official_split_with_a_child_in_two_splits_stops_unless_allowed(tmp_path, capsys):
    """Issue #11: a split.csv sending one child's recordings to train and test is refused (exit 2)."""
    recordings = [("s0", "r0", ["background", "seizure"] * 2), ("s0", "r0b", ["background", "seizure"] * 2)]
    recordings += [(f"s{i}", f"r{i}", ["background", "seizure"] * 2) for i in range(1, 4)]
    data = make_labelled_data(tmp_path / "data", recordings)
    (data / "split.csv").write_text("recording,split\nr0,train\nr0b,test\nr1,train\nr2,val\nr3,test\n")
    argv = _argv(
        data, tmp_path / "runs", "split.protocol=official", task="onset_detection", epochs=1, base=SYNTH
    )
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert "puts 1 subject(s) in more than one split" in err and "s0 in train and test" in err
    results = main([*argv, "--set", "split.allow_subject_overlap=true"])
    assert results["split"]["subject_overlap"] == {"s0": ["train", "test"]}
    assert results["warnings"][-1] == (
        "Subjects in more than one split (split.allow_subject_overlap): s0 in train and test."
    )
    assert results["n"]["test"]["subjects"] == 2 and results["n"]["test"]["recordings"] == 2
