"""finetune/predict.py on runs of every model family (braindecode models, hms_mobilenetv3), and linear probes
that train exactly the model's classifier: tiny synthetic cohorts of 1-s windows, 1-2 epochs."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging

import numpy as np
import pytest
import torch
import yaml

from finetune.checkpoints import PREPROCESS_DEFAULTS
from finetune.data import FinetuneDataset, build_eval_loader
from finetune.engine import evaluate
from finetune.finetune_main import main as finetune
from finetune.heads import apply_head_mode, head_prefixes, parameter_counts
from finetune.predict import cli
from finetune.predictor import load_finetuned
from models import DOUBLE_BANANA, create_model, get_input_contract
from preprocess.adapt import WindowAdapter
from preprocess.batch import run_preprocessing
from preprocess.segments import read_manifest, write_manifest
from preprocess.synthetic import CHBMIT_CHANNELS, synthetic_raw
from runtime.checkpoint import load_checkpoint
from runtime.config import load_config
from tasks import get_task
from tests.finetune.labelled_data import TINY_FINETUNE, make_labelled_data

HMS = get_task("harmful_brain_activity")
# The cohorts' preprocessing: 1-s windows (16 x 1000 samples at 1000 Hz), as make_labelled_data writes them.
PREPROCESS = ["window_s=1.0", "stride_s=1.0"]
# Tiny sizes of the braindecode classes (the tests check the plumbing, not the architectures).
ZOO_ARGS = {"EEGNet": "{F1: 4, D: 2, F2: 8}", "BIOT": "{embed_dim: 16, num_heads: 2, num_layers: 1}"}
RECORDING = "rec_raw"  # 8 s of synthetic EEG, CHB-MIT channels at 256 Hz: 8 windows of 1 s


def _with_preprocess_config(folder):
    """The cohort's ``config.yaml``, as preprocessing writes it (what the run records for predict)."""
    config = load_config(PREPROCESS_DEFAULTS, overrides=PREPROCESS)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def onset_cohort(tmp_path_factory):
    recordings = [(f"s{i}", f"r{i}", ["background", "background", "seizure", "seizure"]) for i in range(6)]
    folder = make_labelled_data(tmp_path_factory.mktemp("onset"), recordings, ch_names=DOUBLE_BANANA)
    return _with_preprocess_config(folder)


@pytest.fixture(scope="module")
def hms_cohort(tmp_path_factory):
    classes = ["seizure", "lpd", "gpd", "lrda", "grda"]
    recordings = [(f"s{i}", f"r{i}", [classes[(i + k) % 5] for k in range(4)]) for i in range(6)]
    folder = make_labelled_data(
        tmp_path_factory.mktemp("hms"), recordings, classes=HMS.classes, ch_names=DOUBLE_BANANA
    )
    rows = read_manifest(folder)
    for row in rows:  # votes: 70 % for the label, the rest on "other"
        row["label_probs"] = {row["label"]: 0.7, "other": 0.3}
    write_manifest(rows, folder / "manifest.csv")
    return _with_preprocess_config(folder)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A synthetic recording and its windows preprocessed as the training data (the fine-tuning loader's)."""
    folder = tmp_path_factory.mktemp("recording")
    path = folder / f"{RECORDING}.fif"
    synthetic_raw(CHBMIT_CHANNELS, duration_s=8.0, seed=11).save(path, verbose="error")
    windows = folder / "windows"
    run_preprocessing([path], windows, load_config(PREPROCESS_DEFAULTS, overrides=PREPROCESS), progress=False)
    return path, windows


def _finetune(task, cohort, output, *overrides, epochs=1):
    argv = [
        "--task", task, "--seed", "42", "--data", str(cohort), "--output", str(output),
        "--epochs", str(epochs), "--set", *TINY_FINETUNE, *overrides,
    ]  # fmt: skip
    results = finetune(argv)
    return output / task / "seed42", results


def _predict(run_dir, recording, output):
    argv = ["--checkpoint", str(run_dir), "--input", str(recording), "--output", str(output), "--quiet"]
    return cli([*argv, "--set", "num_threads=1", "amp_cpu=fp32"])


def _read_probabilities(folder, classes):
    with open(folder / f"{RECORDING}_probabilities.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["start_s", "end_s", *(f"p_{c}" for c in classes), "rejected"]
    starts = np.array([float(r["start_s"]) for r in rows])
    return starts, np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])


def _loader_probabilities(run_dir, windows):
    """Probabilities of the fine-tuned model on the recording's windows through the fine-tuning loader."""
    finetuned = load_finetuned(run_dir)
    model, task, cfg = finetuned.model, finetuned.task, finetuned.config
    rows = sorted(read_manifest(windows), key=lambda r: r["start_s"])
    for row in rows:
        row["label"] = task.classes[0]
    # as finetune.run builds it: a braindecode model's own contract, else the registry's
    adapter = WindowAdapter(model.contract, 1000.0, 1000) if hasattr(model, "contract") else None
    contract = None if adapter else get_input_contract(cfg["model"])
    n_times = 1000 if adapter else model.n_times
    dataset = FinetuneDataset(windows, rows, task, model.n_chans, n_times, contract, adapter=adapter)
    _, q = evaluate(model, build_eval_loader(dataset, batch_size=3), torch.device("cpu"))
    return np.array([r["start_s"] for r in rows]), q


@pytest.mark.parametrize(
    "name, overrides", [("EEGNet", ()), ("EEGNet", ("model.zoo_sfreq=250",)), ("BIOT", ())]
)
def test_predict_on_a_braindecode_run_equals_the_fine_tuning_loader(
    name, overrides, onset_cohort, recording, tmp_path
):
    """predict.py applies the model's own contract (its rate, as overridden, and scaling) as fine-tuning
    does: the same probabilities as the fine-tuning loader gives on the same windows."""
    pytest.importorskip("braindecode")
    run_dir, _ = _finetune(
        "onset_detection",
        onset_cohort,
        tmp_path / "runs",
        f"model.name=braindecode.{name}",
        f"model.zoo_args={ZOO_ARGS[name]}",
        *overrides,
    )
    assert _predict(run_dir, recording[0], tmp_path / "out") == 0
    folder = tmp_path / "out" / RECORDING
    starts, p = _read_probabilities(folder, ["background", "seizure"])
    assert starts.tolist() == [float(k) for k in range(8)]
    expected_starts, q = _loader_probabilities(run_dir, recording[1])
    assert expected_starts.tolist() == starts.tolist()
    np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)
    summary = json.loads((folder / f"{RECORDING}_summary.json").read_text())
    assert summary["model"]["name"] == f"braindecode.{name}"
    assert {f.name for f in folder.iterdir()} >= {
        f"{RECORDING}_{suffix}" for suffix in ("events.tsv", "annot.fif", "prediction.png", "summary.json")
    }


@pytest.fixture(scope="module")
def hms_run(hms_cohort, tmp_path_factory):
    """A linear probe of hms_mobilenetv3 on harmful_brain_activity (soft labels), one epoch."""
    return _finetune(
        "harmful_brain_activity",
        hms_cohort,
        tmp_path_factory.mktemp("hms_runs"),
        "model.name=hms_mobilenetv3",
        "model.n_patches=5",
        "head.mode=linear_probe",
        "split.val_fraction=0.34",
        "split.test_fraction=0.34",
    )


@pytest.fixture(scope="module")
def eegnet_probe_run(onset_cohort, tmp_path_factory):
    """A linear probe of braindecode's EEGNet (batch norm in its frozen part) on onset_detection."""
    pytest.importorskip("braindecode")
    return _finetune(
        "onset_detection",
        onset_cohort,
        tmp_path_factory.mktemp("eegnet_runs"),
        "model.name=braindecode.EEGNet",
        f"model.zoo_args={ZOO_ARGS['EEGNet']}",
        "head.mode=linear_probe",
    )


def test_predict_on_an_hms_run_writes_the_six_class_probabilities(
    hms_run, recording, tmp_path, caplog, monkeypatch
):
    """harmful_brain_activity with hms_mobilenetv3: every class's probability per window, no events."""
    import finetune.predict_outputs as predict_outputs

    run_dir, _ = hms_run
    plots = []
    plot_prediction = predict_outputs.plot_prediction

    def plot(*args, **kwargs):
        plots.append(kwargs)
        return plot_prediction(*args, **kwargs)

    monkeypatch.setattr(predict_outputs, "plot_prediction", plot)
    with caplog.at_level(logging.INFO, logger="finetune"):
        assert _predict(run_dir, recording[0], tmp_path / "out") == 0
    folder = tmp_path / "out" / RECORDING
    starts, p = _read_probabilities(folder, HMS.classes)
    assert p.shape == (8, 6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    expected_starts, q = _loader_probabilities(run_dir, recording[1])
    assert expected_starts.tolist() == starts.tolist()
    np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)
    # no positive class to make events of: no events files, a log line saying so; the rest as any task
    assert {f.name for f in folder.iterdir()} == {
        f"{RECORDING}_{suffix}" for suffix in ("probabilities.csv", "prediction.png", "summary.json")
    }
    assert any(
        "no events" in r.getMessage() and "harmful_brain_activity" in r.getMessage() for r in caplog.records
    )
    summary = json.loads((folder / f"{RECORDING}_summary.json").read_text())
    assert summary["task"]["classes"] == list(HMS.classes) and summary["events"] == []
    mean = dict(zip(HMS.classes, p.mean(axis=0), strict=True))
    assert summary["recording_class"]["probabilities"] == pytest.approx(mean)
    best = HMS.classes[int(np.argmax(p.mean(axis=0)))]
    assert summary["recording_class"]["class"] == best
    # the figure: every class's trace, no events, the class of highest mean probability in the title
    assert len(plots) == 1 and plots[0]["events"] == []
    assert f"highest mean probability {best} ({p.mean(axis=0).max():.2f})" in plots[0]["title"]


@pytest.mark.parametrize("run", ["hms_run", "eegnet_probe_run"])
def test_linear_probe_trains_only_the_classifier(run, request):
    """Every other weight and statistic (batch norm's) bit-identical after training; the classifier moved."""
    from finetune.checkpoints import build_model
    from runtime.seeding import seed_everything

    run_dir, results = request.getfixturevalue(run)
    checkpoint = load_checkpoint(run_dir / "checkpoint-best.pth")
    trained = checkpoint["model"]
    seed_everything(42)  # the run's initial weights
    initial = build_model(checkpoint["config"], get_task(checkpoint["config"]["task"]["name"]))
    (prefix,) = head_prefixes(initial)
    classifier = initial.get_classifier()
    n_classifier = sum(p.numel() for p in classifier.parameters())
    assert n_classifier > 0 and {f"{prefix}{k}" for k in classifier.state_dict()} <= set(trained)
    assert results["parameters"] == {
        "trainable": n_classifier,
        "total": sum(p.numel() for p in initial.parameters()),
    }
    frozen = [k for k in initial.state_dict() if not k.startswith(prefix)]
    assert len(frozen) > 10
    for key in frozen:
        assert torch.equal(trained[key], initial.state_dict()[key]), key
    moved = [not torch.equal(trained[f"{prefix}{k}"], v) for k, v in classifier.state_dict().items()]
    assert any(moved)


def test_every_family_names_its_classifier():
    """heads.head_prefixes is the module the model's get_classifier() returns, for every family."""
    models = {
        "m4cea_tiny": create_model("m4cea_tiny", head="classification", n_outputs=2),
        "labram_tiny": create_model("labram_tiny", head="classification", n_outputs=2),
        "hms_mobilenetv3": create_model("hms_mobilenetv3", head="classification", n_outputs=6),
    }
    expected = {"m4cea_tiny": "head.", "labram_tiny": "head.", "hms_mobilenetv3": "backbone.classifier."}
    if importlib.util.find_spec("braindecode"):
        models["braindecode.EEGNet"] = create_model(
            "braindecode.EEGNet", head="classification", n_outputs=2, n_chans=16, sfreq_in=1000.0,
            n_times_in=1000,
        )  # fmt: skip
        expected["braindecode.EEGNet"] = "model.final_layer."
    for name, model in models.items():
        assert head_prefixes(model) == (expected[name],), name
        apply_head_mode(model, {"head": {"mode": "linear_probe"}})
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == {f"{expected[name]}{n}" for n, _ in model.get_classifier().named_parameters()}
        assert parameter_counts(model)["trainable"] == sum(
            p.numel() for p in model.get_classifier().parameters()
        )


def test_the_compiled_path_runs_models_of_every_family(eegnet_probe_run, hms_run, monkeypatch):
    """compile=always casts the windows to the weights' dtype of any model (not only M4CEA's pos_embed)."""
    from finetune.predict_config import load_predict_config
    from finetune.predictor import Predictor

    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: model)  # the path, not inductor
    config = load_predict_config(overrides=["num_threads=1", "amp_cpu=fp32", "compile=always"])
    windows = np.random.default_rng(0).normal(0, 20, (3, 16, 1000)).astype(np.float32)
    for run_dir, _ in (eegnet_probe_run, hms_run):
        predictor = Predictor(load_finetuned(run_dir), config)
        compiled = predictor.classify(windows, compiled=True)
        assert not predictor._compile_failed
        np.testing.assert_allclose(compiled, predictor.classify(windows), rtol=1e-6, atol=1e-7)
