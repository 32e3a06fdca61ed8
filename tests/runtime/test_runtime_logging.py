"""runtime.logging: rank-0 filter, JSON-lines writer, summary writer."""

from __future__ import annotations

import logging

from runtime.logging import JsonLinesWriter, RankZeroFilter, create_summary_writer, setup_logging


def _record(msg="hello", **extra):
    record = logging.LogRecord("pretrain.x", logging.INFO, __file__, 1, msg, None, None)
    record.__dict__.update(extra)
    return record


def test_rank_zero_filter():
    assert RankZeroFilter(0).filter(_record())
    assert not RankZeroFilter(1).filter(_record())
    assert RankZeroFilter(3).filter(_record(all_ranks=True))


def test_setup_logging_rank0_writes_file_other_ranks_silent(tmp_path, capsys):
    setup_logging(rank=1, output_dir=tmp_path / "r1")
    logging.getLogger("pretrain.test").info("from rank one")
    assert not (tmp_path / "r1" / "log.txt").exists()
    assert "from rank one" not in capsys.readouterr().err
    setup_logging(rank=0, output_dir=tmp_path / "r0")
    setup_logging(rank=0, output_dir=tmp_path / "r0")  # idempotent: no duplicated handlers
    logging.getLogger("pretrain.test").info("from rank zero")
    assert capsys.readouterr().err.count("from rank zero") == 1
    assert (tmp_path / "r0" / "log.txt").read_text().count("from rank zero") == 1
    setup_logging(rank=0)  # release the file handler


def test_json_lines_writer(tmp_path):
    writer = JsonLinesWriter(tmp_path / "m" / "metrics.jsonl")
    writer.write({"epoch": 0, "loss": 1.5})
    writer.write({"epoch": 1, "loss": float("nan")})
    assert JsonLinesWriter.read(tmp_path / "m" / "metrics.jsonl") == [
        {"epoch": 0, "loss": 1.5},
        {"epoch": 1, "loss": "nan"},
    ]
    silent = JsonLinesWriter(tmp_path / "other" / "metrics.jsonl", enabled=False)
    silent.write({"epoch": 0})
    assert not (tmp_path / "other").exists()


def test_summary_writer(tmp_path):
    assert create_summary_writer(tmp_path / "tb", enabled=False) is None
    writer = create_summary_writer(tmp_path / "tb")
    writer.add_scalar("train/loss", 1.0, 0)
    writer.close()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
