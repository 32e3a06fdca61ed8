"""Score any seizure detector's events against annotated events, the SzCORE way (``timescoring``).

Usage::

    python finetune/score_events.py REF.tsv HYP.tsv --duration-s D [--json OUT]
    python finetune/score_events.py REF_DIR HYP_DIR [--duration-s D] [--json OUT]
        [--labels sz seizure ...] [--label-column trial_type] [--strict]

``REF`` and ``HYP`` are BIDS events files (tab-separated, columns ``onset`` and ``duration`` in s and
``trial_type``; other columns are ignored), e.g. the ``*_events.tsv`` that ``finetune/predict.py``
writes. Seizure rows are those whose ``trial_type`` is ``seizure`` or an SzCORE code ``sz``/``sz_*``
(``--labels`` lists the exact labels instead, e.g. ``--labels spike_wave``; ``--label-column eventType``
reads SzCORE's own column). ``--duration-s`` is the recording's duration; without it, a
``recordingDuration`` column of ``REF`` (SzCORE's files) gives it.

Prints, and with ``--json`` writes (atomically, NaN as null), ``{"event": {...}, "sample": {...}, ...}``:
sensitivity, precision, f1, false_alarms_per_24h and the counts (n_reference, true_positives,
false_positives, duration_h) of SzCORE event scoring and sample scoring, equal to ``timescoring`` with its
default parameters (see :mod:`finetune.event_scoring`); ``--strict`` gives plain any-overlap event scoring.
``warnings`` says when the per-24-h rates come from less than 10 minutes of EEG.

Folders: every ``*.tsv`` file under ``REF_DIR`` (searched recursively) is paired with the file of the same
name under ``HYP_DIR`` (names must be unique in each folder; ``predict.py``'s
``OUT/<recording>/<stem>_events.tsv`` pairs with a reference folder of ``<stem>_events.tsv``). The
output has one row per recording (``recordings``) and ``total``: counts summed over the recordings,
rates over their total duration. A pair that cannot be scored (no hypothesis file, bad file) is
reported with its reason in ``failed`` and the batch goes on.

Exit status: 0 all scored; 1 some pairs failed (folder mode); 2 usage error or bad input (the message
names the file and the setting to change).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (python finetune/score_events.py): repo root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from finetune.event_scoring import (  # noqa: E402
    LEVELS,
    read_events_tsv,
    recording_duration_s,
    score_events,
    total_scores,
)
from runtime.config import UsageError  # noqa: E402
from runtime.entry import run_entry  # noqa: E402
from runtime.files import atomic_write  # noqa: E402

__all__ = ["cli", "get_args_parser", "main", "score_pair"]


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line arguments of the event-scoring entry point."""
    parser = argparse.ArgumentParser(
        "score_events.py",
        description="SzCORE event and sample scoring (timescoring) of detected against annotated seizures.",
    )
    parser.add_argument("reference", help="reference BIDS events file (.tsv), or a folder of them")
    parser.add_argument("hypothesis", help="hypothesis BIDS events file (.tsv), or a folder of them")
    parser.add_argument(
        "--duration-s",
        type=float,
        default=None,
        help="recording duration in s (default: the reference's recordingDuration column)",
    )
    parser.add_argument("--json", default=None, help="also write the scores to this JSON file")
    parser.add_argument(
        "--labels",
        nargs="+",
        default=None,
        help="labels that are seizures (exact); default: 'seizure' and SzCORE codes 'sz', 'sz_*'",
    )
    parser.add_argument("--label-column", default="trial_type", help="column of the labels (%(default)s)")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="plain any-overlap event scoring (no tolerance, merging, splitting) instead of SzCORE's",
    )
    return parser


def score_pair(
    reference, hypothesis, duration_s=None, labels=None, label_column="trial_type", strict=False
) -> dict:
    """Score one pair of BIDS events files (:func:`finetune.event_scoring.score_events`).

    Parameters
    ----------
    reference, hypothesis : path-like
        BIDS events files.
    duration_s : float | None
        Recording duration in s; None: the reference's ``recordingDuration`` column.
    labels, label_column
        Which rows are seizures (:func:`finetune.event_scoring.read_events_tsv`).
    strict : bool
        As :func:`finetune.event_scoring.score_events`.

    Returns
    -------
    result : dict
        The result of :func:`~finetune.event_scoring.score_events`, plus ``reference`` and ``hypothesis``
        (the paths).

    Raises
    ------
    FileNotFoundError
        If a file is missing.
    ValueError
        On a bad file (missing column, negative or non-numeric value), an event past the duration (the
        message names the file), or no duration.
    """
    if duration_s is None:
        duration_s = recording_duration_s(reference)
        if duration_s is None:
            raise UsageError(
                f"No duration for {reference}: give --duration-s (the recording's duration in s), "
                f"or a recordingDuration column in the reference events file."
            )
    ref = read_events_tsv(reference, labels, label_column)
    hyp = read_events_tsv(hypothesis, labels, label_column)
    for name, path, events in (("reference", reference, ref), ("hypothesis", hypothesis, hyp)):
        late = [e for e in events if e[0] + e[1] > duration_s + 1e-6]
        if late:
            raise UsageError(
                f"The {name} events file {path} has an event (onset {late[0][0]} s, duration "
                f"{late[0][1]} s) that ends past the recording's duration {duration_s} s: give the "
                f"recording's duration with --duration-s, or the events of this recording."
            )
    result = score_events(ref, hyp, duration_s, strict=strict)
    return {"reference": str(reference), "hypothesis": str(hypothesis), **result}


@dataclass
class _Run:
    args: argparse.Namespace
    pairs: list = field(default_factory=list)  # (name, reference, hypothesis or None)
    folder: bool = False
    result: dict | None = None


def _tsv_by_name(folder: Path, what: str) -> dict:
    found = {}
    for path in sorted(folder.rglob("*.tsv")):
        if path.name in found:
            raise UsageError(
                f"Two {what} files are named {path.name} ({found[path.name]} and {path}): pairs "
                f"are matched by file name, which must be unique in each folder."
            )
        found[path.name] = path
    return found


def _setup(args: argparse.Namespace) -> _Run:
    reference, hypothesis = Path(args.reference), Path(args.hypothesis)
    for name, path in (("reference", reference), ("hypothesis", hypothesis)):
        if not path.exists():
            raise FileNotFoundError(
                f"The {name} {path} does not exist (a BIDS events .tsv file or a folder)."
            )
    if args.duration_s is not None and not (math.isfinite(args.duration_s) and args.duration_s > 0):
        raise UsageError(
            f"Invalid value for --duration-s: a positive duration in s, but got {args.duration_s}."
        )
    run = _Run(args)
    if reference.is_dir() != hypothesis.is_dir():
        raise UsageError(
            f"The reference {reference} and the hypothesis {hypothesis} must be two files or two folders."
        )
    if not reference.is_dir():
        # one pair: bad input is a usage error, raised here
        run.result = score_pair(
            reference, hypothesis, args.duration_s, args.labels, args.label_column, args.strict
        )
        return run
    run.folder = True
    refs = _tsv_by_name(reference, "reference")
    hyps = _tsv_by_name(hypothesis, "hypothesis")
    if not refs:
        raise FileNotFoundError(f"No *.tsv events file under the reference folder {reference}.")
    run.pairs = [(name, path, hyps.get(name)) for name, path in refs.items()]
    run.pairs += [(name, None, path) for name, path in hyps.items() if name not in refs]
    return run


def _score_folder(run: _Run) -> dict:
    args = run.args
    rows, failed = [], []
    for name, ref, hyp in run.pairs:
        if ref is None or hyp is None:
            missing = "reference" if ref is None else "hypothesis"
            failed.append({"name": name, "error": f"no {missing} file named {name}"})
            continue
        try:
            rows.append(
                {
                    "name": name,
                    **score_pair(ref, hyp, args.duration_s, args.labels, args.label_column, args.strict),
                }
            )
        except (ValueError, FileNotFoundError, OSError) as err:
            failed.append({"name": name, "error": str(err)})
    out = {"recordings": rows, "failed": failed}
    if rows:
        out["total"] = total_scores(rows)
    return out


def _format_level(level: str, scores: dict) -> str:
    def num(x):
        return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"

    return (
        f"{level:>6}: sensitivity {num(scores['sensitivity'])}, precision {num(scores['precision'])}, "
        f"f1 {num(scores['f1'])}, false alarms/24h {num(scores['false_alarms_per_24h'])} "
        f"(reference {scores['n_reference']}, true positives {scores['true_positives']}, false positives "
        f"{scores['false_positives']}, {scores['duration_h']:.3f} h)"
    )


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _train(run: _Run) -> dict:
    result = _score_folder(run) if run.folder else run.result
    blocks = result["recordings"] if run.folder else [result]
    for row in blocks:
        title = row.get("name", f"{row['reference']} vs {row['hypothesis']}")
        print(title)
        for level in LEVELS:
            print(_format_level(level, row[level]))
        for warning in row["warnings"]:
            print(f"  warning: {warning}")
    if run.folder:
        if "total" in result:
            print(f"total over {result['total']['n_recordings']} recordings")
            for level in LEVELS:
                print(_format_level(level, result["total"][level]))
            for warning in result["total"]["warnings"]:
                print(f"  warning: {warning}")
        for item in result["failed"]:
            print(f"FAILED {item['name']}: {item['error']}", file=sys.stderr)
    if run.args.json:
        with atomic_write(run.args.json, "w") as f:
            json.dump(_json_safe(result), f, indent=1, allow_nan=False)
            f.write("\n")
    return result


def main(argv: list[str] | None = None) -> dict:
    """Score events with command-line arguments ``argv``; returns the result (NaN as float NaN).

    Raises
    ------
    ValueError, TypeError, FileNotFoundError
        On usage errors and bad input.
    """
    return run_entry(_setup, _train, get_args_parser().parse_args(argv))


def cli(argv: list[str] | None = None) -> int:
    """Command-line entry: exit status 0 all scored, 1 some pairs failed, 2 usage error or bad input."""
    args = get_args_parser().parse_args(argv)
    kept = {}

    def train(run):
        kept["result"] = _train(run)

    status = run_entry(_setup, train, args, prog="score_events.py")
    if status == 0 and kept["result"].get("failed"):
        return 1
    return status


if __name__ == "__main__":
    sys.exit(cli())
