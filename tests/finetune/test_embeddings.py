"""Embeddings of a tiny pretrained model, the embedding-space figure and linear probes."""

import json

import h5py
import numpy as np
import pytest
import torch

from finetune.embed import main as embed_main
from finetune.embeddings import embed_folder, embedding_space, load_encoder, probe, read_embeddings
from finetune.probe import main as probe_main
from models import convert_official_state_dict
from preprocess.segments import load_window, read_manifest, save_shard, scale_window, write_manifest
from tests.finetune.labelled_data import make_labelled_data, save_pretrain_checkpoint
from tests.helpers import shared_path

# 8 subjects x 1 recording x 6 windows of 1 s; background (10 Hz) and seizure (3 Hz) alternate
RECORDINGS = [(f"s{k}", f"r{k}", ["background", "seizure"] * 3) for k in range(8)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_labelled_data(tmp_path_factory.mktemp("data"), RECORDINGS, n_times=1000)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_pretrain_checkpoint(tmp_path_factory.mktemp("ckpt") / "pretrain.pth", n_patches=5)


@pytest.fixture(scope="module")
def embedded(data, checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("embed")
    embed_folder(checkpoint, data, out, tokens=True, batch_size=16, progress=False)
    return out


def test_embeddings_are_the_backbone_mean_aligned_with_the_manifest(data, checkpoint, embedded):
    rows = read_manifest(data)
    embeddings, stored = read_embeddings(embedded / "embeddings.h5")
    assert embeddings.shape == (48, 64) and embeddings.dtype == np.float32
    for key in ("path", "subject", "recording", "start_s", "label"):
        assert [r[key] for r in stored] == [r[key] for r in rows]
    model, name = load_encoder(checkpoint)
    assert name == "m4cea_tiny"
    x = np.stack([scale_window(load_window(data, rows[i])["data"]) for i in (0, 7, 47)])
    with torch.no_grad():
        features = model.forward_features(torch.from_numpy(x))
    np.testing.assert_allclose(embeddings[[0, 7, 47]], features.mean(1).numpy(), rtol=1e-5, atol=1e-6)
    with h5py.File(embedded / "embeddings.h5") as f:
        assert f["tokens"].shape == (48, 80, 64)
        np.testing.assert_allclose(f["tokens"][7], features[1].numpy(), rtol=1e-5, atol=1e-6)
    assert not list(embedded.glob(".*.tmp"))


@pytest.mark.parametrize(
    "projection",
    ["pca", pytest.param("umap", marks=pytest.mark.slow)],  # umap: a minute of numba compiling
)
def test_embedding_space_figure_and_separation(embedded, tmp_path, projection):
    scores = embedding_space(embedded / "embeddings.h5", tmp_path, n_neighbors=5, projection=projection)
    assert (tmp_path / "embedding_space.png").stat().st_size > 0
    assert json.loads((tmp_path / "separation.json").read_text()) == scores
    assert scores["n_windows"] == 48 and scores["n_labels"] == 2 and scores["n_subjects"] == 8
    # the classes differ in rhythm, the subjects in nothing: a random backbone still separates classes
    assert scores["silhouette_label"] > scores["silhouette_subject"]


def test_probe_separates_the_synthetic_classes_and_writes_fine_tuning_results(embedded, tmp_path):
    summary = probe(embedded / "embeddings.h5", "onset_detection", 42, tmp_path)
    results = json.loads((tmp_path / "onset_detection" / "seed42" / "results.json").read_text())
    assert results["task"] == "onset_detection" and results["seed"] == 42
    assert results["test"]["balanced_accuracy"] == 1.0 == summary["test"]["balanced_accuracy"]
    assert results["test"]["auroc"] == 1.0
    assert set(results) >= {"test", "val", "confusion_matrix", "n_units", "split", "config"}
    # subject-wise: no subject in two splits
    split = results["split"]
    assert split["protocol"] == "subject_wise"


def test_entry_points(data, checkpoint, tmp_path, capsys):
    out = tmp_path / "embed"
    assert embed_main(["--checkpoint", str(checkpoint), "--data", str(data), "--output", str(out),
                       "--quiet", "--projection", "pca"]) == 0  # fmt: skip
    assert (out / "embeddings.h5").is_file() and (out / "embedding_space.png").is_file()
    runs = tmp_path / "runs"
    assert probe_main(["--embeddings", str(out / "embeddings.h5"), "--task", "onset_detection",
                       "--seed", "7", "--output", str(runs)]) == 0  # fmt: skip
    assert (runs / "onset_detection" / "seed7" / "results.json").is_file()
    assert embed_main(["--checkpoint", str(tmp_path / "none.pth"), "--data", str(data),
                       "--output", str(out)]) == 2  # fmt: skip
    assert "none.pth" in capsys.readouterr().err


def test_official_m4cea_state_dict_gives_the_official_features(tmp_path):
    reference = torch.load(
        shared_path("reference", "official_m4cea_reference_seed0_depth2.pt"), weights_only=True
    )
    torch.save(reference["finetune_state_dict"], tmp_path / "official.pth")
    model, name = load_encoder(tmp_path / "official.pth")
    assert name == "m4cea_base" and len(model.blocks) == 2
    with torch.no_grad():
        pooled = model.forward_features(reference["input"]).mean(1)
    head = {
        k: v for k, v in convert_official_state_dict(reference["finetune_state_dict"]).items() if "head" in k
    }
    logits = torch.nn.functional.elu(pooled) @ head["head.weight"].T + head["head.bias"]
    torch.testing.assert_close(logits, reference["finetune_logits"], rtol=1e-4, atol=1e-5)


def test_official_labram_state_dict_gives_the_official_features(tmp_path):
    reference = torch.load(
        shared_path("reference", "official_labram_reference_seed0_depth2.pt"), weights_only=True
    )
    torch.save(reference["finetune_state_dict"], tmp_path / "labram.pth")
    model, name = load_encoder(tmp_path / "labram.pth", ch_names=list(reference["ch_names"]))
    assert name == "labram_base" and len(model.blocks) == 2
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(reference["input"]), pre_logits=True)
    torch.testing.assert_close(pooled, reference["finetune_features"], rtol=1e-4, atol=1e-5)


def test_embeddings_of_shards_equal_those_of_pickles(data, checkpoint, embedded, tmp_path):
    rows = read_manifest(data)
    sharded = []
    for first in range(0, len(rows), 20):  # shards of 20 windows across recordings: any grouping reads
        name = f"segments/shard{first // 20}.h5"
        (tmp_path / "shards" / name).parent.mkdir(parents=True, exist_ok=True)
        part = rows[first : first + 20]
        save_shard([load_window(data, row) for row in part], tmp_path / "shards" / name)
        sharded += [{**row, "path": name, "shard_index": i} for i, row in enumerate(part)]
    write_manifest(sharded, tmp_path / "shards" / "manifest.csv")
    embed_folder(checkpoint, tmp_path / "shards", tmp_path / "out", batch_size=16, progress=False)
    got, got_rows = read_embeddings(tmp_path / "out" / "embeddings.h5")
    want, _ = read_embeddings(embedded / "embeddings.h5")
    np.testing.assert_array_equal(got, want)
    assert [(r["path"], r["shard_index"]) for r in got_rows] == [
        (r["path"], r["shard_index"]) for r in sharded
    ]


def test_probe_and_embed_bad_input(embedded, data, tmp_path):
    with pytest.raises(ValueError, match="Invalid labels for the task 'sleep_staging'"):
        probe(embedded / "embeddings.h5", "sleep_staging", 42, tmp_path)
    with pytest.raises(FileNotFoundError, match="Embeddings not found"):
        probe(tmp_path / "none.h5", "onset_detection", 42, tmp_path)
    with pytest.raises(ValueError, match="projection"):
        embedding_space(embedded / "embeddings.h5", tmp_path, projection="tsne")
    assert not list(tmp_path.rglob("results.json"))
