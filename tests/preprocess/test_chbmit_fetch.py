import hashlib
import re

import pytest

from preprocess.datasets import chbmit
from preprocess.events import events_for, read_events_csv
from tests.helpers import shared_path


def test_records_match_physionet_hashes_and_summaries():
    sums = shared_path("data", "chbmit", "meta", "SHA256SUMS.txt").read_text()
    summary = shared_path("data", "chbmit", "meta", "chb01-summary.txt").read_text()
    for record, info in chbmit.RECORDS.items():
        assert f"{info['sha256']} chb01/{record}.edf" in sums
        block = summary.split(f"File Name: {record}.edf")[1].split("File Name:")[0]
        times = [float(t) for t in re.findall(r"Seizure (?:\d+ )?(?:Start|End) Time:\s*(\d+) seconds", block)]
        assert list(zip(times[::2], times[1::2], strict=True)) == info["seizures"]


def test_write_events_reads_back(tmp_path):
    path = chbmit.write_events(["chb01_03", "chb01_04"], tmp_path / "events.csv")
    events, subjects = read_events_csv(path, ["background", "seizure"])
    assert [(e.onset_s, e.duration_s, e.label) for e in events_for(events, "chb01_03.edf")] == [
        (2996.0, 40.0, "seizure")
    ]
    assert subjects["chb01_04.edf"] == "chb01"


def test_fetch_uses_a_cached_file_with_the_right_hash(tmp_path, monkeypatch):
    (tmp_path / "chb99_01.edf").write_bytes(b"cached bytes")
    digest = hashlib.sha256(b"cached bytes").hexdigest()
    monkeypatch.setitem(chbmit.RECORDS, "chb99_01", {"sha256": digest, "seizures": []})
    monkeypatch.setattr(chbmit, "BASE_URL", "http://127.0.0.1:9/")  # nothing to download from
    assert chbmit.fetch_records(["chb99_01"], tmp_path) == [tmp_path / "chb99_01.edf"]
    with pytest.raises(ValueError, match="Allowed values are"):
        chbmit.fetch_records(["chb77_01"], tmp_path)
