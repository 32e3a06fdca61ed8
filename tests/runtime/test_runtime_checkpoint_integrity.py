"""runtime.checkpoint: verified loads (zip CRC-32, payload sha256, bounded plain values, torch>=2.6)."""

from __future__ import annotations

import logging
import re
import struct
import time
import zipfile
from pathlib import Path

import pytest
import torch

import runtime.checkpoint as checkpoint_module
from runtime.checkpoint import (
    HASH_KEY,
    MAX_NESTING_DEPTH,
    UnsafeTorchError,
    check_torch_version,
    load_checkpoint,
    load_verified,
    payload_sha256,
    save_checkpoint,
    verify_zip_archive,
    write_checkpoint_file,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _save(path, config=None, **extra):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    save_checkpoint(
        path,
        model=model,
        optimizer=optimizer,
        scaler=None,
        epoch=1,
        step=7,
        config={"optim": {"lr": 0.1}} if config is None else config,
        **extra,
    )
    return model


def _member_offset(path, member):
    """Offset in the file of the first byte of a stored (uncompressed) zip member."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    raw = Path(path).read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    assert info.compress_type == zipfile.ZIP_STORED
    return info.header_offset + 30 + name_len + extra_len


def _tensor_member(path, tensor):
    """The zip member holding ``tensor``'s storage (found by its bytes)."""
    wanted = tensor.detach().contiguous().numpy().tobytes()
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if "/data/" in name and archive.read(name) == wanted:
                return name
    raise AssertionError("tensor not found")


def test_flipped_byte_in_a_stored_tensor_is_refused(tmp_path):
    path = tmp_path / "checkpoint-0002.pth"
    model = _save(path)
    weight = model[0].weight
    offset = _member_offset(path, _tensor_member(path, weight))
    raw = bytearray(path.read_bytes())
    raw[offset + 5] ^= 0x40  # one bit of the second weight: a silent change of its value
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"checkpoint-0002\.pth is corrupted \(member .*/data/\d+\).*CRC"):
        load_checkpoint(path)


def test_changed_payload_with_valid_crcs_is_refused(tmp_path):
    """A file rewritten with a changed weight (zip and CRCs valid) fails the recorded sha256."""
    path = tmp_path / "c.pth"
    _save(path)
    state = torch.load(path, weights_only=True)
    state["model"]["0.weight"][0, 0] += 1e-3
    torch.save(state, path)
    assert verify_zip_archive(path)
    with pytest.raises(ValueError, match=r"c\.pth is corrupted: the sha256 of its content differs"):
        load_checkpoint(path)
    state["model"]["0.weight"][0, 0] -= 1e-3  # the recorded values again: loads
    torch.save(state, path)
    assert load_checkpoint(path)["step"] == 7


def test_removed_hash_is_refused_and_old_version_loads_with_a_warning(tmp_path, caplog):
    path = tmp_path / "c.pth"
    _save(path)
    state = torch.load(path, weights_only=True)
    del state[HASH_KEY]
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"c\.pth lacks the sha256"):
        load_checkpoint(path)
    state["version"] = 1  # written before payload hashes: zip CRCs only
    torch.save(state, path)
    with caplog.at_level(logging.WARNING, logger="runtime.checkpoint"):
        assert load_checkpoint(path)["epoch"] == 1
    assert "predates payload hashes" in caplog.text


def test_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "c.pth"
    _save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"c\.pth is corrupted"):
        load_checkpoint(path)


def test_payload_hash_is_the_same_after_loading_and_sees_every_value(tmp_path):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state = {
        "weights": {"w": base, "view": base[:, 1:3], "tied": base},  # view and shared tensor
        "bf16": torch.linspace(0, 1, 5, dtype=torch.bfloat16),
        "scalar": torch.tensor(3),
        "empty": torch.zeros(0, 2),
        "optimizer": {"state": {0: {"step": torch.tensor(2.0)}}, "param_groups": [{"params": [0]}]},
        "plain": [1, 2.5, "text", None, True, (1, 2), b"\x00\x01"],
    }
    digest = payload_sha256(state)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    path = write_checkpoint_file(tmp_path / "s.pth", state)
    loaded = load_verified(path)
    assert loaded[HASH_KEY] == digest and payload_sha256(loaded) == digest
    assert HASH_KEY not in state  # the caller's dict is not changed

    changed = [
        {**state, "bf16": state["bf16"].clone().index_fill_(0, torch.tensor([4]), 0.5)},
        {**state, "scalar": torch.tensor(3.0)},  # another dtype
        {**state, "empty": torch.zeros(2, 0)},  # another shape
        {**state, "plain": [1, 2.5, "text", None, True, [1, 2], b"\x00\x01"]},  # list for tuple
        {**state, "plain": [1, 2.5, "text", None, 1, (1, 2), b"\x00\x01"]},  # int for bool
    ]
    assert len({digest, *(payload_sha256(c) for c in changed)}) == len(changed) + 1


def _shared_reference_bomb(levels):
    """``levels`` nested lists whose two items are the same list: 2**levels leaves, a few bytes pickled."""
    node = ["x" * 16]
    for _ in range(levels):
        node = [node, node]
    return node


def test_config_with_shared_references_is_refused(tmp_path):
    path = tmp_path / "bomb.pth"
    _save(path, config={"optim": {"lr": 0.1}, "notes": _shared_reference_bomb(40)})
    assert path.stat().st_size < 20_000  # 2**40 strings when written out as JSON
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"bomb\.pth is refused: its 'config' entry holds more than"):
        load_checkpoint(path)
    assert time.perf_counter() - start < 5.0  # the check stops at its bound


def test_deep_nesting_is_refused(tmp_path):
    nested = []
    for _ in range(MAX_NESTING_DEPTH + 5):
        nested = [nested, 1]
    path = tmp_path / "deep.pth"
    write_checkpoint_file(path, {"payload": nested})
    with pytest.raises(
        ValueError,
        match=rf"deep\.pth is refused: its content is nested deeper than "
        rf"{MAX_NESTING_DEPTH}",
    ):
        load_verified(path)


def test_old_torch_is_refused(tmp_path, monkeypatch):
    for version in ("2.1.0", "2.5.1+cu121", "1.13.1"):
        with pytest.raises(UnsafeTorchError, match=rf"torch {re.escape(version)} .*CVE-2025-32434"):
            check_torch_version(version)
    for version in ("2.6.0", "2.14.1+cu130", "3.0.0a0"):
        check_torch_version(version)
    check_torch_version()  # the installed torch
    path = tmp_path / "c.pth"
    _save(path)
    monkeypatch.setattr(checkpoint_module.torch, "__version__", "2.5.1")
    with pytest.raises(UnsafeTorchError, match="torch>=2.6"):
        load_checkpoint(path)


def test_requirements_ask_for_a_fixed_torch():
    lines = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    (torch_line,) = [line for line in lines if re.match(r"torch\b", line)]
    bound = re.fullmatch(r"torch>=(\d+)\.(\d+)(\.\d+)?", torch_line.strip())
    assert bound and (int(bound[1]), int(bound[2])) >= checkpoint_module.MIN_TORCH_VERSION


def test_allow_listed_objects_are_bounded_too(tmp_path):
    """An official-style ``args`` Namespace (allow-listed by the caller) gets the config bounds."""
    import argparse

    path = tmp_path / "official.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1e-3, a=[1, 2])}, path)
    with torch.serialization.safe_globals([argparse.Namespace]):
        assert load_verified(path)["args"].lr == 1e-3
        torch.save(
            {"model": {"w": torch.ones(2)}, "args": argparse.Namespace(a=_shared_reference_bomb(30))}, path
        )
        with pytest.raises(ValueError, match=r"official\.pth is refused: its 'args' entry holds more than"):
            load_verified(path)
