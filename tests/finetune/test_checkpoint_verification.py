"""Fine-tuning and prediction read checkpoints through runtime.checkpoint.load_verified (issue 10, 5-6)."""

from __future__ import annotations

import struct
import zipfile

import pytest
import torch

from finetune.checkpoints import build_model, load_pretrained, save_untrained_checkpoint
from finetune.predict import cli as predict
from runtime.checkpoint import write_checkpoint_file


@pytest.fixture
def finetuned(tmp_path):
    """An untrained fine-tuning checkpoint of m4cea_tiny (what predict reads) and its task."""
    return save_untrained_checkpoint(
        tmp_path / "run" / "checkpoint-best.pth", "onset_detection", ["model.name=m4cea_tiny"]
    )


def _flip_a_weight_byte(path):
    """Flip one bit inside the largest stored tensor of a torch zip checkpoint."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    raw[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def _predict(checkpoint, tmp_path):
    return predict(
        ["--checkpoint", str(checkpoint), "--input", str(tmp_path / "x.edf"), "--output", str(tmp_path / "o")]
    )


def test_corrupted_pretrained_checkpoint_is_refused(finetuned):
    path, task = finetuned
    _flip_a_weight_byte(path)
    cfg = torch.load(path, weights_only=True)["config"]
    with pytest.raises(ValueError, match=r"checkpoint-best\.pth is corrupted \(member .*CRC"):
        load_pretrained(build_model(cfg, task), path)


def test_predict_refuses_a_corrupted_checkpoint_with_exit_2(finetuned, tmp_path, capsys):
    path, _ = finetuned
    _flip_a_weight_byte(path)
    assert _predict(path, tmp_path) == 2
    err = capsys.readouterr().err
    assert "checkpoint-best.pth is corrupted" in err and str(path) in err
    assert not (tmp_path / "o").exists()


def test_predict_refuses_a_config_of_shared_references_with_exit_2(finetuned, tmp_path, capsys):
    path, _ = finetuned
    state = torch.load(path, weights_only=True)
    node = ["padding" * 4]
    for _ in range(30):  # 2**30 strings once written out as JSON; the file stays small
        node = [node, node]
    state["config"]["task"]["notes"] = node
    write_checkpoint_file(path, state)  # a valid sha256: the file is crafted, not damaged
    assert _predict(path, tmp_path) == 2
    err = capsys.readouterr().err
    assert f"{path} is refused: its 'config' entry holds more than" in err
    assert not (tmp_path / "o").exists()


def test_predict_names_the_kind_of_checkpoint_only_when_the_file_is_readable(finetuned, tmp_path, capsys):
    path, _ = finetuned
    hint = "--checkpoint needs a fine-tuning checkpoint of this project"
    _flip_a_weight_byte(path)  # damaged: a CRC error, no hint about the kind of checkpoint
    assert _predict(path, tmp_path) == 2
    err = capsys.readouterr().err
    assert "checkpoint-best.pth is corrupted" in err and hint not in err
    torch.save({"model": {"w": torch.zeros(2)}}, tmp_path / "state_dict.pth")  # readable, another kind
    assert _predict(tmp_path / "state_dict.pth", tmp_path) == 2
    err = capsys.readouterr().err
    assert "is not a training checkpoint of this project" in err and hint in err
    assert not (tmp_path / "o").exists()
