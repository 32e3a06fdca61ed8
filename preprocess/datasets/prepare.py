"""One dataset through its adapter into a labelled preprocessing output, and the dataset summary.

:func:`prepare_dataset` is what ``python preprocess/preprocess_main.py --dataset NAME --input ROOT
--output DIR --task TASK`` runs:

1. the adapter (:func:`preprocess.datasets.get_adapter`) checks that it serves the task;
2. the config: the preprocessing defaults, then the adapter's layer (``montage``, ``labels.classes``
   = the task's classes, ``labels.default`` e.g. ``background`` for onset detection, and what the
   dataset needs, e.g. 30-s windows for Sleep-EDF), then the user's ``--config`` and ``--set``;
3. the adapter finds the recordings (a root of the wrong layout is an error saying what was expected),
   reads the labels into events, the subjects and the split; labels outside ``labels.classes`` are an
   error naming the recording;
4. recordings that can get no label (no event and no ``labels.default``, e.g. an ungraded Cork file)
   are left out and listed in the summary;
5. ``DIR/events.csv`` (the events, with every recording's subject and, for soft labels, ``p_<class>``
   columns; a recording without events gets one recording-level row of ``labels.default``),
   ``DIR/split.csv`` (``recording,split`` when the dataset
   has an official or customary split), then :func:`preprocess.batch.run_preprocessing` with that
   events file;
6. ``DIR/dataset_summary.json``: recordings, subjects, hours, events and windows per class, the split,
   and the adapter's notes (dropped epochs...).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from preprocess.batch import BatchSummary, check_output_config, make_preprocessor, run_preprocessing
from preprocess.channels import load_montage
from preprocess.datasets import get_adapter
from preprocess.datasets.base import SPLIT_NAMES, DatasetAdapter, recording_duration_s
from preprocess.events import Event, EventsError, write_events_csv
from preprocess.labels import resolve_label_classes
from preprocess.locks import run_lock
from preprocess.segments import read_manifest
from runtime.config import CONFIG_DIR, UsageError, load_config, merge_config, parse_override
from runtime.files import atomic_write

__all__ = ["DEFAULT_CONFIG", "DatasetSummary", "dataset_config", "prepare_dataset"]

#: The preprocessing defaults (and schema).
DEFAULT_CONFIG = CONFIG_DIR / "preprocess" / "m4cea.yaml"


@dataclass
class DatasetSummary:
    """The figures of a dataset run (``DIR/dataset_summary.json``).

    Attributes
    ----------
    dataset, task, root, output : str
    options : dict
        The adapter's options.
    montage : str
    recordings : int
        Recordings preprocessed (labelled); the figures below describe them, not the failed ones.
    subjects : int
        Their distinct subjects.
    hours : float
        Their total duration in hours (from the file headers).
    events_per_class : dict
        Events of the label files per label (a recording-level label counts as one event; time that
        only ``labels.default`` labels is no event).
    hours_per_class : dict
        Hours labelled with each class: the events' durations (a recording-level label: the recording's
        duration), and for ``labels.default`` the recording time no event covers. Windows that
        straddle two labels are dropped, so window counts are lower.
    windows : int
        Windows in the manifest (all shards done so far).
    windows_per_class : dict
        Windows per label; ``"unlabelled"`` for windows no label covers.
    split : dict | None
        Recordings per split (``split.csv``), None without an official split.
    left_out : list of str
        Recordings left out because they can get no label.
    notes : dict
        The adapter's counts (dropped epochs, ungraded recordings, conflicting channels...).
    failed : list
        ``[file, reason]`` of the recordings the pipeline could not preprocess.
    """

    dataset: str
    task: str
    root: str
    output: str
    options: dict
    montage: str
    recordings: int
    subjects: int
    hours: float
    events_per_class: dict
    hours_per_class: dict
    windows: int = 0
    windows_per_class: dict = field(default_factory=dict)
    split: dict | None = None
    left_out: list = field(default_factory=list)
    notes: dict = field(default_factory=dict)
    failed: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    def to_text(self) -> str:
        """A short human-readable report."""
        lines = [
            f"dataset {self.dataset} ({self.task}), montage {self.montage}: {self.recordings} recordings, "
            f"{self.subjects} subjects, {self.hours:.2f} h",
            "events per class: "
            + (", ".join(f"{k} {v}" for k, v in self.events_per_class.items()) or "none"),
            "hours per class: "
            + (", ".join(f"{k} {v:.2f}" for k, v in self.hours_per_class.items()) or "none"),
            f"windows: {self.windows}; per class: "
            + (", ".join(f"{k} {v}" for k, v in self.windows_per_class.items()) or "none"),
        ]
        if self.split:
            lines.append("split (recordings): " + ", ".join(f"{k} {v}" for k, v in self.split.items()))
        if self.left_out:
            lines.append(f"left out (no label): {len(self.left_out)} recording(s)")
        for key, value in self.notes.items():
            lines.append(f"{key}: {value}")
        return "\n".join(lines)


def dataset_config(
    adapter: DatasetAdapter,
    task: str,
    config: str | os.PathLike | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> dict:
    """The preprocessing config of a dataset run: defaults <- adapter <- ``config`` <- ``overrides``.

    Raises
    ------
    runtime.config.ConfigError
        On an unknown key or a wrong type (naming the key and its source).
    FileNotFoundError
        If ``config`` does not exist.
    """
    layer = {
        "montage": adapter.montage,
        "labels": {"classes": list(adapter.classes(task)), "default": adapter.default_label(task)},
        **adapter.config_overrides(task),
    }
    source = f"the '{adapter.name}' dataset adapter"
    resolved = merge_config(load_config(DEFAULT_CONFIG), layer, source=source)
    if config is not None:
        resolved = merge_config(resolved, load_config(config), source=str(config))
    for text in overrides:
        resolved = merge_config(resolved, parse_override(text), source=f"--set {text}")
    return resolve_label_classes(resolved)


def prepare_dataset(
    name: str,
    root: str | os.PathLike,
    output: str | os.PathLike,
    task: str,
    config: str | os.PathLike | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    options: dict | None = None,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
) -> tuple[DatasetSummary, BatchSummary]:
    """Preprocess a dataset through its adapter into a labelled output ready for fine-tuning.

    Parameters
    ----------
    name : str
        Adapter name (:func:`preprocess.datasets.list_adapters`).
    root : path-like
        The dataset's root folder.
    output : path-like
        The preprocessing output folder (also receives ``events.csv``, ``split.csv`` and
        ``dataset_summary.json``).
    task : str
        A task the adapter serves.
    config : path-like | None
        A YAML file that changes the preprocessing settings (over the adapter's).
    overrides : sequence of str
        ``key=value`` settings applied last (``--set``).
    options : dict | None
        The adapter's options (``--dataset-option``).
    workers, shard, progress
        As :func:`preprocess.batch.run_preprocessing`.

    Returns
    -------
    summary : DatasetSummary
        Also written to ``output/dataset_summary.json``.
    batch : preprocess.batch.BatchSummary
        The pipeline's report (recordings done, skipped, failed; rejected windows).

    Raises
    ------
    runtime.config.UsageError
        A ValueError: on an unknown dataset, option or task the adapter does not serve, an invalid config,
        a label file that cannot be parsed (file and line named), a label outside ``labels.classes``, no
        labelled recording, an output folder of another config, or one that another run of the shard
        holds (:class:`preprocess.locks.OutputInUseError`; nothing is written then).
    FileNotFoundError
        On a root of the wrong layout (the message says what was expected), a recording missing from
        its label file or the reverse, or a missing config file.
    """
    try:  # the dataset's name, options and task, and the config: their invalid values are bad input
        adapter = get_adapter(name, **(options or {}))
        adapter.check_task(task)
        config = dataset_config(adapter, task, config, overrides)
    except ValueError as err:
        if isinstance(err, UsageError):
            raise
        raise UsageError(str(err)) from err
    output = Path(output)
    montage = load_montage(config["montage"])
    recordings = adapter.find_recordings(root)
    classes = list(config["labels"]["classes"])
    default = config["labels"]["default"]
    events = adapter.events(root, task, montage=montage, classes=classes)
    subjects = adapter.subjects(root)
    split = adapter.split(root)

    for recording, rec_events in events.items():
        unknown = sorted({e.label for e in rec_events} - set(classes))
        if unknown:
            raise EventsError(
                f"The {name} labels of {recording} include {unknown}, which are not in "
                f"labels.classes {classes}. Map them in the dataset's label map or add the "
                "classes with --set labels.classes=[...]."
            )
    inputs, left_out, rows = [], [], []
    for path in recordings:
        rec_events = events.get(path.name)
        if rec_events is None or (not rec_events and default is None):
            left_out.append(path.name)
            continue
        inputs.append(path)
        subject = subjects.get(path.name) or path.stem
        for event in rec_events or [Event(None, 0.0, default)]:
            rows.append((path.name, subject, event))
    if not inputs:
        raise UsageError(f"No recording of the {name} root {root} has a label for the task '{task}'.")
    if split is not None:
        bad = sorted({v for v in split.values() if v not in SPLIT_NAMES})
        if bad:
            raise UsageError(f"The {name} adapter gave split names {bad}; allowed are {list(SPLIT_NAMES)}.")
        missing = [p.name for p in inputs if p.name not in split]
        if missing:
            raise UsageError(f"The {name} split does not assign {len(missing)} recording(s): {missing[:8]}.")

    # What run_preprocessing refuses, refused before anything is written: invalid settings. (Recordings
    # that share an id are reported one by one by run_preprocessing, and the others are processed.)
    make_preprocessor(config)
    if workers < 1:
        raise UsageError(f"Invalid value for --workers: it must be >= 1, but got {workers}.")
    output.mkdir(parents=True, exist_ok=True)
    # The run lock first: a second run on the folder is refused before it rewrites events.csv/split.csv.
    with run_lock(output, shard):
        check_output_config(output, config, hint="the same dataset, task, options and config")
        events_path = output / "events.csv"
        write_events_csv(events_path, rows, classes)
        if split is not None:
            with atomic_write(output / "split.csv", "w") as f:
                f.write("recording,split\n")
                f.writelines(f"{p.name},{split[p.name]}\n" for p in inputs)
        batch = run_preprocessing(
            [str(p) for p in inputs],
            output,
            config,
            events=events_path,
            workers=workers,
            shard=shard,
            progress=progress,
            lock_held=True,
        )

    failed = {Path(file).name for file, _ in batch.failed}
    done = [p for p in inputs if p.name not in failed]  # the figures describe the labelled output
    durations = {p.name: recording_duration_s(p) for p in done}
    per_class: Counter = Counter()
    seconds: Counter = Counter()
    for path in done:
        rec_events = events[path.name]
        duration = durations.get(path.name, 0.0)
        covered = 0.0
        for event in rec_events:
            per_class[event.label] += 1
            length = duration if event.onset_s is None else event.duration_s
            seconds[event.label] += length
            covered += length
        if default is not None:
            seconds[default] += max(duration - covered, 0.0)
    windows: Counter = Counter()
    if (output / "manifest.csv").is_file():
        windows.update(row["label"] or "unlabelled" for row in read_manifest(output))
    order = {c: i for i, c in enumerate([*classes, "unlabelled"])}
    summary = DatasetSummary(
        dataset=name,
        task=task,
        root=str(root),
        output=str(output),
        options=dict(adapter.opts),
        montage=montage.name,
        recordings=len(done),
        subjects=len({subjects.get(p.name) or p.stem for p in done}),
        hours=round(sum(durations.values()) / 3600.0, 4),
        events_per_class={k: per_class[k] for k in sorted(per_class, key=order.get)},
        hours_per_class={k: round(seconds[k] / 3600.0, 4) for k in sorted(seconds, key=order.get)},
        windows=sum(windows.values()),
        windows_per_class={k: windows[k] for k in sorted(windows, key=order.get)},
        split=None if split is None else {s: sum(1 for p in done if split[p.name] == s) for s in SPLIT_NAMES},
        left_out=left_out,
        notes=adapter.notes,
        failed=[list(f) for f in batch.failed],
    )
    with atomic_write(output / "dataset_summary.json", "w") as f:
        json.dump(summary.to_dict(), f, indent=1, default=str)
    return summary, batch
