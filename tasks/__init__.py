"""The task vocabulary, below preprocessing and fine-tuning: task names, classes, units and metrics.

:mod:`tasks.vocabulary` reads the tasks from ``configs/finetune/*.yaml``; :mod:`tasks.units` aggregates
window predictions to a task's unit of evaluation. Imports only :mod:`runtime`.
"""

from tasks.units import (
    Units,
    aggregate,
    check_probabilities,
    contiguous_segments,
    predict,
    recording_timelines,
    unit_index,
    window_durations,
)
from tasks.vocabulary import (
    BASE_CONFIG,
    BINARY_METRICS,
    FINETUNE_CONFIG_DIR,
    METRIC_NAMES,
    TASKS,
    UNITS,
    Task,
    encode_label_probs,
    encode_labels,
    get_task,
    label_vocabulary,
    list_tasks,
    load_task_config,
    task_config_path,
)

__all__ = [
    "BASE_CONFIG",
    "BINARY_METRICS",
    "FINETUNE_CONFIG_DIR",
    "METRIC_NAMES",
    "TASKS",
    "UNITS",
    "Task",
    "encode_label_probs",
    "Units",
    "aggregate",
    "check_probabilities",
    "contiguous_segments",
    "encode_labels",
    "get_task",
    "label_vocabulary",
    "list_tasks",
    "load_task_config",
    "predict",
    "recording_timelines",
    "task_config_path",
    "unit_index",
    "window_durations",
]
