"""Preprocess many recordings: worker processes, shards across machines, resume, and a summary.

A bad recording is reported (file and reason) and the batch goes on; nothing of it is written.

A run holds its shard's lock on the output folder (:mod:`preprocess.locks`): a second run of the same
shard on the same folder is refused, while the shards of ``--shard I/N`` share a folder. Worker
processes end when the main process dies or is interrupted (they watch it), so nothing is written after
a run was killed; the next run resumes.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import copy
import csv
import json
import logging
import multiprocessing
import os
import signal
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tqdm import tqdm

from preprocess.events import (
    EVENTS_COLUMNS,
    Event,
    EventsError,
    events_for,
    read_events_csv,
    unmatched_recordings,
)
from preprocess.locks import manifest_lock, run_lock
from preprocess.pipeline import (
    Preprocessor,
    RecordingResult,
    events_part_path,
    find_recordings,
    merge_manifest,
    part_path,
    recording_id,
)
from preprocess.reading import recording_id_clashes
from runtime.config import CONFIG_DIR, UsageError, load_config, save_config
from runtime.files import atomic_write

__all__ = [
    "DEFAULT_CONFIG",
    "EVENTS_FILE",
    "BatchSummary",
    "check_output_config",
    "make_preprocessor",
    "merge_events",
    "parse_shard",
    "run_preprocessing",
]

#: The events every labelled output keeps: those that labelled its windows, one CSV for all recordings.
EVENTS_FILE = "events.csv"
#: The preprocessing defaults (and schema): keys a config saved by an older version lacks take these values.
DEFAULT_CONFIG = CONFIG_DIR / "preprocess" / "m4cea.yaml"

logger = logging.getLogger("m4cea.preprocess")


@dataclass
class BatchSummary:
    """Outcome of a preprocessing batch."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    n_windows: int = 0
    rejected: Counter = field(default_factory=Counter)
    n_manifest_rows: int = 0
    filled_channels: dict[str, list[str]] = field(default_factory=dict)  # file -> pairs filled with zeros

    def to_text(self) -> str:
        """A short human-readable report."""
        lines = [
            f"recordings done: {len(self.done)}, already complete (skipped): {len(self.skipped)}, "
            f"failed: {len(self.failed)}",
            f"windows written: {self.n_windows}; rejected: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())) or "none"),
            f"manifest rows: {self.n_manifest_rows}",
        ]
        lines += [
            f"FILLED WITH ZEROS {file}: {len(pairs)} pair(s) {', '.join(pairs)}"
            for file, pairs in self.filled_channels.items()
        ]
        lines += [f"FAILED {file}: {reason}" for file, reason in self.failed]
        return "\n".join(lines)


def parse_shard(text: str | None) -> tuple[int, int]:
    """Parse ``--shard I/N`` (0-based ``I`` < ``N``); None -> ``(0, 1)``.

    Raises
    ------
    runtime.config.UsageError
        If the text is not ``I/N`` with ``0 <= I < N``.
    """
    if text is None:
        return 0, 1
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"Invalid value for --shard: expected I/N like 0/4, but got {text!r}.") from None
    if not 0 <= index < count:
        raise UsageError(f"Invalid value for --shard: I must satisfy 0 <= I < N, but got {text!r}.")
    return index, count


def make_preprocessor(config: dict) -> Preprocessor:
    """The :class:`preprocess.pipeline.Preprocessor` of a config, its invalid values a usage error.

    Raises
    ------
    runtime.config.UsageError
        If a value of ``config`` is invalid (the constructor only checks the config: its ValueErrors are
        bad input), with the constructor's message.
    """
    try:
        return Preprocessor(config)
    except ValueError as err:
        if isinstance(err, UsageError):
            raise
        raise UsageError(f"Invalid preprocessing config: {err}") from err


def _with_defaults(saved, defaults):
    """``saved`` with the keys it lacks (at any depth) taken from ``defaults``."""
    if not isinstance(saved, dict) or not isinstance(defaults, dict):
        return saved
    merged = {key: copy.deepcopy(value) for key, value in defaults.items() if key not in saved}
    merged.update({key: _with_defaults(value, defaults.get(key)) for key, value in saved.items()})
    return merged


def check_output_config(output: str | os.PathLike, config: dict, hint: str = "the same config") -> None:
    """Refuse an output folder that holds windows made with another config (nothing is written).

    A key that the saved ``config.yaml`` lacks (written by a version before the key existed, e.g.
    ``max_filled_channels``) counts as its default value (:data:`DEFAULT_CONFIG`): resuming into such a
    folder with the default is accepted, with another value refused.

    Raises
    ------
    runtime.config.UsageError
        If ``output/config.yaml`` exists and differs from ``config``; the message ends with how to
        resume (``hint``).
    """
    saved = Path(output) / "config.yaml"
    if saved.is_file():
        with open(saved, encoding="utf-8") as f:
            previous = yaml.safe_load(f)
        if _with_defaults(previous, load_config(DEFAULT_CONFIG)) != config:
            raise UsageError(
                f"The output folder {output} holds windows made with another config ({saved}); "
                f"use a new --output folder, or {hint} to resume."
            )


def _prepare_output(output: Path) -> None:
    """Create the output folder and check that it is writable."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        with atomic_write(output / f".write_test.{os.getpid()}", "w") as f:
            f.write("ok")
        (output / f".write_test.{os.getpid()}").unlink()
    except OSError as err:
        raise UsageError(f"The output folder {output} cannot be written: {err}") from None


#: Seconds between two checks of a worker process that its main process is alive.
_WATCH_INTERVAL_S = 0.1


def _watch_main_process(stop) -> None:
    """Worker initializer: end the worker as soon as its main process dies or sets ``stop``.

    A worker of a killed run (SIGKILL, SIGTERM) would otherwise go on writing recordings. It ends with
    ``os._exit``: what it was writing stays in its recording's temporary folder, which the next run
    removes (:meth:`preprocess.pipeline.Preprocessor.process`).
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the pool ends broken workers with SIGTERM
    parent = os.getppid()

    def watch():
        while not stop.wait(_WATCH_INTERVAL_S):
            if os.getppid() != parent:  # the main process died: this worker was re-parented
                break
        os._exit(1)

    threading.Thread(target=watch, name="m4cea-watch-main", daemon=True).start()


def _process_one(args) -> RecordingResult:
    preprocessor, path, output, events, subject = args
    try:
        return preprocessor.process(path, output, events, subject)
    except Exception as err:  # reported per recording; the batch goes on (the traceback is logged)
        logger.debug("preprocessing %s failed", path, exc_info=True)
        reason = f"{type(err).__name__}: {err}"
        if Path(path).name not in reason:
            reason = f"{Path(path).name}: {reason}"
        return RecordingResult(str(path), recording_id(path), error=reason)


def _report_unmatched_events(events, table: dict, recordings: list[Path], partial: bool) -> None:
    """Refuse (or, with ``partial``, warn about) events-CSV rows that match no recording of the run."""
    unmatched = unmatched_recordings(table, recordings)
    if not unmatched:
        return
    n_rows = sum(len(table[key]) for key in unmatched)
    names = ", ".join(unmatched[:20]) + (f" and {len(unmatched) - 20} more" if len(unmatched) > 20 else "")
    text = (
        f"{n_rows} row(s) of the events file {events} name {len(unmatched)} recording(s) that match no input "
        f"recording of this run: {names}"
    )
    if not partial:
        raise EventsError(
            f"{text}. Fix the names in the CSV (file name with or without extension), or pass "
            "--events-partial if the CSV covers more recordings than this run."
        )
    logger.warning("%s; their rows are ignored (--events-partial).", text)


def _is_events_file(events, output: Path) -> bool:
    """Whether ``events`` is ``output/events.csv`` itself (a dataset adapter's, kept as it is)."""
    path = Path(str(events))
    return path.is_file() and path.resolve() == (output / EVENTS_FILE).resolve()


def merge_events(output: str | os.PathLike) -> int:
    """Rebuild ``output/events.csv`` from the events parts of every complete recording.

    Each recording's part (:func:`preprocess.pipeline.events_part_path`) holds the events that labelled its
    windows; the merged file (the format of :func:`preprocess.events.read_events_csv`, recordings by file
    name as in the manifest) lets fine-tuning score events against them. Written atomically under the
    manifest lock, so shards sharing a folder each merge everything complete.

    Returns
    -------
    n_rows : int
        Event rows written.
    """
    output = Path(output)
    with manifest_lock(output):
        rows, columns = [], list(EVENTS_COLUMNS)  # + the p_<class> columns of soft labels, when any
        for part in sorted((output / "parts").glob("*.csv")):
            events_part = events_part_path(output, part.stem)
            if events_part.is_file():
                with open(events_part, newline="", encoding="utf-8") as f:
                    reader = csv.DictReader(f)
                    columns += [c for c in reader.fieldnames or () if c not in columns]
                    rows += list(reader)
        with atomic_write(output / EVENTS_FILE, "w") as f:
            writer = csv.DictWriter(f, fieldnames=columns, restval="", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    return len(rows)


def run_preprocessing(
    inputs: list[str | os.PathLike],
    output: str | os.PathLike,
    config: dict,
    events: str | os.PathLike | None = None,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    events_partial: bool = False,
    lock_held: bool = False,
) -> BatchSummary:
    """Preprocess recordings into ``output`` (pickles, ``manifest.csv``, ``config.yaml``, ``events.csv``).

    A labelled run (``events`` given) keeps the events that labelled each recording's windows in
    ``output/events.csv`` (:func:`merge_events`; an events file that is ``output/events.csv`` itself, as
    the dataset adapters write it, is kept as it is): fine-tuning scores seizure events against them.

    Parameters
    ----------
    inputs : list of path-like
        Recordings, or folders searched recursively for recordings.
    output : path-like
        The output folder; recordings already complete there are skipped (resume).
    config : dict
        A resolved preprocessing config.
    events : path-like | ``"annotations"`` | None
        An events CSV, the recordings' own annotations, or no labels.
    workers : int
        Worker processes (one recording each at a time).
    shard : (int, int)
        ``(I, N)``: process every N-th recording starting at the I-th (sorted by path), so that N
        machines share a corpus. Each run rebuilds ``manifest.csv`` from all complete recordings.
    progress : bool
        Show a progress bar over recordings.
    events_partial : bool
        The events CSV may name recordings that are not inputs of this run (they are listed in a
        warning); False: such rows are an error (a typo would silently leave a recording unlabelled).
    lock_held : bool
        The caller holds the run lock of ``shard`` on ``output`` (:func:`preprocess.locks.run_lock`, as
        :func:`preprocess.datasets.prepare.prepare_dataset` does before it writes ``events.csv``).

    Returns
    -------
    summary : BatchSummary

    Raises
    ------
    runtime.config.UsageError, FileNotFoundError
        For usage errors found before any recording is processed: an invalid config value, a missing
        input, no recording found, an invalid events file or one whose rows name recordings that are not
        inputs (unless ``events_partial``), an output folder that cannot be written, that holds output of
        another config, or that another run of the same shard is writing into
        (:class:`preprocess.locks.OutputInUseError`, naming its pid). Recordings sharing one id are
        reported one by one as failed, and the others go on.
    """
    output = Path(output)
    preprocessor = make_preprocessor(config)
    config = preprocessor.config  # labels.classes resolved
    if workers < 1:
        raise UsageError(f"Invalid value for --workers: it must be >= 1, but got {workers}.")
    recordings = find_recordings(inputs)
    if not recordings:
        raise UsageError(f"No recording found in {[str(p) for p in inputs]}.")
    clashes = recording_id_clashes(recordings)  # reported per recording below; the others go on
    labels = config["labels"]
    table, subjects = ({}, {})
    if events is not None and str(events) != "annotations":
        table, subjects = read_events_csv(events, labels["classes"])
        _report_unmatched_events(events, table, recordings, events_partial)  # all shards' recordings
    index, count = shard
    recordings = recordings[index::count]
    _prepare_output(output)
    with contextlib.nullcontext() if lock_held else run_lock(output, shard):
        check_output_config(output, config)
        if not (output / "config.yaml").exists():
            save_config(config, output / "config.yaml")
        return _run_locked(
            preprocessor, recordings, clashes, output, events, table, subjects, workers, shard, progress
        )


def _run_locked(preprocessor, recordings, clashes, output, events, table, subjects, workers, shard, progress):
    """The batch of :func:`run_preprocessing`, with the shard's lock held."""
    summary = BatchSummary()
    jobs = []
    for path in recordings:
        if path in clashes:
            summary.failed.append((str(path), clashes[path]))
            logger.error("FAILED %s: %s", path, clashes[path])
            continue
        if part_path(output, recording_id(path)).exists():
            summary.skipped.append(str(path))
            continue
        if events is None:
            rec_events: list[Event] | str | None = None
        elif str(events) == "annotations":
            rec_events = "annotations"
        else:
            rec_events = events_for(table, path) or []
        subject = subjects.get(path.name.lower()) or subjects.get(path.stem.lower())
        jobs.append((preprocessor, path, output, rec_events, subject))

    parallel = workers > 1 and len(jobs) > 1
    if parallel:
        context = multiprocessing.get_context()
        stop_workers = context.Event()
        pool = cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_watch_main_process, initargs=(stop_workers,)
        )
        results = pool.map(_process_one, jobs)
    else:
        results = map(_process_one, jobs)
    try:
        for result in tqdm(results, total=len(jobs), desc="recordings", unit="rec", disable=not progress):
            if result.error:
                summary.failed.append((result.path, result.error))
                logger.error("FAILED %s: %s", result.path, result.error)
            elif result.skipped:  # completed by an overlapping run while this one waited for it
                summary.skipped.append(result.path)
            else:
                summary.done.append(result.path)
                summary.n_windows += result.n_windows
                if result.filled_channels:
                    summary.filled_channels[result.path] = result.filled_channels
            summary.rejected.update(result.rejected)
    except BaseException:
        if parallel:  # interrupted: the workers end now instead of finishing their recordings
            stop_workers.set()
        raise
    finally:
        if parallel:
            pool.shutdown(cancel_futures=True)
    summary.n_manifest_rows = merge_manifest(output)
    if events is not None and not _is_events_file(events, output):
        merge_events(output)
    with atomic_write(output / "last_run.json", "w") as f:
        json.dump(
            {
                "done": summary.done,
                "skipped": summary.skipped,
                "failed": [list(x) for x in summary.failed],
                "n_windows": summary.n_windows,
                "rejected": dict(summary.rejected),
                "filled_channels": summary.filled_channels,
                "shard": list(shard),
            },
            f,
            indent=1,
        )
    return summary
