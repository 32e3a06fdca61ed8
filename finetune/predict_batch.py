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
from preprocess.pipeline import find_recordings, recording_id
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

    output = Path(output)
    # Earlier outputs (annotation-only EDF+ files) are not recordings: leave the output folder out.
    recordings = [
        p for p in find_recordings(list(inputs)) if not p.resolve().is_relative_to(output.resolve())
    ]
    if not recordings:
        raise UsageError(f"No recording found in {[str(p) for p in inputs]} (--input).")
    by_id: dict[str, list[Path]] = {}
    for path in recordings:
        by_id.setdefault(recording_id(path), []).append(path)
    clashes = {k: v for k, v in by_id.items() if len(v) > 1}
    if clashes:
        name, paths = next(iter(clashes.items()))
        raise UsageError(
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
