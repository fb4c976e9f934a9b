"""Conceptual Captions through the command line, against a local web that fails the way the real one does."""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from vlprep.pipeline.engines.webdownload import bounded_download_with_retry
from vlprep.pipeline.samples.web import KINDS_FAIL, KINDS_OK, image_bytes, serve_web, write_tsv
from vlprep.pipeline.sources.webimage import classify
from vlprep.pipeline.transforms.bpe import REFERENCE, get_backend
from vlprep.pipeline.transforms.dictionary import load_dictionary
from vlprep.pipeline.transforms.text import clean_caption

from ..helpers import run_cli

ROUND = ["good", "404", "png", "slow", "flaky", "html", "redirect", "bomb", "webp", "noai", "truncated", "crlf",
         "no-tab", "empty-url", "empty-caption", "403", "500"]
CAUSE = {**KINDS_FAIL, "no-tab": "invalid_url", "empty-url": "invalid_url", "empty-caption": "empty_caption"}
# 3 s: a good image must arrive within the deadline even while img2dataset starts its workers on a
# loaded 2-core machine (1 s lost a flaky row's retry once in CI); slow bodies trickle for 20 s.
FAST = ("--timeout", "3", "--retries", "1", "--workers", "2", "--threads", "8")


@pytest.fixture(scope="module")
def web():
    with serve_web(trickle_seconds=20) as served:
        yield served


def reachable(kind: str) -> bool:
    return kind in KINDS_OK or kind == "crlf"


def shard_samples(out: Path) -> list[dict]:
    return [dict(s) for shard in sorted(out.glob("cc3m-train-0*.tar"))
            for s in wds.WebDataset(str(shard), shardshuffle=False, empty_check=False)]


def fetch(data: Path, tsv: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_cli("fetch", "cc3m", "--data-dir", str(data), "--tsv", str(tsv), *FAST, *args, check=check)


def test_bounded_fetch_names_every_cause(web):
    for kind in KINDS_OK:
        _, data, error = bounded_download_with_retry((0, web.url(kind, 3)), 2.0, 1, None, {"noai"})
        assert error is None and data is not None, (kind, error)
    for kind, cause in KINDS_FAIL.items():
        started = time.monotonic()
        _, data, error = bounded_download_with_retry((0, web.url(kind, 3)), 1.0, 0, None, {"noai"})
        assert data is None and classify(error) == cause, (kind, error)
        assert time.monotonic() - started < 3.5, f"{kind} was not bounded by the deadline"
    assert classify("<urlopen error [Errno -2] Name or service not known>") == "dns"


def test_first_n_reachable_in_index_order_with_stats_manifest_and_rebuild(tmp_path, web):
    kinds = ROUND * 2
    tsv = tmp_path / "Train_GCC-training.tsv"
    rows = write_tsv(tsv, web, kinds)
    data = tmp_path / "data"
    count = 9
    fetch(data, tsv, "--limit", str(count), "--max-window", "16", "--shard-samples", "4")
    expected = [r for r, kind in enumerate(kinds) if reachable(kind)][:count]
    out = data / "out" / "cc3m"
    samples = shard_samples(out)
    metas = [json.loads(s["json"]) for s in samples]
    assert [m["row"] for m in metas] == expected
    assert [s["__key__"] for s in samples] == [f"{r:09d}" for r in expected]
    table = load_dictionary().gpt2_lookup(50257)
    reference = get_backend(REFERENCE)
    for sample, meta in zip(samples, metas):
        caption, url = rows[meta["row"]]
        assert meta["url"] == url and meta["caption"] == clean_caption(caption) == meta["texts"][0]
        assert meta["tokens"] == [[0, *table[reference.encode(meta["caption"])].tolist()[:62], 2]]
        kind = kinds[meta["row"]]
        fmt = {"png": "PNG", "webp": "WEBP"}.get(kind, "JPEG")
        assert meta["sha256"] == hashlib.sha256(image_bytes(meta["row"], fmt)).hexdigest()
        with Image.open(io.BytesIO(sample["jpg"])) as image:
            assert image.format == "JPEG" and image.size == (meta["width"], meta["height"])
        assert meta["converted"] == (fmt != "JPEG")  # on every sample, as a bool: one schema
        assert meta["conversion"] == ("re-encoded as JPEG" if fmt != "JPEG" else "")

    stats = json.loads((out / "stats.json").read_text())["splits"]["train"]
    tried = stats["rows_tried"]
    assert tried == stats["windows"][-1]["stop"] and stats["windows"][-1]["start"] <= expected[-1] < tried
    wanted_causes: dict[str, int] = {}
    for kind in kinds[:tried]:
        if not reachable(kind):
            wanted_causes[CAUSE[kind]] = wanted_causes.get(CAUSE[kind], 0) + 1
    assert stats["failures"] == wanted_causes
    assert stats["successes"] == sum(reachable(k) for k in kinds[:tried])
    asked = {int(path.strip("/").split("/")[1].split(".")[0]) for path in web.requests}
    assert max(asked) < tried  # no row beyond the last window was ever requested
    run_cli("verify", "cc3m", "--data-dir", str(data))

    manifest = data / "manifests" / f"cc3m-train-{count}.tsv.gz"
    lines = gzip.decompress(manifest.read_bytes()).decode().splitlines()
    assert lines[0] == "row\turl\tsha256\tcaption_hash"
    assert [int(line.split("\t")[0]) for line in lines[1:]] == expected
    assert all(line.split("\t")[2] == m["sha256"] for line, m in zip(lines[1:], metas))

    # The web moves on: one image changes, one disappears. A rebuild reports both and keeps the rest.
    web.change(rows[expected[0]][1])
    web.remove(rows[expected[2]][1])
    again = tmp_path / "again"
    result = fetch(again, tsv, "--from-manifest", str(manifest))
    rebuilt = json.loads((again / "out" / "cc3m" / "stats.json").read_text())["splits"]["train"]
    assert (rebuilt["manifest_rows"], rebuilt["rebuilt"], rebuilt["changed"], rebuilt["gone"]) == (count, count - 2, 1, 1)
    assert rebuilt["gone_by_cause"] == {"http_4xx": 1}
    assert "1 changed" in result.stdout and "1 gone" in result.stdout
    assert [json.loads(s["json"])["row"] for s in shard_samples(again / "out" / "cc3m")] == \
        [r for r in expected if r not in (expected[0], expected[2])]


def test_kill_9_resumes_to_the_same_rows(tmp_path, web):
    kinds = (["slow", "good", "404", "good", "png"] * 8)
    tsv = tmp_path / "Train_GCC-training.tsv"
    write_tsv(tsv, web, kinds)
    args = ("--limit", "14", "--max-window", "6", "--shard-samples", "5")
    reference = tmp_path / "reference"
    fetch(reference, tsv, *args)

    data = tmp_path / "data"
    command = [sys.executable, "-m", "vlprep.cli", "fetch", "cc3m", "--data-dir", str(data), "--tsv", str(tsv),
               *FAST, *args]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(data.glob("work/cc3m/*/windows/000001/done.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (data / "out" / "cc3m" / "cc3m-train.index.json").exists()
    fetch(data, tsv, *args)
    mine = {p.name: p.read_bytes() for p in (data / "out" / "cc3m").glob("cc3m-train-*.tar")}
    theirs = {p.name: p.read_bytes() for p in (reference / "out" / "cc3m").glob("cc3m-train-*.tar")}
    assert mine == theirs and len(mine) == 3


def test_missing_distributor_is_a_clear_error(tmp_path, web):
    tsv = tmp_path / "t.tsv"
    write_tsv(tsv, web, ["good"])
    failed = fetch(tmp_path / "data", tsv, "--distributor", "ray", check=False)
    if importlib.util.find_spec("ray") is None:
        assert failed.returncode == 1 and "needs the ray package" in failed.stderr and "pip install ray" in failed.stderr
    else:  # installed (the cluster extra): a cluster must still be named, never a private Ray by accident
        assert failed.returncode == 1 and "names no cluster" in failed.stderr and "--ray-address" in failed.stderr


def test_a_stalled_window_is_killed_retried_and_reported(tmp_path, web):
    """A window past --window-timeout is killed with its process group and run again, three times at most."""
    tsv = tmp_path / "t.tsv"
    write_tsv(tsv, web, ["slow"] * 4)
    data = tmp_path / "data"
    started = time.monotonic()
    failed = run_cli("fetch", "cc3m", "--data-dir", str(data), "--tsv", str(tsv), "--timeout", "30",
                     "--retries", "0", "--workers", "1", "--threads", "2", "--window-timeout", "4", check=False)
    assert failed.returncode == 1 and "did not complete in 3 attempts" in failed.stderr
    assert "engine.log" in failed.stderr and time.monotonic() - started < 60
    leftovers = [p for p in Path("/proc").glob("[0-9]*")
                 if b"vlprep.pipeline.engines.webdownload" in _cmdline(p) and str(data).encode() in _cmdline(p)]
    assert leftovers == []  # no orphaned crawl of this data dir left behind (other runs may share the machine)


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""
