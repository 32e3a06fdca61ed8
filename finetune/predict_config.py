"""The prediction config (``configs/predict/default.yaml``) and the task groups prediction knows.

:func:`load_predict_config` resolves ``configs/predict/default.yaml`` <- ``--config`` <- ``--set`` and
checks its values; ``preprocess.*`` keys change the preprocessing of new recordings (over the training
data's).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping, Sequence

from runtime.amp import AMP_DTYPES
from runtime.config import CONFIG_DIR, ConfigError, check_values, load_config, parse_override

__all__ = [
    "COMPILE_MIN_WINDOWS",
    "COMPILE_MODES",
    "DETECTION_TASKS",
    "EPOCH_TASKS",
    "MAX_PREPROCESS_THREADS",
    "PREDICT_CONFIG",
    "RECORDING_TASKS",
    "SMOOTHING_METHODS",
    "load_predict_config",
    "without_events",
]

logger = logging.getLogger("finetune.predict_config")


#: Defaults (and schema) of the prediction config.
PREDICT_CONFIG = CONFIG_DIR / "predict" / "default.yaml"

#: Tasks whose output is a timeline of events.
DETECTION_TASKS = ("onset_detection", "artifact_detection", "epileptiform_detection", "swi_quantification")
#: Tasks whose output is one class per recording (or per subject, or per seizure clip).
RECORDING_TASKS = ("hie_grading", "syndrome_classification", "seizure_type")
#: Tasks whose events are scored epochs (a hypnogram).
EPOCH_TASKS = ("sleep_staging",)
#: Allowed values of ``smoothing.method``.
SMOOTHING_METHODS = ("none", "k_of_n", "moving_average")

#: Allowed values of ``compile``.
COMPILE_MODES = ("auto", "always", "never")
#: ``compile: auto`` compiles the model for recordings of at least this many windows (4 h of 4-s windows:
#: on a 2-core CPU compiling takes 10-20 s and saves about 20% of the model's time, 4 ms per window).
COMPILE_MIN_WINDOWS = 3600
#: ``preprocess_threads: null`` on a GPU: the CPU cores less one, at most this many (each thread holds one
#: block of the recording, a few hundred MB at the default ``block_s``).
MAX_PREPROCESS_THREADS = 8


def without_events(task) -> str | None:
    """Why prediction writes no events for a task, or None when it does.

    Events (``*_events.tsv``, MNE and EDF+ annotations) come from the detection tasks
    (:data:`DETECTION_TASKS`: runs of windows of the positive class, or of each class but the background)
    and from sleep staging (scored epochs). Other tasks get their window probabilities of every class,
    their recording mean (and class) and the figure.

    Parameters
    ----------
    task : tasks.Task

    Returns
    -------
    reason : str | None
        A sentence for the log, naming the task and what is written instead.
    """
    if task.name in DETECTION_TASKS or task.name in EPOCH_TASKS:
        return None
    if task.name in RECORDING_TASKS:
        kind = f"a {task.unit}-level task: its output is the recording's class"
    else:  # e.g. harmful_brain_activity: six window classes, soft labels, no positive class
        kind = (
            f"not a detection task ({task.n_classes} window classes, positive class "
            f"{task.positive_class or 'none'}): its output is every class's probability per window"
        )
    return (
        f"{task.name}: no events and no annotation files ({kind}); writing the per-window probabilities of "
        f"{', '.join(task.classes)}, their recording mean and the figure."
    )


# -- configuration -------------------------------------------------------------------------------------


def _deep_update(base: dict, update: Mapping) -> dict:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def load_predict_config(config: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> dict:
    """Resolve the prediction config: ``configs/predict/default.yaml`` <- ``config`` <- ``overrides``.

    ``preprocess.*`` keys (from the file's ``preprocess`` mapping and from ``--set preprocess.KEY=VALUE``)
    are collected into ``config["preprocess"]`` and checked later against the preprocessing schema, when
    they are applied to the checkpoint's preprocessing config (:meth:`Predictor.__init__`).

    Parameters
    ----------
    config : path-like | None
        A YAML file with any subset of the keys.
    overrides : sequence of str
        ``key=value`` strings (``--set``), applied last.

    Returns
    -------
    config : dict
        The resolved config.

    Raises
    ------
    FileNotFoundError
        If ``config`` does not exist.
    runtime.config.ConfigError
        On an unknown key, a value of the wrong type, or an invalid value (the message names the key).
    """
    plain = [text for text in overrides if not text.strip().startswith("preprocess.")]
    resolved = load_config(PREDICT_CONFIG, config, plain)
    for text in overrides:
        if text.strip().startswith("preprocess."):
            _deep_update(resolved["preprocess"], parse_override(text)["preprocess"])
    _check_predict_config(resolved)
    return resolved


def _check_predict_config(cfg: dict) -> None:
    """Value checks that the schema's type checks cannot express."""
    sm = cfg["smoothing"]

    def positive(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0

    def non_negative(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0

    def int_or_none(v):
        return v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)

    def device_ok(v):
        cuda_n = isinstance(v, str) and v.startswith("cuda:") and v[5:].isdigit()
        return isinstance(v, str) and (v in ("auto", "cpu", "cuda") or cuda_n)

    check_values(
        cfg,
        {
            "stride_s": (lambda v: v is None or positive(v), "a number > 0 or null"),
            "batch_size": (lambda v: v is not None and int_or_none(v), "an integer >= 1"),
            "threshold": (
                lambda v: v is None or (isinstance(v, (int, float)) and 0 <= v <= 1),
                "a number in [0, 1] or null",
            ),
            "smoothing.method": (lambda v: v in SMOOTHING_METHODS, f"one of {list(SMOOTHING_METHODS)}"),
            "smoothing.k": (int_or_none, "an integer >= 1 or null"),
            "smoothing.n": (int_or_none, "an integer >= 1 or null"),
            "smoothing.window_s": (positive, "a number > 0"),
            "merge_gap_s": (non_negative, "a number >= 0"),
            "min_duration_s": (non_negative, "a number >= 0"),
            "device": (device_ok, "'auto', 'cpu', 'cuda' or 'cuda:N'"),
            "amp": (lambda v: v in AMP_DTYPES, f"one of {list(AMP_DTYPES)}"),
            "amp_cpu": (lambda v: v in ("auto", "bf16", "fp32"), "one of ['auto', 'bf16', 'fp32']"),
            "num_threads": (int_or_none, "an integer >= 1 or null"),
            "preprocess_threads": (int_or_none, "an integer >= 1 or null"),
            "compile": (lambda v: v in COMPILE_MODES, f"one of {list(COMPILE_MODES)}"),
            "figure.dpi": (positive, "a number > 0"),
            "figure.width_in": (positive, "a number > 0"),
            "figure.eeg_excerpt_s": (positive, "a number > 0"),
        },
    )
    if sm["k"] is not None and sm["n"] is not None and sm["k"] > sm["n"]:
        raise ConfigError(
            f"Invalid value for the config keys 'smoothing.k' and 'smoothing.n': k <= n is needed, "
            f"but got k={sm['k']}, n={sm['n']}."
        )


# -- the fine-tuned model ----------------------------------------------------------------------------
