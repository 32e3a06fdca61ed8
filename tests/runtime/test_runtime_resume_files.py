"""What a resumed run finds on disk: metrics lines after its checkpoint, temporaries of a killed save."""

from __future__ import annotations

import json

from runtime.files import atomic_write, remove_outputs, remove_temporaries
from runtime.logging import JsonLinesWriter


def _lines(path):
    return path.read_text().splitlines()


def test_truncate_after_drops_the_epochs_the_checkpoint_does_not_hold(tmp_path):
    log = JsonLinesWriter(tmp_path / "metrics.jsonl")
    for epoch in range(4):
        log.write({"epoch": epoch, "loss": 1.0 / (epoch + 1)})
    assert log.truncate_after(3) == 0  # nothing after the last epoch
    assert log.truncate_after(1) == 2
    assert [r["epoch"] for r in JsonLinesWriter.read(log.path)] == [0, 1]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]  # rewritten atomically
    log.write({"epoch": 2, "loss": 0.3})  # the resumed run goes on: no duplicate epoch
    assert [r["epoch"] for r in JsonLinesWriter.read(log.path)] == [0, 1, 2]
    assert log.truncate_after(-1) == 3 and not log.path.exists()  # a run that starts over
    assert log.truncate_after(-1) == 0


def test_truncate_after_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"epoch": 0, "loss": 1.0}) + "\n" + '{"epoch": 1, "lo')  # killed mid-line
    assert JsonLinesWriter(path).truncate_after(5) == 1
    assert _lines(path) == [json.dumps({"epoch": 0, "loss": 1.0})]


def test_truncate_after_does_nothing_on_other_ranks(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 0}\n{"epoch": 1}\n')
    assert JsonLinesWriter(path, enabled=False).truncate_after(0) == 0
    assert len(_lines(path)) == 2


def test_remove_temporaries_of_a_killed_atomic_write(tmp_path):
    try:
        with atomic_write(tmp_path / "checkpoint-0001.pth") as f:
            f.write(b"half")
            raise KeyboardInterrupt  # cleaned up: only a kill -9 leaves the temporary behind
    except KeyboardInterrupt:
        pass
    assert list(tmp_path.iterdir()) == []
    kept = [tmp_path / "checkpoint-last.pth", tmp_path / ".config.yaml.abc.tmp"]
    for path in kept + [tmp_path / ".checkpoint-0001.pth.x1y2.tmp", tmp_path / ".checkpoint-last.pth.z.tmp"]:
        path.write_bytes(b"x")
    removed = remove_temporaries(tmp_path, "checkpoint-*.pth")
    assert [p.name for p in removed] == [".checkpoint-0001.pth.x1y2.tmp", ".checkpoint-last.pth.z.tmp"]
    assert sorted(tmp_path.iterdir()) == sorted(kept)
    assert remove_temporaries(tmp_path / "absent") == []


def test_remove_outputs_removes_the_named_files_and_folders_only(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "tb" / "run").mkdir(parents=True)
    (tmp_path / "tb" / "run" / "events").write_text("x")
    (tmp_path / "notes.txt").write_text("the user's own file")
    remove_outputs(tmp_path, ["results.json", "tb", "predictions.csv"])  # predictions.csv: absent
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    remove_outputs(tmp_path / "absent", ["results.json"])  # no folder: nothing to do
