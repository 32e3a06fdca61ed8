"""A fine-tuned model and its training preprocessing, applied to a recording window by window.

1. **Loading** (:func:`load_finetuned`): a fine-tuning checkpoint (``checkpoint-best.pth`` or its run
   folder, written by ``finetune/finetune_main.py``) gives the model (architecture from the checkpoint's
   ``config["model"]``, classes from ``config["task"]``) and the preprocessing config of its training data
   (``checkpoint["preprocess"]``, else ``preprocess.yaml`` beside the checkpoint, else the defaults
   ``configs/preprocess/m4cea.yaml`` with a warning).
2. **Windows** (:meth:`Predictor.window_probabilities`): the recording is windowed block by block with the
   training preprocessing (:meth:`preprocess.pipeline.Preprocessor.iter_windows`: montage, filters,
   resampling, NaN/flat/amplitude checks), each accepted window is adapted to the model as in training
   (:class:`preprocess.adapt.WindowAdapter` with the input contract of the run's ``model`` config,
   :func:`models.get_input_contract`, for every family: M4CEA's and hms_mobilenetv3's per-channel scaling,
   LaBraM's 200 Hz and uV / 100, a braindecode model's own rate and scaling, ``model.zoo_sfreq`` included)
   and classified (softmax over all the task's classes); rejected windows keep NaN probabilities and
   their reason. Memory is a few preprocessing blocks (one per ``preprocess_threads``, plus the one
   ahead) plus one batch, whatever the recording's length.

Speed: the next block is preprocessed while the model runs on this one (:func:`prefetch`), by several
threads on a GPU machine (config ``preprocess_threads``); windows are classified in full batches across
blocks. The GPU when present (bf16 autocast); on the CPU, bf16 autocast when the CPU computes bf16
natively (AVX512-BF16, AMX), and for recordings of 4 hours or more (config ``compile``) a frozen bf16 copy
of the model compiled by ``torch.compile``. The model dominates: m4cea_base costs 4.8 GFLOP in matrix
products and 9.8 million attention exponentials per 4-s window, 103 TFLOP for 24 hours
(``scripts/bench_predict.py`` counts them).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

from finetune.checkpoints import BEST_CHECKPOINT, PREPROCESS_CONFIG_FILE, PREPROCESS_DEFAULTS, build_model
from finetune.heads import head_prefixes
from finetune.predict_config import (
    COMPILE_MIN_WINDOWS,
    MAX_PREPROCESS_THREADS,
)
from models import get_input_contract
from models.attention import configure_attention, fold_attention, use_fused_attention
from preprocess.adapt import WindowAdapter
from preprocess.pipeline import OpenRecording, Preprocessor
from runtime.amp import AMP_DTYPES
from runtime.checkpoint import CHECKPOINT_FORMAT, HASH_KEY, load_verified
from runtime.config import CONFIG_DIR, ConfigError, UsageError, load_config, merge_config
from tasks import TASKS, Task

__all__ = [
    "MODEL_OUTPUT_REASON",
    "FineTunedModel",
    "Predictor",
    "WindowPredictions",
    "load_finetuned",
    "prefetch",
    "resolve_device",
]

logger = logging.getLogger("finetune.predictor")

#: Rejection reason of a window the model gave non-finite probabilities for (besides the preprocessing's
#: :data:`preprocess.pipeline.REJECT_REASONS`).
MODEL_OUTPUT_REASON = "model_output"


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
        The epoch of the checkpoint, numbered from 1 as in the logs and results.json (the file stores the
        0-based index).
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
        raise UsageError(f"The checkpoint {ckpt_path} holds a 'preprocess' entry that is not a mapping.")
    try:
        return merge_config(defaults, dict(saved), source=f"the preprocessing config in {ckpt_path}"), source
    except ConfigError as err:
        raise UsageError(
            f"The checkpoint {ckpt_path} records a preprocessing config this version cannot use: {err}"
        ) from None


def _refuse(ckpt_path: Path, kind: str) -> NoReturn:
    raise UsageError(
        f"The checkpoint {ckpt_path} is {kind}. Fine-tune it first (python finetune/finetune_main.py "
        f"--task TASK --pretrained {ckpt_path} --data DIR) and pass the fine-tuning run folder to "
        "--checkpoint."
    )


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
    runtime.config.UsageError
        A ValueError: if the file is damaged or unreadable (:func:`runtime.checkpoint.load_verified`, its
        message only), is a readable torch file but not a training checkpoint of this project, is a
        pretraining checkpoint (no classification head: fine-tune it first), records no task, or its
        weights do not fit the model its config names.
    """
    ckpt_path = _checkpoint_file(Path(path))
    try:  # a damaged or unreadable file: its message says so, no hint about the kind of checkpoint
        checkpoint = load_verified(ckpt_path, what="checkpoint")
    except ValueError as err:
        raise UsageError(str(err)) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(  # readable, but of another kind (a state dict, an official checkpoint...)
            f"{ckpt_path} is not a training checkpoint of this project (expected a dict with "
            f"format={CHECKPOINT_FORMAT!r}) (--checkpoint needs a fine-tuning checkpoint of this project, "
            "from finetune/finetune_main.py)."
        )
    if HASH_KEY not in checkpoint:
        logger.warning(
            "The checkpoint %s predates payload hashes: only its zip CRCs were checked.", ckpt_path
        )
    cfg = checkpoint.get("config")
    state = checkpoint["model"]
    no_head = "a pretraining checkpoint: its model has no classification head"
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("task"), Mapping):
        pretrain = any(k.startswith(("head_magnitude", "head_phase")) for k in state)
        no_task = "not a fine-tuning checkpoint: its config has no task"
        _refuse(ckpt_path, no_head if pretrain or "head.weight" not in state else no_task)
    task_section = dict(cfg["task"])
    if task_section.get("name") not in TASKS:
        raise UsageError(
            f"The checkpoint {ckpt_path} names the task {task_section.get('name')!r}, which is not one "
            f"of {list(TASKS)}."
        )
    task = Task.from_config(task_section)
    model = build_model(cfg, task)  # any family: its classifier (get_classifier) must be in the weights
    if not any(key.startswith(head_prefixes(model)) for key in state):
        _refuse(ckpt_path, no_head)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise UsageError(
            f"The weights in {ckpt_path} do not fit the model its config names "
            f"({cfg['model']['name']}, {task.n_classes} classes): {err}"
        ) from None
    model.eval()
    preprocess_config, source = _preprocess_config_of(checkpoint, ckpt_path)
    epoch = checkpoint.get("epoch")
    epoch = None if epoch is None else int(epoch) + 1  # numbered from 1; the file keeps the 0-based index
    return FineTunedModel(model, task, dict(cfg), preprocess_config, source, ckpt_path, epoch)


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
        ``""`` for a classified window (its probabilities are finite), else why it was rejected: a reason
        of :data:`preprocess.pipeline.REJECT_REASONS` (``nan``, ``inf``, ``flat``, ``amplitude``), or
        :data:`MODEL_OUTPUT_REASON` when the model gave non-finite probabilities.
    window_s : float
        Window length in s.
    stride_s : float
        Step between window starts in s.
    model_s : float
        Wall time spent in the model (:meth:`Predictor.classify`), in s, ``compile_s`` included: with
        the total time of a prediction it says where the time went (the rest is reading, preprocessing
        not overlapped with the model, and the outputs).
    compile_s : float
        Wall time of the batch that compiled the model (``torch.compile``: the compilation and that
        batch), in s; 0 when this recording did not compile it (not compiled, or compiled before).
    """

    starts_s: np.ndarray
    probabilities: np.ndarray
    reasons: np.ndarray
    window_s: float
    stride_s: float
    model_s: float = 0.0
    compile_s: float = 0.0

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
        raise UsageError(
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
        try:
            self.preprocessor = Preprocessor(preprocess_config)
        except ValueError as err:  # the constructor only validates the (user-changeable) config
            if isinstance(err, UsageError):
                raise
            raise UsageError(f"Invalid preprocessing config for prediction: {err}") from err
        model = finetuned.model
        p = self.preprocessor
        # The windows are adapted to the model family as in training (finetune.data): rate and scaling.
        contract = get_input_contract(finetuned.config["model"])
        try:
            self.adapter = WindowAdapter(contract, p.sfreq, p.n_times)
        except UsageError:
            self.adapter = None
        adapted = None if self.adapter is None else self.adapter.n_times
        n_times = getattr(model, "n_times", adapted)  # LaBraM takes any length that fits its contract
        if self.adapter is None or (p.montage.n_chans, adapted) != (model.n_chans, n_times):
            takes = f"{model.n_chans} x {n_times}"
            if n_times is None:
                patches = f"1 to {contract.max_patches} patches of {contract.patch_s:g} s"
                takes = f"{model.n_chans} channels x {patches}"
            raise UsageError(
                f"The preprocessing makes windows of {p.montage.n_chans} channels x {p.n_times} samples "
                f"(montage {preprocess_config['montage']!r}, window_s={preprocess_config['window_s']} s at "
                f"sfreq={preprocess_config['sfreq']} Hz), but the model in {finetuned.checkpoint} takes "
                f"{takes}: use the preprocessing config of its training data."
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
        # The inference form: the TIE embedding as matrix products, fused attention (on the CPU too) with
        # the qk LayerNorms' centring folded into the qkv weights.
        if hasattr(self.model, "fuse"):
            self.model.fuse()
        configure_attention(self.model, use_fused_attention(self.device, inference=True))
        fold_attention(self.model)
        gpu_threads = max(1, min(MAX_PREPROCESS_THREADS, (os.cpu_count() or 1) - 1))
        self.preprocess_threads = config["preprocess_threads"] or (
            gpu_threads if self.device.type == "cuda" else 1
        )
        self._compiled = None  # torch.compile(self.model), made at the first recording that needs it
        self._compile_failed = False
        self.compile_s = None  # wall s of the first compiled call (the compilation and one batch)
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
            In uV; adapted here to the model as in training (:class:`preprocess.adapt.WindowAdapter`:
            M4CEA's per-channel scaling, LaBraM's 200 Hz and uV / 100), unless ``scaled``.
        compiled : bool
            Run the ``torch.compile``d model (every batch padded to ``batch_size`` windows, so that it
            compiles once). If the compilation fails (e.g. no C++ compiler for the CPU backend), a warning
            names the error and the model runs uncompiled from then on.
        scaled : bool
            The windows are already adapted (``self.adapter``).

        Returns
        -------
        probabilities : ndarray of float64, shape (n, n_classes)
        """
        out = np.empty((len(windows), self.task.n_classes))
        dtype = AMP_DTYPES[self.amp]
        autocast = torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)
        batch = self.config["batch_size"]
        if compiled and self._compiled is None and not self._compile_failed:
            self._compiled = self._compile()
        for i in range(0, len(windows), batch):
            x = windows[i : i + batch] if scaled else self.adapter(windows[i : i + batch])
            n = len(x)
            use = compiled and not self._compile_failed
            if use and n < batch:
                x = np.concatenate([x, np.zeros((batch - n, *x.shape[1:]), dtype=x.dtype)])
            x = torch.from_numpy(np.ascontiguousarray(x)).to(self.device, non_blocking=True)
            if use:
                first_call = self.compile_s is None
                start = time.perf_counter()
                try:
                    logits = self._compiled(x)
                    if first_call:  # torch.compile compiles at the first call
                        self.compile_s = time.perf_counter() - start
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
        matrices are folded into constants, the weights pre-packed for oneDNN, bias and GELU fused into
        the linear layers) and, with bf16, the compiled model is a bf16 copy of the model instead of
        autocast (no weight casts at each call): 1.2x the compiled autocast throughput on this project's
        CPU. Freezing is inductor's global ``config.freezing``, set around every call (the compilation
        happens at the first): ``torch.compile(options={"freezing": True})`` does not reach the check
        that turns it on (torch 2.14: the weights stayed graph inputs, no oneDNN linear). On CUDA:
        autocast, as uncompiled.
        """
        dtype = AMP_DTYPES[self.amp]
        if self.device.type == "cuda":
            compiled = torch.compile(self.model, dynamic=False)
            autocast = torch.autocast("cuda", dtype=dtype, enabled=dtype is not None)

            def run(x):
                with autocast:
                    return compiled(x)

            return run
        from torch._inductor import config as inductor_config

        model = copy.deepcopy(self.model).to(dtype) if dtype is not None else self.model
        compiled = torch.compile(model, dynamic=False, options={"freezing": True})
        weights_dtype = next(model.parameters()).dtype  # any family: the (bf16) copy's

        def run(x):
            with inductor_config.patch(freezing=True):
                return compiled(x.to(weights_dtype))

        return run

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
        compile_s_before, model_s = self.compile_s, 0.0

        def classify(x):
            nonlocal model_s
            start = time.perf_counter()
            p = self.classify(x, compiled=compiled, scaled=True)
            model_s += time.perf_counter() - start
            return p

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
        # adapted (M4CEA: scaled) where the blocks are made, in the prefetch thread (a quantile per channel
        # and window: 3-4 s for 24 h, off the model's thread)
        blocks = ((starts_s, self.adapter(w), reasons_) for starts_s, w, reasons_ in blocks)
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
                    classified.append((rows[:n_full], classify(x[:n_full])))
                    waiting, waiting_rows, n_waiting = [x[n_full:]], [rows[n_full:]], n_waiting - n_full
                bar.update(len(windows))
            if n_waiting:
                x, rows = np.concatenate(waiting), np.concatenate(waiting_rows)
                classified.append((rows, classify(x)))
        probabilities = np.full((n_seen, self.task.n_classes), np.nan)
        for rows, p in classified:
            probabilities[rows] = p
        reasons = np.concatenate(reasons)
        # A classified window always has its probabilities: a non-finite model output is a rejection.
        broken = (reasons == "") & ~np.isfinite(probabilities).all(axis=1)
        if broken.any():
            logger.warning(
                "%s: the model gave non-finite probabilities for %d window(s) (first at %g s); they are "
                "marked rejected (model_output).",
                recording.recording_id,
                int(broken.sum()),
                float(np.concatenate(starts)[broken][0]),
            )
            reasons[broken] = MODEL_OUTPUT_REASON
            probabilities[broken] = np.nan
        compile_s = self.compile_s if compile_s_before is None and self.compile_s is not None else 0.0
        return WindowPredictions(
            np.concatenate(starts),
            probabilities,
            reasons,
            self.window_s,
            self.stride_s,
            model_s=model_s,
            compile_s=compile_s,
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
