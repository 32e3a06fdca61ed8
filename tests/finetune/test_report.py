"""The table script on a runs folder written by the test."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from finetune.report import ablation_table, format_cell, main_table, summarise, to_markdown
from tasks import TASKS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def make_table():
    """scripts/make_table.py imported as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_table", ROOT / "scripts" / "make_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_run(runs: Path, task: str, seed: int, test: dict, val: dict | None = None, **extra) -> None:
    folder = runs / task / f"seed{seed}"
    folder.mkdir(parents=True)
    results = {
        "test": test,
        "val": val or {"balanced_accuracy": 0.5},
        "confusion_matrix": [[1, 0], [0, 1]],
        "split": {"seed": 0},
        "config": {},
        "checkpoint": "best.pth",
        **extra,
    }
    # json.dumps writes NaN as the JavaScript literal, which json.load reads back.
    (folder / "results.json").write_text(json.dumps(results))


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "runs"
    onset = [(42, 0.8, 0.90, 10.0), (2024, 0.9, 0.95, 20.0), (3407, 0.7, float("nan"), 30.0)]
    for seed, bacc, auroc, fah in onset:
        _write_run(
            runs,
            "onset_detection",
            seed,
            {"balanced_accuracy": bacc, "auroc": auroc, "false_alarms_per_hour": fah},
            n={"test": {"units": 40, "subjects": 5}},
        )
    _write_run(runs, "hie_grading", 42, {"balanced_accuracy": 0.5, "cohen_kappa": 0.25})
    _write_run(runs, "hie_grading", 2024, {"balanced_accuracy": 0.6, "cohen_kappa": float("nan")})
    (runs / "hie_grading" / "seed3407").mkdir()  # an unfinished run: no results.json
    (runs / "notes").mkdir()  # not a task
    return runs


def test_summarise_and_format():
    mean, std, n = summarise([0.8, 0.9, 0.7])
    assert mean == pytest.approx(0.8) and std == pytest.approx(statistics.stdev([0.8, 0.9, 0.7])) and n == 3
    assert format_cell(mean, std, n, 3) == "0.8000 ± 0.1000"
    mean, std, n = summarise([0.9, float("nan"), 0.95])
    assert (mean, n) == (pytest.approx(0.925), 2)
    assert format_cell(mean, std, n, 3) == "0.9250 ± 0.0354 (2/3)"
    mean, std, n = summarise([0.5])
    assert math.isnan(std) and format_cell(mean, std, n, 1) == "0.5000"
    assert format_cell(*summarise([float("nan")]), 1) == "undefined"
    assert format_cell(*summarise([0.8, 0.9, 0.7], ddof=0), 3, digits=2) == "0.80 ± 0.08"


def test_main_table_rows(runs):
    rows, notes = main_table(runs)
    assert [row.task for row in rows] == list(TASKS)
    by_task = {row.task: row for row in rows}
    onset = by_task["onset_detection"]
    assert onset.seeds == [42, 2024, 3407] and onset.missing_seeds == [4399, 114514]
    mean, std, n_defined, n_seeds = onset.metrics["balanced_accuracy"]
    assert (mean, std, n_defined, n_seeds) == (pytest.approx(0.8), pytest.approx(0.1), 3, 3)
    assert onset.metrics["auroc"][:3] == (pytest.approx(0.925), pytest.approx(0.05 / math.sqrt(2)), 2)
    assert "cohen_kappa" not in onset.metrics
    assert by_task["hie_grading"].seeds == [42, 2024]
    assert by_task["sleep_staging"].missing and by_task["sleep_staging"].metrics == {}
    assert "onset_detection: missing seeds 4399, 114514" in notes
    assert "hie_grading: missing seeds 3407, 4399, 114514" in notes
    assert "sleep_staging: missing (no results)" in notes
    assert any("seed3407: no results.json" in note for note in notes)
    assert any(
        note.endswith("notes: not a task folder (tasks: " + ", ".join(TASKS) + "), ignored") for note in notes
    )


def test_markdown_table(runs):
    rows, _ = main_table(runs)
    text = to_markdown(rows, ["balanced_accuracy", "auroc", "cohen_kappa", "false_alarms_per_hour"])
    lines = text.splitlines()
    assert lines[0] == (
        "| task | seeds | n (test) | balanced_accuracy | auroc | cohen_kappa | false_alarms_per_hour |"
    )
    assert lines[1] == "|---|---|---|---|---|---|---|"
    assert lines[2] == "| artifact_detection | missing |  | - | - | - | - |"
    assert lines[3] == (
        "| onset_detection | 3 | 40 units, 5 subjects | 0.8000 ± 0.1000 | "
        "0.9250 ± 0.0354 (2/3) |  | 20.0000 ± 10.0000 |"
    )
    assert lines[6] == "| hie_grading | 2 |  | 0.5500 ± 0.0707 |  | 0.2500 (1/2) |  |"
    assert len(lines) == 2 + len(TASKS)


def test_script_prints_markdown_and_writes_csv(runs):
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "make_table.py"),
            str(runs),
            "--metrics",
            "balanced_accuracy,auroc",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    expected = "| onset_detection | 3 | 40 units, 5 subjects | 0.8000 ± 0.1000 | 0.9250 ± 0.0354 (2/3) |"
    assert expected in out.stdout
    for task in (
        "artifact_detection",
        "seizure_type",
        "syndrome_classification",
        "sleep_staging",
        "epileptiform_detection",
        "swi_quantification",
    ):
        assert f"| {task} | missing |  | - | - |" in out.stdout
    assert "- onset_detection: missing seeds 4399, 114514" in out.stdout
    csv_path = runs / "table_main.csv"
    assert f"CSV: {csv_path}" in out.stdout
    with open(csv_path, newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [r["task"] for r in table] == list(TASKS)
    onset = table[TASKS.index("onset_detection")]
    assert onset["status"] == "ok" and onset["n_seeds"] == "3" and onset["seeds"] == "42 2024 3407"
    assert onset["missing_seeds"] == "4399 114514"
    assert float(onset["balanced_accuracy_mean"]) == pytest.approx(0.8)
    assert float(onset["balanced_accuracy_std"]) == pytest.approx(0.1)
    assert (onset["auroc_n"], float(onset["auroc_mean"])) == ("2", pytest.approx(0.925))
    missing = table[TASKS.index("sleep_staging")]
    assert (missing["status"], missing["n_seeds"], missing["balanced_accuracy_mean"]) == ("missing", "0", "")
    assert (onset["n_units"], onset["n_subjects"], onset["subject_overlap"]) == ("40", "5", "")
    assert list(table[0]) == [
        "task",
        "status",
        "n_seeds",
        "seeds",
        "missing_seeds",
        "n_units",
        "n_subjects",
        "subject_overlap",
        "balanced_accuracy_mean",
        "balanced_accuracy_std",
        "balanced_accuracy_n",
        "auroc_mean",
        "auroc_std",
        "auroc_n",
    ]


def test_script_val_split_and_custom_csv(runs, tmp_path, make_table):
    assert (
        make_table.main(
            [
                str(runs),
                "--split",
                "val",
                "--metrics",
                "balanced_accuracy",
                "--csv",
                str(tmp_path / "val.csv"),
            ]
        )
        == 0
    )
    with open(tmp_path / "val.csv", newline="", encoding="utf-8") as f:
        table = {r["task"]: r for r in csv.DictReader(f)}
    assert float(table["onset_detection"]["balanced_accuracy_mean"]) == 0.5
    assert table["onset_detection"]["balanced_accuracy_std"] == "0.0"


def test_ablation_table(tmp_path, capsys, make_table):
    full, no_tie = tmp_path / "full", tmp_path / "no_tie"
    for seed, value in ((42, 0.80), (2024, 0.84)):
        _write_run(full, "onset_detection", seed, {"balanced_accuracy": value})
    for seed, value in ((42, 0.70), (2024, 0.74)):
        _write_run(no_tie, "onset_detection", seed, {"balanced_accuracy": value})
    _write_run(no_tie, "hie_grading", 42, {"balanced_accuracy": 0.4})
    rows, notes = ablation_table({"full": full, "no_tie": no_tie}, metrics=["balanced_accuracy"])
    assert [(r.task, r.variant) for r in rows] == [(t, v) for t in TASKS for v in ("full", "no_tie")]
    assert "[full] hie_grading: missing (no results)" in notes
    argv = ["--ablation", f"full={full}", f"no_tie={no_tie}", "--metrics", "balanced_accuracy"]
    assert make_table.main(argv) == 0
    out = capsys.readouterr().out
    assert "| task | variant | seeds | n (test) | balanced_accuracy |" in out
    assert "| onset_detection | full | 2 |  | 0.8200 ± 0.0283 |" in out
    assert "| onset_detection | no_tie | 2 |  | 0.7200 ± 0.0283 |" in out
    assert "| hie_grading | full | missing |  | - |" in out
    assert "| hie_grading | no_tie | 1 |  | 0.4000 |" in out
    with open(tmp_path / "table_ablation.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 * len(TASKS)
    assert table[2]["task"] == "onset_detection" and table[2]["variant"] == "full"
    assert float(table[2]["balanced_accuracy_mean"]) == pytest.approx(0.82)
    with pytest.raises(ValueError, match="distinct variant names"):
        ablation_table([("a", full), ("a", no_tie)])


def test_bad_input(runs, tmp_path, capsys, make_table):
    (runs / "seizure_type" / "seed42").mkdir(parents=True)
    (runs / "seizure_type" / "seed42" / "results.json").write_text("{not json")
    assert make_table.main([str(runs)]) == 2
    assert "seizure_type/seed42/results.json is not valid JSON" in capsys.readouterr().err
    assert make_table.main([str(tmp_path / "absent")]) == 2
    assert "Runs folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        make_table.main([])
    with pytest.raises(SystemExit):
        make_table.main(["--ablation", "no-equals-sign"])
    with pytest.raises(SystemExit):
        make_table.main([str(runs), "--metrics", "accuracy"])


def test_non_numeric_metric_is_an_error(tmp_path):
    _write_run(tmp_path, "hie_grading", 42, {"balanced_accuracy": "high"})
    with pytest.raises(ValueError, match="'test.balanced_accuracy' should be a number"):
        main_table(tmp_path)


# -- evidence and the comparison table (issues #11 and #13) --------------------------------------------------


def _model_runs(folder: Path, model: str, values: dict, **extra) -> Path:
    for seed, bacc in values.items():
        _write_run(
            folder,
            "onset_detection",
            seed,
            {"balanced_accuracy": bacc, "auroc": 0.5 + bacc / 2},
            config={"model": {"name": model}},
            **extra,
        )
    return folder


def test_comparison_table_two_models_paired_over_seeds(tmp_path, capsys, make_table):
    from scipy import stats

    from finetune.report import comparison_table, paired_difference

    seeds = [42, 2024, 3407, 4399, 114514]
    m4cea = dict(zip(seeds, [0.80, 0.82, 0.78, 0.85, 0.81], strict=True))
    labram = dict(zip(seeds, [0.74, 0.75, 0.73, 0.80, 0.72], strict=True))
    evidence = {
        "n": {"test": {"units": 120, "subjects": 6}},
        "warnings": ["The test split holds 6 subject(s)..."],
        "split": {"subject_overlap": {"chb01": ["train", "val"]}},
    }
    first = _model_runs(tmp_path / "m4cea", "m4cea_base", m4cea, **evidence)
    second = _model_runs(
        tmp_path / "labram",
        "labram_base",
        {s: labram[s] for s in seeds[:4]},
        n={"test": {"units": 120, "subjects": 6}},
    )
    rows, notes = comparison_table([first, second], metrics=["balanced_accuracy", "auroc"])
    assert [(r.model, r.task) for r in rows] == [
        ("m4cea_base", "onset_detection"),
        ("labram_base", "onset_detection"),
    ]
    assert rows[0].diff == {}
    diff, p, pairs = rows[1].diff["balanced_accuracy"]
    x = np.array([labram[s] for s in seeds[:4]])
    y = np.array([m4cea[s] for s in seeds[:4]])
    assert pairs == 4 and diff == pytest.approx(np.mean(x - y))
    assert p == pytest.approx(stats.ttest_rel(x, y).pvalue)
    assert rows[1].missing_seeds == [114514]
    assert paired_difference(labram, m4cea, "wilcoxon")[1] == pytest.approx(0.0625)  # 5 pairs: p >= 1/16
    assert any("paired t-test" in note for note in notes)
    assert (
        "[m4cea_base] onset_detection: subjects in two splits (split.allow_subject_overlap): chb01 in "
        "train and val" in notes
    )

    argv = [
        str(first),
        str(second),
        "--seeds",
        "42",
        "2024",
        "3407",
        "4399",
        "114514",
        "--metrics",
        "balanced_accuracy",
    ]
    assert make_table.main(argv) == 0
    out = capsys.readouterr().out
    assert "| model | task | seeds | n (test) | balanced_accuracy |" in out
    assert "| m4cea_base | onset_detection | 5 | 120 units, 6 subjects; overlap | 0.8120 ± 0.0259 |" in out
    assert (
        f"| labram_base | onset_detection | 4 | 120 units, 6 subjects | 0.7550 ± 0.0311; "
        f"Δ {diff:+.4f} (p {p:.3g}, 4 pairs) |"
    ) in out
    with open(tmp_path / "table_comparison.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [r["model"] for r in table] == ["m4cea_base", "labram_base"]
    assert float(table[1]["balanced_accuracy_diff"]) == pytest.approx(diff)
    assert float(table[1]["balanced_accuracy_p"]) == pytest.approx(p)
    assert table[1]["balanced_accuracy_pairs"] == "4"
    assert table[0]["subject_overlap"] == "chb01:train+val" and table[0]["balanced_accuracy_diff"] == ""

    # The same model in two folders (an ablation): the folder names tell the rows apart.
    third = _model_runs(tmp_path / "random_mask", "m4cea_base", m4cea)
    rows, _ = comparison_table([first, third], metrics=["balanced_accuracy"])
    assert [r.model for r in rows] == ["m4cea_base (m4cea)", "m4cea_base (random_mask)"]
    same_diff, same_p, _ = rows[1].diff["balanced_accuracy"]
    assert same_diff == 0.0 and math.isnan(same_p)  # identical values: no test
    with pytest.raises(ValueError, match="two or more distinct runs folders"):
        comparison_table([first, first])
    _write_run(tmp_path / "anonymous", "onset_detection", 42, {"balanced_accuracy": 0.5})
    with pytest.raises(ValueError, match="name no model"):
        comparison_table([first, tmp_path / "anonymous"])
