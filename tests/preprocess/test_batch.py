"""The batch runner and the command line: resume, shards, workers, bad inputs, exit codes."""

import json
import os
import shutil
import signal
import subprocess
import sys

import mne
import numpy as np
import pytest

import preprocess.pipeline as pipeline
from preprocess.batch import parse_shard, run_preprocessing
from preprocess.events import EventsError
from preprocess.locks import LOCK_DIR
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
    """Every file under ``folder`` with its bytes (manifest, pickles, parts; not the run report or locks)."""
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


def test_recordings_sharing_an_id_fail_one_by_one_and_the_batch_goes_on(
    recordings, tmp_path, preprocess_config
):
    # rec0 twice (another folder), and two exports of rec1 (EDF and FIF): each is named as failed, with the
    # clash; rec2 is processed. (Before: one ValueError aborted the whole batch.)
    shutil.copytree(recordings, tmp_path / "copy", ignore=shutil.ignore_patterns("rec1.*", "rec2.*"))
    synthetic_raw(duration_s=20.0, seed=1).save(recordings / "rec1.fif", verbose="error")
    summary = run_preprocessing(
        [recordings, tmp_path / "copy"], tmp_path / "out", preprocess_config(), progress=False
    )
    assert summary.done == [str(recordings / "rec2.edf")]
    failed = dict(summary.failed)
    assert sorted(failed) == sorted(
        str(p) for p in (recordings / "rec0.edf", tmp_path / "copy" / "rec0.edf", *recordings.glob("rec1.*"))
    )
    assert "are both recording 'rec1'" in failed[str(recordings / "rec1.fif")]
    assert str(recordings / "rec1.edf") in failed[str(recordings / "rec1.fif")]
    assert str(tmp_path / "copy" / "rec0.edf") in failed[str(recordings / "rec0.edf")]
    assert {row["recording"] for row in read_manifest(tmp_path / "out")} == {"rec2.edf"}


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


@pytest.mark.slow  # a fresh interpreter and a whole preprocessing run (4 s)
def test_script_runs_from_a_fresh_shell_without_torch(recordings, tmp_path):
    """`python preprocess/preprocess_main.py ...` works without installing the project, and a preprocessing
    run (entry, batch runner, pipeline, writers) never loads torch: seconds less per process."""
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",  # every module the run imports, on stderr
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
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert {"preprocess.batch", "preprocess.pipeline", "preprocess.segments", "mne"} <= imported
    assert "torch" not in imported


# -- data integrity (issue 10) --------------------------------------------------------------------


def test_recordings_sharing_an_id_prefix_keep_their_temporaries(tmp_path, preprocess_config, monkeypatch):
    """``pat1`` starting while ``pat1.2019`` is written leaves ``pat1.2019``'s temporaries alone.

    As with ``--workers 2``, made deterministic: ``pat1`` is processed right after the first pickle of
    ``pat1.2019`` is written. The old cleanup glob ``.tmp/pat1.*`` removed that live folder and the
    manifest then named a pickle that did not exist.
    """
    folder = tmp_path / "in"
    write_edf(synthetic_raw(duration_s=20.0, seed=0), folder / "pat1.2019.edf")
    write_edf(synthetic_raw(duration_s=20.0, seed=1), folder / "pat1.edf")
    out = tmp_path / "out"
    stale = out / ".tmp" / "pat1" / "otherhost-999-deadbeef"  # left by a dead run of pat1
    stale.mkdir(parents=True)
    (stale / "pat1_000000000ms.pkl").write_bytes(b"half written")
    preprocessor = pipeline.Preprocessor(preprocess_config())
    original = pipeline.save_segment
    seen = {}

    def save_then_start_pat1(segment, path):
        original(segment, path)
        if not seen:
            seen["live"] = path.parent
            preprocessor.process(folder / "pat1.edf", out)
            seen["after"] = sorted(p.name for p in path.parent.iterdir())

    monkeypatch.setattr(pipeline, "save_segment", save_then_start_pat1)
    preprocessor.process(folder / "pat1.2019.edf", out)
    assert seen["after"] == ["pat1.2019_000000000ms.pkl"]  # the live temporary of pat1.2019 survived
    assert not stale.exists()  # the dead run's temporary of pat1 itself was removed
    assert not (out / ".tmp" / "pat1").exists() and not (out / ".tmp" / "pat1.2019").exists()
    pipeline.merge_manifest(out)
    rows = read_manifest(out)
    missing = [row["path"] for row in rows if not (out / row["path"]).is_file()]
    assert len(rows) == 10 and missing == []


def test_a_second_run_on_the_same_output_is_refused(recordings, tmp_path, preprocess_config, capsys):
    from preprocess.locks import OutputInUseError, run_lock

    out = tmp_path / "out"
    out.mkdir()
    with run_lock(out):  # another run (here: this process) is writing into out
        with pytest.raises(OutputInUseError, match=rf"{out}.* in use .*pid {os.getpid()} on host"):
            run_preprocessing([recordings], out, preprocess_config(), progress=False)
        assert main(["--input", str(recordings), "--output", str(out), "--quiet"]) == 2
        assert f"pid {os.getpid()}" in capsys.readouterr().err
        assert not (out / "parts").exists() and not (out / "config.yaml").exists()
    summary = run_preprocessing([recordings], out, preprocess_config(), progress=False)
    assert len(summary.done) == 3 and len(read_manifest(out)) == 15


def test_shards_sharing_an_output_run_side_by_side(recordings, tmp_path, preprocess_config):
    from preprocess.locks import run_lock

    out = tmp_path / "out"
    out.mkdir()
    with run_lock(out, (0, 2)):  # shard 0/2 is running elsewhere on the shared folder
        summary = run_preprocessing([recordings], out, preprocess_config(), shard=(1, 2), progress=False)
    assert [p.rsplit("/", 1)[-1] for p in summary.done] == ["rec1.edf"]
    # A plain run beside it skips what is complete and writes the rest.
    summary = run_preprocessing([recordings], out, preprocess_config(), progress=False)
    assert len(summary.skipped) == 1 and len(summary.done) == 2 and len(read_manifest(out)) == 15


_KILLED_RUN = """
import os, sys, time
sys.path.insert(0, {root!r})
import preprocess.pipeline as pipeline
from preprocess.batch import run_preprocessing
from runtime.config import CONFIG_DIR, load_config

original = pipeline.save_segment


def slow_save(segment, path):  # each window takes 0.2 s: workers are busy when the parent is killed
    with open({log!r}, "a") as f:
        f.write(f"{{os.getpid()}}\\n")
    time.sleep(0.2)
    original(segment, path)


pipeline.save_segment = slow_save
if __name__ == "__main__":
    config = load_config(CONFIG_DIR / "preprocess" / "m4cea.yaml")
    run_preprocessing([{inputs!r}], {out!r}, config, workers=2, progress=False)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow  # a child preprocessing run with its workers, killed (5 s)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL])  # SIGTERM ends the main process the same way
def test_killing_the_main_process_stops_its_workers(tmp_path, sig):
    import time

    folder = tmp_path / "in"
    for i in range(3):
        write_edf(synthetic_raw(duration_s=20.0, seed=i), folder / f"rec{i}.edf")
    log, out = tmp_path / "saves.log", tmp_path / "out"
    script = tmp_path / "run.py"
    script.write_text(_KILLED_RUN.format(root=str(ROOT), log=str(log), inputs=str(folder), out=str(out)))
    main_process = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 120.0
        while not log.exists() or len(set(log.read_text().split())) < 2:  # until both workers write
            assert time.monotonic() < deadline and main_process.poll() is None
            time.sleep(0.05)
    finally:
        main_process.send_signal(sig)
        main_process.wait()
    # The workers notice within 0.1 s; before, they went on with their recordings (0.2 s a window).
    workers = {int(pid) for pid in log.read_text().split()}
    deadline = time.monotonic() + 1.0  # a worker going on would be busy for seconds (15 windows)
    while [pid for pid in workers if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if _alive(pid)], "a worker outlived its killed main process"
    saves = log.read_text()
    time.sleep(0.5)
    assert log.read_text() == saves, "a worker went on writing after its main process was killed"
    assert {int(pid) for pid in saves.split()} == workers
    # The next run cleans up and completes every recording.
    from runtime.config import CONFIG_DIR, load_config

    config = load_config(CONFIG_DIR / "preprocess" / "m4cea.yaml")
    summary = run_preprocessing([folder], out, config, progress=False)
    rows = read_manifest(out)
    assert len(rows) == 15 and all((out / row["path"]).is_file() for row in rows)
    assert summary.failed == [] and not any((out / ".tmp").iterdir())


def test_events_naming_no_input_are_an_error_unless_partial(
    recordings, tmp_path, preprocess_config, capsys, caplog
):
    events = tmp_path / "events.csv"
    events.write_text(
        "recording,onset_s,duration_s,label\nrec1.edf,4,8,seizure\nrec01.edf,0,4,seizure\nREC9,0,4,seizure\n"
    )  # rec01.edf: a typo of rec1.edf; REC9: no such recording
    config = preprocess_config("labels.default=background")
    unmatched = r"2 row\(s\) .* 2 recording\(s\) .*: rec01\.edf, rec9\. .*--events-partial"
    with pytest.raises(EventsError, match=unmatched):
        run_preprocessing([recordings], tmp_path / "out", config, events=events, progress=False)
    assert not (tmp_path / "out").exists()
    argv = ["--input", str(recordings), "--output", str(tmp_path / "out"), "--events", str(events), "--quiet"]
    assert main([*argv, "--set", "labels.default=background"]) == 2
    assert "rec01.edf, rec9" in capsys.readouterr().err
    # With --events-partial: a warning lists them and the matched rows label their recording.
    assert main([*argv, "--set", "labels.default=background", "--events-partial"]) == 0
    assert "rec01.edf, rec9; their rows are ignored (--events-partial)" in caplog.text
    labels = {(r["recording"], r["start_s"]): r["label"] for r in read_manifest(tmp_path / "out")}
    assert [labels["rec1.edf", s] for s in (0.0, 4.0, 8.0, 12.0)] == [
        "background",
        "seizure",
        "seizure",
        "background",
    ]
    assert main(["--input", str(recordings), "--output", str(tmp_path / "o2"), "--events-partial"]) == 2


def test_zero_filled_pairs_are_bounded_and_reported(tmp_path, preprocess_config, capsys):
    from preprocess.synthetic import TEN_TWENTY

    folder = tmp_path / "in"
    no_o1 = [f"EEG {name}-REF" for name in TEN_TWENTY if name != "O1"]  # P7-O1 and P3-O1 filled
    folder.mkdir()
    synthetic_raw(no_o1, duration_s=12.0).save(folder / "no_o1_raw.fif", verbose="error")
    few = [name for name in TEN_TWENTY if name not in ("O1", "O2", "P3")]  # 5 pairs filled
    synthetic_raw(few, duration_s=12.0).save(folder / "few_raw.fif", verbose="error")
    synthetic_raw(["X1", "X2", "ECG"], duration_s=12.0).save(folder / "none_raw.fif", verbose="error")
    out = tmp_path / "out"
    argv = ["--input", str(folder), "--output", str(out), "--set", "missing_channels=zeros", "--quiet"]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "FILLED WITH ZEROS" in printed and "no_o1_raw.fif: 2 pair(s) P7-O1, P3-O1" in printed
    assert (
        "few_raw.fif: 5 of the 16 pairs of the montage 'double_banana' would be filled with zeros, more "
        "than max_filled_channels=4: filled ['P7-O1', 'P8-O2', 'C3-P3', 'P3-O1', 'P4-O2']" in printed
    )
    assert "none_raw.fif: missing channels: no pair of the montage 'double_banana' can be built" in printed
    assert "No appropriate channels" not in printed
    report = json.loads((out / "last_run.json").read_text())
    assert list(report["filled_channels"].values()) == [["P7-O1", "P3-O1"]]
    rows = read_manifest(out)
    assert len(rows) == 3 and all(row["filled_channels"] == ["P7-O1", "P3-O1"] for row in rows)
    assert "P7-O1;P3-O1" in (out / "manifest.csv").read_text()
    # Allowing more filled pairs accepts the second recording.
    config = preprocess_config("missing_channels=zeros", "max_filled_channels=5")
    summary = run_preprocessing([folder / "few_raw.fif"], tmp_path / "o2", config, progress=False)
    assert summary.n_windows == 3 and list(summary.filled_channels.values()) == [
        ["P7-O1", "P8-O2", "C3-P3", "P3-O1", "P4-O2"]
    ]


def test_labelled_runs_keep_the_events_that_labelled_their_windows(tmp_path, preprocess_config):
    """``--events FILE`` and ``--events annotations`` runs write DIR/events.csv (fine-tuning scores events
    against it): the events of every recording by its manifest name, a recording-level row of
    ``labels.default`` for a recording without events."""
    from finetune.event_evaluation import read_annotated_events

    folder = tmp_path / "in"
    raw = synthetic_raw(duration_s=20.0, seed=0)
    raw.set_annotations(mne.Annotations([5.5], [9.0], ["seizure"]))
    write_edf(raw, folder / "rec0.edf")
    write_edf(synthetic_raw(duration_s=20.0, seed=1), folder / "rec1.edf")
    events = tmp_path / "events.csv"
    events.write_text("recording,onset_s,duration_s,label\nrec0,5.5,9.0,seizure\n")  # name without extension
    config = preprocess_config("labels.default=background")
    expected = (
        "recording,subject,onset_s,duration_s,label\n"
        "rec0.edf,rec0,5.5,9.0,seizure\n"
        "rec1.edf,rec1,,0.0,background\n"
    )
    for source in (events, "annotations"):
        out = tmp_path / f"out_{'file' if source == events else 'annotations'}"
        run_preprocessing([folder], out, config, events=source, progress=False)
        assert (out / "events.csv").read_text() == expected
        assert read_annotated_events(out, "seizure") == {"rec0.edf": [(5.5, 9.0)], "rec1.edf": []}
        # the seizure's edge windows straddle it and were dropped; the events keep its annotated extent
        rows = read_manifest(out)
        labels = {row["start_s"]: row["label"] for row in rows if row["recording"] == "rec0.edf"}
        assert 4.0 not in labels and labels[8.0] == "seizure" and 12.0 not in labels
    # a resumed run (everything skipped) rebuilds the same file
    run_preprocessing([folder], out, config, events="annotations", progress=False)
    assert (out / "events.csv").read_text() == expected
    # an unlabelled run keeps no events
    run_preprocessing([folder], tmp_path / "unlabelled", config, progress=False)
    assert not (tmp_path / "unlabelled" / "events.csv").exists()


def test_a_programming_error_is_not_a_usage_error(recordings, tmp_path, monkeypatch):
    import preprocess.batch

    def buggy(*args, **kwargs):
        raise ValueError("a bug deep inside")  # a plain ValueError is a bug, not bad input

    monkeypatch.setattr(preprocess.batch, "run_preprocessing", buggy)
    with pytest.raises(ValueError, match="a bug deep inside"):
        main(["--input", str(recordings), "--output", str(tmp_path / "out"), "--quiet"])


@pytest.mark.parametrize(
    "setting, message",
    [
        ("max_filled_channels=-1", "max_filled_channels"),
        ("l_freq=200.0", "Invalid 'l_freq'"),
        ("montage=no_such_montage", "no_such_montage"),
    ],
)
def test_invalid_preprocessing_values_are_usage_errors(recordings, tmp_path, capsys, setting, message):
    from runtime.config import UsageError

    argv = ["--input", str(recordings), "--output", str(tmp_path / "out"), "--quiet", "--set", setting]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "manifest.csv").exists()
    from preprocess.channels import MissingChannelsError
    from preprocess.locks import OutputInUseError
    from preprocess.reading import PreprocessError

    assert all(issubclass(e, UsageError) for e in (EventsError, MissingChannelsError, PreprocessError))
    assert issubclass(OutputInUseError, UsageError)


def test_an_output_of_a_version_without_a_newer_key_resumes_with_its_default(
    recordings, tmp_path, preprocess_config
):
    import yaml

    out = tmp_path / "out"
    run_preprocessing([recordings / "rec0.edf"], out, preprocess_config(), progress=False)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["max_filled_channels"] == 4  # the default
    del saved["max_filled_channels"]  # as written before the key existed
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    summary = run_preprocessing([recordings], out, preprocess_config(), progress=False)
    assert summary.skipped == [str(recordings / "rec0.edf")] and len(summary.done) == 2
    with pytest.raises(ValueError, match="made with another config"):  # another value is another config
        run_preprocessing([recordings], out, preprocess_config("max_filled_channels=2"), progress=False)
