"""CC12M, SBU and any list of the user's (weblist) through the command line, on the loopback web:
the first N reachable rows in index order, the ledger, manifests, ``--from-manifest`` rebuilds
byte-identical, resume after ``kill -9``, and the same shard bytes from every list format."""
from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import webdataset as wds

from vlprep.pipeline.samples.lists import list_rows, write_list, write_sbu_archive, write_url_first_tsv
from vlprep.pipeline.samples.web import KINDS_OK, serve_web
from vlprep.pipeline.transforms.text import clean_caption

from ..helpers import assert_clean_failure, run_cli

KINDS = ["404", "good", "invalid", "png", "empty-caption", "html", "quoted", "redirect", "403", "webp", "good",
         "good"]
COUNT = 5
FAST = ("--timeout", "3", "--retries", "0", "--workers", "1", "--threads", "8", "--max-window", "8",
        "--shard-samples", "2", "--limit", str(COUNT))
EXPECTED = [n for n, kind in enumerate(KINDS) if kind in (*KINDS_OK, "quoted")][:COUNT]


@pytest.fixture(scope="module")
def web():
    with serve_web(trickle_seconds=5) as served:
        yield served


def shards(out: Path, split: str = "train") -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob(f"{out.name}-{split}-0*.tar"))}


def metas(out: Path, split: str = "train") -> list[dict]:
    return [json.loads(s["json"]) for shard in sorted(out.glob(f"{out.name}-{split}-0*.tar"))
            for s in wds.WebDataset(str(shard), shardshuffle=False, empty_check=False)]


def manifest_rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in gzip.decompress(path.read_bytes()).decode().splitlines()[1:]]


def test_cc12m_first_n_in_index_order_ledger_manifest_and_rebuild(tmp_path, web):
    rows = list_rows(web, KINDS)
    tsv = write_url_first_tsv(tmp_path / "cc12m.tsv", rows)
    data = tmp_path / "data"
    result = run_cli("fetch", "cc12m", "--data-dir", str(data), "--tsv", str(tsv), *FAST)
    assert "no published checksum: recorded sha256" in result.stdout
    out = data / "out" / "cc12m"
    found = metas(out)
    assert [m["row"] for m in found] == EXPECTED
    assert all((m["dataset"], m["url"]) == ("cc12m", rows[m["row"]][0]) for m in found)
    assert found[EXPECTED.index(6)]["caption"] == clean_caption(rows[6][1].replace("\n", " "))
    ledgers = list((data / "work" / "cc12m").glob("*/windows/*/ledger.tsv"))
    assert ledgers and "invalid_url" in ledgers[0].read_text()
    manifest = data / "manifests" / f"cc12m-train-{COUNT}.tsv.gz"
    assert [int(r[0]) for r in manifest_rows(manifest)] == EXPECTED
    run_cli("verify", "cc12m", "--data-dir", str(data))

    again = tmp_path / "again"
    run_cli("fetch", "cc12m", "--data-dir", str(again), "--tsv", str(tsv), "--from-manifest", str(manifest), *FAST)
    assert shards(again / "out" / "cc12m") == shards(out) and len(shards(out)) == 3


def test_sbu_from_a_mirror_keeps_user_ids_and_rebuilds(tmp_path, web):
    from vlprep.pipeline.samples.serve import serve_directory

    rows = list_rows(web, KINDS)
    mirror = tmp_path / "mirror"
    write_sbu_archive(mirror / "sbu-captions-all.tar.gz", rows)
    data = tmp_path / "data"
    with serve_directory(mirror) as url:
        run_cli("fetch", "sbu", "--data-dir", str(data), "--mirror", url, *FAST)
    found = metas(data / "out" / "sbu")
    assert [m["row"] for m in found] == EXPECTED
    assert [m["user_id"] for m in found] == [f"{10_000_000 + n}@N0{n % 7}" for n in EXPECTED]
    assert all(m["caption"] == clean_caption(rows[m["row"]][1]) for m in found)
    converted = list((data / "work" / "sbu").glob("rows-*/sbu-captions-all.jsonl"))
    assert len(converted) == 1 and len(converted[0].read_text().splitlines()) == len(KINDS)
    run_cli("verify", "sbu", "--data-dir", str(data))

    manifest = data / "manifests" / f"sbu-train-{COUNT}.tsv.gz"
    again = tmp_path / "again"
    run_cli("fetch", "sbu", "--data-dir", str(again), "--archive", str(mirror / "sbu-captions-all.tar.gz"),
            "--from-manifest", str(manifest), *FAST)
    assert shards(again / "out" / "sbu") == shards(data / "out" / "sbu")

    # Another archive (one caption changed) is converted anew, beside the first: the work is keyed by its sha256.
    write_sbu_archive(mirror / "sbu-captions-all.tar.gz", [rows[0], (rows[1][0], "another caption"), *rows[2:]])
    run_cli("fetch", "sbu", "--data-dir", str(data), "--archive", str(mirror / "sbu-captions-all.tar.gz"), *FAST)
    assert len(list((data / "work" / "sbu").glob("rows-*/sbu-captions-all.jsonl"))) == 2
    assert metas(data / "out" / "sbu")[0]["caption"] == "another caption"


def test_unequal_sbu_lists_are_one_clear_error(tmp_path, web):
    archive = write_sbu_archive(tmp_path / "sbu-captions-all.tar.gz", [],
                                lists={"image_urls": ["http://h/0.jpg"], "captions": [], "user_ids": ["1"]})
    result = run_cli("fetch", "sbu", "--data-dir", str(tmp_path / "data"), "--archive", str(archive), check=False)
    assert_clean_failure(result, "differ in length", "captions 0")


def test_weblist_gives_the_same_shards_from_every_format(tmp_path, web):
    rows = list_rows(web, KINDS)
    built: dict[str, dict[str, bytes]] = {}
    for fmt in ("tsv", "csv", "parquet", "jsonl"):
        quoted = [(u, c.replace("\t", " ").replace("\n", " ")) for u, c in rows]  # a TSV line cannot hold them
        path = write_list(tmp_path / "lists" / f"pairs.{fmt}", fmt, quoted, url_col="URL", caption_col="TEXT")
        data = tmp_path / fmt
        run_cli("fetch", "weblist", "--data-dir", str(data), "--list", str(path), "--url-col", "URL",
                "--caption-col", "TEXT", "--split", "mine", *FAST)
        out = data / "out" / "weblist"
        built[fmt] = shards(out, "mine")
        assert [m["row"] for m in metas(out, "mine")] == EXPECTED
        manifest = data / "manifests" / f"weblist-mine-{COUNT}.tsv.gz"
        assert [int(r[0]) for r in manifest_rows(manifest)] == EXPECTED
        assert (data / "raw" / "weblist" / "mine" / f"pairs.{fmt}").exists()
    assert built["tsv"] == built["csv"] == built["parquet"] == built["jsonl"] and len(built["tsv"]) == 3
    assert sorted(built["tsv"]) == [f"weblist-mine-00000{i}.tar" for i in range(3)]

    data = tmp_path / "csv"
    run_cli("verify", "weblist", "--data-dir", str(data))
    sheet = tmp_path / "mine.png"
    run_cli("preview", "weblist", "--split", "mine", "--limit", "2", "--out", str(sheet), "--data-dir", str(data))
    assert sheet.read_bytes()[:4] == b"\x89PNG"
    run_cli("manifest", "build", "--data-dir", str(data))
    again = tmp_path / "again"
    run_cli("fetch", "weblist", "--data-dir", str(again), "--list", str(tmp_path / "lists" / "pairs.csv"),
            "--url-col", "URL", "--caption-col", "TEXT", "--split", "mine", "--from-manifest",
            str(data / "manifests" / f"weblist-mine-{COUNT}.tsv.gz"), *FAST)
    assert shards(again / "out" / "weblist", "mine") == built["csv"]


def test_weblist_usage_and_column_errors_are_one_line(tmp_path, web):
    path = write_list(tmp_path / "pairs.csv", "csv", list_rows(web, KINDS[:3]))
    result = run_cli("fetch", "weblist", "--data-dir", str(tmp_path / "d"), "--list", str(path), "--url-col",
                     "image", check=False)
    assert_clean_failure(result, "pairs.csv", "no column 'image'", "'url'")
    assert_clean_failure(run_cli("fetch", "weblist", "--data-dir", str(tmp_path / "d"), check=False), "--list")
    odd = tmp_path / "pairs.xlsx"
    odd.write_bytes(b"x")
    assert_clean_failure(run_cli("fetch", "weblist", "--data-dir", str(tmp_path / "d"), "--list", str(odd),
                                 check=False), "--format")
    bad_split = run_cli("fetch", "weblist", "--list", str(path), "--split", "A/B", check=False)
    assert bad_split.returncode == 2 and "--split" in bad_split.stderr


def test_weblist_kill_9_resumes_to_the_same_shards(tmp_path, web):
    kinds = ["slow", "good", "404", "good", "png"] * 4
    path = write_list(tmp_path / "pairs.jsonl", "jsonl", list_rows(web, kinds))
    args = ("--list", str(path), "--timeout", "3", "--retries", "0", "--workers", "1", "--threads", "8",
            "--max-window", "6", "--shard-samples", "3", "--limit", "8")
    reference = tmp_path / "reference"
    run_cli("fetch", "weblist", "--data-dir", str(reference), *args)
    data = tmp_path / "data"
    process = subprocess.Popen([sys.executable, "-m", "vlprep.cli", "fetch", "weblist", "--data-dir", str(data), *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(data.glob("work/weblist/*/windows/000000/done.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    run_cli("fetch", "weblist", "--data-dir", str(data), *args)
    assert shards(data / "out" / "weblist") == shards(reference / "out" / "weblist")
    assert len(shards(reference / "out" / "weblist")) == 3
