"""Fixtures for the model tests: the official reference files in ../shared/reference (skipped if absent)."""

from pathlib import Path

import pytest
import torch

from tests.helpers import one_torch_thread

SHARED_DIR = Path(__file__).resolve().parents[2].parent / "shared"
REFERENCE_DIR = SHARED_DIR / "reference"


def _require(path):
    if not path.exists():
        pytest.skip(
            f"official reference file {path} is absent (the ../shared folder beside the project "
            f"holds it); this test compares against the official M4CEA code's outputs"
        )
    return path


@pytest.fixture(scope="session")
def base_pretrain_model():
    """A freshly initialised m4cea_base with pretraining heads (seed 0). Read-only: do not modify it."""
    from models import create_model

    torch.manual_seed(0)
    with one_torch_thread():
        return create_model("m4cea_base", head="pretrain")


@pytest.fixture(scope="session")
def official_reference():
    """Official depth-2 state dicts, fixed input/mask and the official outputs (DESIGN.md section 8)."""
    path = _require(REFERENCE_DIR / "official_m4cea_reference_seed0_depth2.pt")
    return torch.load(path, weights_only=True)


def _read_keys(kind):
    path = _require(REFERENCE_DIR / f"official_m4cea_{kind}_state_dict_keys.txt")
    shapes = {}
    for line in path.read_text().splitlines():
        if line.strip():
            key, shape = line.split("\t")
            shapes[key] = tuple(int(n) for n in shape.strip("()").split(",") if n.strip())
    return shapes


@pytest.fixture(scope="session")
def official_pretrain_shapes():
    """Key -> shape of the full-size (depth 12) official pretraining state dict."""
    return _read_keys("pretrain")


@pytest.fixture(scope="session")
def official_finetune_shapes():
    """Key -> shape of the full-size (depth 12) official fine-tuning state dict (4 classes)."""
    return _read_keys("finetune")


def read_key_shapes(file_name):
    """Key -> shape from a ``*_keys.txt`` reference file (skips the test when the file is absent)."""
    path = _require(REFERENCE_DIR / file_name)
    shapes = {}
    for line in path.read_text().splitlines():
        if line.strip():
            key, shape = line.split("\t")
            shapes[key] = tuple(int(n) for n in shape.strip("()").split(",") if n.strip())
    return shapes


@pytest.fixture(scope="session")
def labram_reference():
    """Official LaBraM depth-2 state dicts (fine-tuning, masked modelling, VQ-NSP), input and outputs.

    Made by the official code (github 935963004/LaBraM @ c431221e), random init, eval mode (DESIGN.md
    section 9). Read-only: do not modify it.
    """
    path = _require(REFERENCE_DIR / "official_labram_reference_seed0_depth2.pt")
    return torch.load(path, weights_only=True)
