"""The head of results.json that fine-tuning runs and linear probes share (finetune.outputs.split_results)."""

from __future__ import annotations

import numpy as np

from finetune.metrics import evaluate_predictions
from finetune.outputs import split_results
from tasks import get_task


def test_split_results_holds_the_metrics_matrices_and_units_of_both_splits():
    task = get_task("onset_detection")
    rows = [
        {
            "path": f"w{i}.pkl",
            "subject": "s1",
            "recording": "r1",
            "start_s": 4.0 * i,
            "label": label,
            "n_times": 4000,
            "sfreq": 1000.0,
        }
        for i, label in enumerate(["background", "background", "seizure", "seizure"])
    ]
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.1, 0.9]])
    evaluated = {}
    for name in ("val", "test"):
        evaluated[name] = evaluate_predictions(task, rows, probabilities)
        evaluated[name]["loss"] = 0.5
    results = split_results(task, 7, evaluated)
    assert list(results) == ["task", "seed", "test", "val", "confusion_matrix", "undefined", "n_units"]
    assert results["task"] == "onset_detection" and results["seed"] == 7
    assert list(results["test"]) == [*task.metrics, "loss"] and results["val"]["loss"] == 0.5
    assert results["test"]["balanced_accuracy"] == 0.75
    assert results["confusion_matrix"]["classes"] == list(task.classes)
    assert np.asarray(results["confusion_matrix"]["test"]).tolist() == [[1, 1], [0, 2]]
    assert results["n_units"] == {"val": 4, "test": 4}
