"""scripts/bench_model_size.py: the cohort's spike-wave amplitude; the size comparison end to end."""

from __future__ import annotations

import csv
import json
import sys

import mne
import numpy as np
import pytest

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

from bench_pretraining import make_cohort  # noqa: E402


def _cohort_data(folder, spike_uv):
    paths, events = make_cohort(folder, 1, 32.0, n_events=1, event_s=16.0, seed=3, spike_uv=spike_uv)
    data = mne.io.read_raw_fif(paths[0], verbose="error").get_data() * 1e6  # uV
    with open(events, newline="", encoding="utf-8") as f:
        (event,) = list(csv.DictReader(f))
    return data, float(event["onset_s"]), float(event["duration_s"])


def test_spike_uv_scales_only_the_spike_wave(tmp_path):
    weak, onset_s, duration_s = _cohort_data(tmp_path / "weak", 15.0)
    strong, onset2_s, _ = _cohort_data(tmp_path / "strong", 150.0)
    assert onset_s == onset2_s  # same draws: only the amplitude differs
    start, stop = round(onset_s * 256), round((onset_s + duration_s) * 256)
    outside = np.ones(weak.shape[1], bool)
    outside[start:stop] = False
    # FIF stores float32: the background agrees to its rounding outside the event,
    np.testing.assert_allclose(strong[:, outside], weak[:, outside], rtol=0, atol=1e-4)
    # and inside it the two differ by the spike-wave of 150 - 15 uV (per-channel gain 0.7-1.3, per-cycle
    # jitter of 10%): each channel's peak difference within those gains
    peak_uv = np.abs(strong[:, start:stop] - weak[:, start:stop]).max(axis=1)
    assert np.all((0.7 * 135 < peak_uv) & (peak_uv < 1.3 * 1.4 * 135)), peak_uv


@pytest.mark.slow  # fine-tunes m4cea_tiny on a small cohort: about 40 s
def test_sizes_are_fine_tuned_and_reported(tmp_path):
    import bench_model_size

    from models import create_model

    out = bench_model_size.main(
        ["--sizes", "m4cea_tiny", "--seeds", "42", "--subjects", "4", "--duration-s", "48", "--epochs", "1",
         "--workdir", str(tmp_path), "--json", str(tmp_path / "sizes.json")]
    )  # fmt: skip
    assert json.loads((tmp_path / "sizes.json").read_text()) == out
    tiny = out["sizes"]["m4cea_tiny"]
    model = create_model("m4cea_tiny", head="classification", n_outputs=2)
    assert tiny["parameters"] == sum(p.numel() for p in model.parameters()) > 0
    assert [r["seed"] for r in tiny["seeds"]] == [42]
    assert 0.0 <= tiny["mean_balanced_accuracy"] <= 1.0
    assert out["settings"]["recipe"] == ["optim.base_lr=0.032"]
    assert (tmp_path / "windows_15uV" / "manifest.csv").is_file()
