"""LaBraM through the fine-tuning entry point: the same windows as M4CEA, adapted to 200 Hz and uV / 100,
from scratch, from an official-format checkpoint (with ``args``) and from ours, layer decay by the model's
layer ids, and prediction on a LaBraM run."""

from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest
import torch
import yaml
from scipy.signal import resample_poly

from finetune.checkpoints import BEST_CHECKPOINT, build_model, load_pretrained
from finetune.data import FinetuneDataset
from finetune.ensemble_members import load_member, member_outputs
from finetune.finetune_main import main
from finetune.predict_config import load_predict_config
from finetune.predictor import Predictor, load_finetuned
from finetune.run import build_optimizer
from models import DOUBLE_BANANA, create_model, get_input_contract, load_official_state_dict
from preprocess.segments import read_manifest
from runtime.config import CONFIG_DIR
from runtime.distributed import DistributedContext
from tasks import get_task, load_task_config
from tests.finetune.labelled_data import make_labelled_data, save_pretrain_checkpoint
from tests.helpers import shared_path

ONSET = get_task("onset_detection")
RECIPE = CONFIG_DIR / "finetune" / "recipes" / "labram.yaml"
TINY = [
    "model.name=labram_tiny",
    "data.num_workers=0",
    "optim.batch_size=4",
    "optim.micro_batch_size=4",
    "optim.warmup_epochs=0",
    "logging.log_every=1",
    "logging.tensorboard=false",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """6 subjects, 4 windows each of 4 s at 1000 Hz in the double banana (the paper's preprocessing)."""
    recordings = [(f"s{i}", f"r{i}", ["background", "background", "seizure", "seizure"]) for i in range(6)]
    return make_labelled_data(
        tmp_path_factory.mktemp("labram"), recordings, n_times=4000, ch_names=DOUBLE_BANANA
    )


def _official_checkpoint(path, seed=0):
    """A random masked-modelling LaBraM saved as the released labram-base.pth is: student.* + lm_head,
    the unused student.lm_head and projection_head, epoch, optimizer state and an argparse ``args``."""
    torch.manual_seed(seed)
    pretrain = create_model("labram_tiny", head="pretrain")
    state = {}
    for key, value in pretrain.state_dict().items():
        state[key if key.startswith("lm_head.") else f"student.{key}"] = value
        if key.startswith("lm_head."):
            state[f"student.{key}"] = torch.zeros_like(value)
    state["projection_head.0.weight"] = torch.zeros(8, 8)
    args = argparse.Namespace(model="labram_tiny", lr=5e-4, layer_scale_init_value=0.1, seed=0)
    torch.save({"model": state, "epoch": 49, "args": args, "optimizer": {"state": {}}}, path)
    return pretrain


def _argv(data, output, *overrides, epochs=2, pretrained=None, config=None):
    argv = ["--task", "onset_detection", "--seed", "42", "--data", str(data), "--output", str(output)]
    argv += ["--epochs", str(epochs)]
    if config is not None:
        argv += ["--config", str(config)]
    if pretrained is not None:
        argv += ["--pretrained", str(pretrained)]
    return [*argv, "--set", *TINY, *overrides]


@pytest.fixture(scope="module")
def scratch_run(data, tmp_path_factory):
    output = tmp_path_factory.mktemp("runs")
    results = main(_argv(data, output, config=RECIPE))
    return output / "onset_detection" / "seed42", results


def test_labram_fine_tunes_from_scratch_on_the_stored_windows(scratch_run):
    run_dir, results = scratch_run
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["name"] == "labram_tiny"
    assert config["model"]["ch_names"] == list(DOUBLE_BANANA)  # the windows' names, kept for prediction
    # the recipe's values (configs/finetune/recipes/labram.yaml), epochs from the command line
    optim = config["optim"]
    assert (optim["layer_decay"], optim["weight_decay"], optim["epochs"]) == (0.65, 0.05, 2)
    assert config["loss"]["label_smoothing"] == 0.1
    assert optim["base_lr"] * optim["batch_size"] / 256 == pytest.approx(5e-4 * 4 / 64)
    checkpoint = torch.load(run_dir / BEST_CHECKPOINT, weights_only=True)
    assert checkpoint["model"]["head.weight"].shape == (2, 200)
    assert 0.0 <= results["test"]["balanced_accuracy"] <= 1.0


def test_official_checkpoint_with_args_loads_into_the_classifier(data, tmp_path):
    path = tmp_path / "labram-base.pth"
    pretrain = _official_checkpoint(path)
    cfg = load_task_config("onset_detection", overrides=["model.name=labram_tiny"])
    model = build_model(cfg, ONSET, DOUBLE_BANANA)
    info = load_pretrained(model, path)
    assert info["missing_keys"] == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    expected = pretrain.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith(("head.", "fc_norm.")):
            torch.testing.assert_close(value, expected[key], rtol=0, atol=0)
    # the same weights through the strict official loader
    reference = build_model(cfg, ONSET, DOUBLE_BANANA)
    official = {f"student.{k}": v for k, v in expected.items()}
    load_official_state_dict(reference, official, allow_missing_head=True)
    torch.testing.assert_close(reference.blocks[0].attn.qkv.weight, model.blocks[0].attn.qkv.weight)


def test_fine_tuning_from_official_and_own_checkpoints(data, tmp_path):
    official = tmp_path / "labram-base.pth"
    _official_checkpoint(official)
    own = save_pretrain_checkpoint(tmp_path / "checkpoint-0001.pth", name="labram_tiny")
    for k, path in enumerate((official, own)):
        results = main(_argv(data, tmp_path / f"runs{k}", epochs=1, pretrained=path))
        loaded = results["checkpoint"]["pretrained"]
        assert loaded["missing_keys"] == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]


def test_layer_decay_follows_the_models_layer_ids():
    """timm's groups give each parameter 0.65 ** (depth + 1 - LaBraM.get_layer_id(name)), as the official
    LayerDecayValueAssigner; no weight decay on biases, norms, pos/time tables and the CLS token."""
    cfg = load_task_config("onset_detection", config=RECIPE, overrides=["model.name=labram_tiny"])
    model = build_model(cfg, ONSET)
    optimizer = build_optimizer(model, cfg, torch.device("cpu"))
    depth = model.depth
    seen = 0
    for group in optimizer.param_groups:
        for param in group["params"]:
            name = next(n for n, p in model.named_parameters() if p is param)
            assert group["lr_scale"] == pytest.approx(0.65 ** (depth + 1 - model.get_layer_id(name))), name
            no_decay = param.ndim <= 1 or name in model.no_weight_decay()
            assert group["weight_decay"] == (0.0 if no_decay else 0.05), name
            seen += 1
    assert seen == sum(1 for p in model.parameters() if p.requires_grad)


def test_predictor_adapts_windows_as_training(scratch_run):
    run_dir, _ = scratch_run
    finetuned = load_finetuned(run_dir)
    predictor = Predictor(finetuned, load_predict_config(overrides=["num_threads=1", "amp_cpu=fp32"]))
    assert (predictor.adapter.up, predictor.adapter.down, predictor.adapter.n_times) == (1, 5, 800)
    windows = np.random.default_rng(0).normal(scale=30.0, size=(3, 16, 4000)).astype(np.float32)
    probabilities = predictor.classify(windows)
    x = torch.from_numpy(resample_poly(windows, 1, 5, axis=-1).astype(np.float32) / 100)
    with torch.no_grad():
        expected = torch.softmax(finetuned.model.cpu()(x), dim=-1).numpy()
    np.testing.assert_allclose(probabilities, expected, rtol=1e-4, atol=1e-6)


def test_labram_preprocessing_config_makes_200_hz_windows_the_loader_takes_as_they_are(tmp_path):
    """configs/preprocess/labram.yaml on the real CHB-MIT crop: 0.1-75 Hz, 50 Hz notch, 200 Hz, 4-s windows
    of 1-s patches with one MFDE weight per LaBraM token; the LaBraM loader does not resample them."""
    from preprocess.batch import run_preprocessing
    from preprocess.segments import load_segment, read_manifest
    from runtime.config import load_config

    edf = shared_path("data", "chbmit", "edf") / "chb01_03_nonseizure_0-41s.edf"
    config = load_config(
        CONFIG_DIR / "preprocess" / "m4cea.yaml",
        CONFIG_DIR / "preprocess" / "labram.yaml",
        [],
    )
    assert (config["l_freq"], config["h_freq"], config["notch_freq"], config["sfreq"]) == (
        0.1,
        75.0,
        50.0,
        200.0,
    )
    run_preprocessing([edf], tmp_path, config, progress=False)
    rows = read_manifest(tmp_path)
    assert len(rows) == 10 and {(r["n_times"], r["sfreq"]) for r in rows} == {(800, 200.0)}
    segment = load_segment(tmp_path / rows[0]["path"])
    assert segment["mfde"].shape == (16 * 4,) and segment["ch_names"][0].upper() == "FP1-F7"
    rows = [{**row, "label": "background"} for row in rows]  # no events given: unlabelled windows
    dataset = FinetuneDataset(tmp_path, rows, ONSET, 16, None, get_input_contract("labram_base"))
    assert dataset.adapter.identity_rate and dataset.n_times == 800
    np.testing.assert_allclose(dataset[0][0].numpy(), segment["data"] / 100, rtol=1e-6)


def test_predict_entry_point_on_a_labram_run(scratch_run, tmp_path):
    """finetune/predict.py on the real CHB-MIT crop with the LaBraM run: every 4-s window classified from
    the windows adapted to 200 Hz in uV / 100, as in training."""
    import csv

    from finetune.predict import cli

    run_dir, _ = scratch_run
    edf = shared_path("data", "chbmit", "edf") / "chb01_03_seizure_2995-3036s.edf"
    argv = ["--checkpoint", str(run_dir), "--input", str(edf), "--output", str(tmp_path), "--quiet"]
    assert cli([*argv, "--set", "num_threads=1", "amp_cpu=fp32"]) == 0
    with open(tmp_path / edf.stem / f"{edf.stem}_probabilities.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and [float(r["start_s"]) for r in rows[:2]] == [0.0, 4.0]
    p = np.array([[float(r["p_background"]), float(r["p_seizure"])] for r in rows])
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)


def test_ensemble_member_reads_a_labram_run_as_its_run_did(scratch_run, data):
    """An ensemble member that is a LaBraM run gets its windows adapted as in training (200 Hz, uV / 100):
    its test probabilities are those of the run's own predictions.csv (was: AttributeError, no n_times)."""
    run_dir, _ = scratch_run
    with open(run_dir / "predictions.csv", newline="") as f:
        test = [row for row in csv.DictReader(f) if row["split"] == "test"]
    by_path = {row["path"]: row for row in read_manifest(data)}
    rows = [by_path[row["path"]] for row in test]
    outputs = member_outputs(load_member(run_dir), data, {"test": rows}, ONSET, DistributedContext())
    expected = np.array([[float(row[f"p_{c}"]) for c in ONSET.classes] for row in test])
    np.testing.assert_allclose(outputs["test"]["probabilities"], expected, atol=1e-5)
