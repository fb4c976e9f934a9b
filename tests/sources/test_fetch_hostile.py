"""Fetch and publish under hostile input the other trust tests do not cover: credentials written
into a publish URL, conflicting ``SHA256SUMS`` entries, passwords with unescaped URL delimiters."""
from __future__ import annotations

import hashlib
import http.server
import os
import random
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from vlprep.pipeline import fileio
from vlprep.pipeline.engines.inputs import check_inputs, raw_inputs
from vlprep.pipeline.errors import VlprepError
from vlprep.pipeline.layout import Layout
from vlprep.pipeline.redact import redact_url, scrub
from vlprep.pipeline.sources.http import RetryPolicy, download

from ..helpers import _bare, _manifests, _shim, run_cli

URL_TOKEN = "tokInUrl-9f8e7d6c5b4a"
CLEAN_URL = "https://github.com/me/manifests.git"


def test_a_token_inside_the_publish_url_reaches_neither_argv_nor_the_clone_config(tmp_path):
    folder = _manifests(tmp_path / "manifests")
    bare = _bare(tmp_path)
    shim, log = _shim(tmp_path)
    with open(shim / "git", "r+") as script:  # also log the clone's .git/config when git pushes
        text = script.read().replace("exec ", f"case \"$*\" in *push*) cat .git/config >> '{log}';; esac\nexec ", 1)
        script.seek(0)
        script.write(text)
    secret_url = CLEAN_URL.replace("https://", f"https://me:{URL_TOKEN}@")
    config = tmp_path / "gitconfig"
    config.write_text(f'[url "{bare}"]\n\tinsteadOf = {CLEAN_URL}\n\tinsteadOf = {secret_url}\n')
    env = {"PATH": f"{shim}:{os.environ['PATH']}", "GIT_CONFIG_GLOBAL": str(config),
           "HOME": str(tmp_path)}
    result = run_cli("manifest", "publish", "--repo", secret_url, "--manifest-dir", str(folder), env=env)
    assert "published" in result.stdout
    logged = log.read_bytes()
    assert b"push" in logged and b"[remote \"origin\"]" in logged, "the shim saw the push and the clone's config"
    assert URL_TOKEN.encode() not in logged, "the token went on git's argv or into .git/config"
    assert b"ENV GIT_CONFIG_KEY_0=http.https://github.com/.extraHeader" in logged, "it travels in a header"
    assert URL_TOKEN not in result.stdout + result.stderr


def _vg_mirror(root: Path) -> dict[str, str]:
    root.mkdir(parents=True)
    for name in ("images.zip", "images2.zip", "region_descriptions.json.zip", "image_data.json.zip"):
        with zipfile.ZipFile(root / name, "w") as archive:
            archive.writestr("x.json", name)
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.iterdir()}


def test_a_sha256sums_listing_one_file_twice_with_other_hashes_is_refused(tmp_path):
    mirror = tmp_path / "vg"
    sums = _vg_mirror(mirror)
    lines = [f"{'0' * 64}  ./images.zip"] + [f"{sha}  {name}" for name, sha in sums.items()]
    (mirror / "SHA256SUMS").write_text("\r\n".join(lines) + "\r\n")  # the wrong entry comes first
    result = run_cli("fetch", "vg", "--data-dir", str(tmp_path / "data"), "--mirror", str(mirror), check=False)
    assert result.returncode == 1, result.stdout
    assert "images.zip" in result.stderr and "twice" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "raw" / "vg" / "images.zip").exists()


def test_a_sha256sums_with_dot_slash_crlf_and_repeated_equal_lines_is_read(tmp_path):
    mirror = tmp_path / "vg"
    sums = _vg_mirror(mirror)
    lines = [f"{sha}  ./{name}" for name, sha in sums.items()] + [f"{sums['images.zip']} *images.zip",
                                                                   f"{'1' * 64}  ../../../etc/passwd"]
    (mirror / "SHA256SUMS").write_text("\r\n".join(lines) + "\r\n")
    result = run_cli("fetch", "vg", "--data-dir", str(tmp_path / "data"), "--mirror", str(mirror))
    assert "4 checked against the mirror's SHA256SUMS" in result.stdout


def test_a_password_with_an_unescaped_slash_hash_or_question_mark_is_never_shown(tmp_path):
    for mirror in [f"http://me:pw1x{sep}pw2y@127.0.0.1:9/" for sep in "/#?"] + ["https://me:pw1x[pw2y@127.0.0.1:9/"]:
        result = run_cli("fetch", "owt", "--data-dir", str(tmp_path / "data"), "--mirror", mirror, "--subsets", "0",
                         "--retry-budget", "1", check=False)
        output = result.stdout + result.stderr
        assert result.returncode == 1 and "percent-encode" in output and "Traceback" not in output, output
        assert "pw1x" not in output and "pw2y" not in output, output
    for path in (tmp_path / "data").rglob("*"):  # the lock record names the command that holds it
        assert not path.is_file() or b"pw1x" not in path.read_bytes() and b"pw2y" not in path.read_bytes(), path


def test_pass_and_jwt_query_parameters_are_redacted():
    url = "https://h.example/m/?user=me&pass=pw-Secret-1&jwt=eyJhbGciOi.x.y&Bypass=1"
    shown = redact_url(url)
    assert "pw-Secret-1" not in shown and "eyJhbGciOi" not in shown and "Bypass=1" in shown, shown
    assert "pw-Secret-1" not in scrub("failed: pw-Secret-1", url)


def test_a_copy_without_mtimes_is_checked_in_a_read_only_data_dir(tmp_path, monkeypatch):
    """verify of a shared read-only copy made with ``cp -r`` re-hashes; it need not rewrite the record."""
    mirror = tmp_path / "vg"
    sums = _vg_mirror(mirror)
    data = tmp_path / "data"
    run_cli("fetch", "vg", "--data-dir", str(data), "--mirror", str(mirror))
    os.utime(data / "raw" / "vg" / "images.zip", ns=(1_000_000_000, 1_000_000_000))
    monkeypatch.setattr(fileio.os, "access", lambda path, mode, **kw: False)  # a read-only mount, even for root
    layout = Layout(data)
    inputs = raw_inputs(layout, "vg", ["images.zip"])
    assert inputs == {"vg/images.zip": sums["images.zip"]}
    assert check_inputs(layout, inputs, "run: vlprep shard vg", "vg train") == []


def test_a_damaged_fetch_record_is_one_line_naming_it_and_the_fix(tmp_path):
    mirror = tmp_path / "vg"
    _vg_mirror(mirror)
    data = tmp_path / "data"
    record = data / "raw" / "vg" / ".verified.json"
    for damaged in ("", "{not json", "[]", '{"images.zip": {"sha256": "x"}}'):
        run_cli("fetch", "vg", "--data-dir", str(data), "--mirror", str(mirror))
        record.write_text(damaged)
        result = run_cli("fetch", "vg", "--data-dir", str(data), "--mirror", str(mirror), check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr, (damaged, result.stderr)
        assert str(record) in result.stderr and "delete it" in result.stderr, result.stderr
        record.unlink()


def test_a_damaged_owt_source_record_is_one_line_naming_it_and_the_fix(tmp_path, owt_mirror):
    data = tmp_path / "data"
    run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", str(owt_mirror), "--subsets", "0,5")
    record = data / "raw" / "owt" / "SOURCE.json"
    for damaged in ("{not json", "[]", '{"subsets/urlsf_subset00.tar": "x"}'):
        record.write_text(damaged)
        for command in (("fetch", "owt", "--mirror", str(owt_mirror), "--subsets", "0,5"),
                        ("binarize", "owt", "--train-subsets", "0", "--valid-subsets", "5", "--workers", "1")):
            result = run_cli(*command, "--data-dir", str(data), check=False)
            assert result.returncode == 1 and "Traceback" not in result.stderr, (damaged, result.stderr)
            assert str(record) in result.stderr and "delete it" in result.stderr, result.stderr


class _NoValidators(http.server.BaseHTTPRequestHandler):
    """Serves ``/f.bin`` with Range support but neither ETag nor Last-Modified; the first answer is cut."""

    body = b""
    cut = True

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self):  # noqa: N802
        cls, body = type(self), type(self).body
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:len(body) // 2] if cls.cut else body[start:])
        cls.cut = False
        self.close_connection = True


def test_a_resume_without_any_validator_never_splices_an_unchecked_file(tmp_path):
    first, second = random.Random(1).randbytes(200_000), random.Random(2).randbytes(200_000)
    _NoValidators.body, _NoValidators.cut = first, True
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoValidators)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url, dest = f"http://127.0.0.1:{server.server_address[1]}/f.bin", tmp_path / "f.bin"
    try:
        with pytest.raises(VlprepError, match="resumes from the"):
            download(url, dest, policy=RetryPolicy(attempts=1, backoff=0.01, timeout=(2, 2)))
        _NoValidators.body = second  # changed on the server, same size: nothing can tell but the bytes
        download(url, dest, policy=RetryPolicy(attempts=3, backoff=0.01, timeout=(2, 2)))
    finally:
        server.shutdown()
    assert dest.read_bytes() == second


class _EndlessSums(http.server.BaseHTTPRequestHandler):
    """A mirror whose ``SHA256SUMS`` never ends (valid lines, no Content-Length); nothing else exists."""

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self):  # noqa: N802
        if not self.path.startswith("/SHA256SUMS"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        block = (f"{'0' * 64}  images.zip\n" * 20_000).encode()
        try:
            for _ in range(1_200_000_000 // len(block)):
                self.wfile.write(block)
        except OSError:
            pass


def test_a_mirror_sha256sums_that_never_ends_is_cut_without_exhausting_memory(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EndlessSums)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = subprocess.run(
            ["prlimit", f"--as={2 << 30}", sys.executable, "-m", "vlprep.cli", "fetch", "vg", "--data-dir",
             str(tmp_path / "data"), "--mirror", f"http://127.0.0.1:{server.server_address[1]}/"],
            capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "SHA256SUMS" in result.stderr and "MiB" in result.stderr, result.stderr
    (local := tmp_path / "mirror").mkdir()
    with open(local / "SHA256SUMS", "wb") as sums:
        sums.truncate(65 << 20)  # sparse: a local mirror's list is capped the same way
    result = run_cli("fetch", "vg", "--data-dir", str(tmp_path / "data"), "--mirror", str(local), check=False)
    assert result.returncode == 1 and "MiB" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_publish_url_whose_password_breaks_its_host_never_reaches_git(tmp_path):
    folder = _manifests(tmp_path / "manifests")
    shim, log = _shim(tmp_path)
    env = {"PATH": f"{shim}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    result = run_cli("manifest", "publish", "--repo", "https://me:pw1x/pw2y@github.com/me/m.git", "--manifest-dir",
                     str(folder), env=env, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "percent-encode" in output and "Traceback" not in output, output
    assert "pw1x" not in output and "pw2y" not in output
    assert not log.exists() or b"pw1x" not in log.read_bytes()
