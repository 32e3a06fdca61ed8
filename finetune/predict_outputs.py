"""What ``finetune/predict.py`` writes for each recording: tables, annotations, a figure and a summary.

One folder per recording, ``OUTPUT/<recording_id>/``, written into a temporary folder and renamed into
place (a failed recording leaves nothing; a rerun replaces the folder). ``<stem>`` is the recording id,
without a BIDS ``_eeg`` suffix (``sub-01_task-sleep_eeg`` -> ``sub-01_task-sleep``)::

    <stem>_probabilities.csv   one row per window: start_s, end_s, p_<class>... (empty when rejected),
                               rejected
                               (the reason: nan | inf | flat | amplitude | model_output; empty when
                               classified: a row with empty probabilities always has its reason)
    <stem>_events.tsv          detection tasks: detected events; sleep staging: one row per 30-s epoch.
                               BIDS events columns onset, duration (s from the recording's first sample),
                               trial_type (the class), probability (mean over the event's windows)
    <stem>_events.json         BIDS sidecar describing the columns
    <stem>_annot.fif           the same events as mne.Annotations (MNE's browser:
                               raw.set_annotations(mne.read_annotations(...)); raw.plot())
    <stem>_annotations.edf     the same events as an annotation-only EDF+ file (no signals, like the Sleep-EDF
                               hypnograms), which EDF viewers import (EDFbrowser: File > Import annotations)
                               and mne.read_annotations reads
    <stem>_hypnogram.csv       sleep staging: onset_s, duration_s, stage, p_<stage>..., n_windows
    <stem>_prediction.png      probability trace over the whole recording with events shaded (a hypnogram for
                               sleep) and rejected windows hatched with their reason, and the EEG (as the
                               model saw it, uV) around the most confident event, zero-filled pairs marked
    <stem>_summary.json        recording, task, model, windows, events, totals, SWI / class / stage totals,
                               config (prediction, preprocessing, task, model), versions, timing

``OUTPUT/predict_summary.json`` lists the batch: recordings done (with their key numbers) and failed (file,
reason).

Why an annotation-only EDF+ and not an EDF+ with the signals: it is small (kilobytes for a 24-h recording),
does not duplicate or alter patient data, and is the layout EDF viewers already import (PhysioNet's
Sleep-EDF ``*-Hypnogram.edf`` files are the same); its start date and time are the recording's, so the
events line up with the original file.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import json
import logging
import math
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from finetune.event_scoring import MIN_RATE_DURATION_S
from finetune.outputs import json_safe, write_results
from finetune.postprocess import DetectedEvent, detect_events, hypnogram, recording_class, spike_wave_index
from finetune.predict_config import DETECTION_TASKS, RECORDING_TASKS, without_events
from finetune.predict_figure import plot_prediction, rejected_spans
from finetune.predictor import Predictor, WindowPredictions
from runtime.files import atomic_write

__all__ = [
    "BATCH_SUMMARY_FILE",
    "BatchResult",
    "project_version",
    "versions",
    "annotate_recording",
    "output_stem",
    "plot_prediction",
    "rejected_spans",
    "write_annotations_edf",
    "write_annotations_fif",
    "write_batch_summary",
    "write_events_tsv",
    "write_hypnogram_csv",
    "write_window_csv",
]

logger = logging.getLogger("finetune.predict_outputs")

#: The batch's summary in the output folder.
BATCH_SUMMARY_FILE = "predict_summary.json"


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


def output_stem(rec_id: str) -> str:
    """File name prefix of a recording's outputs: its id without a BIDS ``_eeg`` suffix."""
    return rec_id[: -len("_eeg")] if rec_id.endswith("_eeg") and len(rec_id) > 4 else rec_id


def _num(value: float) -> str:
    """A float as CSV/TSV text: shortest repr, empty for NaN."""
    return "" if value is None or not math.isfinite(value) else repr(float(value))


# -- tables ---------------------------------------------------------------------------------------------


def write_window_csv(path: str | os.PathLike, predictions: WindowPredictions, classes) -> Path:
    """Per-window probabilities: ``start_s, end_s, p_<class>..., rejected``.

    Parameters
    ----------
    path : path-like
    predictions : WindowPredictions
    classes : sequence of str
        Class names, in the order of the probability columns.

    Returns
    -------
    path : Path
        Times in s from the recording's first sample; rejected windows have empty probabilities and their
        reason in ``rejected``.
    """
    with atomic_write(path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["start_s", "end_s", *(f"p_{c}" for c in classes), "rejected"])
        for start, p, reason in zip(
            predictions.starts_s, predictions.probabilities, predictions.reasons, strict=True
        ):
            writer.writerow([_num(start), _num(start + predictions.window_s), *(_num(v) for v in p), reason])
    return Path(path)


def write_events_tsv(path: str | os.PathLike, events: list[DetectedEvent], description: str) -> Path:
    """Events as a BIDS ``*_events.tsv`` (``onset, duration, trial_type, probability``) and its JSON sidecar.

    Parameters
    ----------
    path : path-like
        The ``.tsv`` file; the sidecar is written beside it with the suffix ``.json``.
    events : list of DetectedEvent
    description : str
        What ``trial_type`` holds, for the sidecar.

    Returns
    -------
    path : Path

    References
    ----------
    BIDS specification, "Task events" (``onset`` and ``duration`` in seconds, ``n/a`` for missing values).
    """
    path = Path(path)
    with atomic_write(path, "w") as f:
        f.write("onset\tduration\ttrial_type\tprobability\n")
        for e in events:
            probability = f"{e.probability:.4f}" if math.isfinite(e.probability) else "n/a"
            f.write(
                f"{_num(round(e.onset_s, 6))}\t{_num(round(e.duration_s, 6))}\t{e.trial_type}\t"
                f"{probability}\n"
            )
    sidecar = {
        "onset": {"Description": "Start of the event from the beginning of the recording", "Units": "s"},
        "duration": {"Description": "Length of the event", "Units": "s"},
        "trial_type": {"Description": description},
        "probability": {
            "Description": "Mean model probability of trial_type over the event's windows",
            "Units": "probability (0-1)",
        },
    }
    with atomic_write(path.with_suffix(".json"), "w") as f:
        json.dump(sidecar, f, indent=1)
        f.write("\n")
    return path


def _annotations(events: list[DetectedEvent], raw):
    import mne

    meas_date = raw.info["meas_date"]
    offset = (
        raw.first_time if meas_date is not None else 0.0
    )  # onsets relative to meas_date, or to the first sample
    return mne.Annotations(
        [e.onset_s + offset for e in events],
        [e.duration_s for e in events],
        [e.trial_type for e in events],
        orig_time=meas_date,
    )


def write_annotations_fif(path: str | os.PathLike, events: list[DetectedEvent], raw) -> Path:
    """Events as ``mne.Annotations`` in a FIF file (``*_annot.fif``), aligned with the recording.

    With ``orig_time`` the recording's measurement date (onsets shifted by ``raw.first_time``), or None
    (onsets from the first sample) when the recording has none; ``raw.set_annotations`` lines them up
    either way.
    """
    path = Path(path)
    _annotations(events, raw).save(path, overwrite=True, verbose="error")
    return path


def write_annotations_edf(path: str | os.PathLike, events: list[DetectedEvent], raw) -> Path:
    """Events as an annotation-only EDF+ file (edfio), starting at the recording's start date and time.

    Each annotation's text is its class; onsets in s from the recording's first sample. A file needs at
    least one annotation: without events it holds one zero-length ``no events detected`` annotation at 0 s.
    """
    import edfio

    meas_date = raw.info["meas_date"]
    kwargs = {}
    if meas_date is not None:
        start = meas_date + datetime.timedelta(seconds=float(raw.first_time))
        if 1985 <= start.year <= 2084:  # EDF's clipping date range
            kwargs = {
                "recording": edfio.Recording(startdate=start.date()),
                "starttime": start.time().replace(microsecond=0),
            }
        else:
            logger.warning(
                "%s: the recording's date %s is outside EDF's range 1985-2084; the EDF+ annotations "
                "file has no start date (its onsets are from the recording's start).",
                path,
                start.date(),
            )
    annotations = [
        edfio.EdfAnnotation(round(e.onset_s, 6), round(e.duration_s, 6), e.trial_type) for e in events
    ]
    if not annotations:
        annotations = [edfio.EdfAnnotation(0.0, None, "no events detected")]
    edf = edfio.Edf([], annotations=annotations, **kwargs)
    with atomic_write(path, "wb") as f:
        edf.write(f)
    return Path(path)


def write_hypnogram_csv(path: str | os.PathLike, hyp: dict, classes) -> Path:
    """Hypnogram: ``onset_s, duration_s, stage, p_<stage>..., n_windows`` per 30-s epoch (see
    :func:`finetune.postprocess.hypnogram`)."""
    with atomic_write(path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["onset_s", "duration_s", "stage", *(f"p_{c}" for c in classes), "n_windows"])
        for i in range(len(hyp["onset_s"])):
            writer.writerow(
                [
                    _num(hyp["onset_s"][i]),
                    _num(hyp["duration_s"][i]),
                    hyp["stage"][i],
                    *(_num(v) for v in hyp["probabilities"][i]),
                    int(hyp["n_windows"][i]),
                ]
            )
    return Path(path)


# -- one recording --------------------------------------------------------------------------------------


@dataclass
class _TaskResults:
    """What the task makes of one recording's window probabilities."""

    events: list[DetectedEvent]  # detected events (detection tasks) or scored epochs (sleep staging)
    hyp: dict | None  # hypnogram (sleep staging)
    summary: dict  # task-specific entries of the summary
    recording_class: str
    mean: np.ndarray  # (n_classes,) mean window probabilities


def _task_results(predictor: Predictor, duration_s: float, predictions: WindowPredictions) -> _TaskResults:
    task, cfg, threshold = predictor.task, predictor.config, predictor.threshold
    p = predictions.probabilities
    events: list[DetectedEvent] = []
    hyp = None
    summary: dict = {}
    if task.name in DETECTION_TASKS:
        sm = cfg["smoothing"]
        events = detect_events(
            predictions.starts_s,
            p,
            task,
            predictions.window_s,
            predictions.stride_s,
            threshold=threshold,
            smoothing=sm["method"],
            k=sm["k"],
            n=sm["n"],
            average_s=sm["window_s"],
            merge_gap_s=cfg["merge_gap_s"],
            min_duration_s=cfg["min_duration_s"],
        )
        total_s = float(sum(e.duration_s for e in events))
        summary["events"] = [dataclasses.asdict(e) for e in events]
        summary["totals"] = {
            "n_events": len(events),
            "event_duration_s": total_s,
            "event_fraction": total_s / duration_s,
            "events_per_hour": len(events) / (duration_s / 3600.0),
            "by_class": {
                c: sum(e.trial_type == c for e in events) for c in sorted({e.trial_type for e in events})
            },
        }
        if duration_s < MIN_RATE_DURATION_S:  # issue 11: no silent extrapolation of a rate
            summary["totals"]["events_per_hour_note"] = (
                f"extrapolated from {duration_s:g} s of EEG (less than {MIN_RATE_DURATION_S / 60:g} min): "
                "not a measured rate"
            )
        if task.name == "swi_quantification":
            summary["swi_percent"] = spike_wave_index(p, task, threshold)
    if task.name == "sleep_staging":
        hyp = hypnogram(predictions.starts_s, p, task, duration_s)
        staged = [i for i, stage in enumerate(hyp["stage"]) if stage]
        for i in staged:  # one event per scored epoch, as sleep scorers annotate
            p_stage = float(hyp["probabilities"][i, task.classes.index(hyp["stage"][i])])
            onset = float(hyp["onset_s"][i])
            events.append(
                DetectedEvent(onset, float(hyp["duration_s"][i]), hyp["stage"][i], p_stage, p_stage, onset)
            )
        minutes = {
            c: sum(float(hyp["duration_s"][i]) for i in staged if hyp["stage"][i] == c) / 60
            for c in task.classes
        }
        summary["hypnogram"] = {
            "epoch_s": float(task.epoch_s),
            "n_epochs": len(hyp["stage"]),
            "n_epochs_unscored": len(hyp["stage"]) - len(staged),
            "minutes_per_stage": minutes,
        }
    name, mean = recording_class(p, task, threshold)
    summary["recording_class"] = {
        "class": name,
        "probabilities": dict(zip(task.classes, mean.tolist(), strict=True)),
        "n_windows": int(predictions.accepted.sum()),
    }
    return _TaskResults(events, hyp, summary, name, mean)


def _excerpt_focus(task, predictions: WindowPredictions, results: _TaskResults) -> tuple[float, tuple, str]:
    """Where the figure's EEG excerpt looks: the peak of the most confident event, else the most confident
    window of the recording's class (binary tasks: of the positive class). Returns (window start in s,
    (start, end) in s to shade, title)."""
    if results.events and task.name in DETECTION_TASKS:
        top = max(results.events, key=lambda e: (e.probability, e.peak_probability))
        title = (
            f"Most confident event: {top.trial_type} at {top.onset_s:g}-{top.offset_s:g} s "
            f"(mean p {top.probability:.2f})"
        )
        return top.peak_s, (top.onset_s, top.offset_s), title
    p = predictions.probabilities
    column = task.positive_index if task.is_binary else task.classes.index(results.recording_class)
    best = int(np.argmax(np.where(predictions.accepted, p[:, column], -np.inf)))
    center = float(predictions.starts_s[best])
    title = (
        f"{'No event; w' if task.name in DETECTION_TASKS else 'W'}indow of highest "
        f"P({task.classes[column]}) = {p[best, column]:.2f} at {center:g} s"
    )
    return center, (center, center + predictions.window_s), title


def _write_files(
    folder: Path, stem: str, predictor: Predictor, rec, predictions, results: _TaskResults
) -> dict:
    """Write the recording's tables, annotations and figure into ``folder``; returns ``{kind: path}``."""
    task, cfg = predictor.task, predictor.config
    files = {
        "probabilities": write_window_csv(folder / f"{stem}_probabilities.csv", predictions, task.classes)
    }
    events = results.events
    if task.name in DETECTION_TASKS or results.hyp is not None:
        what = (
            "sleep stage of the 30-s epoch"
            if results.hyp is not None
            else f"class detected by the model ({', '.join(task.classes)})"
        )
        files["events"] = write_events_tsv(folder / f"{stem}_events.tsv", events, what)
        if cfg["annotations"]["fif"]:
            files["annotations_fif"] = write_annotations_fif(folder / f"{stem}_annot.fif", events, rec.raw)
        if cfg["annotations"]["edf"]:
            files["annotations_edf"] = write_annotations_edf(
                folder / f"{stem}_annotations.edf", events, rec.raw
            )
    if results.hyp is not None:
        files["hypnogram"] = write_hypnogram_csv(folder / f"{stem}_hypnogram.csv", results.hyp, task.classes)
    if cfg["figure"]["enabled"]:
        fig_cfg = cfg["figure"]
        center, highlight, excerpt_title = _excerpt_focus(task, predictions, results)
        finetuned = predictor.finetuned
        title = f"{rec.path.name}: {task.name} with {finetuned.model_name} ({finetuned.checkpoint.name})"
        if "swi_percent" in results.summary:
            title += f", SWI {results.summary['swi_percent']:.1f} %"
        if task.name in RECORDING_TASKS:
            name = results.recording_class
            title += f", recording class {name} ({results.mean[task.classes.index(name)]:.2f})"
        elif without_events(task):  # window classes without events (harmful_brain_activity): their mean
            name = results.recording_class
            title += f", highest mean probability {name} ({results.mean[task.classes.index(name)]:.2f})"
        if fig_cfg.get("note"):
            title += f"\n{fig_cfg['note']}"
        files["figure"] = plot_prediction(
            folder / f"{stem}_prediction.png",
            predictions,
            task,
            duration_s=rec.duration_s,
            events=events if task.name in DETECTION_TASKS else [],
            threshold=predictor.threshold,
            hyp=results.hyp,
            excerpt=predictor.excerpt(rec, center, fig_cfg["eeg_excerpt_s"]),
            ch_names=predictor.preprocessor.montage.ch_names,
            sfreq=predictor.preprocessor.sfreq,
            title=title,
            highlight=highlight,
            excerpt_title=excerpt_title,
            filled_channels=rec.filled_channels,
            dpi=fig_cfg["dpi"],
            width_in=fig_cfg["width_in"],
        )
    return files


def annotate_recording(
    path: str | os.PathLike, output: str | os.PathLike, predictor: Predictor, progress: bool = False
) -> dict:
    """Annotate one recording into ``output/<recording_id>/`` (see the module docstring for the files).

    Parameters
    ----------
    path : path-like
        A recording the preprocessing reads.
    output : path-like
        The batch's output folder.
    predictor : Predictor
    progress : bool
        Progress bar over the recording's windows.

    Returns
    -------
    summary : dict
        A short summary for the batch: ``recording``, ``path``, ``output``, ``duration_s``, ``n_windows``,
        ``n_rejected``, ``rejected`` (windows per reason), ``filled_channels`` (montage pairs filled with
        zeros), ``time_s`` and the task's result (``n_events``, ``swi_percent``, ``class``,
        ``minutes_per_stage``).

    Raises
    ------
    FileNotFoundError, preprocess.pipeline.PreprocessError, preprocess.channels.MissingChannelsError
        For a recording that cannot be read or windowed (nothing is written).
    ValueError
        If no window of the recording passed the checks.
    """
    start = time.perf_counter()
    path, output = Path(path), Path(output)
    task, finetuned = predictor.task, predictor.finetuned
    rec = predictor.preprocessor.open(path)
    predictions = predictor.window_probabilities(rec, progress=progress)
    windows_time_s = time.perf_counter() - start
    accepted = predictions.accepted
    if not accepted.any():
        raise ValueError(
            f"no window of {path.name} passed the checks (rejected: {predictions.rejected_counts})"
        )
    results = _task_results(predictor, rec.duration_s, predictions)
    stem = output_stem(rec.recording_id)
    final_dir = output / rec.recording_id
    for stale in (output / ".tmp").glob(f"{rec.recording_id}.*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp_dir = output / ".tmp" / f"{rec.recording_id}.{os.getpid()}"
    try:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        files = _write_files(tmp_dir, stem, predictor, rec, predictions, results)
        elapsed = time.perf_counter() - start
        meas_date = rec.raw.info["meas_date"]
        summary = {
            "recording": {
                "path": str(path),
                "recording_id": rec.recording_id,
                "duration_s": rec.duration_s,
                "sfreq_hz": rec.sfreq_in,
                "n_channels_read": len(rec.used),
                "filled_channels": rec.filled_channels,
                "meas_date": None if meas_date is None else meas_date.isoformat(),
            },
            "task": {
                "name": task.name,
                "classes": list(task.classes),
                "positive_class": task.positive_class,
                "unit": task.unit,
                "threshold": predictor.threshold,
            },
            "model": {
                "name": finetuned.model_name,
                "checkpoint": str(finetuned.checkpoint),
                "epoch": finetuned.epoch,
                "n_parameters": int(sum(q.numel() for q in predictor.model.parameters())),
            },
            "windows": {
                "window_s": predictions.window_s,
                "stride_s": predictions.stride_s,
                "n_windows": len(predictions.starts_s),
                "n_classified": int(accepted.sum()),
                "rejected": predictions.rejected_counts,
            },
            "events": [],
            **results.summary,
            "files": {kind: Path(f).name for kind, f in files.items()},
            "config": {
                "predict": predictor.config,
                "preprocess": predictor.preprocess_config,
                "preprocess_source": finetuned.preprocess_source,
                "task": finetuned.config["task"],
                "model": finetuned.config["model"],
            },
            "versions": versions(),
            "runtime": {
                "device": str(predictor.device),
                "amp": predictor.amp,
                "preprocess_threads": predictor.preprocess_threads,
                "windows_s": windows_time_s,  # reading, preprocessing and the model
                "time_s": elapsed,
                "windows_per_s": len(predictions.starts_s) / windows_time_s,
                "model_s": predictions.model_s,  # of windows_s; compile_s included
                "compile_s": predictions.compile_s,
            },
        }
        write_results(tmp_dir / f"{stem}_summary.json", summary)
        if final_dir.exists():  # a rerun replaces the recording's folder
            shutil.rmtree(final_dir)
        os.replace(tmp_dir, final_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    finally:
        with contextlib.suppress(OSError):
            (output / ".tmp").rmdir()  # only when empty (no other process is writing there)
    short = {
        "recording": rec.recording_id,
        "path": str(path),
        "output": str(final_dir),
        "duration_s": rec.duration_s,
        "n_windows": len(predictions.starts_s),
        "n_rejected": int((~accepted).sum()),
        "rejected": predictions.rejected_counts,
        "filled_channels": list(rec.filled_channels),
        "time_s": elapsed,
    }
    if task.name in DETECTION_TASKS:
        short["n_events"] = len(results.events)
    if "swi_percent" in results.summary:
        short["swi_percent"] = results.summary["swi_percent"]
    if task.name in RECORDING_TASKS:
        short["class"] = results.recording_class
    if results.hyp is not None:
        short["minutes_per_stage"] = results.summary["hypnogram"]["minutes_per_stage"]
    logger.info(
        "%s: %d windows (%d rejected%s)%s in %.1f s -> %s",
        path.name,
        len(predictions.starts_s),
        short["n_rejected"],
        "".join(f", {reason}: {n}" for reason, n in short["rejected"].items()),
        f", {len(rec.filled_channels)} channel(s) filled with zeros: {', '.join(rec.filled_channels)}"
        if rec.filled_channels
        else "",
        elapsed,
        final_dir,
    )
    return short


def write_batch_summary(output: str | os.PathLike, predictor: Predictor, result: BatchResult) -> Path:
    """``OUTPUT/predict_summary.json``: recordings done and failed, the checkpoint, config and versions."""
    summary = {
        "checkpoint": str(predictor.finetuned.checkpoint),
        "model": predictor.finetuned.model_name,
        "task": predictor.task.name,
        "done": result.done,
        "failed": [{"path": p, "reason": r} for p, r in result.failed],
        "time_s": result.time_s,
        "config": predictor.config,
        "versions": versions(),
    }
    return write_results(Path(output) / BATCH_SUMMARY_FILE, json_safe(summary))
