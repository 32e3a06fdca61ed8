"""preprocess/download.py against a local HTTP server on 127.0.0.1 serving real files from ../shared/data.

The server mimics PhysioNet (``/chbmit/1.0.0/...``, ``/sleep-edfx/1.0.0/...``) and Zenodo
(``/api/records/ID``, ``/records/ID/files/NAME``), honours HTTP Range requests, counts every request,
and can cut a response short or serve corrupted bytes. No test reaches the network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from preprocess import download
from tests.helpers import ROOT, shared_path


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server API)
        server = self.server
        path = self.path.split("?")[0]
        server.log.append((path, self.headers.get("Range")))
        if path not in server.routes:
            self.send_error(404)
            return
        body = server.routes[path]
        body = body.read_bytes() if isinstance(body, Path) else body
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if path in server.cut_once:  # announce the whole body, send half, drop the connection
            server.cut_once.discard(path)
            payload = payload[: len(payload) // 2]
        server.bytes_sent[path] = server.bytes_sent.get(path, 0) + len(payload)
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1 (any free port), stopped at teardown."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.log, httpd.cut_once, httpd.bytes_sent = {}, [], set(), {}
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


#: PhysioNet's published sha256 of the full record chb01_03.edf (also in preprocess/datasets/chbmit.py).
CHB01_03_SHA256 = "4c4a95a9b4331aeaadadd538763eb2e735950d9aa615b85ee6246c784be8ae90"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _requests(server, name):
    return [entry for entry in server.log if entry[0].endswith(name)]


@pytest.fixture
def physionet_chbmit(server, tmp_path, monkeypatch):
    """A fake PhysioNet chbmit/1.0.0 with real files and a SHA256SUMS.txt made for them."""
    data = shared_path("data", "chbmit")
    files = {
        "RECORDS": data / "meta" / "RECORDS",
        "chb01/chb01_03.edf": data / "edf" / "chb01_03_seizure_2995-3036s.edf",
        "chb01/chb01_04.edf": data / "edf" / "chb01_03_nonseizure_0-41s.edf",
        "chb01/chb01_03.edf.seizures": data / "seizures" / "chb01_03.edf.seizures",
        "chb01/chb01-summary.txt": data / "meta" / "chb01-summary.txt",
        "chb06/chb06_04.edf.seizures": data / "seizures" / "chb06_04.edf.seizures",
        "chb06/chb06-summary.txt": data / "meta" / "chb06-summary.txt",
    }
    for rel, path in files.items():
        server.routes[f"/chbmit/1.0.0/{rel}"] = path
    sums = tmp_path / "SHA256SUMS.txt"
    sums.write_text("".join(f"{_sha256(p.read_bytes())} {rel}\n" for rel, p in files.items()))
    spec = dataclasses.replace(download.DATASETS["chbmit"], checksums_file=sums, checksums_file_sha256=None)
    monkeypatch.setitem(download.DATASETS, "chbmit", spec)
    return files, server.url + "chbmit/1.0.0/"


def test_chbmit_subjects_are_selected_and_verified(physionet_chbmit, server, tmp_path, capsys):
    files, base = physionet_chbmit
    dest = tmp_path / "chbmit"
    assert download.main(["chbmit", "--dest", str(dest), "--subjects", "chb01", "--base-url", base]) == 0
    fetched = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert fetched == [
        "RECORDS",
        "chb01/chb01-summary.txt",
        "chb01/chb01_03.edf",
        "chb01/chb01_03.edf.seizures",
        "chb01/chb01_04.edf",
    ]
    for rel in fetched:
        assert (dest / rel).read_bytes() == files[rel].read_bytes()
    assert not any("chb06" in path for path, _ in server.log)  # the other case was never requested
    out = capsys.readouterr()
    assert "5 downloaded, 0 already present, 0 failed" in out.out
    assert "5 files verified against PhysioNet's SHA256SUMS.txt" in out.out
    assert "chb01_03.edf" in out.err and "100%" in out.err  # the tqdm progress bar

    # A rerun requests nothing: every file is present with the right hash.
    n_requests = len(server.log)
    assert download.main(["chbmit", "--dest", str(dest), "--subjects", "chb01", "--base-url", base]) == 0
    assert len(server.log) == n_requests
    assert "0 downloaded, 5 already present" in capsys.readouterr().out


def test_corrupted_file_is_rejected_by_its_hash(physionet_chbmit, server, tmp_path, capsys):
    files, base = physionet_chbmit
    good = files["chb01/chb01_03.edf"].read_bytes()
    bad = bytearray(good)
    bad[1000] ^= 0xFF  # one flipped byte in the signal
    server.routes["/chbmit/1.0.0/chb01/chb01_03.edf"] = bytes(bad)
    dest = tmp_path / "chbmit"
    rc = download.main(
        [
            "chbmit",
            "--dest",
            str(dest),
            "--subjects",
            "chb01",
            "--base-url",
            base,
            "--retries",
            "0",
            "--quiet",
        ]
    )
    assert rc == 1
    out = capsys.readouterr().out
    assert "FAILED chb01/chb01_03.edf" in out
    assert f"expected sha256:{_sha256(good)} but got sha256:{_sha256(bytes(bad))}" in out
    assert "4 downloaded" in out
    assert not (dest / "chb01" / "chb01_03.edf").exists()
    assert sorted(p.name for p in (dest / "chb01").iterdir()) == [  # no .part, no temporary file
        "chb01-summary.txt",
        "chb01_03.edf.seizures",
        "chb01_04.edf",
    ]

    # The publisher fixes the file: a rerun downloads only that one.
    server.routes["/chbmit/1.0.0/chb01/chb01_03.edf"] = good
    before = len(server.log)
    assert (
        download.main(["chbmit", "--dest", str(dest), "--subjects", "chb01", "--base-url", base, "--quiet"])
        == 0
    )
    assert [path for path, _ in server.log[before:]] == ["/chbmit/1.0.0/chb01/chb01_03.edf"]
    assert (dest / "chb01" / "chb01_03.edf").read_bytes() == good


def test_a_present_file_with_a_wrong_hash_is_replaced(physionet_chbmit, server, tmp_path):
    files, base = physionet_chbmit
    dest = tmp_path / "chbmit"
    (dest / "chb01").mkdir(parents=True)
    (dest / "chb01" / "chb01-summary.txt").write_text("truncated by a crash")
    assert (
        download.main(["chbmit", "--dest", str(dest), "--subjects", "chb01", "--base-url", base, "--quiet"])
        == 0
    )
    expected = files["chb01/chb01-summary.txt"].read_bytes()
    assert (dest / "chb01" / "chb01-summary.txt").read_bytes() == expected
    assert len(_requests(server, "chb01-summary.txt")) == 1


def test_interrupted_download_leaves_no_final_file_and_resumes(physionet_chbmit, server, tmp_path, capsys):
    files, base = physionet_chbmit
    good = files["chb01/chb01_03.edf"].read_bytes()
    server.cut_once.add("/chbmit/1.0.0/chb01/chb01_03.edf")
    dest = tmp_path / "chbmit"
    args = [
        "chbmit",
        "--dest",
        str(dest),
        "--subjects",
        "chb01",
        "--base-url",
        base,
        "--quiet",
        "--retries",
        "0",
    ]
    assert download.main(args) == 1
    assert "FAILED chb01/chb01_03.edf: ChunkedEncodingError" in capsys.readouterr().out
    final, part = dest / "chb01" / "chb01_03.edf", dest / "chb01" / "chb01_03.edf.part"
    assert not final.exists()
    # What arrived is kept for the next attempt (all of it, or all but the last partial 64-KiB chunk,
    # depending on the urllib3 version).
    kept = part.stat().st_size
    assert len(good) // 2 - 65536 < kept <= len(good) // 2 and part.read_bytes() == good[:kept]

    assert download.main(args) == 0
    assert final.read_bytes() == good and not part.exists()
    assert _requests(server, "chb01_03.edf") == [
        ("/chbmit/1.0.0/chb01/chb01_03.edf", None),
        ("/chbmit/1.0.0/chb01/chb01_03.edf", f"bytes={kept}-"),
    ]
    assert server.bytes_sent["/chbmit/1.0.0/chb01/chb01_03.edf"] == len(good) // 2 + len(good) - kept


def test_retry_resumes_within_one_run(physionet_chbmit, server, tmp_path):
    files, base = physionet_chbmit
    server.cut_once.add("/chbmit/1.0.0/chb01/chb01_04.edf")
    dest = tmp_path / "chbmit"
    assert (
        download.main(
            [
                "chbmit",
                "--dest",
                str(dest),
                "--subjects",
                "chb01",
                "--base-url",
                base,
                "--quiet",
                "--retries",
                "1",
            ]
        )
        == 0
    )
    assert (dest / "chb01" / "chb01_04.edf").read_bytes() == files["chb01/chb01_04.edf"].read_bytes()
    first, second = [r for _, r in _requests(server, "chb01_04.edf")]
    resumed_at = int(second.removeprefix("bytes=").removesuffix("-"))
    assert first is None and 488960 // 2 - 65536 < resumed_at <= 488960 // 2


def test_shipped_chbmit_registry_is_physionets_file():
    registry = download.DATASETS["chbmit"].checksums_file
    shared = shared_path("data", "chbmit", "meta", "SHA256SUMS.txt")
    assert registry.read_bytes() == shared.read_bytes()
    assert registry.stat().st_size < 100_000
    hashes = download.read_sha256sums(registry)
    assert len(hashes) == 856
    assert sum(p.endswith(".edf") for p in hashes) == 686
    assert sum(p.endswith(".edf.seizures") for p in hashes) == 141
    assert hashes["chb01/chb01_03.edf"] == f"sha256:{CHB01_03_SHA256}"
    # The real summary and seizure files in ../shared match PhysioNet's published hashes.
    seizures = shared.parents[1] / "seizures" / "chb06_04.edf.seizures"
    for rel, path in [
        ("chb01/chb01-summary.txt", shared.parent / "chb01-summary.txt"),
        ("chb06/chb06_04.edf.seizures", seizures),
    ]:
        assert hashes[rel] == f"sha256:{_sha256(path.read_bytes())}"


def test_shipped_registry_verifies_real_files_and_rejects_a_crop(server, tmp_path):
    data = shared_path("data", "chbmit")
    server.routes["/chbmit/1.0.0/chb01/chb01-summary.txt"] = data / "meta" / "chb01-summary.txt"
    server.routes["/chbmit/1.0.0/chb01/chb01_03.edf"] = data / "edf" / "chb01_03_seizure_2995-3036s.edf"
    plan = {
        f.path: f
        for f in download.plan_files("chbmit", tmp_path, ["chb01"], base_url=server.url + "chbmit/1.0.0/")
    }
    assert len(plan) == 5 + 42 + 7 + 1  # 4 index files and a pdf, 42 EDF, 7 .seizures, the summary
    path, downloaded = download.fetch_file(plan["chb01/chb01-summary.txt"], tmp_path, progressbar=False)
    assert downloaded and path.read_bytes() == (data / "meta" / "chb01-summary.txt").read_bytes()
    with pytest.raises(download.ChecksumError) as err:  # a 41-s crop is not PhysioNet's record
        download.fetch_file(plan["chb01/chb01_03.edf"], tmp_path, retries=0, progressbar=False)
    crop = _sha256((data / "edf" / "chb01_03_seizure_2995-3036s.edf").read_bytes())
    assert f"expected sha256:{CHB01_03_SHA256} but got sha256:{crop}" in str(err.value)
    assert not (tmp_path / "chb01" / "chb01_03.edf").exists()


def test_unknown_subject_and_missing_dest_are_usage_errors(physionet_chbmit, tmp_path, capsys):
    _, base = physionet_chbmit
    assert download.main(["chbmit", "--dest", str(tmp_path), "--subjects", "chb99", "--base-url", base]) == 2
    assert (
        "Allowed values are cases chb01 ... chb24 (chb21 is chb01 recorded later): chb01 chb06, but got "
        "['chb99'] instead." in capsys.readouterr().err
    )
    assert download.main(["chbmit"]) == 2
    assert "--dest parameter is required" in capsys.readouterr().err


@pytest.fixture
def physionet_sleep(server):
    """A fake PhysioNet sleep-edfx/1.0.0 whose SHA256SUMS.txt the client must fetch first."""
    hypnogram = shared_path("data", "sleep_edf", "SC4001EC-Hypnogram.edf").read_bytes()
    files = {
        "SC-subjects.xls": b"subject table",
        "sleep-cassette/SC4001E0-PSG.edf": b"psg of subject 0",
        "sleep-cassette/SC4001EC-Hypnogram.edf": hypnogram,
        "sleep-cassette/SC4011E0-PSG.edf": b"psg of subject 1",
        "sleep-cassette/SC4012E0-PSG.edf": b"psg of subject 1, night 2",
        "sleep-telemetry/ST7011J0-PSG.edf": b"telemetry",
    }
    for rel, data in files.items():
        server.routes[f"/sleep-edfx/1.0.0/{rel}"] = data
    server.routes["/sleep-edfx/1.0.0/SHA256SUMS.txt"] = "".join(
        f"{_sha256(d)} {rel}\n" for rel, d in files.items()
    ).encode()
    return files, server.url + "sleep-edfx/1.0.0/"


def test_sleep_edf_fetches_sha256sums_first_and_selects_sc_subjects(physionet_sleep, server, tmp_path):
    files, base = physionet_sleep
    dest = tmp_path / "sleep"
    assert (
        download.main(["sleep_edf", "--dest", str(dest), "--subjects", "0", "--base-url", base, "--quiet"])
        == 0
    )
    assert server.log[0] == ("/sleep-edfx/1.0.0/SHA256SUMS.txt", None)
    fetched = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert fetched == [
        "SC-subjects.xls",
        "SHA256SUMS.txt",
        "sleep-cassette/SC4001E0-PSG.edf",
        "sleep-cassette/SC4001EC-Hypnogram.edf",
    ]
    assert (dest / "sleep-cassette" / "SC4001EC-Hypnogram.edf").read_bytes() == files[
        "sleep-cassette/SC4001EC-Hypnogram.edf"
    ]
    plan = download.plan_files("sleep_edf", dest, ["01"], base_url=base)  # the saved index is reused
    assert [f.path for f in plan] == [
        "SC-subjects.xls",
        "sleep-cassette/SC4011E0-PSG.edf",
        "sleep-cassette/SC4012E0-PSG.edf",
    ]
    assert len(_requests(server, "SHA256SUMS.txt")) == 1
    with pytest.raises(ValueError, match=r"sleep-cassette subject numbers .*: 00 01, but got \['83'\]"):
        download.plan_files("sleep_edf", dest, ["83"], base_url=base)


def test_an_unreachable_listing_is_an_error(server, tmp_path, capsys):
    dest = tmp_path / "sleep"
    assert (
        download.main(
            [
                "sleep_edf",
                "--dest",
                str(dest),
                "--base-url",
                server.url + "sleep-edfx/1.0.0/",
                "--quiet",
                "--retries",
                "0",
            ]
        )
        == 1
    )
    assert "could not fetch the file list of sleep_edf: 404 Client Error" in capsys.readouterr().err
    assert list(dest.iterdir()) == []


def test_sleep_edf_rejects_a_file_not_matching_the_published_sums(physionet_sleep, server, tmp_path, capsys):
    _, base = physionet_sleep
    server.routes["/sleep-edfx/1.0.0/sleep-cassette/SC4001E0-PSG.edf"] = b"psg of subject 0, altered"
    dest = tmp_path / "sleep"
    assert (
        download.main(
            [
                "sleep_edf",
                "--dest",
                str(dest),
                "--subjects",
                "0",
                "--base-url",
                base,
                "--quiet",
                "--retries",
                "0",
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert (
        f"expected sha256:{_sha256(b'psg of subject 0')} but got "
        f"sha256:{_sha256(b'psg of subject 0, altered')}" in out
    )
    assert not (dest / "sleep-cassette" / "SC4001E0-PSG.edf").exists()


def _zenodo_listing(files: dict[str, bytes | None], legacy: bool, unlisted: set[str] = frozenset()) -> bytes:
    """A Zenodo record answer: legacy ('key', 'md5:HEX') or InvenioRDM ('filename', bare md5)."""
    entries = []
    for name, data in files.items():
        md5 = hashlib.md5(data).hexdigest()
        entry = {"key": name, "checksum": f"md5:{md5}"} if legacy else {"filename": name, "checksum": md5}
        if name in unlisted:
            del entry["checksum"]
        entries.append(entry | {"size": len(data)})
    return json.dumps({"id": 1, "files": entries}).encode()


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-api", "invenio-api"])
def test_helsinki_from_zenodo_verified_by_md5(server, tmp_path, legacy):
    record = download.DATASETS["helsinki_neonatal"].record_id
    annotations = shared_path("data", "helsinki_neonatal", "annotations_2017.mat")
    files = {
        "annotations_2017.mat": annotations.read_bytes(),
        "eeg1.edf": shared_path("data", "neonatal_examples", "demo.edf").read_bytes(),
        "eeg2.edf": b"baby 2",
        "eeg10.edf": b"baby 10",
    }
    server.routes[f"/api/records/{record}"] = _zenodo_listing(files, legacy)
    for name, data in files.items():
        server.routes[f"/records/{record}/files/{name}"] = data
    dest = tmp_path / "helsinki"
    assert (
        download.main(
            [
                "helsinki_neonatal",
                "--dest",
                str(dest),
                "--subjects",
                "1",
                "eeg10",
                "--base-url",
                server.url,
                "--quiet",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in dest.iterdir()) == [
        "annotations_2017.mat",
        "eeg1.edf",
        "eeg10.edf",
        f"zenodo-record-{record}.json",
    ]
    assert (dest / "eeg1.edf").read_bytes() == files["eeg1.edf"]
    assert not _requests(server, "eeg2.edf")

    # A changed file no longer matches the record's md5 and is rejected.
    server.routes[f"/records/{record}/files/eeg2.edf"] = b"baby 2 altered"
    assert (
        download.main(
            [
                "helsinki_neonatal",
                "--dest",
                str(dest),
                "--subjects",
                "2",
                "--base-url",
                server.url,
                "--quiet",
                "--retries",
                "0",
            ]
        )
        == 1
    )
    assert not (dest / "eeg2.edf").exists()


def test_cork_refuses_files_without_a_checksum_unless_told(server, tmp_path, capsys):
    record = download.DATASETS["cork_hie"].record_id
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("EDF_format/ID01_epoch1.edf", b"one hour of EEG")
    files = {
        "EDF_format.zip": archive.getvalue(),
        "eeg_grades.csv": b"file_ID,grade\nID01_epoch1,2\n",
        "README.md": b"# readme",
    }
    server.routes[f"/api/records/{record}"] = _zenodo_listing(files, legacy=False, unlisted={"README.md"})
    for name, data in files.items():
        server.routes[f"/records/{record}/files/{name}"] = data
    dest = tmp_path / "cork"
    base = ["cork_hie", "--dest", str(dest), "--base-url", server.url, "--quiet"]

    assert download.main(base) == 2
    err = capsys.readouterr().err
    assert "no hash for README.md" in err and "--known-hash" in err and "--unverified" in err
    assert [path for path, _ in server.log] == [f"/api/records/{record}"]  # nothing else was downloaded

    assert download.main([*base, "--known-hash", f"README.md=md5:{'0' * 32}", "--retries", "0"]) == 1
    out = capsys.readouterr().out
    assert "FAILED README.md" in out and not (dest / "README.md").exists()
    assert "2 downloaded, 0 already present, 1 failed; zip archives extracted: 1" in out
    assert (dest / "EDF_format" / "ID01_epoch1.edf").read_bytes() == b"one hour of EEG"

    readme_md5 = hashlib.md5(files["README.md"]).hexdigest()
    assert download.main([*base, "--known-hash", f"README.md=md5:{readme_md5}"]) == 0
    out = capsys.readouterr().out
    assert "1 downloaded, 2 already present, 0 failed; zip archives extracted: 0" in out  # not twice
    assert "3 files verified against the md5 checksums of Zenodo record 7477575" in out

    (dest / "README.md").unlink()
    assert download.main([*base, "--unverified"]) == 0
    out = capsys.readouterr().out
    assert f"UNVERIFIED README.md: sha256:{_sha256(files['README.md'])}" in out
    assert "2 files verified" in out

    assert download.main([*base, "--subjects", "ID01"]) == 2
    assert "cannot be selected by subject" in capsys.readouterr().err


def test_dry_run_lists_files_without_downloading(physionet_chbmit, server, tmp_path, capsys):
    _, base = physionet_chbmit
    dest = tmp_path / "chbmit"
    assert (
        download.main(["chbmit", "--dest", str(dest), "--subjects", "chb06", "--base-url", base, "--dry-run"])
        == 0
    )
    out = capsys.readouterr().out
    assert "chbmit: 3 files would be fetched" in out and "chb06/chb06-summary.txt  sha256:" in out
    assert server.log == [] and not dest.exists()


def test_ctrl_c_during_a_download_leaves_only_the_part_file(physionet_chbmit, server, tmp_path, monkeypatch):
    files, base = physionet_chbmit
    stream = download.ResumableDownloader._stream

    def interrupted(self, response, part, offset):
        if part.name == "chb01_03.edf.part":
            part.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(next(response.iter_content(chunk_size=1000)))
            raise KeyboardInterrupt
        stream(self, response, part, offset)

    monkeypatch.setattr(download.ResumableDownloader, "_stream", interrupted)
    dest = tmp_path / "chbmit"
    with pytest.raises(KeyboardInterrupt):
        download.main(["chbmit", "--dest", str(dest), "--subjects", "chb01", "--base-url", base, "--quiet"])
    good = files["chb01/chb01_03.edf"].read_bytes()
    # Only the part file is there: no final file, and pooch's temporary file was removed.
    assert [p.name for p in (dest / "chb01").iterdir()] == ["chb01_03.edf.part"]
    assert (dest / "chb01" / "chb01_03.edf.part").read_bytes() == good[:1000]
    monkeypatch.setattr(download.ResumableDownloader, "_stream", stream)
    assert (
        download.main(["chbmit", "--dest", str(dest), "--subjects", "chb01", "--base-url", base, "--quiet"])
        == 0
    )
    assert (dest / "chb01" / "chb01_03.edf").read_bytes() == good
    assert _requests(server, "chb01_03.edf")[-1] == ("/chbmit/1.0.0/chb01/chb01_03.edf", "bytes=1000-")


@pytest.mark.parametrize(
    "name, rsync_path",
    [
        ("tusz", "tuh_eeg_seizure/v2.0.3"),
        ("tuev", "tuh_eeg_events/v2.0.1"),
        ("tuar", "tuh_eeg_artifact/v3.0.1"),
    ],
)
def test_tuh_corpora_print_how_to_obtain_them(name, rsync_path, tmp_path, capsys):
    assert download.main([name, "--dest", str(tmp_path / name)]) == 0
    out = capsys.readouterr().out
    assert "https://isip.piconepress.com/projects/nedc/html/tuh_eeg/" in out
    remote = f"nedc-tuh-eeg@www.isip.piconepress.com:data/tuh_eeg/{rsync_path}/"
    assert f"rsync -auxvL {remote} {tmp_path / name}/" in out
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="needs registration"):
        download.plan_files(name, tmp_path)


def test_command_line_exit_codes():
    script = str(ROOT / "preprocess" / "download.py")
    unknown = subprocess.run(
        [sys.executable, script, "chb-mit", "--dest", "x"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert unknown.returncode == 2
    assert (
        "Allowed values are chbmit, sleep_edf, helsinki_neonatal, cork_hie, tusz, tuev, tuar, "
        "but got 'chb-mit' instead."
    ) in unknown.stderr
    tusz = subprocess.run(
        [sys.executable, script, "tusz"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert tusz.returncode == 0 and "DIR/tusz/" in tusz.stdout


def test_bad_listings_are_refused_with_file_and_line(tmp_path):
    sums = tmp_path / "SHA256SUMS.txt"
    sums.write_text(f"{'a' * 64} ok.edf\n<html>Not found</html>\n")
    with pytest.raises(ValueError, match=r"SHA256SUMS.txt, line 2: cannot parse '<html>Not found</html>'"):
        download.read_sha256sums(sums)
    sums.write_text(f"{'a' * 64} ../outside.edf\n")
    with pytest.raises(ValueError, match=r"refusing the file path '../outside.edf'"):
        download.read_sha256sums(sums)
    listing = tmp_path / "zenodo.json"
    listing.write_text(json.dumps({"files": [{"key": "a.edf", "checksum": "md5:123"}]}))
    with pytest.raises(ValueError, match=r"a.edf: invalid hash 'md5:123'"):
        download.read_zenodo_listing(listing)
    listing.write_text(
        json.dumps({"files": [{"key": "a.edf", "checksum": f"md5:{'b' * 32}"}, {"filename": "b.edf"}]})
    )
    assert download.read_zenodo_listing(listing) == {"a.edf": f"md5:{'b' * 32}", "b.edf": None}
