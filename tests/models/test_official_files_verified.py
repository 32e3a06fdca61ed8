"""The official reference files pass the verified loader that every checkpoint load goes through."""

from __future__ import annotations

import pytest
import torch

from models import create_model, load_official_state_dict
from runtime.checkpoint import load_verified, verify_zip_archive
from tests.helpers import shared_path


@pytest.mark.parametrize(
    "name", ["official_m4cea_reference_seed0_depth2.pt", "official_labram_reference_seed0_depth2.pt"]
)
def test_official_reference_file_loads_verified_and_unchanged(name):
    path = shared_path("reference", name)
    assert verify_zip_archive(path)  # every member matches its CRC-32
    verified, plain = load_verified(path), torch.load(path, weights_only=True)
    assert verified.keys() == plain.keys() and "sha256" not in verified  # not written by this project
    for key, value in plain.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(verified[key], value), key


def test_official_state_dict_read_verified_loads_into_the_model():
    checkpoint = load_verified(shared_path("reference", "official_m4cea_reference_seed0_depth2.pt"))
    model = create_model("m4cea_base", depth=2, head="pretrain")
    result = load_official_state_dict(model, checkpoint["pretrain_state_dict"])
    assert result.missing_keys == [] and result.ignored_keys == []
    key = "blocks.1.attn.qkv.weight"
    assert torch.equal(model.state_dict()[key], checkpoint["pretrain_state_dict"][f"transformer.{key}"])
