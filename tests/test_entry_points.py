"""The entry points answer --help without importing torch (or MNE): arguments first, the run on demand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ENTRY_POINTS = [
    "preprocess.preprocess_main",
    "pretrain.pretrain_main",
    "finetune.finetune_main",
    "finetune.predict",
    "finetune.embed",
    "finetune.probe",
]


def test_help_imports_neither_torch_nor_mne():
    code = (
        "import importlib, sys\n"
        f"for name in {ENTRY_POINTS!r}:\n"
        "    importlib.import_module(name).get_args_parser().format_help()\n"
        "print(sorted(m for m in ('torch', 'mne', 'timm', 'scipy') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_help_as_a_script_exits_0(tmp_path):
    """Each script runs from a fresh shell elsewhere: it puts the project root on sys.path itself."""
    for script in ("preprocess/preprocess_main.py", "pretrain/pretrain_main.py", "finetune/finetune_main.py",
                   "finetune/predict.py", "finetune/embed.py", "finetune/probe.py"):  # fmt: skip
        done = subprocess.run(
            [sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, timeout=120,
            cwd=tmp_path, env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert done.returncode == 0 and "usage:" in done.stdout, (script, done.stderr)
