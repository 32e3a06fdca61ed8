"""Annotate many recordings with one predictor: the batch behind ``finetune/predict.py``.

:func:`run_batch`: a progress bar, one output folder per recording written atomically
(:func:`finetune.predict_outputs.annotate_recording`), a bad recording reported and skipped, and
``predict_summary.json`` for the batch.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from finetune.predict_outputs import BatchResult, annotate_recording, write_batch_summary
from finetune.predictor import Predictor
from preprocess.reading import find_recordings, recording_id_clashes
from runtime.config import UsageError

__all__ = [
    "run_batch",
]

logger = logging.getLogger("finetune.predict_batch")


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
        (:func:`preprocess.reading.find_recordings`).
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
    runtime.config.UsageError
        If no recording is found.

    Notes
    -----
    Recordings that share a recording id (file name without extension, e.g. ``rec.edf`` and ``rec.fif``)
    would write one output folder: each is reported as failed
    (:func:`preprocess.reading.recording_id_clashes`) and the batch goes on with the others. The output
    folder may be an input folder: predict's outputs there are not read back as recordings.
    """
    from tqdm import tqdm

    output = Path(output)
    # Predict's own outputs (annotation-only EDF+, *_annot.fif) are not recordings (find_recordings skips
    # them), so the output folder may be inside an input folder, or be it.
    recordings = find_recordings(list(inputs))
    if not recordings:
        raise UsageError(f"No recording found in {[str(p) for p in inputs]} (--input).")
    clashes = recording_id_clashes(recordings)  # reported per recording below; the others go on
    result = BatchResult()
    start = time.perf_counter()
    bar = tqdm(recordings, desc="recordings", unit="recording", disable=not progress, dynamic_ncols=True)
    for path in bar:
        bar.set_postfix_str(path.name)
        if path in clashes:  # two files would write one output folder: neither is annotated
            result.failed.append((str(path), clashes[path]))
            logger.error("FAILED %s: %s", path, clashes[path])
            continue
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
