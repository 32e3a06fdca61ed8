"""scripts/bench_gpu.sh --dry-run: every step of the GPU script runs on the CPU and lands in its JSON."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers import ROOT


@pytest.mark.slow  # the whole script, tiny sizes: about 1.5 minutes
def test_dry_run_runs_every_step_and_writes_their_figures(tmp_path):
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "bench_gpu.sh"), "--dry-run", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((tmp_path / "out" / "bench_gpu.json").read_text())
    assert figures["dry_run"] is True
    steps = figures["steps"]
    assert set(steps) == {"train_m4cea", "train_labram", "make_data", "ddp_smoke", "predict", "loader"}
    assert all(step["ok"] for step in steps.values()), steps
    (predicted,) = figures["predict"]  # the table row and where its time went
    assert predicted["model"] == "m4cea_base" and predicted["device"] == "cpu" and predicted["windows"] == 18
    assert 0 < predicted["model_s"] < predicted["wall_s"] and predicted["compile_s"] == 0.0  # compile never
    assert predicted["rest_s"] == pytest.approx(predicted["wall_s"] - predicted["model_s"], abs=0.2)
    assert [row["workers"] for row in figures["loader"]] == [0, 2]
    assert all(row["windows_per_s"] > 0 for row in figures["loader"])
    for step, model in (("train_m4cea", "m4cea_tiny"), ("train_labram", "labram_tiny")):
        assert figures[step][0]["model"] == model and figures[step][0]["samples_per_s"] > 0
