"""scripts/reproduce_tables.sh builds the fine-tuning commands of the seeds asked for (LAUNCH=echo)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    stamp = Path(sys.prefix) / ".requirements.sha256"
    wanted = hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text().strip() != wanted:
        pytest.skip(f"{sys.prefix} is not a scripts/_venv.sh environment of this requirements.txt")
    env = {**os.environ, "M4CEA_VENV": sys.prefix, "LAUNCH": "echo"}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "reproduce_tables.sh"), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )


def test_seeds_option_runs_only_those_seeds_and_the_tables_expect_them(tmp_path):
    (tmp_path / "data" / "onset_detection").mkdir(parents=True)
    (tmp_path / "data" / "onset_detection" / "manifest.csv").write_text("")
    checkpoint = tmp_path / "checkpoint.pth"
    checkpoint.write_bytes(b"")
    args = ["--models", "braindecode.EEGNet", "--seeds", "7,11", str(checkpoint), str(tmp_path / "data")]
    done = _run([*args, str(tmp_path / "runs"), "--epochs", "1"], tmp_path)
    assert done.returncode == 0, done.stderr
    launched = [line.split() for line in done.stdout.splitlines() if "finetune_main.py" in line]
    assert [cmd[cmd.index("--seed") + 1] for cmd in launched] == ["7", "11"]
    assert all(cmd[-2:] == ["--epochs", "1"] for cmd in launched)
    table = (tmp_path / "runs" / "table_main.csv").read_text()
    assert "42" not in table and "7 11" in table  # the missing seeds are 7 and 11, not the paper's five


def test_seeds_must_be_integers(tmp_path):
    checkpoint = tmp_path / "checkpoint.pth"
    checkpoint.write_bytes(b"")
    (tmp_path / "data").mkdir()
    args = ["--models", "braindecode.EEGNet", "--seeds", "42,two", str(checkpoint), str(tmp_path / "data")]
    done = _run([*args, str(tmp_path / "runs")], tmp_path)
    assert done.returncode == 2
    assert "--seeds takes comma-separated integers like 42,2024, but got '42,two'" in done.stderr
