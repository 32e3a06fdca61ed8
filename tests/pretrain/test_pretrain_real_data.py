"""A short pretraining on windows preprocessed from real CHB-MIT recordings lowers the loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import create_model, get_input_contract, load_official_state_dict, patch_spectrum
from preprocess.preprocess_main import main as preprocess_main
from pretrain.data import PretrainDataset
from pretrain.engine import reconstruction_loss
from pretrain.masking import gumbel_topk_mask
from pretrain.pretrain_main import main as pretrain_main
from runtime.checkpoint import load_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[2]
CHBMIT = REPO_ROOT.parent / "shared" / "data" / "chbmit" / "edf"
TINY = REPO_ROOT / "configs" / "pretrain" / "m4cea_tiny.yaml"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHBMIT.is_dir(), reason=f"real recordings not found in {CHBMIT}"),
]

M4CEA = get_input_contract("m4cea_base")


def _fixed_mask_loss(model: torch.nn.Module, dataset: PretrainDataset) -> float:
    """Loss of ``model`` on every window, with the same knowledge-guided masks for every model."""
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    weights = torch.stack([dataset[i][1] for i in range(len(dataset))])
    mask = gumbel_topk_mask(weights, 160, generator=torch.Generator().manual_seed(123))
    model.eval()
    with torch.no_grad():
        pred = model(x, mask)
        loss_mag, loss_phase = reconstruction_loss(*pred, *patch_spectrum(x, model.patch_samples))
    return float(loss_mag + loss_phase)


def test_short_pretraining_on_real_windows_lowers_the_loss(tmp_path):
    data = tmp_path / "data"
    assert preprocess_main(["--input", str(CHBMIT), "--output", str(data), "--quiet"]) == 0
    dataset = PretrainDataset(data, M4CEA, n_chans=16, n_times=4000, n_tokens=320)
    assert len(dataset) == 20  # 2 crops of 41 s -> 10 windows of 4 s each

    history = pretrain_main(
        [
            "--config",
            str(TINY),
            "--data",
            str(data),
            "--output",
            str(tmp_path / "run"),
            "--epochs",
            "4",
            "--set",
            "optim.batch_size=4",
            "optim.micro_batch_size=4",
            "optim.warmup_epochs=0",
            "optim.base_lr=0.25",
            "logging.tensorboard=false",
            "checkpoint.save_last=false",
            "checkpoint.every_epochs=4",
            "loss.target_norm=none",  # the official loss, measured below
        ]
    )
    assert len(history) == 4

    torch.manual_seed(0)  # runtime.seed: the initial weights of the run
    initial = create_model("m4cea_tiny")
    trained = create_model("m4cea_tiny")
    load_official_state_dict(trained, load_checkpoint(tmp_path / "run" / "checkpoint-0004.pth")["model"])
    before, after = _fixed_mask_loss(initial, dataset), _fixed_mask_loss(trained, dataset)
    assert after < 0.95 * before, (before, after)  # measured: 75.3 -> 67.5
    assert history[-1]["loss"] < history[0]["loss"]
