"""Apply a fine-tuned M4CEA model to new recordings: window probabilities, events, hypnograms, indices.

The logic behind ``finetune/predict.py``, in four parts:

1. **Loading** (:func:`load_finetuned`): a fine-tuning checkpoint (``checkpoint-best.pth`` or its run
   folder, written by ``finetune/finetune_main.py``) gives the model (architecture from the checkpoint's
   ``config["model"]``, classes from ``config["task"]``) and the preprocessing config of its training data
   (``checkpoint["preprocess"]``, else ``preprocess.yaml`` beside the checkpoint, else the defaults
   ``configs/preprocess/m4cea.yaml`` with a warning).
2. **Windows** (:meth:`Predictor.window_probabilities`): the recording is windowed block by block with the
   training preprocessing (:meth:`preprocess.pipeline.Preprocessor.iter_windows`: montage, filters,
   resampling, NaN/flat/amplitude checks), each accepted window is scaled as in training
   (:func:`preprocess.segments.scale_window`) and classified; rejected windows keep NaN probabilities and
   their reason. Memory is a few preprocessing blocks (one per ``preprocess_threads``, plus the one
   ahead) plus one batch, whatever the recording's length.
3. **Post-processing** (pure functions of the window probabilities, times in seconds of the recording):
   :func:`detect_events` (threshold -> smoothing -> runs -> merge gap -> minimum duration),
   :func:`hypnogram` (30-s epochs), :func:`spike_wave_index`, :func:`recording_class`.
4. **Batch** (:func:`run_batch`): many recordings, a progress bar, one output folder per recording
   written atomically (:mod:`finetune.predict_outputs`), a bad recording reported and skipped.

Speed: the next block is preprocessed while the model runs on this one (:func:`prefetch`), by several
threads on a GPU machine (config ``preprocess_threads``); windows are classified in full batches across
blocks. The GPU when present (bf16 autocast); on the CPU, bf16 autocast when the CPU computes bf16
natively (AVX512-BF16, AMX), and for recordings of 4 hours or more (config ``compile``) a frozen bf16 copy
of the model compiled by ``torch.compile``. The model dominates: m4cea_base costs 5.3 GFLOP in matrix
products and 9.8 million attention exponentials per 4-s window, 114 TFLOP for 24 hours.

What each task gets (DESIGN.md section 5):

============================================================== ==========================================
task                                                           outputs besides the window probabilities
============================================================== ==========================================
onset_detection, artifact_detection, epileptiform_detection    events (TSV, MNE and EDF+ annotations)
swi_quantification                                             events and the spike-wave index (percent)
sleep_staging                                                  hypnogram of 30-s epochs (CSV, events, figure)
hie_grading, syndrome_classification, seizure_type             the recording's class and probabilities
============================================================== ==========================================

Every task also gets the recording-level mean of the window probabilities in its summary.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import os
import platform
import queue
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from finetune.metrics import smooth_k_of_n
from preprocess.pipeline import OpenRecording, Preprocessor, find_recordings, recording_id
from preprocess.segments import scale_window
from runtime.checkpoint import load_checkpoint
from runtime.config import CONFIG_DIR, ConfigError, load_config, merge_config, parse_override
from tasks import TASKS, Task, contiguous_segments, predict

__all__ = [
    "COMPILE_MIN_WINDOWS",
    "COMPILE_MODES",
    "DETECTION_TASKS",
    "MAX_PREPROCESS_THREADS",
    "PREDICT_CONFIG",
    "PREPROCESS_DEFAULTS",
    "RECORDING_TASKS",
    "SMOOTHING_METHODS",
    "BatchResult",
    "DetectedEvent",
    "FineTunedModel",
    "Predictor",
    "WindowPredictions",
    "detect_events",
    "hypnogram",
    "load_finetuned",
    "load_predict_config",
    "prefetch",
    "project_version",
    "recording_class",
    "resolve_device",
    "run_batch",
    "spike_wave_index",
    "versions",
]

logger = logging.getLogger("finetune.inference")

#: Defaults (and schema) of the prediction config.
PREDICT_CONFIG = CONFIG_DIR / "predict" / "default.yaml"
#: Defaults (and schema) of the preprocessing config.
PREPROCESS_DEFAULTS = CONFIG_DIR / "preprocess" / "m4cea.yaml"

#: Tasks whose output is a timeline of events.
DETECTION_TASKS = ("onset_detection", "artifact_detection", "epileptiform_detection", "swi_quantification")
#: Tasks whose output is one class per recording (or per subject, or per seizure clip).
RECORDING_TASKS = ("hie_grading", "syndrome_classification", "seizure_type")
#: Allowed values of ``smoothing.method``.
SMOOTHING_METHODS = ("none", "k_of_n", "moving_average")

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
#: Allowed values of ``compile``.
COMPILE_MODES = ("auto", "always", "never")
#: ``compile: auto`` compiles the model for recordings of at least this many windows (4 h of 4-s windows:
#: on a 2-core CPU compiling takes 10-20 s and saves about 20% of the model's time, 4 ms per window).
COMPILE_MIN_WINDOWS = 3600
#: ``preprocess_threads: null`` on a GPU: the CPU cores less one, at most this many (each thread holds one
#: block of the recording, a few hundred MB at the default ``block_s``).
MAX_PREPROCESS_THREADS = 8
_TIME_TOL_S = 1e-6


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
    sm, fig = cfg["smoothing"], cfg["figure"]

    def positive(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0

    def non_negative(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0

    def int_or_none(v):
        return v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)

    device = cfg["device"]
    device_ok = isinstance(device, str) and (
        device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())
    )
    checks = [
        (
            "stride_s",
            cfg["stride_s"],
            cfg["stride_s"] is None or positive(cfg["stride_s"]),
            "a number > 0 or null",
        ),
        (
            "batch_size",
            cfg["batch_size"],
            int_or_none(cfg["batch_size"]) and cfg["batch_size"] is not None,
            "an integer >= 1",
        ),
        (
            "threshold",
            cfg["threshold"],
            cfg["threshold"] is None
            or (isinstance(cfg["threshold"], (int, float)) and 0 <= cfg["threshold"] <= 1),
            "a number in [0, 1] or null",
        ),
        (
            "smoothing.method",
            sm["method"],
            sm["method"] in SMOOTHING_METHODS,
            f"one of {list(SMOOTHING_METHODS)}",
        ),
        ("smoothing.k", sm["k"], int_or_none(sm["k"]), "an integer >= 1 or null"),
        ("smoothing.n", sm["n"], int_or_none(sm["n"]), "an integer >= 1 or null"),
        ("smoothing.window_s", sm["window_s"], positive(sm["window_s"]), "a number > 0"),
        ("merge_gap_s", cfg["merge_gap_s"], non_negative(cfg["merge_gap_s"]), "a number >= 0"),
        ("min_duration_s", cfg["min_duration_s"], non_negative(cfg["min_duration_s"]), "a number >= 0"),
        ("device", device, device_ok, "'auto', 'cpu', 'cuda' or 'cuda:N'"),
        ("amp", cfg["amp"], cfg["amp"] in _AMP_DTYPES, f"one of {list(_AMP_DTYPES)}"),
        (
            "amp_cpu",
            cfg["amp_cpu"],
            cfg["amp_cpu"] in ("auto", "bf16", "fp32"),
            "one of ['auto', 'bf16', 'fp32']",
        ),
        ("num_threads", cfg["num_threads"], int_or_none(cfg["num_threads"]), "an integer >= 1 or null"),
        (
            "preprocess_threads",
            cfg["preprocess_threads"],
            int_or_none(cfg["preprocess_threads"]),
            "an integer >= 1 or null",
        ),
        ("compile", cfg["compile"], cfg["compile"] in COMPILE_MODES, f"one of {list(COMPILE_MODES)}"),
        ("figure.dpi", fig["dpi"], positive(fig["dpi"]), "a number > 0"),
        ("figure.width_in", fig["width_in"], positive(fig["width_in"]), "a number > 0"),
        ("figure.eeg_excerpt_s", fig["eeg_excerpt_s"], positive(fig["eeg_excerpt_s"]), "a number > 0"),
    ]
    for key, value, ok, allowed in checks:
        if not ok:
            raise ConfigError(
                f"Invalid value for the config key '{key}'. Allowed values are {allowed}, "
                f"but got {value!r} instead."
            )
    if sm["k"] is not None and sm["n"] is not None and sm["k"] > sm["n"]:
        raise ConfigError(
            f"Invalid value for the config keys 'smoothing.k' and 'smoothing.n': k <= n is needed, "
            f"but got k={sm['k']}, n={sm['n']}."
        )


# -- the fine-tuned model ----------------------------------------------------------------------------


@dataclass
class FineTunedModel:
    """A fine-tuned classification model with what it needs to be applied to new recordings.

    Attributes
    ----------
    model : models.M4CEA
        Classification model in eval mode, on the CPU (:class:`Predictor` moves it).
    task : tasks.Task
        The task it was fine-tuned for (classes in output order, threshold, event smoothing).
    config : dict
        The resolved fine-tuning config stored in the checkpoint.
    preprocess_config : dict
        The preprocessing config of its training data, checked against ``configs/preprocess/m4cea.yaml``.
    preprocess_source : str
        Where ``preprocess_config`` comes from: ``"checkpoint"``, a file path, or ``"defaults"``.
    checkpoint : Path
        The checkpoint file.
    epoch : int | None
        The checkpoint's epoch (0-based).
    """

    model: torch.nn.Module
    task: Task
    config: dict
    preprocess_config: dict
    preprocess_source: str
    checkpoint: Path
    epoch: int | None = None

    @property
    def model_name(self) -> str:
        """Registered model name (``m4cea_base``...)."""
        return str(self.config["model"]["name"])


def _checkpoint_file(path: Path) -> Path:
    from finetune.finetune_main import BEST_CHECKPOINT

    if path.is_dir():
        candidate = path / BEST_CHECKPOINT
        if not candidate.is_file():
            raise FileNotFoundError(
                f"No fine-tuning checkpoint in the folder {path}: expected {BEST_CHECKPOINT} (written by "
                f"finetune/finetune_main.py into OUTPUT/<task>/seed<S>/) (--checkpoint)."
            )
        return candidate
    if not path.is_file():
        raise FileNotFoundError(
            f"Checkpoint not found: {path} (--checkpoint: a fine-tuning run folder or its {BEST_CHECKPOINT})."
        )
    return path


def _preprocess_config_of(checkpoint: Mapping, ckpt_path: Path) -> tuple[dict, str]:
    from finetune.finetune_main import PREPROCESS_CONFIG_FILE

    defaults = load_config(PREPROCESS_DEFAULTS)
    saved, source = checkpoint.get("preprocess"), "checkpoint"
    if saved is None and (ckpt_path.parent / PREPROCESS_CONFIG_FILE).is_file():
        source = str(ckpt_path.parent / PREPROCESS_CONFIG_FILE)
        return load_config(PREPROCESS_DEFAULTS, source), source
    if saved is None:
        logger.warning(
            "The checkpoint %s does not record the preprocessing of its training data (fine-tuned on a "
            "folder without config.yaml, or by an older version): windows are made with the defaults %s. "
            "Set --set preprocess.KEY=VALUE if the training data were preprocessed otherwise.",
            ckpt_path,
            PREPROCESS_DEFAULTS.relative_to(CONFIG_DIR.parent),
        )
        return defaults, "defaults"
    if not isinstance(saved, Mapping):
        raise ValueError(f"The checkpoint {ckpt_path} holds a 'preprocess' entry that is not a mapping.")
    try:
        return merge_config(defaults, dict(saved), source=f"the preprocessing config in {ckpt_path}"), source
    except ConfigError as err:
        raise ValueError(
            f"The checkpoint {ckpt_path} records a preprocessing config this version cannot use: {err}"
        ) from None


def load_finetuned(path: str | os.PathLike) -> FineTunedModel:
    """Load a fine-tuning checkpoint of this project for inference.

    Parameters
    ----------
    path : path-like
        ``checkpoint-best.pth`` written by ``finetune/finetune_main.py``, or the run folder that holds it
        (``OUTPUT/<task>/seed<S>/``). Read with ``torch.load(weights_only=True)``.

    Returns
    -------
    finetuned : FineTunedModel

    Raises
    ------
    FileNotFoundError
        If the file (or the run folder's checkpoint) does not exist.
    ValueError
        If the file is not a checkpoint of this project, is a pretraining checkpoint (no classification
        head: fine-tune it first), records no task, or its weights do not fit the model its config names.
    """
    from finetune.finetune_main import build_model

    ckpt_path = _checkpoint_file(Path(path))
    try:
        checkpoint = load_checkpoint(ckpt_path)
    except ValueError as err:
        raise ValueError(
            f"{err} (--checkpoint needs a fine-tuning checkpoint of this project, "
            f"from finetune/finetune_main.py)."
        ) from None
    cfg = checkpoint.get("config")
    state = checkpoint["model"]
    has_head = "head.weight" in state
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("task"), Mapping) or not has_head:
        pretrain = any(k.startswith(("head_magnitude", "head_phase")) for k in state)
        kind = (
            "a pretraining checkpoint: its model has no classification head"
            if pretrain or not has_head
            else "not a fine-tuning checkpoint: its config has no task"
        )
        raise ValueError(
            f"The checkpoint {ckpt_path} is {kind}. Fine-tune it first (python finetune/finetune_main.py "
            f"--task TASK --pretrained {ckpt_path} --data DIR) and pass the fine-tuning run folder to "
            "--checkpoint."
        )
    task_section = dict(cfg["task"])
    if task_section.get("name") not in TASKS:
        raise ValueError(
            f"The checkpoint {ckpt_path} names the task {task_section.get('name')!r}, which is not one "
            f"of {list(TASKS)}."
        )
    task = Task.from_config(task_section)
    model = build_model(cfg, task)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"The weights in {ckpt_path} do not fit the model its config names "
            f"({cfg['model']['name']}, {task.n_classes} classes): {err}"
        ) from None
    model.eval()
    preprocess_config, source = _preprocess_config_of(checkpoint, ckpt_path)
    epoch = checkpoint.get("epoch")
    return FineTunedModel(
        model, task, dict(cfg), preprocess_config, source, ckpt_path, None if epoch is None else int(epoch)
    )


# -- window probabilities ----------------------------------------------------------------------------


@dataclass
class WindowPredictions:
    """Class probabilities of every window of one recording.

    Attributes
    ----------
    starts_s : ndarray of float64, shape (n_windows,)
        Window starts in s from the recording's first sample, increasing.
    probabilities : ndarray of float64, shape (n_windows, n_classes)
        Softmax of the logits, columns in ``task.classes`` order; NaN rows for rejected windows.
    reasons : ndarray of object (str), shape (n_windows,)
        ``""`` for a classified window, else why it was rejected (``nan``, ``flat``, ``amplitude``).
    window_s : float
        Window length in s.
    stride_s : float
        Step between window starts in s.
    """

    starts_s: np.ndarray
    probabilities: np.ndarray
    reasons: np.ndarray
    window_s: float
    stride_s: float

    @property
    def accepted(self) -> np.ndarray:
        """Bool mask (n_windows,) of the classified windows."""
        return self.reasons == ""

    @property
    def rejected_counts(self) -> dict[str, int]:
        """Rejected windows per reason."""
        return dict(sorted(Counter(self.reasons[~self.accepted].tolist()).items()))


def _cpu_has_native_bf16() -> bool:
    """True when the CPU advertises AVX512-BF16 or AMX-BF16 (Linux ``/proc/cpuinfo``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


@contextlib.contextmanager
def prefetch(iterable, enabled: bool = True):
    """Iterate ``iterable`` in a background thread, one item ahead of the consumer.

    Parameters
    ----------
    iterable : iterable
        E.g. the blocks of :meth:`preprocess.pipeline.Preprocessor.iter_windows` (NumPy, SciPy and MNE
        release the GIL in their filters and FFTs, so the next block is made while the model runs).
    enabled : bool
        False: the iterable itself, in the caller's thread.

    Yields
    ------
    iterator
        The items in order; an exception of the producer is raised in the consumer, at the item where it
        happened. Leaving the block early stops the producer after its current item.
    """
    if not enabled:
        yield iter(iterable)
        return
    items: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def produce():
        try:
            for item in iterable:
                while not stop.is_set():
                    try:
                        items.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put((done, None))
        except BaseException as err:  # handed to the consumer, re-raised there
            items.put((done, err))

    def consume():
        while True:
            item, err = items.get()
            if err is not None:
                raise err
            if item is done:
                return
            yield item

    thread = threading.Thread(target=produce, name="m4cea-prefetch", daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                items.get(timeout=0.1)
        thread.join()


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error.

    Raises
    ------
    ValueError
        If a CUDA device is asked for and none is available.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"Invalid value for the config key 'device': {device!r} was asked for, but no CUDA device "
            f"is available (use device=auto or cpu)."
        )
    return torch.device(device)


class Predictor:
    """Runs a fine-tuned model over recordings, block by block.

    Parameters
    ----------
    finetuned : FineTunedModel
        From :func:`load_finetuned`.
    config : dict
        A resolved prediction config (:func:`load_predict_config`).

    Attributes
    ----------
    preprocessor : preprocess.pipeline.Preprocessor
        With the training preprocessing config, changed by ``config["preprocess"]``.
    device : torch.device
    amp : str
        ``bf16``, ``fp16`` or ``fp32``: the autocast dtype used.
    stride_s, window_s : float
        Window step and length in s.
    threshold : float
        Binary tasks: ``config["threshold"]``, or the task's when null.
    model : models.M4CEA
        The model, on ``device``, in eval mode (compiled on demand: :meth:`use_compiled`).
    preprocess_threads : int
        Recording blocks preprocessed at once (config ``preprocess_threads``; null: on a GPU the CPU cores
        less one, at most :data:`MAX_PREPROCESS_THREADS`, on the CPU 1).

    Raises
    ------
    ValueError, runtime.config.ConfigError
        If ``config["preprocess"]`` holds an unknown key or a bad value, the windows made by the
        preprocessing do not have the model's shape, or the device is not available.
    """

    def __init__(self, finetuned: FineTunedModel, config: dict):
        self.finetuned, self.config, self.task = finetuned, config, finetuned.task
        preprocess_config = finetuned.preprocess_config
        if config["preprocess"]:
            preprocess_config = merge_config(
                preprocess_config, config["preprocess"], source="preprocess (predict config)"
            )
            logger.warning("Preprocessing differs from the model's training data: %s.", config["preprocess"])
        self.preprocessor = Preprocessor(preprocess_config)
        model = finetuned.model
        p = self.preprocessor
        if (p.montage.n_chans, p.n_times) != (model.n_chans, model.n_times):
            raise ValueError(
                f"The preprocessing makes windows of {p.montage.n_chans} channels x {p.n_times} samples "
                f"(montage {preprocess_config['montage']!r}, window_s={preprocess_config['window_s']} s at "
                f"sfreq={preprocess_config['sfreq']} Hz), but the model in {finetuned.checkpoint} takes "
                f"{model.n_chans} x {model.n_times}: use the preprocessing config of its training data."
            )
        self.window_s = float(preprocess_config["window_s"])
        self.stride_s = float(config["stride_s"] if config["stride_s"] is not None else self.window_s)
        self.device = resolve_device(config["device"])
        if self.device.type == "cuda":
            self.amp = config["amp"]
        elif config["amp_cpu"] == "auto":
            self.amp = "bf16" if _cpu_has_native_bf16() else "fp32"
        else:
            self.amp = config["amp_cpu"]
        self.model = model.to(self.device).eval()
        gpu_threads = max(1, min(MAX_PREPROCESS_THREADS, (os.cpu_count() or 1) - 1))
        self.preprocess_threads = config["preprocess_threads"] or (
            gpu_threads if self.device.type == "cuda" else 1
        )
        self._compiled = None  # torch.compile(self.model), made at the first recording that needs it
        self._compile_failed = False
        self.threshold = self.task.threshold if config["threshold"] is None else float(config["threshold"])

    @property
    def preprocess_config(self) -> dict:
        """The preprocessing config the windows are made with."""
        return self.preprocessor.config

    def use_compiled(self, n_windows: int) -> bool:
        """Whether a recording of ``n_windows`` windows runs the compiled model (config ``compile``).

        ``always``; ``never``; ``auto``: on the CPU, from the first recording of at least
        :data:`COMPILE_MIN_WINDOWS` windows on (the compilation, 10-20 s once per process on a 2-core CPU,
        then pays for itself); on a GPU never (the model takes well under a second for 24 hours there,
        less than compiling it). Never after a failed compilation.
        """
        mode = self.config["compile"]
        if mode == "never" or self._compile_failed:
            return False
        if mode == "always" or self._compiled is not None:
            return True
        return self.device.type == "cpu" and n_windows >= COMPILE_MIN_WINDOWS

    @torch.inference_mode()
    def classify(self, windows: np.ndarray, compiled: bool = False, scaled: bool = False) -> np.ndarray:
        """Class probabilities of windows (in uV, as the preprocessing yields them).

        Parameters
        ----------
        windows : ndarray of float32, shape (n, n_chans, n_times)
            In uV; scaled here per channel as in training (:func:`preprocess.segments.scale_window`),
            unless ``scaled``.
        compiled : bool
            Run the ``torch.compile``d model (every batch padded to ``batch_size`` windows, so that it
            compiles once). If the compilation fails (e.g. no C++ compiler for the CPU backend), a warning
            names the error and the model runs uncompiled from then on.
        scaled : bool
            The windows are already scaled (:func:`preprocess.segments.scale_window`).

        Returns
        -------
        probabilities : ndarray of float64, shape (n, n_classes)
        """
        out = np.empty((len(windows), self.task.n_classes))
        dtype = _AMP_DTYPES[self.amp]
        autocast = torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)
        batch = self.config["batch_size"]
        if compiled and self._compiled is None and not self._compile_failed:
            self._compiled = self._compile()
        for i in range(0, len(windows), batch):
            x = windows[i : i + batch] if scaled else scale_window(windows[i : i + batch])
            n = len(x)
            use = compiled and not self._compile_failed
            if use and n < batch:
                x = np.concatenate([x, np.zeros((batch - n, *x.shape[1:]), dtype=x.dtype)])
            x = torch.from_numpy(np.ascontiguousarray(x)).to(self.device, non_blocking=True)
            if use:
                try:
                    logits = self._compiled(x)
                except Exception as err:  # torch.compile's backends raise many types; fall back, loudly
                    logger.warning(
                        "torch.compile failed (%s: %s); running the model uncompiled.",
                        type(err).__name__,
                        str(err).splitlines()[0] if str(err) else "",
                    )
                    self._compile_failed = True
                    x, use = x[:n], False
            if not use:
                with autocast:
                    logits = self.model(x)
            out[i : i + n] = torch.softmax(logits[:n].float(), dim=-1).cpu().numpy()
        return out

    def _compile(self):
        """The ``torch.compile``d model, as a function of a float32 batch on ``self.device``.

        On the CPU the weights are frozen into the compiled graph (inductor ``freezing``: the TIE
        matrices are folded into constants, the weights pre-packed for oneDNN) and, with bf16, the
        compiled model is a bf16 copy of the model instead of autocast (no weight casts at each call):
        1.2x the compiled autocast throughput on this project's CPU. On CUDA: autocast, as uncompiled.
        """
        dtype = _AMP_DTYPES[self.amp]
        if self.device.type == "cuda":
            compiled = torch.compile(self.model, dynamic=False)
            autocast = torch.autocast("cuda", dtype=dtype, enabled=dtype is not None)

            def run(x):
                with autocast:
                    return compiled(x)

            return run
        model = copy.deepcopy(self.model).to(dtype) if dtype is not None else self.model
        compiled = torch.compile(model, dynamic=False, options={"freezing": True})
        return lambda x: compiled(x.to(model.pos_embed.dtype))

    def window_probabilities(self, recording: OpenRecording, progress: bool = False) -> WindowPredictions:
        """Classify every window of a recording, block by block.

        Parameters
        ----------
        recording : OpenRecording
            From ``self.preprocessor.open(path)``.
        progress : bool
            Show a progress bar over the recording's windows.

        Returns
        -------
        predictions : WindowPredictions
        """
        from tqdm import tqdm

        n_total = len(self.preprocessor.window_starts(recording.duration_s, self.stride_s))
        compiled = self.use_compiled(n_total)
        batch = self.config["batch_size"]
        starts, reasons = [], []
        # Accepted windows wait for a full batch across block boundaries (a 10-min block holds 150 windows:
        # per-block batches would end in a part batch, padded to full size when compiled), with their rows
        # in the recording; the probabilities are written into those rows at the end.
        waiting, waiting_rows, classified = [], [], []
        n_waiting = n_seen = 0
        bar = tqdm(
            total=n_total,
            desc=recording.recording_id,
            unit="window",
            leave=False,
            disable=not progress,
            dynamic_ncols=True,
        )
        blocks = self.preprocessor.iter_windows(recording, self.stride_s, n_threads=self.preprocess_threads)
        # scaled where the blocks are made, in the prefetch thread (a quantile per channel and window:
        # 3-4 s for 24 h, off the model's thread)
        blocks = ((starts_s, scale_window(w), reasons_) for starts_s, w, reasons_ in blocks)
        # The next block is preprocessed while the model runs on this one (on the CPU too: MNE's filters
        # and FFTs release the GIL, and a 4-h recording took 6% less time than without on 2 cores).
        with bar, prefetch(blocks) as blocks:
            for block_starts, windows, block_reasons in blocks:
                accepted = block_reasons == ""
                waiting.append(windows if accepted.all() else windows[accepted])
                waiting_rows.append(n_seen + np.flatnonzero(accepted))
                n_waiting += int(accepted.sum())
                n_seen += len(windows)
                starts.append(block_starts)
                reasons.append(block_reasons)
                if n_waiting >= batch:
                    x, rows = np.concatenate(waiting), np.concatenate(waiting_rows)
                    n_full = n_waiting - n_waiting % batch
                    p = self.classify(x[:n_full], compiled=compiled, scaled=True)
                    classified.append((rows[:n_full], p))
                    waiting, waiting_rows, n_waiting = [x[n_full:]], [rows[n_full:]], n_waiting - n_full
                bar.update(len(windows))
            if n_waiting:
                x, rows = np.concatenate(waiting), np.concatenate(waiting_rows)
                classified.append((rows, self.classify(x, compiled=compiled, scaled=True)))
        probabilities = np.full((n_seen, self.task.n_classes), np.nan)
        for rows, p in classified:
            probabilities[rows] = p
        return WindowPredictions(
            np.concatenate(starts),
            probabilities,
            np.concatenate(reasons),
            self.window_s,
            self.stride_s,
        )

    def excerpt(self, recording: OpenRecording, center_s: float, length_s: float) -> tuple[np.ndarray, float]:
        """The preprocessed EEG (what the model saw, in uV) of whole windows around a time.

        Parameters
        ----------
        recording : OpenRecording
        center_s : float
            Start in s of the window to centre on.
        length_s : float
            About how many seconds to return (rounded to whole windows, at least one).

        Returns
        -------
        data : ndarray of float32, shape (n_chans, n_windows * n_times)
            Consecutive windows, in uV.
        start_s : float
            Time of ``data[:, 0]`` in s of the recording.
        """
        w = self.window_s
        n = max(1, int(round(length_s / w)))
        last = recording.duration_s - w
        n = min(n, int(math.floor(last / w + 1e-9)) + 1)
        first = min(max(0.0, center_s - w * ((n - 1) // 2)), max(0.0, last - w * (n - 1)))
        starts = first + w * np.arange(n)
        blocks = [windows for _, windows, _ in self.preprocessor.iter_windows(recording, starts_s=starts)]
        data = np.concatenate(blocks)  # (n, n_chans, n_times)
        return np.concatenate(list(data), axis=-1), float(first)


# -- post-processing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectedEvent:
    """One detected event.

    Attributes
    ----------
    onset_s : float
        Start in s of the recording (the first window's start).
    duration_s : float
        Length in s (to the end of the last window).
    trial_type : str
        The class detected (BIDS ``trial_type``), e.g. ``seizure``.
    probability : float
        Mean probability of ``trial_type`` over the event's classified windows.
    peak_probability : float
        Its largest window probability.
    peak_s : float
        Start in s of the window with ``peak_probability``.
    """

    onset_s: float
    duration_s: float
    trial_type: str
    probability: float
    peak_probability: float
    peak_s: float

    @property
    def offset_s(self) -> float:
        """End in s of the recording."""
        return self.onset_s + self.duration_s


def _centred_mean(values: np.ndarray, segment: np.ndarray, n: int) -> np.ndarray:
    """Mean over ``n`` windows centred on each window, within its contiguous run (shorter at run edges)."""
    m = len(values)
    if m == 0 or n <= 1:
        return values.copy()
    j = np.arange(m)
    new_run = np.concatenate([[True], np.diff(segment) != 0])
    run_start = np.maximum.accumulate(np.where(new_run, j, 0))  # first index of each window's run
    last = np.where(np.concatenate([np.diff(segment) != 0, [True]]), j, m)
    run_end = np.minimum.accumulate(last[::-1])[::-1]  # last index of each window's run
    lo = np.maximum(j - (n - 1) // 2, run_start)
    hi = np.minimum(j + n // 2, run_end) + 1
    csum = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(values, axis=0)])
    counts = (hi - lo).reshape((-1,) + (1,) * (values.ndim - 1))
    return (csum[hi] - csum[lo]) / counts


def _runs(positive: np.ndarray, segment: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last)`` indices of the maximal runs of positive windows that do not cross a gap."""
    if not positive.any():
        return []
    breaks = np.concatenate([[True], np.diff(segment) != 0])
    starts = positive & (breaks | ~np.concatenate([[False], positive[:-1]]))
    ends = positive & (np.concatenate([breaks[1:], [True]]) | ~np.concatenate([positive[1:], [False]]))
    return list(zip(np.flatnonzero(starts).tolist(), np.flatnonzero(ends).tolist(), strict=True))


def detect_events(
    starts_s: np.ndarray,
    probabilities: np.ndarray,
    task: Task,
    window_s: float,
    stride_s: float,
    *,
    threshold: float | None = None,
    smoothing: str = "k_of_n",
    k: int | None = None,
    n: int | None = None,
    average_s: float = 12.0,
    merge_gap_s: float = 0.0,
    min_duration_s: float = 0.0,
) -> list[DetectedEvent]:
    """Events from window probabilities: threshold, smoothing, runs, merge gap, minimum duration.

    The rule, per class detected (binary tasks: the positive class; multi-class tasks, e.g. artefact types:
    every class but the first, which is the background):

    1. Windows with NaN probabilities (rejected) are left out; the classified windows are split into
       contiguous runs where consecutive starts differ by at most ``stride_s``
       (:func:`tasks.contiguous_segments`): a rejected stretch is a gap.
    2. Smoothing: ``"moving_average"`` first averages the probabilities over ``round(average_s /
       stride_s)`` windows centred on each window, within its run; ``"none"`` and ``"k_of_n"`` keep them.
    3. Decision: binary tasks, ``P(positive) >= threshold``; multi-class tasks, the class of highest
       (averaged) probability. ``"k_of_n"`` then makes a window positive when at least ``k`` of the last
       ``n`` windows of its run are (:func:`finetune.metrics.smooth_k_of_n`, causal).
    4. Events are maximal runs of positive windows, from the first window's start to the last window's end
       (the rule of :func:`finetune.metrics.find_events`, used by the event metrics).
    5. Events of one class separated by at most ``merge_gap_s`` seconds are merged.
    6. Events shorter than ``min_duration_s`` seconds are dropped.

    Parameters
    ----------
    starts_s : ndarray, shape (n_windows,)
        Window starts in s, increasing.
    probabilities : ndarray, shape (n_windows, n_classes)
        Window class probabilities in ``task.classes`` order; NaN rows for rejected windows.
    task : Task
    window_s, stride_s : float
        Window length and step in s.
    threshold : float | None
        Binary tasks; None: ``task.threshold``.
    smoothing : {"none", "k_of_n", "moving_average"}
    k, n : int | None
        ``k_of_n`` parameters in windows; None: ``task.smoothing_k`` / ``task.smoothing_n``.
    average_s : float
        ``moving_average`` length in s.
    merge_gap_s, min_duration_s : float
        In s, >= 0.

    Returns
    -------
    events : list of DetectedEvent
        Sorted by onset, then class. ``probability`` is the mean raw (unsmoothed) window probability of the
        class over the classified windows inside the event (after merging).

    Raises
    ------
    ValueError
        On mismatched shapes or an invalid smoothing setting.
    """
    starts_s = np.asarray(starts_s, dtype=np.float64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != (len(starts_s), task.n_classes):
        raise ValueError(
            f"Invalid value for the 'probabilities' parameter: expected shape ({len(starts_s)}, "
            f"{task.n_classes}), but got {probabilities.shape}."
        )
    if smoothing not in SMOOTHING_METHODS:
        raise ValueError(
            f"Invalid value for the 'smoothing' parameter. Allowed values are {list(SMOOTHING_METHODS)}, "
            f"but got {smoothing!r} instead."
        )
    k = task.smoothing_k if k is None else k
    n = task.smoothing_n if n is None else n
    if not 1 <= k <= n:
        raise ValueError(
            f"Invalid values for the 'k' and 'n' parameters: 1 <= k <= n is needed, but got k={k}, n={n}."
        )
    threshold = task.threshold if threshold is None else threshold
    valid = np.isfinite(probabilities).all(axis=1)
    idx = np.flatnonzero(valid)
    s, p = starts_s[idx], probabilities[idx]
    if len(s) == 0:
        return []
    segment = contiguous_segments(s, np.full(len(s), float(stride_s)))
    scores = p
    if smoothing == "moving_average":
        scores = _centred_mean(p, segment, max(1, int(round(average_s / stride_s))))
    if task.is_binary:
        targets = [task.positive_index]
        decisions = {task.positive_index: scores[:, task.positive_index] >= threshold}
    else:
        targets = list(range(1, task.n_classes))
        best = scores.argmax(axis=1)
        decisions = {c: best == c for c in targets}
    events = []
    for c in targets:
        positive = decisions[c]
        if smoothing == "k_of_n":
            positive = smooth_k_of_n(positive, segment, k, n)
        spans = []  # [first index, last index, onset_s, offset_s]
        for first, last in _runs(positive, segment):
            onset, offset = s[first], s[last] + window_s
            if spans and onset - spans[-1][3] <= merge_gap_s + _TIME_TOL_S:
                spans[-1][1], spans[-1][3] = last, max(spans[-1][3], offset)
            else:
                spans.append([first, last, onset, offset])
        for first, last, onset, offset in spans:
            if offset - onset < min_duration_s - _TIME_TOL_S:
                continue
            values = p[first : last + 1, c]
            peak = int(np.argmax(values))
            events.append(
                DetectedEvent(
                    float(onset),
                    float(offset - onset),
                    task.classes[c],
                    float(values.mean()),
                    float(values[peak]),
                    float(s[first + peak]),
                )
            )
    return sorted(events, key=lambda e: (e.onset_s, task.classes.index(e.trial_type)))


def hypnogram(starts_s: np.ndarray, probabilities: np.ndarray, task: Task, duration_s: float) -> dict:
    """Sleep stages of 30-s epochs (``task.epoch_s``) from window probabilities.

    A window belongs to the epoch ``floor(start_s / epoch_s)`` (as :func:`tasks.unit_index`); an
    epoch's probabilities are the mean of its classified windows', its stage the most probable class.

    Parameters
    ----------
    starts_s : ndarray, shape (n_windows,)
    probabilities : ndarray, shape (n_windows, n_classes)
        NaN rows for rejected windows.
    task : Task
        ``sleep_staging`` (or any multi-class task with epochs).
    duration_s : float
        Recording length in s (the last epoch is cut at the end).

    Returns
    -------
    hypnogram : dict
        ``onset_s`` (n_epochs,), ``duration_s`` (n_epochs,), ``stage`` (list of str, ``""`` for an epoch
        without a classified window), ``probabilities`` (n_epochs, n_classes; NaN rows without a window),
        ``n_windows`` (n_epochs,) classified windows per epoch. Epochs are those holding at least one window
        start, in time order.
    """
    starts_s = np.asarray(starts_s, dtype=np.float64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    epoch_s = float(task.epoch_s)
    epoch = np.floor(starts_s / epoch_s + _TIME_TOL_S).astype(np.int64)
    epochs = np.unique(epoch)
    position = np.searchsorted(epochs, epoch)
    valid = np.isfinite(probabilities).all(axis=1)
    sums = np.zeros((len(epochs), task.n_classes))
    np.add.at(sums, position[valid], probabilities[valid])
    counts = np.bincount(position[valid], minlength=len(epochs))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts[:, None]
    mean[counts == 0] = np.nan
    stage = [task.classes[int(np.argmax(row))] if c else "" for row, c in zip(mean, counts, strict=True)]
    onset = epochs * epoch_s
    return {
        "onset_s": onset.astype(np.float64),
        "duration_s": np.minimum(epoch_s, duration_s - onset),
        "stage": stage,
        "probabilities": mean,
        "n_windows": counts.astype(np.int64),
    }


def spike_wave_index(probabilities: np.ndarray, task: Task, threshold: float | None = None) -> float:
    """Spike-wave index in percent: classified windows with ``P(positive_class) >= threshold`` / all.

    The rule of :func:`finetune.metrics.swi_per_recording` (windows stand in for seconds); rejected windows
    (NaN) are left out. NaN when no window was classified.

    Parameters
    ----------
    probabilities : ndarray, shape (n_windows, 2)
    task : Task
        A binary task (``swi_quantification``).
    threshold : float | None
        None: ``task.threshold``.

    Returns
    -------
    swi : float
        In percent (0-100).
    """
    if not task.is_binary:
        raise ValueError(
            f"The spike-wave index needs a binary task; '{task.name}' has classes {list(task.classes)}."
        )
    p = np.asarray(probabilities, dtype=np.float64)[:, task.positive_index]
    p = p[np.isfinite(p)]
    if p.size == 0:
        return float("nan")
    return float(100.0 * np.mean(p >= (task.threshold if threshold is None else threshold)))


def recording_class(
    probabilities: np.ndarray, task: Task, threshold: float | None = None
) -> tuple[str, np.ndarray]:
    """The recording's class: mean of its classified windows' probabilities, then the task's decision.

    As :func:`tasks.aggregate` for the ``recording`` unit, and :func:`tasks.predict`
    (binary tasks: the positive class when its mean probability reaches ``threshold``).

    Parameters
    ----------
    probabilities : ndarray, shape (n_windows, n_classes)
        NaN rows for rejected windows.
    task : Task
    threshold : float | None
        Binary tasks; None: ``task.threshold``.

    Returns
    -------
    name : str
        The class (``""`` when no window was classified).
    mean : ndarray of float64, shape (n_classes,)
        Mean class probabilities (NaN when no window was classified).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    p = p[np.isfinite(p).all(axis=1)]
    if len(p) == 0:
        return "", np.full(task.n_classes, np.nan)
    mean = p.mean(axis=0)
    if threshold is not None and task.is_binary:
        task = dataclasses.replace(task, threshold=float(threshold))
    return task.classes[int(predict(task, mean[None])[0])], mean


# -- provenance ------------------------------------------------------------------------------------------


def project_version() -> dict:
    """Where this code comes from: the git commit of the checkout (read from ``.git``, no git command).

    Returns
    -------
    version : dict
        ``{"commit": sha or None, "root": path of the project}``.
    """
    root = Path(__file__).resolve().parents[1]
    commit = None
    try:
        head = (root / ".git" / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            ref_file = root / ".git" / ref
            if ref_file.is_file():
                commit = ref_file.read_text().strip()
            elif (root / ".git" / "packed-refs").is_file():
                for line in (root / ".git" / "packed-refs").read_text().splitlines():
                    if line.endswith(" " + ref):
                        commit = line.split()[0]
        else:
            commit = head
    except OSError:
        pass
    return {"commit": commit, "root": str(root)}


def versions() -> dict:
    """Versions of Python, torch, MNE, numpy and the project, for the summaries."""
    import mne

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mne": mne.__version__,
        "numpy": np.__version__,
        "project": project_version(),
    }


# -- batch ------------------------------------------------------------------------------------------------


@dataclass
class BatchResult:
    """Outcome of a prediction batch.

    Attributes
    ----------
    done : list of dict
        One short summary per annotated recording (``recording``, ``path``, ``output``, ``n_events``...).
    failed : list of (str, str)
        ``(file, reason)`` of each recording that could not be annotated (nothing of it is written).
    time_s : float
        Wall time of the batch.
    """

    done: list[dict] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    time_s: float = 0.0


def run_batch(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    predictor: Predictor,
    progress: bool = True,
) -> BatchResult:
    """Annotate many recordings; a bad one is reported and the batch goes on.

    Parameters
    ----------
    inputs : sequence of path-like
        Recordings, or folders searched recursively for recordings
        (:func:`preprocess.pipeline.find_recordings`).
    output : path-like
        Output folder: one sub-folder per recording (:func:`finetune.predict_outputs.annotate_recording`),
        and ``predict_summary.json`` for the batch.
    predictor : Predictor
    progress : bool
        Progress bars over recordings and over each recording's windows.

    Returns
    -------
    result : BatchResult

    Raises
    ------
    FileNotFoundError
        If an input does not exist.
    ValueError
        If no recording is found, or two recordings share a recording id (file name without extension).
    """
    from tqdm import tqdm

    from finetune.predict_outputs import annotate_recording, write_batch_summary

    output = Path(output)
    # Earlier outputs (annotation-only EDF+ files) are not recordings: leave the output folder out.
    recordings = [
        p for p in find_recordings(list(inputs)) if not p.resolve().is_relative_to(output.resolve())
    ]
    if not recordings:
        raise ValueError(f"No recording found in {[str(p) for p in inputs]} (--input).")
    by_id: dict[str, list[Path]] = {}
    for path in recordings:
        by_id.setdefault(recording_id(path), []).append(path)
    clashes = {k: v for k, v in by_id.items() if len(v) > 1}
    if clashes:
        name, paths = next(iter(clashes.items()))
        raise ValueError(
            f"Two recordings would write the same output folder {name!r}: {[str(p) for p in paths]}; "
            f"annotate them into different --output folders."
        )
    result = BatchResult()
    start = time.perf_counter()
    bar = tqdm(recordings, desc="recordings", unit="recording", disable=not progress, dynamic_ncols=True)
    for path in bar:
        bar.set_postfix_str(path.name)
        try:
            summary = annotate_recording(path, output, predictor, progress=progress)
        except Exception as err:  # reported per recording; the batch goes on (the traceback is logged)
            logger.debug("annotating %s failed", path, exc_info=True)
            reason = f"{type(err).__name__}: {err}"
            if path.name not in reason:
                reason = f"{path.name}: {reason}"
            result.failed.append((str(path), reason))
            logger.error("FAILED %s: %s", path, reason)
            continue
        result.done.append(summary)
    result.time_s = time.perf_counter() - start
    write_batch_summary(output, predictor, result)
    return result
