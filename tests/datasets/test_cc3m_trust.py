"""CC3M keeps the first N reachable rows honestly: a ledger of attempts, retries of transient failures,
rebuilds that never make the output worse, manifests that are checked line by line, and only http(s).

Every CLI run here goes through ``python -m vlprep.cli`` against a loopback web whose hosts can be
switched down (503) and up again between runs, as real hosts are.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import webdataset as wds

from vlprep.pipeline.records.cc3m import caption_hash
from vlprep.pipeline.samples.web import SampleWeb, image_bytes, send, serve_web, write_tsv
from vlprep.pipeline.sources.webimage import WebImageError, fetch

from ..helpers import run_cli

FAST = ("--timeout", "3", "--retries", "0", "--workers", "1", "--threads", "8")
EXTRA_KINDS = ("down", "429", "to-ftp")


@dataclass
class SwitchableWeb(SampleWeb):
    """The sample web plus ``/down/<n>.jpg`` (503 while :attr:`down`, the image after), ``/429/<n>.jpg``
    (always 429 Too Many Requests) and ``/to-ftp/<n>.jpg`` (a redirect to an ``ftp://`` URL)."""

    down: bool = True

    def url(self, kind: str, n: int) -> str:
        return f"{self.base}/{kind}/{n}.jpg" if kind in EXTRA_KINDS else super().url(kind, n)

    def asked(self, kind: str, n: int) -> int:
        """How often the server was asked for that URL (attempts counted server-side)."""
        return self.requests.count(self.url(kind, n).removeprefix(self.base))

    def answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        kind, _, rest = handler.path.strip("/").partition("/")
        if kind not in EXTRA_KINDS:
            return super().answer(handler)
        with self._lock:
            self.requests.append(handler.path)
        n = int(rest.split(".")[0])
        if kind == "429":
            return send(handler, 429, b"slow down", "text/plain", {"Retry-After": "60"})
        if kind == "to-ftp":
            return send(handler, 302, b"", "text/plain", {"Location": f"ftp://127.0.0.1:1/{n}.jpg"})
        if self.down:
            return send(handler, 503, b"down for maintenance", "text/plain")
        return send(handler, 200, image_bytes(n), "image/jpeg")


@pytest.fixture
def web():
    with serve_web(trickle_seconds=5, web_class=SwitchableWeb) as served:
        yield served


def fetch_cc3m(data: Path, tsv: Path, *args: str, check: bool = True):
    return run_cli("fetch", "cc3m", "--data-dir", str(data), "--tsv", str(tsv), *FAST, *args, check=check)


def shard_bytes(data: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((data / "out" / "cc3m").glob("cc3m-train-*.tar"))}


def shard_rows(data: Path) -> list[int]:
    return [json.loads(s["json"])["row"] for shard in sorted((data / "out" / "cc3m").glob("cc3m-train-0*.tar"))
            for s in wds.WebDataset(str(shard), shardshuffle=False, empty_check=False)]


def train_stats(data: Path) -> dict:
    return json.loads((data / "out" / "cc3m" / "stats.json").read_text())["splits"]["train"]


def ledger(data: Path) -> dict[int, dict]:
    """Every row of every window's ledger, by row."""
    rows = {}
    for path in data.glob("work/cc3m/*/windows/*/ledger.tsv"):
        lines = path.read_text().splitlines()
        header = lines[0].split("\t")
        for line in lines[1:]:
            entry = dict(zip(header, line.split("\t")))
            rows[int(entry["row"])] = entry
    return rows


# ------------------------------------------------------------------------------------------- 5a: retries


def test_a_host_down_on_the_first_run_enters_the_first_n_on_the_rerun(tmp_path, web):
    """503 on run 1, 200 on run 2: the row takes its place in index order, the set equals a run where it
    never failed (same shard bytes, same manifest); the 404 row, and a failed row after the last row
    kept (it cannot change the first N), are never asked for again."""
    kinds = ["good", "down", "404", "good", "png", "good", "down", "good", "good", "down"]
    tsv = tmp_path / "Train_GCC-training.tsv"
    write_tsv(tsv, web, kinds)
    args = ("--limit", "5", "--shard-samples", "2")
    data = tmp_path / "data"

    first = fetch_cc3m(data, tsv, *args)
    assert shard_rows(data) == [0, 3, 4, 5, 7]
    stats = train_stats(data)
    assert stats["failures"] == {"http_4xx": 1, "http_5xx": 3} and stats["retry_pending"] == 2
    assert "running the same command again retries them" in first.stdout
    entries = ledger(data)
    assert (entries[1]["status"], entries[1]["cause"], entries[1]["kind"], entries[1]["attempts"]) == \
        ("failed", "http_5xx", "transient", "1")
    assert (entries[2]["cause"], entries[2]["kind"]) == ("http_4xx", "permanent")

    web.down = False
    second = fetch_cc3m(data, tsv, *args)
    assert shard_rows(data) == [0, 1, 3, 4, 5]  # row 1 in its place; row 7 is no longer needed and dropped
    assert "retried 2 rows that failed before; 2 now fetched" in second.stdout
    assert web.asked("404", 2) == 1 and web.asked("down", 1) == 2 and web.asked("down", 9) == 1
    entries = ledger(data)
    assert (entries[1]["status"], entries[1]["attempts"], entries[1]["pass"]) == ("ok", "2", "1")
    assert train_stats(data)["retry_pending"] == 0

    never_failed = tmp_path / "never-failed"
    fetch_cc3m(never_failed, tsv, *args)
    assert shard_bytes(data) == shard_bytes(never_failed) and len(shard_bytes(data)) == 3
    manifest = "manifests/cc3m-train-5.tsv.gz"
    assert (data / manifest).read_bytes() == (never_failed / manifest).read_bytes()
    run_cli("verify", "cc3m", "--data-dir", str(data))


def test_retry_failed_none_all_and_max_attempts(tmp_path, web):
    """none asks the web nothing; all retries 404 too; nothing is tried more than --max-attempts times."""
    kinds = ["good", "404", "down", "429"]
    tsv = tmp_path / "t.tsv"
    write_tsv(tsv, web, kinds)
    data = tmp_path / "data"
    asked = lambda: [web.asked(kind, n) for n, kind in enumerate(kinds)]  # noqa: E731

    first = fetch_cc3m(data, tsv, "--limit", "3", check=False)
    assert first.returncode == 1 and "fewer than --limit 3" in first.stderr
    assert "run the same command again later: 2 rows" in first.stderr  # the 503 and the 429 rows
    assert asked() == [1, 1, 1, 1]
    assert train_stats(data)["failures"] == {"http_429": 1, "http_4xx": 1, "http_5xx": 1}

    none = fetch_cc3m(data, tsv, "--limit", "3", "--retry-failed", "none", check=False)
    assert none.returncode == 1 and "--retry-failed transient" in none.stderr
    assert asked() == [1, 1, 1, 1]

    every = fetch_cc3m(data, tsv, "--limit", "3", "--retry-failed", "all", "--max-attempts", "2", check=False)
    assert every.returncode == 1 and asked() == [1, 2, 2, 2]
    assert {row: e["attempts"] for row, e in ledger(data).items()} == {0: "1", 1: "2", 2: "2", 3: "2"}

    spent = fetch_cc3m(data, tsv, "--limit", "3", "--max-attempts", "2", check=False)
    assert spent.returncode == 1 and asked() == [1, 2, 2, 2]
    assert "lower --limit" in spent.stderr and "--max-attempts 2" in spent.stderr


# ------------------------------------------------------------------------------------------- 5c: only http(s)


def test_only_http_urls_with_a_host_are_fetched(tmp_path, web):
    """file://, data:, ftp://, no host, credentials: invalid_url before img2dataset sees them, in stats and ledger."""
    local = tmp_path / "secret.jpg"
    local.write_bytes(image_bytes(99))
    port = web.base.rsplit(":", 1)[1]
    bad = [f"file://{local}", "data:image/jpeg;base64," + base64.b64encode(image_bytes(98)).decode(),
           f"ftp://127.0.0.1:{port}/good/3.jpg", "http:///good/4.jpg",
           f"http://user:secret@127.0.0.1:{port}/good/5.jpg"]
    tsv = tmp_path / "t.tsv"
    tsv.write_text(f"a red car\t{web.url('good', 0)}\n" + "".join(f"a dog {i}\t{url}\n" for i, url in enumerate(bad))
                   + f"a blue sky\t{web.url('good', 6)}\n")
    data = tmp_path / "data"
    fetch_cc3m(data, tsv, "--limit", "5", check=False)
    assert shard_rows(data) == [0, 6]
    assert train_stats(data)["failures"] == {"invalid_url": 5}
    entries = ledger(data)
    assert [(entries[r]["cause"], entries[r]["kind"]) for r in range(1, 6)] == [("invalid_url", "permanent")] * 5
    import pyarrow.parquet as pq

    given = [pq.read_table(p).column("row").to_pylist() for p in data.glob("work/cc3m/*/windows/*/input.parquet")]
    assert given == [[0, 6]]  # img2dataset never saw the others
    assert not any("good/3" in r or "good/5" in r for r in web.requests)
    manifest = gzip.decompress((data / "manifests" / "cc3m-train-5.tsv.gz").read_bytes()).decode()
    assert "file:" not in manifest and "data:" not in manifest


def test_a_redirect_is_followed_only_to_http(web):
    with pytest.raises(WebImageError) as caught:
        fetch(web.url("to-ftp", 1), 3.0, 1 << 20)
    assert caught.value.cause == "invalid_url"
    with pytest.raises(WebImageError) as caught:
        fetch(web.url("429", 1), 3.0, 1 << 20)
    assert caught.value.cause == "http_429"


# ------------------------------------------------------------------------------------------- 5b: rebuilds


def test_a_rebuild_with_hosts_down_keeps_the_fuller_shards_and_retries_later(tmp_path, web):
    kinds = ["good", "down", "good", "good", "png", "good"]
    tsv = tmp_path / "Train_GCC-training.tsv"
    rows = write_tsv(tsv, web, kinds)
    data = tmp_path / "data"
    web.down = False
    fetch_cc3m(data, tsv, "--limit", "6", "--shard-samples", "3")
    complete = shard_bytes(data)
    assert len(complete) == 2 and shard_rows(data) == list(range(6))
    manifest = data / "manifests" / "cc3m-train-6.tsv.gz"

    web.down = True  # row 1 answers 503 (transient); row 4 is gone for good (404)
    web.remove(rows[4][1])
    down = fetch_cc3m(data, tsv, "--shard-samples", "3", "--from-manifest", str(manifest))
    assert shard_bytes(data) == complete  # neither shard was replaced by a smaller one
    stats = train_stats(data)
    assert (stats["rebuilt"], stats["gone"], stats["kept_previous_shards"], stats["missing"]) == (4, 2, 2, 0)
    assert stats["gone_by_cause"] == {"http_4xx": 1, "http_5xx": 1}
    assert "2 existing shards held more of their rows and were kept" in down.stdout

    web.down = False  # the host is back: the rerun retries row 1 only
    fetch_cc3m(data, tsv, "--shard-samples", "3", "--from-manifest", str(manifest))
    stats = train_stats(data)
    assert (stats["rebuilt"], stats["gone"], stats["retried"], stats["recovered"]) == (5, 1, 1, 1)
    assert web.asked("down", 1) == 3 and shard_rows(data) == list(range(6))


def test_a_rebuild_into_a_fresh_dir_lists_the_rows_it_lacks(tmp_path, web):
    kinds = ["good", "404", "good"]
    tsv = tmp_path / "t.tsv"
    rows = write_tsv(tsv, web, kinds)
    lines = [f"{r}\t{rows[r][1]}\t{hashlib.sha256(image_bytes(r)).hexdigest()}\t{caption_hash(rows[r][0])}"
             for r in range(3)]
    manifest = tmp_path / "m.tsv.gz"
    manifest.write_bytes(gzip.compress(("row\turl\tsha256\tcaption_hash\n" + "\n".join(lines) + "\n").encode()))
    data = tmp_path / "data"
    result = fetch_cc3m(data, tsv, "--from-manifest", str(manifest))
    assert shard_rows(data) == [0, 2]
    assert (data / "out" / "cc3m" / "cc3m-train.missing.tsv").read_text() == "row\tcause\n1\thttp_4xx\n"
    assert "1 listed rows are not in the output (first: 1)" in result.stdout


def _gz(text: str) -> bytes:
    return gzip.compress(text.encode(), mtime=0)


HEADER = "row\turl\tsha256\tcaption_hash\n"
SHA = "0" * 64
BROKEN = {
    "header only": (_gz(HEADER), "lists no rows (header only)"),
    "no lines": (_gz(""), "empty manifest (no header line)"),
    "corrupt deflate": (_gz(HEADER + f"0\thttp://x/a.jpg\t{SHA}\tabcd\n" * 400)[:40] + b"\xff" * 64 + b"\0" * 400,
                        "not a readable gzip manifest"),
    "not gzip": (b"row\turl\n", "not a readable gzip manifest"),
    "non-integer row": (_gz(HEADER + f"0\thttp://x/a.jpg\t{SHA}\tab\nx1\thttp://x/b.jpg\t{SHA}\tab\n"), "line 3"),
    "unicode digit row": (_gz(HEADER + f"\u00b2\thttp://x/a.jpg\t{SHA}\tab\n"), "line 2"),
    "missing column": (_gz(HEADER + "0\thttp://x/a.jpg\tab\n"), "line 2: 3 columns"),
    "wrong header": (_gz("row\turl\n0\thttp://x/a.jpg\n"), "line 1"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_an_unreadable_manifest_is_one_line_and_keeps_the_output(tmp_path, case):
    content, expected = BROKEN[case]
    manifest = tmp_path / "cc3m-train-2.tsv.gz"
    manifest.write_bytes(content)
    tsv = tmp_path / "t.tsv"
    tsv.write_text("a dog\thttp://127.0.0.1:1/a.jpg\n")
    data = tmp_path / "data"
    shard = data / "out" / "cc3m" / "cc3m-train-000000.tar"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(b"an existing shard")
    failed = fetch_cc3m(data, tsv, "--from-manifest", str(manifest), check=False)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert str(manifest) in failed.stderr and expected in failed.stderr and "fix:" in failed.stderr
    assert shard.read_bytes() == b"an existing shard"


def test_a_rewrite_killed_before_its_swap_leaves_the_published_shards_and_index(tmp_path, web):
    """New shards are staged in the crawl's work folder and moved in only when all are written: a
    kill -9 while they are being written (another --shard-samples, so every shard is rewritten)
    leaves out/cc3m exactly as the last complete run left it, and verify passes on it."""
    tsv = tmp_path / "Train_GCC-training.tsv"
    write_tsv(tsv, web, ["good", "png", "good", "good", "good", "good", "good", "good"] * 2)
    data = tmp_path / "data"
    fetch_cc3m(data, tsv, "--limit", "16", "--shard-samples", "4")
    before = shard_bytes(data)
    index = (data / "out" / "cc3m" / "cc3m-train.index.json").read_bytes()
    command = [sys.executable, "-m", "vlprep.cli", "fetch", "cc3m", "--data-dir", str(data), "--tsv", str(tsv),
               *FAST, "--limit", "16", "--shard-samples", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, killed = time.monotonic() + 120, False
    while process.poll() is None and time.monotonic() < deadline:
        if any(data.glob("work/cc3m/*/staged/cc3m-train-*.tar")):  # a new shard written, not yet swapped in
            process.kill()
            killed = True
            break
        time.sleep(0.002)
    process.wait()
    assert killed, "the rewrite finished without staging its shards"
    assert shard_bytes(data) == before
    assert (data / "out" / "cc3m" / "cc3m-train.index.json").read_bytes() == index
    run_cli("verify", "cc3m", "--data-dir", str(data))
    fetch_cc3m(data, tsv, "--limit", "16", "--shard-samples", "1")  # the same command again completes it
    assert len(shard_bytes(data)) == 16
    run_cli("verify", "cc3m", "--data-dir", str(data))
