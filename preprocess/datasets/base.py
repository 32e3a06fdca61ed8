"""The dataset adapter interface, the adapter registry and helpers shared by the adapters.

A dataset adapter knows one public dataset (or one kind of private cohort): its folder layout, how to
read its label files into per-recording events (:class:`preprocess.events.Event`), the subject of
each recording, its montage, its official or customary split if it has one, and which of the eight
tasks (DESIGN.md section 5) it serves. :func:`preprocess.datasets.prepare.prepare_dataset` turns an
adapter's answers into the existing preprocessing inputs (an events CSV, a config) and runs the
pipeline; ``python preprocess/preprocess_main.py --dataset NAME --input ROOT --output DIR --task TASK``
is its command line.

Adapters are registered by name (:func:`register`) and made with :func:`get_adapter`; each takes
options (``--dataset-option key=value`` on the command line), declared as :class:`Option` and checked
when the adapter is made. Every adapter has the option ``partial`` (default false): whether a label
file may list recordings that are absent from the root (a partial download). A recording on disk
that its label file does not know is always an error.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import yaml

from preprocess.events import Event, EventsError
from runtime.config import CONFIG_DIR
from tasks import get_task

__all__ = [
    "COMMON_OPTIONS",
    "DATASET_CONFIG_DIR",
    "SPLIT_NAMES",
    "AnnotationError",
    "DatasetAdapter",
    "LayoutError",
    "Option",
    "check_label_coverage",
    "intervals_to_events",
    "registered_adapters",
    "load_label_map",
    "mask_to_events",
    "parse_option",
    "recording_duration_s",
    "register",
]

#: ``configs/datasets``: label maps of the adapters (dataset labels -> task classes).
DATASET_CONFIG_DIR = CONFIG_DIR / "datasets"

#: Split names written to ``split.csv`` (those of :mod:`finetune.splits`).
SPLIT_NAMES = ("train", "val", "test")


class LayoutError(FileNotFoundError):
    """A dataset root does not have the dataset's layout (the message says what was expected)."""


class AnnotationError(EventsError):
    """A label or annotation file of a dataset is invalid (the message names the file and line)."""


@dataclass(frozen=True)
class Option:
    """An adapter option (``--dataset-option key=value``).

    Parameters
    ----------
    default : object
        Value when the option is not given.
    help : str
        One line shown in error messages and documentation.
    choices : tuple | None
        Allowed values (None: any value of ``kind``).
    kind : type | tuple of type | None
        Allowed type(s) of the value; None: the type of ``default``.
    """

    default: Any
    help: str
    choices: tuple | None = None
    kind: type | tuple | None = None


#: Options every adapter has.
COMMON_OPTIONS = {
    "partial": Option(False, "let the label file list recordings absent from the root (a partial download)"),
}


def parse_option(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` (the value read as YAML: ``true``, ``0.2``, ``null``, ``majority``).

    Raises
    ------
    ValueError
        If ``text`` has no ``=`` or an empty key.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(
            f"Invalid value for --dataset-option: expected key=value (e.g. rule=consensus), but got {text!r}."
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


class DatasetAdapter:
    """Base class of the dataset adapters: the interface and the shared checks.

    Subclasses set the class attributes and implement :meth:`find_recordings`, :meth:`events` and
    :meth:`subjects`; :meth:`split`, :meth:`classes`, :meth:`default_label` and
    :meth:`config_overrides` have defaults.

    Parameters
    ----------
    **options
        The adapter's options (:attr:`options` and ``partial``).

    Attributes
    ----------
    name : str
        Registry name (``--dataset NAME``).
    tasks : tuple of str
        Tasks served (names of :data:`tasks.TASKS`).
    montage : str
        Montage config name (``configs/montages/<montage>.yaml``) set as the preprocessing ``montage``.
    layout : str
        The expected folder layout, in words (used in error messages).
    options : dict of str to Option
        The adapter's own options.
    notes : dict
        Counts the adapter records while reading labels (dropped epochs, ungraded recordings...),
        copied into the dataset summary.

    Raises
    ------
    ValueError
        On an unknown option or an invalid value (the message lists the allowed ones).
    """

    name: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = ()
    montage: ClassVar[str] = "double_banana"
    layout: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}

    def __init__(self, **options):
        spec = {**COMMON_OPTIONS, **self.options}
        unknown = sorted(set(options) - set(spec))
        if unknown:
            raise ValueError(
                f"Invalid option(s) {unknown} for the dataset '{self.name}'. Allowed options are "
                + "; ".join(f"{k} ({o.help}; default {o.default!r})" for k, o in spec.items())
                + "."
            )
        self.opts: dict[str, Any] = {}
        for key, option in spec.items():
            value = options.get(key, option.default)
            if option.choices is not None:
                if value not in option.choices:
                    raise ValueError(
                        f"Invalid value for the '{key}' option of the dataset '{self.name}'. Allowed values "
                        f"are {list(option.choices)}, but got {value!r} instead."
                    )
            else:
                kind = option.kind or (type(option.default) if option.default is not None else None)
                if kind is float and isinstance(value, int) and not isinstance(value, bool):
                    value = float(value)
                wrong = (
                    kind is not None
                    and value is not None
                    and (not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool))
                )
                if wrong:
                    raise ValueError(
                        f"Invalid value for the '{key}' option of the dataset '{self.name}': expected "
                        f"{getattr(kind, '__name__', kind)} ({option.help}), but got {value!r} instead."
                    )
            self.opts[key] = value
        self.notes: dict[str, Any] = {}
        self._cache: dict = {}

    # -- the interface -----------------------------------------------------------------------------

    def find_recordings(self, root: str | os.PathLike) -> list[Path]:
        """The dataset's recordings under ``root``, sorted.

        Raises
        ------
        LayoutError
            If ``root`` does not have the dataset's layout (the message says what was expected).
        """
        raise NotImplementedError

    def events(
        self, root: str | os.PathLike, task: str, *, montage=None, classes: Sequence[str] | None = None
    ) -> dict[str, list[Event]]:
        """Events of every labelled recording.

        Parameters
        ----------
        root : path-like
            The dataset root.
        task : str
            A task the adapter serves.
        montage : preprocess.channels.Montage | None
            The montage in use (adapters with per-channel labels consider its channels only).
        classes : sequence of str | None
            The labels allowed in the run (``labels.classes``); default :meth:`classes`.

        Returns
        -------
        events : dict
            Recording file name (``chb01_03.edf``) -> list of :class:`preprocess.events.Event`; a
            recording with an empty list is labelled by ``labels.default`` alone.

        Raises
        ------
        AnnotationError
            On a label file that cannot be parsed (file and line named), a label the task's map does
            not know, or an event outside its recording where the label file says how long it is.
        LayoutError
            On a recording missing from its label file, or the reverse (see ``partial``).
        """
        raise NotImplementedError

    def subjects(self, root: str | os.PathLike) -> dict[str, str]:
        """Recording file name -> subject id, for every recording of :meth:`find_recordings`."""
        raise NotImplementedError

    def split(self, root: str | os.PathLike) -> dict[str, str] | None:
        """Official or customary split: recording file name -> ``train``/``val``/``test``; None if none."""
        return None

    def classes(self, task: str) -> tuple[str, ...]:
        """Class names of the task as this adapter labels it (default: the registered task's classes)."""
        return tuple(get_task(task).classes)

    def default_label(self, task: str) -> str | None:
        """Label of recording time no event covers (``labels.default``); None leaves it unlabelled."""
        return None

    def config_overrides(self, task: str) -> dict:
        """Preprocessing settings the dataset needs besides ``montage`` and ``labels`` (e.g. 30-s windows)."""
        return {}

    # -- shared checks -----------------------------------------------------------------------------

    def check_task(self, task: str) -> str:
        """Return ``task`` if the adapter serves it.

        Raises
        ------
        ValueError
            If it does not (the message lists the tasks it serves).
        """
        if task not in self.tasks:
            raise ValueError(
                f"Invalid value for the 'task' parameter: the dataset '{self.name}' serves the tasks "
                f"{list(self.tasks)}, but got {task!r} instead."
            )
        return task

    def layout_error(self, root: str | os.PathLike, problem: str) -> LayoutError:
        """A :class:`LayoutError` naming the root, what is wrong and the expected layout."""
        return LayoutError(f"{problem} in the {self.name} root {root}. Expected layout: {self.layout}")

    def cached(self, key, compute: Callable[[], Any]):
        """``compute()`` once per adapter and key (label files are read once for events, subjects, split)."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


# -- registry -------------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[DatasetAdapter]] = {}


def register(cls: type[DatasetAdapter]) -> type[DatasetAdapter]:
    """Class decorator: register an adapter under ``cls.name``."""
    if cls.__module__ == "__main__":  # a module run as a script is registered by its package import
        return cls
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"Adapter name {cls.name!r} is empty or already registered.")
    _REGISTRY[cls.name] = cls
    return cls


def registered_adapters() -> dict[str, type[DatasetAdapter]]:
    """Name -> class of the adapters registered so far (all of them once :mod:`preprocess.datasets` is
    imported; use :func:`preprocess.datasets.get_adapter`)."""
    return dict(_REGISTRY)


# -- helpers shared by the adapters --------------------------------------------------------------------


def check_label_coverage(
    recordings: Iterable[str],
    labelled: Iterable[str],
    label_source: str | os.PathLike,
    partial: bool,
    dataset: str,
) -> None:
    """Check that the recordings on disk and the recordings of a label file are the same.

    Parameters
    ----------
    recordings : iterable of str
        Recording file names found on disk.
    labelled : iterable of str
        Recording file names the label file knows.
    label_source : str | path-like
        The label file (or files), for the message.
    partial : bool
        Allow the label file to know recordings absent from disk.
    dataset : str
        The adapter's name, for the message.

    Raises
    ------
    LayoutError
        If a recording on disk is not in the label file, or (unless ``partial``) the reverse.
    """
    on_disk, known = set(recordings), set(labelled)
    unlabelled = sorted(on_disk - known)
    if unlabelled:
        raise LayoutError(
            f"{len(unlabelled)} recording(s) of the {dataset} root are missing from the label file "
            f"{label_source}: {_some(unlabelled)}. Remove them or add their labels."
        )
    absent = sorted(known - on_disk)
    if absent and not partial:
        raise LayoutError(
            f"The label file {label_source} lists {len(absent)} recording(s) absent from the {dataset} root: "
            f"{_some(absent)}. Download them, or pass --dataset-option partial=true to use the recordings "
            "that are there."
        )


def _some(names: Sequence[str], n: int = 8) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f" ... ({len(names)} in all)" if len(names) > n else "")


def load_label_map(name: str | os.PathLike) -> dict:
    """Read a label map: ``configs/datasets/<name>.yaml`` or a YAML file path.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it does not hold a mapping.
    """
    path = Path(name)
    if not path.suffix:
        path = DATASET_CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"Label map not found: {path}")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError(f"Label map {path} must hold a mapping, got {type(data).__name__}.")
    return data


@functools.lru_cache(maxsize=4096)
def _duration_cached(path: str, mtime_ns: int) -> float:
    from preprocess.pipeline import read_recording

    raw = read_recording(path)
    return raw.n_times / raw.info["sfreq"]


def recording_duration_s(path: str | os.PathLike) -> float:
    """Duration of a recording in s, from its header (the signal is not read)."""
    path = Path(path)
    return _duration_cached(str(path), path.stat().st_mtime_ns)


def intervals_to_events(
    intervals: Iterable[tuple[float, float, str | None]],
    priority: Sequence[str] | None = None,
    end_s: float | None = None,
    weak: Sequence[str] = (),
) -> tuple[list[Event], float]:
    """Merge possibly overlapping labelled intervals (e.g. of several channels) into events.

    Time is cut at every interval boundary; each piece takes the label of the intervals covering it:
    ``weak`` labels (e.g. ``clean``) give way to any other label; then one label -> that label;
    several labels -> the first of them in ``priority`` (e.g. any epileptiform channel makes the time
    epileptiform), or, when ``priority`` does not decide, no label (a conflict, counted). Intervals
    labelled None are ignored. Adjacent pieces with the same label are merged.

    Parameters
    ----------
    intervals : iterable of (onset_s, offset_s, label)
        Times in s; ``offset_s >= onset_s``.
    priority : sequence of str | None
        Labels in decreasing precedence; labels not listed come after, in no order (a conflict).
    end_s : float | None
        Clip intervals at this time (the recording's end).
    weak : sequence of str
        Labels that count only where no other label covers the time.

    Returns
    -------
    events : list of Event
        Sorted, non-overlapping.
    conflict_s : float
        Seconds left unlabelled because several labels covered them and ``priority`` did not decide.
    """
    items = [
        (float(a), float(b) if end_s is None else min(float(b), end_s), lab)
        for a, b, lab in intervals
        if lab is not None
    ]
    items = [(a, b, lab) for a, b, lab in items if b > a]
    if not items:
        return [], 0.0
    rank = {label: i for i, label in enumerate(priority or ())}
    bounds = np.unique(np.array([t for a, b, _ in items for t in (a, b)]))
    labels_per_piece: list[set] = [set() for _ in range(len(bounds) - 1)]
    for a, b, lab in items:
        first, last = np.searchsorted(bounds, a), np.searchsorted(bounds, b)
        for k in range(first, last):
            labels_per_piece[k].add(lab)
    events: list[Event] = []
    conflict = 0.0
    current: tuple[float, float, str] | None = None
    for k, present in enumerate(labels_per_piece):
        start, stop = float(bounds[k]), float(bounds[k + 1])
        label = None
        if len(present) > 1 and present - set(weak):
            present = present - set(weak)
        if len(present) == 1:
            label = next(iter(present))
        elif present:
            ranked = sorted((rank[p], p) for p in present if p in rank)
            if ranked:
                label = ranked[0][1]
            else:
                conflict += stop - start
        if current is not None and (label != current[2] or start > current[1]):
            events.append(Event(current[0], current[1] - current[0], current[2]))
            current = None
        if label is not None:
            current = (current[0] if current else start, stop, label)
    if current is not None:
        events.append(Event(current[0], current[1] - current[0], current[2]))
    return events, conflict


def mask_to_events(mask: np.ndarray, label: str, step_s: float = 1.0) -> list[Event]:
    """Events of the runs of True in a per-step mask (step ``k`` covers ``[k * step_s, (k+1) * step_s)``)."""
    mask = np.asarray(mask, dtype=bool)
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [
        Event(float(a * step_s), float((b - a) * step_s), label) for a, b in zip(starts, stops, strict=True)
    ]
