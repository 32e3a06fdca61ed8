"""The SLURM examples build the commands the README documents (fake sbatch environment, PYTHON=echo)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, args: list[str], env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "slurm" / script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHON": "echo", **env},
        timeout=30,
    )


def test_preprocess_array_job_passes_its_shard(tmp_path):
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_CPUS_PER_TASK": "4"}
    done = _run("preprocess_array.sbatch", ["raw", "out", "--set", "notch_freq=60"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "preprocess/preprocess_main.py", "--input", "raw", "--output", "out", "--workers", "4",
        "--shard", "3/8", "--set", "notch_freq=60",
    ]  # fmt: skip
    assert _run("preprocess_array.sbatch", ["raw", "out"], {}, tmp_path).returncode != 0  # not an array job


def test_multinode_pretraining_takes_the_rendezvous_from_slurm(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\nprintf 'gpu-a17\\ngpu-a18\\n'\n")
    (bin_dir / "srun").write_text('#!/usr/bin/env bash\nshift\n"$@"\n')  # drops --kill-on-bad-exit=1
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "gpu-a[17-18]",
        "SLURM_JOB_ID": "123456",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_CPUS_PER_TASK": "64",
    }
    done = _run("pretrain_multinode.sbatch", ["data", "run", "--epochs", "3"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=8", "--rdzv_id=123456",
        "--rdzv_backend=c10d", "--rdzv_endpoint=gpu-a17:29956", "pretrain/pretrain_main.py", "--data",
        "data", "--output", "run", "--epochs", "3",
    ]  # fmt: skip
