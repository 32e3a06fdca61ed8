"""The batch runner and the command line: resume, shards, workers, bad inputs, exit codes."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

import preprocess.pipeline as pipeline
from preprocess.locks import LOCK_DIR
from preprocess.batch import parse_shard, run_preprocessing
from preprocess.preprocess_main import main
from preprocess.segments import read_manifest
from preprocess.synthetic import synthetic_raw, write_edf
from tests.helpers import ROOT, shared_path


@pytest.fixture
def recordings(tmp_path):
    """Three short synthetic CHB-MIT-like EDF recordings (20 s, 256 Hz)."""
    folder = tmp_path / "in"
    for i in range(3):
        write_edf(synthetic_raw(duration_s=20.0, seed=i), folder / f"rec{i}.edf")
    return folder


def _files(folder):
    """Every file under ``folder`` with its bytes (manifest, pickles, parts; not the run report, not locks)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "last_run.json" and LOCK_DIR not in p.relative_to(folder).parts
    }


def test_resume_after_an_interrupted_run(recordings, tmp_path, preprocess_config, monkeypatch):
    config = preprocess_config()
    reference = tmp_path / "uninterrupted"
    run_preprocessing([recordings], reference, config, progress=False)

    # Interrupt the run while the second recording is being written (as Ctrl-C or a kill would).
    calls = {"n": 0}
    original = pipeline.save_segment

    def save_then_interrupt(segment, path):
        calls["n"] += 1
        if calls["n"] == 5 + 2:  # 5 windows per recording: inside the second recording
            raise KeyboardInterrupt
        original(segment, path)

    out = tmp_path / "resumed"
    monkeypatch.setattr(pipeline, "save_segment", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_preprocessing([recordings], out, config, progress=False)
    # Nothing of the interrupted recording is left: no pickles, no manifest part.
    assert sorted(p.name for p in (out / "parts").glob("*.csv")) == ["rec0.csv"]
    assert sorted(p.name for p in (out / "segments").iterdir()) == ["rec0"]
    assert not list((out / ".tmp").iterdir())

    monkeypatch.setattr(pipeline, "save_segment", original)
    summary = run_preprocessing([recordings], out, config, progress=False)
    assert [p.rsplit("/", 1)[-1] for p in summary.skipped] == ["rec0.edf"]
    assert len(summary.done) == 2
    files = _files(out)
    files.pop(".tmp", None)
    assert files == _files(reference)


def test_shards_share_a_corpus_and_workers_give_the_same_output(recordings, tmp_path, preprocess_config):
    config = preprocess_config()
    single = tmp_path / "single"
    run_preprocessing([recordings], single, config, progress=False)
    sharded = tmp_path / "sharded"
    first = run_preprocessing([recordings], sharded, config, shard=(0, 2), progress=False)
    second = run_preprocessing([recordings], sharded, config, shard=(1, 2), progress=False)
    assert [p.rsplit("/", 1)[-1] for p in first.done] == ["rec0.edf", "rec2.edf"]
    assert [p.rsplit("/", 1)[-1] for p in second.done] == ["rec1.edf"]
    assert _files(sharded) == _files(single)
    parallel = tmp_path / "parallel"
    run_preprocessing([recordings], parallel, config, workers=2, progress=False)
    assert _files(parallel) == _files(single)


@pytest.mark.parametrize("text, expected", [(None, (0, 1)), ("0/4", (0, 4)), ("3/4", (3, 4))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["4/4", "-1/2", "1", "a/b"])
def test_parse_shard_errors(text):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)


def _bad(tmp_path, name, make):
    path = tmp_path / "bad" / name
    path.parent.mkdir(exist_ok=True)
    make(path)
    return path


def _truncated(path):
    write_edf(synthetic_raw(duration_s=20.0), path.with_suffix(".tmp.edf"))
    data = path.with_suffix(".tmp.edf").read_bytes()
    path.write_bytes(data[: len(data) // 3])
    path.with_suffix(".tmp.edf").unlink()


BAD_RECORDINGS = {
    "truncated.edf": (_truncated, r"truncated recording truncated\.edf"),
    "garbage.edf": (
        lambda p: p.write_bytes(b"this is not an EDF file" * 20),
        r"unreadable recording garbage\.edf",
    ),
    "no_o1.edf": (
        lambda p: write_edf(
            synthetic_raw([c for c in "FP1-F7 F7-T7 T7-P7 FP2-F8".split()], duration_s=20.0), p
        ),
        r"missing channels.*P7-O1",
    ),
    "slow.edf": (
        lambda p: write_edf(synthetic_raw(sfreq=100.0, duration_s=20.0), p),
        r"sampling rate too low for the filter in slow\.edf.*h_freq=70",
    ),
    "short.edf": (
        lambda p: write_edf(synthetic_raw(duration_s=3.0), p),
        r"short\.edf lasts 3 s, shorter than one window",
    ),
    "all_nan_raw.fif": (
        lambda p: synthetic_raw(duration_s=8.0).apply_function(lambda x: x * np.nan).save(p, verbose="error"),
        r"no window of all_nan_raw\.fif passed the checks \(rejected: nan: 2\)",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_RECORDINGS))
def test_bad_recordings_are_reported_and_the_batch_goes_on(name, recordings, tmp_path, preprocess_config):
    make, message = BAD_RECORDINGS[name]
    bad = _bad(tmp_path, name, make)
    out = tmp_path / "out"
    summary = run_preprocessing([recordings / "rec0.edf", bad], out, preprocess_config(), progress=False)
    assert len(summary.done) == 1 and len(summary.failed) == 1
    file, reason = summary.failed[0]
    assert file == str(bad)
    assert __import__("re").search(message, reason), reason
    assert {row["recording"] for row in read_manifest(out)} == {"rec0.edf"}  # no row of the bad file
    assert sorted(p.name for p in (out / "segments").iterdir()) == ["rec0"]  # no pickle of it
    assert not list((out / ".tmp").iterdir())


def test_hypnogram_is_not_eeg(tmp_path, preprocess_config):
    hypnogram = shared_path("data", "sleep_edf", "SC4001EC-Hypnogram.edf")
    summary = run_preprocessing([hypnogram], tmp_path, preprocess_config(), progress=False)
    assert len(summary.failed) == 1 and "SC4001EC-Hypnogram.edf" in summary.failed[0][1]


def test_events_outside_the_recording_fail_that_recording(recordings, tmp_path, preprocess_config):
    events = tmp_path / "events.csv"
    events.write_text("recording,onset_s,duration_s,label\nrec1.edf,15,10,seizure\n")
    summary = run_preprocessing(
        [recordings], tmp_path / "out", preprocess_config(), events=events, progress=False
    )
    assert len(summary.failed) == 1
    assert "event outside the recording rec1.edf" in summary.failed[0][1]
    assert {row["recording"] for row in read_manifest(tmp_path / "out")} == {"rec0.edf", "rec2.edf"}


def test_other_config_in_the_same_output_is_refused(recordings, tmp_path, preprocess_config):
    run_preprocessing([recordings / "rec0.edf"], tmp_path / "out", preprocess_config(), progress=False)
    with pytest.raises(ValueError, match="made with another config"):
        run_preprocessing(
            [recordings / "rec1.edf"], tmp_path / "out", preprocess_config("notch_freq=60.0"), progress=False
        )


def test_duplicate_recording_names_are_refused(recordings, tmp_path, preprocess_config):
    shutil.copytree(recordings, tmp_path / "copy")
    with pytest.raises(ValueError, match="same name"):
        run_preprocessing(
            [recordings, tmp_path / "copy"], tmp_path / "out", preprocess_config(), progress=False
        )


# -- the command line -----------------------------------------------------------------------------


def test_cli_exit_codes(recordings, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--input", str(recordings), "--output", str(out), "--quiet"]) == 0
    assert "recordings done: 3" in capsys.readouterr().out
    assert (out / "config.yaml").is_file() and len(read_manifest(out)) == 15
    bad = _bad(tmp_path, "garbage.edf", BAD_RECORDINGS["garbage.edf"][0])
    assert main(["--input", str(recordings), str(bad), "--output", str(out), "--quiet"]) == 1
    printed = capsys.readouterr().out
    assert (
        "already complete (skipped): 3, failed: 1" in printed
        and "FAILED" in printed
        and "garbage.edf" in printed
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "no_such_key=1"], "Unknown config key 'no_such_key'"),
        (["--set", "window_s=long"], "Invalid type for the config key 'window_s'"),
        (["--set", "reject.flat_std_uv=[1]"], "reject.flat_std_uv"),
        (["--config", "missing.yaml"], "Config file not found: missing.yaml"),
        (["--shard", "2/2"], "--shard"),
        (["--workers", "0"], "--workers"),
        (["--events", "nowhere.csv"], "Events file not found"),
    ],
)
def test_cli_usage_errors_exit_2_and_write_nothing(recordings, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert main(["--input", str(recordings), "--output", str(out), "--quiet", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (out / "manifest.csv").exists()


def test_cli_unknown_label_and_unwritable_output(recordings, tmp_path, capsys):
    events = tmp_path / "events.csv"
    events.write_text("recording,onset_s,duration_s,label\nrec1.edf,0,4,spikes\n")
    assert main(["--input", str(recordings), "--output", str(tmp_path / "out"), "--events", str(events)]) == 2
    assert "Invalid label 'spikes'" in capsys.readouterr().err
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["--input", str(recordings), "--output", str(blocker / "out")]) == 2
    assert "cannot be written" in capsys.readouterr().err
    assert main(["--input", str(tmp_path / "nothing_here"), "--output", str(tmp_path / "o2")]) == 2
    assert "Input not found" in capsys.readouterr().err


def test_script_runs_from_a_fresh_shell(recordings, tmp_path):
    """`python preprocess/preprocess_main.py ...` works without installing the project."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "preprocess" / "preprocess_main.py"),
            "--input",
            str(recordings / "rec0.edf"),
            "--output",
            str(tmp_path / "out"),
            "--set",
            "notch_freq=60",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "windows written: 5" in result.stdout
    assert "notch_freq: 60.0" in (tmp_path / "out" / "config.yaml").read_text()
