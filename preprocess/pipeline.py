"""Raw clinical EEG -> canonical-montage windows with MFDE knowledge weights.

The steps, for one recording (:func:`preprocess_recording`):

1. read any format ``mne.io.read_raw`` reads, EEG channels only (:mod:`preprocess.reading`);
2. normalise channel names and build the bipolar montage (:mod:`preprocess.channels`);
3. microvolts; zero-phase FIR band-pass (``l_freq``-``h_freq``) and notch (``notch_freq``) at the
   recording's own rate, then resampling to ``sfreq`` (MNE's ``Raw.filter``, ``Raw.notch_filter`` and
   ``Raw.resample``: the filters as one convolution, :mod:`preprocess.filters`, equal to float64 rounding);
4. windows of ``window_s`` every ``stride_s``; windows with NaN or infinite samples, flat channels or
   absurd amplitudes are rejected and counted per reason (:data:`REJECT_REASONS`);
5. labels from events (:mod:`preprocess.events`);
6. MFDE knowledge weights per window (:func:`preprocess.mfde.knowledge_weights`);
7. one pickle per window (or HDF5 shards, ``output.format: hdf5``), then the recording's manifest rows.

Memory does not grow with the recording's length: windows are processed in blocks of ``block_s``
seconds, each read with ``margin_s`` on both sides so that the filters and the resampler see the same
neighbourhood as on the whole recording. A recording shorter than one block is processed in one piece,
which is exactly what MNE's ``Raw`` methods do on the whole recording.

The same windows are available in memory, block by block, through :meth:`Preprocessor.iter_windows`
(steps 1-4, without labels or MFDE): :meth:`Preprocessor.process` uses it to write pickles, and
``finetune/predict.py`` uses it to run a fine-tuned model over new recordings.

A recording is written atomically: its pickles go to a temporary folder, unique to the run and the
recording (``.tmp/<recording>/<host>-<pid>-<random>``), that is renamed into place, then its manifest
part ``parts/<recording>.csv`` is written. The recording's lock (:mod:`preprocess.locks`) is held
meanwhile, so temporaries found under ``.tmp/<recording>/`` by the lock's next holder were left by a
dead run and are removed. A rerun skips recordings whose part exists, so a killed batch resumes where it
stopped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import shutil
import socket
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import mne
import numpy as np

from preprocess.channels import MissingChannelsError, Montage, load_montage, montage_matrix
from preprocess.events import (
    Event,
    check_events,
    events_from_annotations,
    label_windows,
    window_label_probs,
    write_events_csv,
)
from preprocess.filters import BandNotchFilter
from preprocess.labels import resolve_label_classes
from preprocess.locks import manifest_lock, recording_lock
from preprocess.mfde import knowledge_weights
from preprocess.reading import (
    PreprocessError,
    check_reader_options,
    find_recordings,
    read_recording,
    recording_id,
)
from preprocess.segments import (
    OUTPUT_FORMATS,
    SHARD_DTYPES,
    read_manifest,
    save_segment,
    save_shard,
    write_manifest,
)
from runtime.checks import check_choice, check_positive

__all__ = [
    "OpenRecording",
    "PreprocessError",
    "RecordingResult",
    "Preprocessor",
    "events_part_path",
    "read_recording",
    "find_recordings",
    "recording_id",
]

logger = logging.getLogger("m4cea.preprocess")

#: Rejection reasons, in the order they are checked: a NaN sample in the recording, an infinite sample
#: (+/-inf) in the recording, a flat channel, an absurd amplitude, a window across a label boundary.
REJECT_REASONS = ("nan", "inf", "flat", "amplitude", "straddle")


@dataclass
class RecordingResult:
    """What preprocessing one recording produced.

    Attributes
    ----------
    path : str
        The recording file.
    recording : str
        Its id (:func:`recording_id`).
    n_windows : int
        Windows written.
    rejected : Counter
        Rejected windows per reason (:data:`REJECT_REASONS`).
    skipped : bool
        True if the recording was already complete (another run finished it while this one waited).
    error : str | None
        Why the recording failed, naming the file; None if it succeeded.
    filled_channels : list of str
        Montage pairs filled with zeros (``missing_channels: zeros``).
    """

    path: str
    recording: str
    n_windows: int = 0
    rejected: Counter = field(default_factory=Counter)
    skipped: bool = False
    error: str | None = None
    filled_channels: list[str] = field(default_factory=list)


@dataclass
class OpenRecording:
    """A recording opened for windowing by :meth:`Preprocessor.open` (header read, data not loaded).

    Attributes
    ----------
    path : Path
        The recording file.
    recording_id : str
        File name without folder and extension (:func:`recording_id`).
    raw : mne.io.BaseRaw
        The recording, EEG channels only, not preloaded.
    sfreq_in : float
        The recording's own sampling rate in Hz.
    duration_s : float
        Length in s (``raw.n_times / sfreq_in``).
    filled_channels : list of str
        Montage channels filled with zeros (``missing_channels: zeros``); empty otherwise.
    matrix : ndarray, shape (n_chans, n_used)
        Montage matrix from the used recording channels to the montage's channels.
    used : ndarray of int, shape (n_used,)
        Indices (in ``raw``) of the channels the montage reads.
    keep_rows : ndarray of bool, shape (n_chans,)
        Montage channels that hold data (not zero-filled): the ones checked for flatness.
    """

    path: Path
    recording_id: str
    raw: mne.io.BaseRaw
    sfreq_in: float
    duration_s: float
    filled_channels: list[str]
    matrix: np.ndarray
    used: np.ndarray
    keep_rows: np.ndarray


class Preprocessor:
    """Preprocesses recordings with one resolved config.

    Parameters
    ----------
    config : dict
        A resolved preprocessing config (``configs/preprocess/m4cea.yaml`` and overrides).

    Raises
    ------
    ValueError
        If a config value is invalid (the message names the key and the value).
    """

    def __init__(self, config: dict):
        config = resolve_label_classes(config)
        self.config = config
        self.montage: Montage = load_montage(config["montage"])
        self.reader_options = check_reader_options(config.get("reader"))
        check_choice("missing_channels", config["missing_channels"], ("error", "zeros"))
        check_choice("labels.straddle", config["labels"]["straddle"], ("drop", "majority"))
        check_choice("mfde.variant", config["mfde"]["variant"], ("official", "textbook"))
        # configs saved before output.* existed (e.g. with older checkpoints) write pickles
        self.output = {"format": "pickle", "shard_size": 128, "dtype": "float32"}
        self.output.update(config.get("output") or {})
        check_choice("output.format", self.output["format"], OUTPUT_FORMATS)
        check_choice("output.dtype", self.output["dtype"], SHARD_DTYPES)
        shard_size = self.output["shard_size"]
        if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(
                "Invalid value for the 'output.shard_size' parameter. Allowed values are integers >= 1, "
                f"but got {shard_size!r} instead."
            )
        for key in ("sfreq", "window_s", "stride_s", "patch_s", "block_s", "h_freq"):
            check_positive(key, config[key])
        check_positive("margin_s", config["margin_s"], strict=False)
        max_filled = config["max_filled_channels"]
        if isinstance(max_filled, bool) or not isinstance(max_filled, int) or max_filled < 0:
            raise ValueError(
                "Invalid value for the 'max_filled_channels' parameter. Allowed values are integers >= 0, "
                f"but got {max_filled!r} instead."
            )
        if config["l_freq"] is not None and not 0 < config["l_freq"] < config["h_freq"]:
            raise ValueError(
                f"Invalid 'l_freq' {config['l_freq']!r}: it must lie in (0, h_freq={config['h_freq']})."
            )
        self.sfreq = float(config["sfreq"])
        if config["h_freq"] >= self.sfreq / 2:
            raise ValueError(
                f"Invalid 'h_freq' {config['h_freq']} Hz: it must be below the Nyquist frequency of the "
                "target "
                f"sfreq={self.sfreq} Hz."
            )
        self.n_times = round(config["window_s"] * self.sfreq)
        self.patch_samples = round(config["patch_s"] * self.sfreq)
        if (
            not math.isclose(self.n_times, config["window_s"] * self.sfreq)
            or self.n_times % self.patch_samples
        ):
            raise ValueError(
                f"Invalid window: window_s={config['window_s']} s at sfreq={self.sfreq} Hz must be a whole "
                "number of "
                f"patches of patch_s={config['patch_s']} s."
            )
        self.n_patches = self.n_times // self.patch_samples
        self._filters: dict[float, BandNotchFilter] = {}  # per recording sampling rate
        labels = config["labels"]
        if labels["default"] is not None and labels["default"] not in labels["classes"]:
            raise ValueError(
                f"labels.default {labels['default']!r} is not in labels.classes {labels['classes']}."
            )

    # -- one recording ---------------------------------------------------------------------------

    def process(
        self,
        path: str | os.PathLike,
        output: str | os.PathLike,
        events: list[Event] | str | None = None,
        subject: str | None = None,
    ) -> RecordingResult:
        """Preprocess one recording into ``output`` (pickles, then its manifest part).

        Parameters
        ----------
        path : path-like
            The recording.
        output : path-like
            The preprocessing output folder.
        events : list of Event | ``"annotations"`` | None
            The recording's events, its own annotations, or no labels.
        subject : str | None
            Subject id (default: the recording id).

        Returns
        -------
        result : RecordingResult
            Windows written and rejected by reason. Exceptions propagate (the batch runner records them).
            ``skipped`` is True, and nothing is written, if the recording's manifest part exists once its
            lock is held (another run completed it meanwhile).

        Raises
        ------
        PreprocessError, MissingChannelsError, EventsError, FileNotFoundError
            For a bad recording; nothing of it is left in ``output``.

        Notes
        -----
        The recording's lock (:func:`preprocess.locks.recording_lock`) is held while it is written; its
        pickles go to a temporary folder unique to this call, ``.tmp/<recording>/<host>-<pid>-<random>``,
        renamed into ``segments/<recording>`` at the end. Temporaries of the same recording found there
        meanwhile were left by dead runs (a live writer would hold the lock) and are removed; those of
        other recordings are never touched.
        """
        path, output = Path(path), Path(output)
        rec = self.open(path)
        rec_id, raw, duration_s = rec.recording_id, rec.raw, rec.duration_s
        result = RecordingResult(str(path), rec_id, filled_channels=list(rec.filled_channels))
        window_s = self.config["window_s"]

        labels_cfg = self.config["labels"]
        if isinstance(events, str):  # "annotations"
            events = events_from_annotations(
                raw.annotations,
                labels_cfg["annotation_map"],
                labels_cfg["classes"],
                labels_cfg["ignore_unknown_annotations"],
                path.name,
                raw.first_time,
            )
        starts = self.window_starts(duration_s)
        if events is not None:
            check_events(events, duration_s, path.name)
            labels, straddles = label_windows(
                starts,
                window_s,
                events,
                labels_cfg["classes"],
                labels_cfg["default"],
                labels_cfg["straddle"],
                duration_s,
            )
            label_probs = window_label_probs(
                starts, window_s, events, labels_cfg["classes"], labels, labels_cfg["default"], duration_s
            )
        else:
            labels, straddles = [None] * len(starts), np.zeros(len(starts), dtype=bool)
            label_probs = [None] * len(starts)

        with recording_lock(output, rec_id):
            if part_path(output, rec_id).exists():  # completed by another run while this one waited
                result.skipped = True
                return result
            tmp_root = output / ".tmp" / rec_id
            if tmp_root.is_dir():  # only dead runs leave temporaries here: a live writer holds the lock
                for stale in tmp_root.iterdir():
                    shutil.rmtree(stale, ignore_errors=True)
            tmp_dir = tmp_root / f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
            try:
                self._write(
                    rec, output, tmp_dir, starts, labels, straddles, subject, result, events, label_probs
                )
            finally:
                with contextlib.suppress(OSError):  # kept only if a stale temporary could not be removed
                    tmp_root.rmdir()
        return result

    def _write(
        self, rec, output, tmp_dir, starts, labels, straddles, subject, result, events=None, label_probs=None
    ) -> None:
        """Windows, MFDE and pickles of one recording, its events part, then its manifest part.

        The events that labelled the windows (None: an unlabelled run) go to ``events/<recording>.csv``
        (:func:`events_part_path`) before the manifest part marks the recording complete; a recording
        without events gets one recording-level row of ``labels.default`` (when there is one), as the
        dataset adapters write it. ``label_probs``: the soft label of each window or None
        (:func:`preprocess.events.window_label_probs`), stored as ``label_probs`` in the pickle and the
        manifest row when set.
        """
        path, rec_id, filled = rec.path, rec.recording_id, rec.filled_channels
        final_dir = output / "segments" / rec_id
        rows = []
        output_cfg = self.output
        shards = output_cfg["format"] == "hdf5"
        pending: list[dict] = []  # windows of the shard being filled (output.format: hdf5)

        def flush_shard() -> None:
            name = f"{rec_id}_shard{(len(rows) - len(pending)) // output_cfg['shard_size']:05d}.h5"
            save_shard(pending, tmp_dir / name, output_cfg["dtype"])
            for row in rows[len(rows) - len(pending) :]:
                row["path"] = f"segments/{rec_id}/{name}"
            pending.clear()

        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            next_first = 0
            for block_starts, windows, reasons in self.iter_windows(rec, starts_s=starts):
                first, next_first = next_first, next_first + len(windows)  # index of the block's first window
                # "straddle" is the last of REJECT_REASONS: it only applies to windows no other check rejects.
                reasons[(reasons == "") & straddles[first:next_first]] = "straddle"
                accepted = reasons == ""
                result.rejected.update(reasons[~accepted].tolist())
                if not accepted.any():
                    continue
                kept = windows[accepted]
                weights = knowledge_weights(
                    kept.astype(np.float64), n_patches=self.n_patches, **_mfde_kwargs(self.config["mfde"])
                )
                for offset, data, mfde in zip(np.flatnonzero(accepted), kept, weights, strict=True):
                    index = first + offset
                    start_s = float(block_starts[offset])
                    name = f"{rec_id}_{round(start_s * 1000):09d}ms.pkl"
                    segment = {
                        "data": data,
                        "mfde": mfde,
                        "ch_names": self.montage.ch_names,
                        "sfreq": self.sfreq,
                        "recording": path.name,
                        "subject": subject or rec_id,
                        "start_s": start_s,
                        "label": labels[index],
                        "filled_channels": list(filled),
                    }
                    if label_probs[index] is not None:
                        segment["label_probs"] = label_probs[index]  # pickle or shard, and the manifest row
                    if shards:
                        pending.append(segment)
                        rows.append({"shard_index": len(pending) - 1})
                        if len(pending) == output_cfg["shard_size"]:
                            flush_shard()
                    else:
                        save_segment(segment, tmp_dir / name)
                        rows.append({"path": f"segments/{rec_id}/{name}", "shard_index": None})
                    rows[-1].update(
                        {
                            "subject": segment["subject"],
                            "recording": path.name,
                            "start_s": start_s,
                            "label": labels[index],
                            "n_chans": self.montage.n_chans,
                            "n_times": self.n_times,
                            "sfreq": self.sfreq,
                            "filled_channels": list(filled),
                            "label_probs": label_probs[index],
                        }
                    )
            if pending:
                flush_shard()
            if not rows:
                reasons = ", ".join(f"{k}: {v}" for k, v in sorted(result.rejected.items())) or "none"
                raise PreprocessError(f"no window of {path.name} passed the checks (rejected: {reasons})")
            if final_dir.exists():  # left by a run killed between the rename and the manifest part
                shutil.rmtree(final_dir)
            final_dir.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_dir, final_dir)
            if events is not None:
                default = self.config["labels"]["default"]
                kept = list(events) or ([Event(None, 0.0, default)] if default is not None else [])
                subject_id = subject or rec_id
                write_events_csv(
                    events_part_path(output, rec_id),
                    [(path.name, subject_id, e) for e in kept],
                    self.config["labels"]["classes"],
                )
            write_manifest(rows, part_path(output, rec_id))
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
        result.n_windows = len(rows)

    # -- windows in memory -------------------------------------------------------------------------

    def open(self, path: str | os.PathLike) -> OpenRecording:
        """Open a recording and check that it can be windowed with this config (no data is read).

        Parameters
        ----------
        path : path-like
            Any recording :func:`read_recording` reads.

        Returns
        -------
        recording : OpenRecording

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        PreprocessError
            If the file is unreadable, not EEG, sampled too slowly for ``h_freq``, or shorter than one
            window (the message names the file).
        MissingChannelsError
            If the recording lacks electrodes of the montage and ``missing_channels`` is ``error``; if
            more than ``max_filled_channels`` pairs would be filled with zeros
            (``missing_channels: zeros``); if no pair of the montage can be built at all. The message names
            the file, the montage and the pairs.
        """
        path = Path(path)
        raw = read_recording(path, self.reader_options)
        sfreq_in = float(raw.info["sfreq"])
        if self.config["h_freq"] >= sfreq_in / 2:
            raise PreprocessError(
                f"sampling rate too low for the filter in {path.name}: sfreq {sfreq_in:g} Hz (Nyquist "
                f"{sfreq_in / 2:g} Hz) cannot carry h_freq={self.config['h_freq']:g} Hz; set a low-pass "
                f"edge below {sfreq_in / 2:g} Hz, e.g. --set h_freq={_below_nyquist(sfreq_in):g}"
            )
        duration_s = raw.n_times / sfreq_in
        window_s = self.config["window_s"]
        if duration_s < window_s:
            raise PreprocessError(
                f"{path.name} lasts {duration_s:g} s, shorter than one window (window_s={window_s:g})"
            )
        try:
            matrix, filled = montage_matrix(raw.ch_names, self.montage, self.config["missing_channels"])
        except MissingChannelsError as err:
            raise MissingChannelsError(f"{path.name}: {err}") from None
        max_filled = self.config["max_filled_channels"]
        if len(filled) > max_filled:
            raise MissingChannelsError(
                f"{path.name}: {len(filled)} of the {self.montage.n_chans} pairs of the montage "
                f"'{self.montage.name}' would be filled with zeros, more than "
                f"max_filled_channels={max_filled}: filled {filled} (the recording has the channels "
                f"{raw.ch_names}). Fix the channel names, use another montage, or allow more with "
                "--set max_filled_channels=N."
            )
        used = np.flatnonzero(np.abs(matrix).sum(axis=0))
        if filled:
            logger.warning(
                "%s: %d pair(s) of the montage filled with zeros (missing_channels=zeros): %s",
                path.name,
                len(filled),
                ", ".join(filled),
            )
        keep_rows = np.array([name not in filled for name in self.montage.ch_names])
        return OpenRecording(
            path,
            recording_id(path),
            raw,
            sfreq_in,
            duration_s,
            list(filled),
            matrix[:, used],
            used,
            keep_rows,
        )

    def window_starts(self, duration_s: float, stride_s: float | None = None) -> np.ndarray:
        """Start times in s of the windows of a recording: ``0, stride_s, ...`` while a whole window fits.

        Parameters
        ----------
        duration_s : float
            Recording length in s.
        stride_s : float | None
            Step between window starts in s; None: the config's ``stride_s``.

        Returns
        -------
        starts_s : ndarray of float64, shape (n_windows,)

        Raises
        ------
        ValueError
            If ``stride_s`` is not a positive number.
        """
        stride_s = self.config["stride_s"] if stride_s is None else stride_s
        check_positive("stride_s", stride_s)
        return np.arange(0.0, duration_s - self.config["window_s"] + 1e-9, stride_s)

    def iter_windows(
        self,
        recording: str | os.PathLike | OpenRecording,
        stride_s: float | None = None,
        starts_s: np.ndarray | None = None,
        n_threads: int = 1,
    ):
        """Yield a recording's preprocessed windows block by block, with the reason each is rejected.

        Steps 1-4 of the module docstring: montage, microvolts, filters, resampling, windows and the
        NaN / infinite / flat / amplitude checks. Memory is bounded by one block (``block_s`` seconds of
        windows) per thread, whatever the recording's length.

        Parameters
        ----------
        recording : path-like | OpenRecording
            A recording file, or one opened by :meth:`open`.
        stride_s : float | None
            Step between window starts in s; None: the config's ``stride_s``. Ignored with ``starts_s``.
        starts_s : array-like, shape (n_windows,) | None
            Explicit window starts in s (sorted, each window inside the recording), e.g. a few windows
            around an event; None: :meth:`window_starts`.
        n_threads : int
            Blocks preprocessed at once, each in its own thread (the filters' and MNE's resampling FFTs
            and NumPy release the GIL), still yielded in order: for a GPU that classifies windows faster
            than one core preprocesses them. The windows are the same for any number of threads.

        Yields
        ------
        starts_s : ndarray of float64, shape (n,)
            Window starts in s from the recording's first sample.
        windows : ndarray of float32, shape (n, n_chans, n_times)
            Windows in uV, montage channels in the montage's order, at ``sfreq`` Hz. Rejected windows are
            yielded too.
        reasons : ndarray of object (str), shape (n,)
            ``""`` for an accepted window, else the first of ``"nan"`` (a NaN sample of the recording
            inside the window), ``"inf"`` (an infinite sample), ``"flat"``, ``"amplitude"`` that applies
            (see :data:`REJECT_REASONS`). Non-finite samples reject only the windows they touch: they are
            replaced by 0 before the filters, which spread them over the neighbouring samples only as a
            step, never as NaN.

        Raises
        ------
        FileNotFoundError, PreprocessError, MissingChannelsError
            From :meth:`open`, before the first block.
        ValueError
            If ``stride_s`` is not positive, ``n_threads`` not a positive integer, or ``starts_s`` is not
            sorted or puts a window outside the recording.
        """
        if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
            raise ValueError(
                f"Invalid value for the 'n_threads' parameter. Allowed values are positive integers, but got "
                f"{n_threads!r} instead."
            )
        rec = recording if isinstance(recording, OpenRecording) else self.open(recording)
        stride_s = self.config["stride_s"] if stride_s is None else stride_s
        if starts_s is None:
            starts = self.window_starts(rec.duration_s, stride_s)
        else:
            starts = np.asarray(starts_s, dtype=np.float64).reshape(-1)
            last = rec.duration_s - self.config["window_s"] + 1e-9
            if starts.size and ((np.diff(starts) < 0).any() or starts[0] < 0 or starts[-1] > last):
                raise ValueError(
                    f"Invalid value for the 'starts_s' parameter: expected sorted window starts in "
                    f"[0, {last:g}] s for {rec.path.name} ({rec.duration_s:g} s), but got {starts.min():g} "
                    f"to {starts.max():g} s."
                )
        per_block = max(1, int(self.config["block_s"] // stride_s))
        blocks = [starts[first : first + per_block] for first in range(0, len(starts), per_block)]

        def preprocess_block(block_starts):
            windows, bad_input = self._block(rec.raw, rec.matrix, rec.used, block_starts)
            return block_starts, windows, self._reject(windows, bad_input, rec.keep_rows)

        if n_threads == 1:
            yield from map(preprocess_block, blocks)
            return
        with ThreadPoolExecutor(n_threads, thread_name_prefix="m4cea-block") as pool:
            running = deque()
            try:
                for block_starts in blocks:
                    running.append(pool.submit(preprocess_block, block_starts))
                    if len(running) == n_threads:  # n_threads blocks in memory besides the yielded one
                        yield running.popleft().result()
                while running:
                    yield running.popleft().result()
            finally:  # consumer stopped early, or a block failed: drop the blocks not started
                for future in running:
                    future.cancel()

    # -- steps -------------------------------------------------------------------------------------

    def _block(self, raw, matrix: np.ndarray, used: np.ndarray, block_starts: np.ndarray):
        """Windows ``(n, n_chans, n_times)`` float32 in uV of one block, and which windows had NaN and
        which had infinite samples in the recording: ``{"nan": (n,) bool, "inf": (n,) bool}``."""
        cfg = self.config
        sfreq_in = raw.info["sfreq"]
        t0 = block_starts[0] - cfg["margin_s"]
        t1 = block_starts[-1] + cfg["window_s"] + cfg["margin_s"]
        s0 = max(0, math.floor(t0 * sfreq_in))
        s1 = min(raw.n_times, math.ceil(t1 * sfreq_in))
        x = raw.get_data(picks=used, start=s0, stop=s1, units="uV")
        bad_samples = {"nan": np.isnan(x).any(axis=0), "inf": np.isinf(x).any(axis=0)}
        non_finite = bad_samples["nan"] | bad_samples["inf"]
        if non_finite.any():
            x[:, non_finite] = 0.0
        x = matrix @ x
        x = self._filter(x, sfreq_in)
        if sfreq_in != self.sfreq:
            x = mne.filter.resample(x, up=self.sfreq, down=sfreq_in, npad="auto", verbose="error")
        offsets = np.round((block_starts - s0 / sfreq_in) * self.sfreq).astype(int)
        # one float64 -> float32 copy per window (a float64 gather of all windows, then a cast: 4x the time)
        windows = np.empty((len(offsets), len(x), self.n_times), dtype=np.float32)
        for window, offset in zip(windows, offsets, strict=True):
            window[...] = x[:, offset : offset + self.n_times]
        # NaN or inf in the recording: a window is rejected when any of its input samples was one.
        a = np.clip(np.floor(block_starts * sfreq_in).astype(int) - s0, 0, len(non_finite))
        b = np.ceil((block_starts + cfg["window_s"]) * sfreq_in).astype(int) - s0
        b = np.clip(b, 0, len(non_finite))
        bad_windows = {}
        for reason, samples in bad_samples.items():
            cum = np.concatenate([[0], np.cumsum(samples)])
            bad_windows[reason] = (cum[b] - cum[a]) > 0
        return windows, bad_windows

    def _filter(self, x: np.ndarray, sfreq_in: float) -> np.ndarray:
        """Band-pass and notch (:class:`preprocess.filters.BandNotchFilter`, designed once per rate)."""
        band_notch = self._filters.get(sfreq_in)
        if band_notch is None:  # threads may design it twice: the same filter
            cfg = self.config
            band_notch = BandNotchFilter(sfreq_in, cfg["l_freq"], cfg["h_freq"], cfg["notch_freq"])
            self._filters[sfreq_in] = band_notch
        return band_notch(x)

    def _reject(self, windows: np.ndarray, bad_input: dict, keep_rows: np.ndarray) -> np.ndarray:
        """Rejection reason per window (``""`` = accepted), the first of ``nan``, ``inf``, ``flat``,
        ``amplitude`` (``bad_input``: the ``nan`` and ``inf`` masks of :meth:`_block`).

        ``flat``: a channel (not zero-filled) with a standard deviation below ``reject.flat_std_uv``;
        ``amplitude``: a sample with ``|x|`` above ``reject.max_abs_uv``. (``straddle``, a window across a
        label boundary under ``labels.straddle=drop``, is checked by :meth:`process`, last.)
        """
        cfg = self.config["reject"]
        channels = windows if keep_rows.all() else windows[:, keep_rows]  # no copy without filled pairs
        checks = {
            "nan": bad_input["nan"],
            "inf": bad_input["inf"],
            "flat": (channels.std(axis=-1) < cfg["flat_std_uv"]).any(axis=-1),
            # max |x| as max(max x, -min x): no |x| copy of the block
            "amplitude": np.maximum(windows.max(axis=(1, 2)), -windows.min(axis=(1, 2))) > cfg["max_abs_uv"],
        }
        reasons = np.full(len(windows), "", dtype=object)
        for reason in reversed(list(checks)):  # the first reason in the list wins
            reasons[checks[reason]] = reason
        return reasons


def _below_nyquist(sfreq: float) -> float:
    """A round low-pass edge in Hz comfortably below the Nyquist frequency ``sfreq / 2`` (0.8 of it)."""
    edge = 0.4 * sfreq
    return float(math.floor(edge)) if edge >= 1 else edge


def part_path(output: str | os.PathLike, rec_id: str) -> Path:
    """Path of a recording's manifest part; its presence marks the recording as complete."""
    return Path(output) / "parts" / f"{rec_id}.csv"


def events_part_path(output: str | os.PathLike, rec_id: str) -> Path:
    """Path of the events a recording was labelled with (merged into ``output/events.csv`` by the batch)."""
    return Path(output) / "events" / f"{rec_id}.csv"


def _mfde_kwargs(mfde_config: dict) -> dict:
    return {key: mfde_config[key] for key in ("m", "c", "tau", "n_scales", "variant")}


def merge_manifest(output: str | os.PathLike) -> int:
    """Rebuild ``output/manifest.csv`` from every recording's manifest part; returns the number of rows.

    Rows are sorted by recording, then start time. Each shard's run rebuilds it at its end, under the
    manifest lock (:func:`preprocess.locks.manifest_lock`), so the last shard to finish writes every
    shard's rows.
    """
    output = Path(output)
    with manifest_lock(output):
        rows = []
        for part in sorted((output / "parts").glob("*.csv")):
            rows.extend(read_manifest(part))
        rows.sort(key=lambda row: (row["recording"], row["start_s"]))
        write_manifest(rows, output / "manifest.csv")
    return len(rows)
