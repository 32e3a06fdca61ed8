"""make_table.py's command line; tables of braindecode and ensemble runs with the ensembles' baselines."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from scripts.make_table import build_parser, main


@pytest.mark.parametrize("seeds", [["42,2024"], ["42", "2024"], ["42,", "2024"]])
def test_seeds_comma_or_space_separated(seeds):
    args = build_parser().parse_args(["runs", "--seeds", *seeds])
    assert [seed for part in args.seeds for seed in part] == [42, 2024]


def test_seeds_default_and_bad_value(capsys):
    assert build_parser().parse_args(["runs"]).seeds is None  # main() uses PAPER_SEEDS
    with pytest.raises(SystemExit):
        build_parser().parse_args(["runs", "--seeds", "42,x"])
    assert "expected integer seeds" in capsys.readouterr().err


# Tables of braindecode and ensemble runs (synthetic results.json files) -------------------------------

BACC = {  # test balanced accuracy per folder and seed
    "m4cea_base": (0.70, 0.72),
    "braindecode.EEGNet": (0.60, 0.66),
    "ensemble": (0.80, 0.83),
    "uniform": (0.74, 0.77),
}


def _write_results(folder, model, values, **extra):
    for seed, value in zip((42, 2024), values, strict=True):
        results = {
            "task": "onset_detection",
            "seed": seed,
            "test": {"balanced_accuracy": value, "auroc": value + 0.1},
            "val": {"balanced_accuracy": value},
            "n": {"test": {"units": 40, "subjects": 2}},
            "config": {"model": {"name": model}},
            **extra,
        }
        path = folder / "onset_detection" / f"seed{seed}" / "results.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(results))
    return folder


@pytest.fixture
def model_runs(tmp_path):
    folders = {m: _write_results(tmp_path / m, m, BACC[m]) for m in ("m4cea_base", "braindecode.EEGNet")}
    members = [{"path": str(folders[m]), "model": m} for m in folders]
    baselines = {
        "uniform": {"test": {"balanced_accuracy": None, "auroc": 0.9}},  # filled per seed below
        "best_single": {"model": "m4cea_base", "chosen_by": "validation loss"},
    }
    folder = tmp_path / "ensemble"
    _write_results(folder, "ensemble", BACC["ensemble"], members=members, gate={"mean_weights": [0.7, 0.3]})
    for seed, uniform, best in zip((42, 2024), BACC["uniform"], BACC["m4cea_base"], strict=True):
        path = folder / "onset_detection" / f"seed{seed}" / "results.json"
        results = json.loads(path.read_text())
        results["baselines"] = {
            "uniform": {"test": {"balanced_accuracy": uniform, "auroc": uniform + 0.1}},
            "best_single": {
                **baselines["best_single"],
                "test": {"balanced_accuracy": best, "auroc": best + 0.1},
            },
        }
        path.write_text(json.dumps(results))
    folders["ensemble"] = folder
    return folders


def _read_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return [row for row in csv.DictReader(f) if row["task"] == "onset_detection"]


def test_ablation_table_has_a_row_per_model_and_the_ensembles_baselines(model_runs, tmp_path, capsys):
    variants = [f"{name}={path}" for name, path in model_runs.items()]
    csv_path = tmp_path / "table.csv"
    argv = ["--ablation", *variants, "--seeds", "42", "2024", "--metrics", "balanced_accuracy,auroc"]
    assert main([*argv, "--ablation-csv", str(csv_path)]) == 0
    rows = _read_csv(csv_path)
    assert [row["variant"] for row in rows] == [
        "m4cea_base",
        "braindecode.EEGNet",
        "ensemble",
        "ensemble: uniform average",
        "ensemble: best member",
    ]
    means = [float(row["balanced_accuracy_mean"]) for row in rows]
    np.testing.assert_allclose(means, [0.71, 0.63, 0.815, 0.755, 0.71])
    assert float(rows[3]["auroc_mean"]) == pytest.approx(0.855)
    assert [row["n_seeds"] for row in rows] == ["2"] * 5 and rows[4]["n_units"] == "40"
    out = capsys.readouterr().out
    assert (
        "| onset_detection | ensemble: uniform average | 2 | 40 units, 2 subjects | 0.7550 ± 0.0212 |" in out
    )
    assert "[ensemble] onset_detection: best member by validation loss: m4cea_base (seeds 42, 2024)" in out
    assert (
        "gate mean weights on the test split (mean over seeds): m4cea_base 0.700, braindecode.EEGNet 0.300"
        in out
    )


def test_comparison_table_differences_of_the_ensemble_and_its_baselines(model_runs, tmp_path):
    csv_path = tmp_path / "table.csv"
    folders = [str(path) for path in model_runs.values()]
    argv = [*folders, "--seeds", "42", "2024", "--metrics", "balanced_accuracy", "--csv", str(csv_path)]
    assert main(argv) == 0
    rows = {row["model"]: row for row in _read_csv(csv_path)}
    assert list(rows) == [
        "m4cea_base",
        "braindecode.EEGNet",
        "ensemble",
        "ensemble: uniform average",
        "ensemble: best member",
    ]
    diffs = {model: float(row["balanced_accuracy_diff"] or "nan") for model, row in rows.items()}
    assert math.isnan(diffs["m4cea_base"])  # the reference row
    np.testing.assert_allclose([diffs[m] for m in list(rows)[1:]], [-0.08, 0.105, 0.045, 0.0], atol=1e-12)


def test_main_table_of_an_ensemble_folder_and_a_folder_without_ensembles(model_runs, tmp_path):
    assert main([str(model_runs["ensemble"]), "--seeds", "42", "2024", "--csv", str(tmp_path / "e.csv")]) == 0
    rows = _read_csv(tmp_path / "e.csv")
    assert [row["variant"] for row in rows] == ["", "uniform average", "best member"]
    assert [float(row["balanced_accuracy_mean"]) for row in rows] == pytest.approx([0.815, 0.755, 0.71])
    assert main([str(model_runs["braindecode.EEGNet"]), "--csv", str(tmp_path / "b.csv")]) == 0
    header = (tmp_path / "b.csv").read_text().splitlines()[0]
    assert "variant" not in header.split(",")  # no ensemble: the table as before
