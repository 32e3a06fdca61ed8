"""Labelled preprocessing outputs for the fine-tuning tests: synthetic and real windows, checkpoints."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from preprocess.segments import save_segment, write_manifest

# Class-dependent rhythm (Hz) of the synthetic windows: the classes differ in frequency, not in amplitude
# (which the per-channel 95th-percentile scaling removes).
# Fine-tuning overrides of the tests on make_labelled_data's tiny cohorts: micro-batches of 2 windows in this
# process, no warm-up or layer decay, a log line per step, no TensorBoard.
TINY_FINETUNE = [
    "data.num_workers=0",
    "optim.batch_size=4",
    "optim.micro_batch_size=2",
    "optim.base_lr=0.05",
    "optim.warmup_epochs=0",
    "optim.layer_decay=1.0",
    "logging.log_every=1",
    "logging.tensorboard=false",
]
_RHYTHM_HZ = (10.0, 3.0, 20.0, 6.0, 15.0)


def make_labelled_data(
    folder: Path,
    recordings,
    n_chans: int = 16,
    n_times: int = 1000,
    sfreq: float = 1000.0,
    window_s: float | None = None,
    stride_s: float | None = None,
    classes=("background", "seizure"),
    seed: int = 0,
    ch_names=None,
) -> Path:
    """Write a labelled preprocessing output: one pickle per window and ``manifest.csv``.

    Parameters
    ----------
    folder : Path
    recordings : list of (subject, recording, labels)
        ``labels`` is the list of window labels of the recording, in time order.
    n_chans, n_times, sfreq
        Window shape; 16 x 1000 at 1000 Hz is the input of ``m4cea_tiny`` with ``n_patches=5``.
    window_s, stride_s : float | None
        Window length and step in s (default ``n_times / sfreq``; a smaller stride overlaps windows).
    classes : sequence of str
        Class names in the order of :data:`_RHYTHM_HZ`: label ``classes[k]`` gets rhythm ``k``.
    ch_names : sequence of str | None
        Channel names stored with each window (default ``C0``, ``C1``...; LaBraM needs 10-20 names).
    """
    rng = np.random.default_rng(seed)
    window_s = n_times / sfreq if window_s is None else window_s
    stride_s = window_s if stride_s is None else stride_s
    t = np.arange(n_times) / sfreq
    n_tokens = n_chans * max(1, n_times // 200)
    rows = []
    for subject, recording, labels in recordings:
        for k, label in enumerate(labels):
            hz = _RHYTHM_HZ[list(classes).index(label)] if label in classes else 8.0
            phase = rng.uniform(0, 2 * np.pi, (n_chans, 1))
            data = 30.0 * np.sin(2 * np.pi * hz * t + phase) + 5.0 * rng.standard_normal((n_chans, n_times))
            start_s = k * stride_s
            rel = f"segments/{recording}/{recording}_{int(round(start_s * 1000)):09d}ms.pkl"
            save_segment(
                {
                    "data": data.astype(np.float32),
                    "mfde": np.full(n_tokens, 1.0 / n_tokens),
                    "ch_names": list(ch_names) if ch_names else [f"C{c}" for c in range(n_chans)],
                    "sfreq": sfreq,
                    "recording": recording,
                    "subject": subject,
                    "start_s": start_s,
                    "label": label,
                    "filled_channels": [],
                },
                folder / rel,
            )
            rows.append(
                {
                    "path": rel,
                    "subject": subject,
                    "recording": recording,
                    "start_s": start_s,
                    "label": label,
                    "n_chans": n_chans,
                    "n_times": n_times,
                    "sfreq": sfreq,
                }
            )
    write_manifest(rows, folder / "manifest.csv")
    return folder


def preprocess_chbmit(edf_dir: Path, output: Path, subject_per_recording: bool = False) -> Path:
    """Preprocess the two real CHB-MIT crops (seizure, non-seizure) with their events into ``output``.

    ``subject_per_recording`` writes a copy of ``events.csv`` in which each crop is its own subject.
    """
    from preprocess.batch import run_preprocessing
    from runtime.config import CONFIG_DIR, load_config

    events = edf_dir / "events.csv"
    if subject_per_recording:
        with open(events, newline="", encoding="utf-8") as f:
            table = list(csv.DictReader(f))
        for row in table:
            row["subject"] = Path(row["recording"]).stem
        events = output.parent / f"{output.name}_events.csv"
        with open(events, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    config = load_config(CONFIG_DIR / "preprocess" / "m4cea.yaml", overrides=["labels.default=background"])
    run_preprocessing(
        [edf_dir / name for name in sorted(p.name for p in edf_dir.glob("*.edf"))],
        output,
        config,
        events=events,
        progress=False,
    )
    return output


def save_pretrain_checkpoint(path: Path, name: str = "m4cea_tiny", seed: int = 0, **overrides) -> Path:
    """A pretraining checkpoint in this project's format (runtime.checkpoint), from a freshly built model."""
    from models import create_model
    from runtime.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    model = create_model(name, head="pretrain", **overrides)
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(
        path,
        model=model,
        optimizer=optimizer,
        scaler=None,
        epoch=0,
        step=0,
        config={"model": {"name": name, **overrides}},
        rng=None,
    )
    return path
