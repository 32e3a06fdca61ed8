"""finetune/score_events.py: one pair and a folder of pairs, the JSON output, and bad input (exit 2, or
reported per pair with exit 1 in folder mode)."""

from __future__ import annotations

import json
import math

import pytest
from timescoring import scoring
from timescoring.annotations import Annotation

from finetune.score_events import cli, main

HEADER = "onset\tduration\ttrial_type\n"


def _tsv(path, rows, header=HEADER):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join("\t".join(str(v) for v in row) + "\n" for row in rows))
    return path


def test_one_pair_prints_and_writes_timescoring_figures(tmp_path, capsys):
    ref = _tsv(tmp_path / "ref.tsv", [(100, 30, "seizure"), (2000, 40, "seizure"), (50, 10, "background")])
    hyp = _tsv(tmp_path / "hyp.tsv", [(90, 20, "seizure"), (3000, 8, "seizure"), (3100, 4, "background")])
    out = tmp_path / "out" / "scores.json"
    assert cli([str(ref), str(hyp), "--duration-s", "3600", "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    ref_ann = Annotation([(100, 130), (2000, 2040)], 10, 36000)
    hyp_ann = Annotation([(90, 110), (3000, 3008)], 10, 36000)
    for level, ts in (
        ("event", scoring.EventScoring(ref_ann, hyp_ann)),
        ("sample", scoring.SampleScoring(ref_ann, hyp_ann)),
    ):
        got = written[level]
        assert got["sensitivity"] == pytest.approx(ts.sensitivity)
        assert got["precision"] == pytest.approx(ts.precision)
        assert got["f1"] == pytest.approx(ts.f1)
        assert got["false_alarms_per_24h"] == pytest.approx(ts.fpRate)
        assert (got["n_reference"], got["true_positives"], got["false_positives"]) == (
            ts.refTrue,
            ts.tp,
            ts.fp,
        )
    assert (written["event"]["true_positives"], written["event"]["false_positives"]) == (1, 1)
    assert written["duration_s"] == 3600 and written["warnings"] == []
    printed = capsys.readouterr().out
    assert "event: sensitivity 0.5000, precision 0.5000" in printed and "sample:" in printed
    assert not list(out.parent.glob("*.tmp*"))  # written atomically, nothing else left


def test_json_writes_nan_as_null_and_chosen_labels(tmp_path):
    ref = _tsv(tmp_path / "ref.tsv", [(10, 4, "spike_wave")])
    hyp = _tsv(tmp_path / "hyp.tsv", [])
    out = tmp_path / "scores.json"
    assert cli([str(ref), str(hyp), "--duration-s", "120", "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["event"]["n_reference"] == 0  # spike_wave is not a seizure label by default
    assert written["event"]["sensitivity"] is None and written["event"]["false_alarms_per_24h"] == 0.0
    assert "120 s" in written["warnings"][0]  # less than 10 min: flagged
    assert cli([str(ref), str(hyp), "--duration-s", "120", "--labels", "spike_wave", "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert (written["event"]["n_reference"], written["event"]["sensitivity"]) == (1, 0.0)
    strict = main([str(ref), str(hyp), "--duration-s", "120", "--labels", "spike_wave", "--strict"])
    assert strict["strict"] is True and strict["event"]["sensitivity"] == 0.0


def test_duration_from_the_recording_duration_column(tmp_path):
    header = "onset\tduration\teventType\trecordingDuration\n"
    ref = _tsv(tmp_path / "ref.tsv", [(10, 20, "sz_foc_ia", 7200)], header)
    hyp = _tsv(tmp_path / "hyp.tsv", [(15, 5, "sz", 7200)], header)
    result = main([str(ref), str(hyp), "--label-column", "eventType"])
    assert result["duration_s"] == 7200 and result["event"]["true_positives"] == 1


def test_folder_of_pairs_gives_rows_and_totals_and_reports_bad_pairs(tmp_path, capsys):
    ref_dir, hyp_dir = tmp_path / "ref", tmp_path / "hyp"
    _tsv(ref_dir / "sub-01" / "a_events.tsv", [(100, 30, "seizure")])
    _tsv(ref_dir / "sub-02" / "b_events.tsv", [(500, 30, "seizure"), (2000, 20, "seizure")])
    _tsv(ref_dir / "c_events.tsv", [(5, 5, "seizure")])  # no hypothesis: reported
    _tsv(hyp_dir / "a" / "a_events.tsv", [(110, 10, "seizure"), (3000, 10, "seizure")])
    _tsv(hyp_dir / "b" / "b_events.tsv", [(505, 10, "seizure")])
    _tsv(hyp_dir / "d_events.tsv", [(5, 5, "seizure")])  # no reference: reported
    out = tmp_path / "total.json"
    assert cli([str(ref_dir), str(hyp_dir), "--duration-s", "3600", "--json", str(out)]) == 1
    written = json.loads(out.read_text())
    assert [row["name"] for row in written["recordings"]] == ["a_events.tsv", "b_events.tsv"]
    total = written["total"]["event"]
    assert (total["n_reference"], total["true_positives"], total["false_positives"]) == (3, 2, 1)
    assert total["sensitivity"] == pytest.approx(2 / 3) and total["precision"] == pytest.approx(2 / 3)
    assert total["false_alarms_per_24h"] == pytest.approx(1 / (2 / 24))
    assert total["duration_h"] == pytest.approx(2.0)
    assert written["total"]["n_recordings"] == 2
    failed = {item["name"]: item["error"] for item in written["failed"]}
    assert set(failed) == {"c_events.tsv", "d_events.tsv"}
    assert "no hypothesis" in failed["c_events.tsv"] and "no reference" in failed["d_events.tsv"]
    captured = capsys.readouterr()
    assert "total over 2 recordings" in captured.out and "FAILED c_events.tsv" in captured.err


def test_folder_with_a_bad_file_goes_on(tmp_path):
    ref_dir, hyp_dir = tmp_path / "ref", tmp_path / "hyp"
    _tsv(ref_dir / "a.tsv", [(100, 30, "seizure")])
    _tsv(ref_dir / "b.tsv", [(100, 30, "seizure")])
    _tsv(hyp_dir / "a.tsv", [(100, 30, "seizure")])
    _tsv(hyp_dir / "b.tsv", [(3590, 30, "seizure")])  # past the duration
    result = main([str(ref_dir), str(hyp_dir), "--duration-s", "3600"])
    assert [row["name"] for row in result["recordings"]] == ["a.tsv"]
    assert "b.tsv" in result["failed"][0]["error"] and "past the recording" in result["failed"][0]["error"]
    assert result["total"]["event"]["sensitivity"] == 1.0


@pytest.mark.parametrize(
    "ref_rows, hyp_rows, header, extra, match",
    [
        (
            [(1, 2, "sz")],
            [(1, 2, "sz")],
            "onset\ttrial_type\tduration_s\n",
            [],
            r"lacks the column\(s\) \['duration'\]",
        ),
        ([(1, -2, "sz")], [], HEADER, [], "ref.tsv, line 2: the duration must be a finite non-negative"),
        ([], [(3590, 20, "seizure")], HEADER, [], "hypothesis events file .*hyp.tsv has an event .* past"),
        ([], [], HEADER, ["--duration-s", "-5"], "--duration-s"),
        ([], [], HEADER, ["--duration-s", "nan"], "--duration-s"),
    ],
)
def test_bad_input_is_exit_2_with_the_file_named(tmp_path, capsys, ref_rows, hyp_rows, header, extra, match):
    ref = _tsv(tmp_path / "ref.tsv", ref_rows, header)
    hyp = _tsv(tmp_path / "hyp.tsv", hyp_rows, header)
    out = tmp_path / "scores.json"
    argv = [str(ref), str(hyp), "--json", str(out)] + (extra or ["--duration-s", "3600"])
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("score_events.py: error: ")
    import re

    assert re.search(match, err), err
    assert not out.exists()


def test_missing_files_and_durations_are_usage_errors(tmp_path, capsys):
    ref = _tsv(tmp_path / "ref.tsv", [(1, 2, "sz")])
    assert cli([str(ref), str(tmp_path / "nope.tsv"), "--duration-s", "60"]) == 2
    assert "hypothesis" in capsys.readouterr().err
    assert cli([str(ref), str(ref)]) == 2
    assert "give --duration-s" in capsys.readouterr().err
    assert cli([str(ref), str(tmp_path)]) == 2
    assert "two files or two folders" in capsys.readouterr().err
    with pytest.raises(ValueError, match="give --duration-s"):
        main([str(ref), str(ref)])
    assert (
        math.isnan(main([str(ref), str(ref), "--duration-s", "60"])["event"]["false_alarms_per_24h"]) is False
    )
