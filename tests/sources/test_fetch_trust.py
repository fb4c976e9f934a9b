"""Fetch under hostile or unlucky servers: resume never splices wrong bytes, waits are bounded,
"verified" means a published checksum matched, copies without mtimes are re-hashed, and credentials
in a mirror URL never reach a file or the output. Real sockets on 127.0.0.1, the real CLI."""
from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import json
import os
import random
import shutil
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from vlprep.pipeline.engines.fetch import fetch_from_mirror
from vlprep.pipeline.errors import VlprepError
from vlprep.pipeline.redact import redact_url, scrub
from vlprep.pipeline.samples.images import build_coco_mirror
from vlprep.pipeline.samples.serve import RangeRequestHandler, serve_directory
from vlprep.pipeline.samples.text import build_owt_mirror
from vlprep.pipeline.sources.checksums import PublishedFile
from vlprep.pipeline.sources.http import RetryPolicy, download
from vlprep.pipeline.sources.mirror import Mirror

from ..helpers import run_cli

QUICK = RetryPolicy(attempts=6, backoff=0.01, timeout=(2.0, 2.0), budget=20.0, min_rate=1.0)
PAYLOAD = random.Random(15).randbytes(300_000)
OTHER = random.Random(16).randbytes(300_000)


class Misbehaving(http.server.BaseHTTPRequestHandler):
    """Serves ``/file.bin`` in one of the ways real servers get it wrong; records every request."""

    mode = "ok"
    body = PAYLOAD
    etag = '"a"'
    seen: list[dict] = []

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self):  # noqa: N802
        cls = type(self)
        cls.seen.append({"path": self.path, "range": self.headers.get("Range"),
                         "if_range": self.headers.get("If-Range")})
        if self.path.endswith("SHA256SUMS"):
            self._send(404, b"")
            return
        handler = getattr(self, f"_mode_{cls.mode.replace('-', '_')}")
        handler(self.headers.get("Range"))

    def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        headers = {"Content-Length": str(len(body)), **(headers or {})}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _start(self, header: str | None) -> int:
        return int(header.split("=")[1].split("-")[0]) if header else 0

    def _mode_ok(self, header):
        body, start = type(self).body, self._start(header)
        if header and self.headers.get("If-Range") not in (None, type(self).etag):
            self._send(200, body, {"ETag": type(self).etag})
        elif header:
            self._send(206, body[start:], {"ETag": type(self).etag,
                                           "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})
        else:
            self._send(200, body, {"ETag": type(self).etag})

    def _mode_wrong_range(self, header):
        body = type(self).body
        if header:  # answers a piece that starts elsewhere than asked
            self._send(206, body[100:], {"Content-Range": f"bytes 100-{len(body) - 1}/{len(body)}"})
        else:
            self._send(200, body)

    def _mode_416_bare(self, header):
        if header:
            self._send(416, b"")
        else:
            self._send(200, type(self).body)

    def _mode_ignores_if_range(self, header):
        body, start = type(self).body, self._start(header)
        headers = {"ETag": type(self).etag}
        if header:
            self._send(206, body[start:], {**headers, "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})
        else:
            self._send(200, body, headers)

    def _mode_cut(self, header):
        """Half the body, then the connection drops (the first request only)."""
        cls = type(self)
        cls.mode = "ok"
        body = cls.body
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", cls.etag)
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True

    def _mode_short(self, header):
        body = type(self).body
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + 5000))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _mode_gzip_cut(self, header):
        packed = gzip.compress(type(self).body)
        self._send(200, packed[: len(packed) // 2], {"Content-Encoding": "gzip"})

    def _mode_gzip(self, header):
        self._send(200, gzip.compress(type(self).body), {"Content-Encoding": "gzip"})

    def _mode_html(self, header):
        self._send(200, b"<html><body>Please log in</body></html>", {"Content-Type": "text/html; charset=utf-8"})

    def _mode_html_body(self, header):
        self._send(200, b"\n<!DOCTYPE html><html><body>Not found</body></html>",
                   {"Content-Type": "application/octet-stream"})

    def _mode_silent(self, header):
        time.sleep(30)

    def _mode_trickle(self, header):
        self.send_response(200)
        self.send_header("Content-Length", str(len(type(self).body)))
        self.end_headers()
        for byte in type(self).body[:30]:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(1.0)

    def _mode_503(self, header):
        self._send(503, b"busy", {"Retry-After": "0"})


@pytest.fixture
def server():
    Misbehaving.mode, Misbehaving.body, Misbehaving.etag, Misbehaving.seen = "ok", PAYLOAD, '"a"', []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _held(tmp_path: Path, data: bytes) -> Path:
    """A download interrupted after ``data``: the part file an earlier run left."""
    (tmp_path / "out.bin.part").write_bytes(data)
    return tmp_path / "out.bin"


# ------------------------------------------------------------------------------------ resume


def test_206_that_starts_elsewhere_restarts_from_zero(server, tmp_path):
    Misbehaving.mode = "wrong-range"
    dest = _held(tmp_path, PAYLOAD[:1000])
    download(f"{server}/file.bin", dest, policy=QUICK)
    assert dest.read_bytes() == PAYLOAD
    assert Misbehaving.seen[-1]["range"] is None, "the last request asks for the whole file"


def test_416_without_content_range_is_not_complete(server, tmp_path):
    Misbehaving.mode = "416-bare"
    dest = _held(tmp_path, PAYLOAD[:1000])
    download(f"{server}/file.bin", dest, policy=QUICK)
    assert dest.read_bytes() == PAYLOAD


def test_resume_sends_if_range_and_a_changed_file_is_restarted(server, tmp_path):
    Misbehaving.mode = "cut"
    dest = tmp_path / "out.bin"
    with pytest.raises(VlprepError, match="resumes from the"):
        download(f"{server}/file.bin", dest, policy=RetryPolicy(attempts=1, backoff=0.01, timeout=(2, 2)))
    meta = json.loads((tmp_path / "out.bin.part.json").read_text())
    assert meta["etag"] == '"a"'
    Misbehaving.body, Misbehaving.etag = OTHER, '"b"'  # the file changed on the server
    download(f"{server}/file.bin", dest, policy=QUICK)
    assert Misbehaving.seen[-1]["if_range"] == '"a"'
    assert dest.read_bytes() == OTHER
    assert not (tmp_path / "out.bin.part.json").exists()


def test_a_206_with_another_etag_is_not_appended(server, tmp_path):
    Misbehaving.mode = "cut"
    dest = tmp_path / "out.bin"
    with pytest.raises(VlprepError):
        download(f"{server}/file.bin", dest, policy=RetryPolicy(attempts=1, backoff=0.01, timeout=(2, 2)))
    Misbehaving.mode, Misbehaving.body, Misbehaving.etag = "ignores-if-range", OTHER, '"b"'
    download(f"{server}/file.bin", dest, policy=QUICK)
    assert dest.read_bytes() == OTHER


def test_resume_of_the_same_file_continues(server, tmp_path):
    Misbehaving.mode = "cut"
    dest = tmp_path / "out.bin"
    download(f"{server}/file.bin", dest, policy=QUICK)
    assert dest.read_bytes() == PAYLOAD
    assert Misbehaving.seen[1]["range"] == f"bytes={len(PAYLOAD) // 2}-"


# ---------------------------------------------------------------------------- bodies refused


def test_body_shorter_than_content_length_is_an_error(server, tmp_path, capfd):
    Misbehaving.mode = "short"
    policy = RetryPolicy(attempts=3, backoff=0.01, timeout=(2, 2), budget=20)
    with pytest.raises(VlprepError, match="gave up after 3 attempts"):
        download(f"{server}/file.bin", tmp_path / "out.bin", policy=policy)
    assert not (tmp_path / "out.bin").exists()
    assert "retry 1 in" in capfd.readouterr().err


def test_cut_gzip_content_encoding_is_an_error(server, tmp_path):
    Misbehaving.mode = "gzip-cut"
    with pytest.raises(VlprepError, match="Content-Encoding"):
        download(f"{server}/file.bin", tmp_path / "out.bin",
                 policy=RetryPolicy(attempts=2, backoff=0.01, timeout=(2, 2)))
    assert not (tmp_path / "out.bin").exists()
    assert not (tmp_path / "out.bin.part").exists(), "decoded bytes cannot be resumed with Range"


def test_whole_gzip_content_encoding_is_decoded(server, tmp_path):
    Misbehaving.mode = "gzip"
    download(f"{server}/file.bin", tmp_path / "out.bin", policy=QUICK)
    assert (tmp_path / "out.bin").read_bytes() == PAYLOAD


@pytest.mark.parametrize("mode", ["html", "html-body"])
def test_an_html_page_is_not_a_data_file(server, tmp_path, mode):
    Misbehaving.mode = mode
    with pytest.raises(VlprepError, match="HTML page"):
        download(f"{server}/file.bin", tmp_path / "out.bin", policy=QUICK)
    assert len(Misbehaving.seen) == 1, "an HTML page is not retried"
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- bounded waiting


def _fetch_vg(data: Path, mirror: str, *extra: str, env: dict | None = None, timeout: float = 60):
    return run_cli("fetch", "vg", "--data-dir", str(data), "--mirror", mirror, *extra, check=False,
                   env={"VLPREP_HTTP_BACKOFF": "0.2", **(env or {})}, timeout=timeout)


@pytest.mark.parametrize("mode", ["silent", "trickle"])
def test_a_server_that_never_answers_or_trickles_is_cut(server, tmp_path, mode):
    Misbehaving.mode = mode
    started = time.monotonic()
    result = _fetch_vg(tmp_path / "data", server, "--idle-timeout", "2", "--retry-budget", "5",
                       env={"VLPREP_MIN_RATE": "100"})
    elapsed = time.monotonic() - started
    assert result.returncode == 1 and elapsed < 40, (elapsed, result.stderr)
    assert "gave up after" in result.stderr and "budget 5 s" in result.stderr
    assert ("under the floor" if mode == "trickle" else "no answer") in result.stderr
    assert "Traceback" not in result.stderr


def test_retries_print_their_cause_and_wait_and_stop_at_the_budget(server, tmp_path):
    Misbehaving.mode = "503"
    started = time.monotonic()
    result = _fetch_vg(tmp_path / "data", server, "--retry-budget", "3")
    assert result.returncode == 1 and time.monotonic() - started < 30
    assert "HTTP 503" in result.stderr and "retry 1 in" in result.stderr
    assert "of the 3 s retry budget used" in result.stderr
    assert "gave up after" in result.stderr


def test_a_host_that_does_not_resolve_fails_at_once(tmp_path):
    started = time.monotonic()
    result = _fetch_vg(tmp_path / "data", "http://mirror.vlprep-test.invalid/vg", "--retry-budget", "120")
    assert result.returncode == 1 and time.monotonic() - started < 20
    assert "does not resolve" in result.stderr and "mirror.vlprep-test.invalid" in result.stderr
    assert "retry 1" not in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------- what "verified" means


def _vg_mirror(root: Path, with_sums: bool) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in ("images.zip", "images2.zip", "region_descriptions.json.zip", "image_data.json.zip"):
        with zipfile.ZipFile(root / name, "w") as archive:
            archive.writestr("x.json", name)
    if with_sums:
        sums = "".join(f"{hashlib.sha256((root / n).read_bytes()).hexdigest()}  {n}\n"
                       for n in sorted(os.listdir(root)))
        (root / "SHA256SUMS").write_text(sums)
    return root


def test_a_file_with_no_published_checksum_is_recorded_not_verified(tmp_path):
    mirror = _vg_mirror(tmp_path / "vg", with_sums=False)
    result = run_cli("fetch", "vg", "--data-dir", str(tmp_path / "data"), "--mirror", str(mirror))
    sha = hashlib.sha256((mirror / "images.zip").read_bytes()).hexdigest()
    assert f"images.zip: no published checksum: recorded sha256 {sha}" in result.stdout
    assert "verified" not in result.stdout
    record = json.loads((tmp_path / "data" / "raw" / "vg" / ".verified.json").read_text())
    assert {entry["checked"] for entry in record.values()} == {"recorded"}


def test_mirror_sums_are_recorded_as_such(tmp_path):
    mirror = _vg_mirror(tmp_path / "vg", with_sums=True)
    result = run_cli("fetch", "vg", "--data-dir", str(tmp_path / "data"), "--mirror", str(mirror))
    assert "4 checked against the mirror's SHA256SUMS" in result.stdout
    record = json.loads((tmp_path / "data" / "raw" / "vg" / ".verified.json").read_text())
    assert {entry["checked"] for entry in record.values()} == {"mirror-sums"}


def test_a_published_checksum_match_is_verified(tmp_path):
    mirror = _vg_mirror(tmp_path / "m", with_sums=False)
    data = (mirror / "images.zip").read_bytes()
    published = {"images.zip": PublishedFile(len(data), hashlib.sha256(data).hexdigest(), "a test table")}
    report = fetch_from_mirror(tmp_path / "raw", ["images.zip"], Mirror(str(mirror)), published)
    assert report.checked == {"images.zip": "published"}
    wrong = {"images2.zip": PublishedFile(None, "0" * 64, "a test table")}
    with pytest.raises(VlprepError, match="does not match"):
        fetch_from_mirror(tmp_path / "raw", ["images2.zip"], Mirror(str(mirror)), wrong)


@pytest.fixture(scope="module")
def coco_sample(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coco-sample")
    build_coco_mirror(root, n_train=8, n_val=4)
    return root


def test_a_sample_coco_mirror_is_refused_unless_allowed_and_then_marked(tmp_path, coco_sample):
    data = tmp_path / "data"
    refused = run_cli("fetch", "coco", "--data-dir", str(data), "--mirror", str(coco_sample), check=False)
    assert refused.returncode == 1
    assert "but the published file is ede4087e640bddba" in refused.stderr
    allowed = run_cli("fetch", "coco", "--data-dir", str(data), "--mirror", str(coco_sample), "--allow-unpublished")
    assert "NOT the published file" in allowed.stdout and "tensorflow/datasets" in allowed.stdout
    record = json.loads((data / "raw" / "coco" / ".verified.json").read_text())
    assert {entry["checked"] for entry in record.values()} == {"mirror-sums"}


def test_help_does_not_claim_every_file_is_verified():
    text = " ".join(run_cli("fetch", "--help").stdout.split())
    assert "Every file is checked" not in text and "Where no public source states a checksum" in text
    assert "No public source states their checksums" in " ".join(run_cli("fetch", "vg", "--help").stdout.split())
    coco = run_cli("fetch", "coco", "--help").stdout
    assert "--allow-unpublished" in coco and "--retry-budget" in coco
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "is used to verify every file fetched" not in readme


# -------------------------------------------------------------------- copies without mtimes


def test_a_copy_without_mtimes_is_rehashed_not_fetched_again(tmp_path):
    mirror = _vg_mirror(tmp_path / "vg", with_sums=True)
    data = tmp_path / "data"
    run_cli("fetch", "vg", "--data-dir", str(data), "--mirror", str(mirror))
    copy = tmp_path / "copy"
    shutil.copytree(data, copy, copy_function=shutil.copyfile)  # like cp -r: new mtimes
    raw = copy / "raw" / "vg"
    for name in ("images.zip", "images2.zip"):
        os.utime(raw / name, ns=(1_000_000_000, 1_000_000_000))
    changed = raw / "image_data.json.zip"
    changed.write_bytes(bytes(len(changed.read_bytes())))  # same size, other bytes
    for name in ("images.zip", "images2.zip", "region_descriptions.json.zip"):
        (mirror / name).unlink()  # only a file that really changed may be fetched again
    again = run_cli("fetch", "vg", "--data-dir", str(copy), "--mirror", str(mirror))
    assert f"re-hashed {raw / 'images.zip'}: unchanged" in again.stdout
    assert "1 fetched, 3 already on disk" in again.stdout
    assert changed.read_bytes() == (mirror / "image_data.json.zip").read_bytes()
    record = json.loads((raw / ".verified.json").read_text())
    assert record["images.zip"]["mtime_ns"] == 1_000_000_000
    third = run_cli("fetch", "vg", "--data-dir", str(copy), "--mirror", str(mirror))
    assert "re-hashed" not in third.stdout and "0 fetched, 4 already on disk" in third.stdout


# ------------------------------------------------------------------------ credentials in URLs


USER, PASSWORD, TOKEN = "vluser", "hunter2-pAss-7781", "tok-SeCrEt-90210"


class AuthHandler(RangeRequestHandler):
    """A mirror that answers only with the right basic auth and ``token`` query parameter."""

    def send_head(self):  # type: ignore[override]
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected or parse_qs(urlsplit(self.path).query).get("token") != [TOKEN]:
            self.send_error(401)
            return None
        self.path = self.path.split("?", 1)[0]
        return super().send_head()


def _all_text_under(root: Path) -> str:
    texts = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            texts.append(data.decode("latin-1"))
    return "\n".join(texts)


def test_credentials_in_a_mirror_url_reach_no_file_and_no_output(tmp_path):
    mirror = tmp_path / "mirror"
    build_owt_mirror(mirror, (0, 5), chunks=1, docs_per_chunk=5, seed=3)
    data = tmp_path / "data"
    outputs = []
    with serve_directory(mirror, AuthHandler) as url:
        secret_url = url.replace("http://", f"http://{USER}:{PASSWORD}@") + f"/?token={TOKEN}"
        fetched = run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", secret_url, "--subsets", "0,5")
        outputs.append(fetched.stdout + fetched.stderr)
        missing = run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", secret_url, "--subsets", "3",
                          check=False)
        outputs.append(missing.stdout + missing.stderr)
        wrong = run_cli("fetch", "owt", "--data-dir", str(tmp_path / "d2"), "--mirror",
                        secret_url.replace(TOKEN, TOKEN + "x"), "--subsets", "0", "--retry-budget", "1", check=False)
        outputs.append(wrong.stdout + wrong.stderr)
    assert "2 fetched" in fetched.stdout and "REDACTED" in fetched.stdout
    assert missing.returncode == 1 and wrong.returncode == 1
    built = run_cli("binarize", "owt", "--data-dir", str(data), "--train-subsets", "0", "--valid-subsets", "5",
                    "--workers", "1", "--tokenizer", "tiktoken")
    manifest = run_cli("manifest", "build", "owt", "--data-dir", str(data))
    outputs += [built.stdout + built.stderr, manifest.stdout + manifest.stderr]
    written = _all_text_under(data) + _all_text_under(tmp_path / "d2")
    assert "REDACTED@127.0.0.1" in written, "the mirror is still recorded, without its credentials"
    for secret in (PASSWORD, TOKEN, TOKEN + "x"):
        assert secret not in written
        for output in outputs:
            assert secret not in output, output


def test_redact_url_and_scrub():
    url = f"https://{USER}:{PASSWORD}@h.example/a.tar?X-Amz-Signature=abc123&part=1&sig=zz9"
    shown = redact_url(url)
    assert PASSWORD not in shown and USER not in shown and "abc123" not in shown and "zz9" not in shown
    assert shown.startswith("https://REDACTED@h.example/a.tar?") and "part=1" in shown
    assert PASSWORD not in scrub(f"failed: {PASSWORD} at /a.tar?X-Amz-Signature=abc123", url)


def test_a_body_longer_than_the_published_size_is_cut_before_it_fills_the_disk(server, tmp_path):
    Misbehaving.mode, Misbehaving.body = "ok", PAYLOAD  # 300,000 bytes where 1,000 are published
    with pytest.raises(VlprepError, match="more than the 1,000 bytes published"):
        download(f"{server}/file.bin", tmp_path / "out.bin", expected_size=1_000, policy=QUICK)
    assert not (tmp_path / "out.bin").exists() and not (tmp_path / "out.bin.part").exists()
    assert len(Misbehaving.seen) == 1  # not retried: the server holds another file
