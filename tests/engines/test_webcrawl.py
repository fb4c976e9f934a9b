"""The web crawl engine serves any caption/URL list, not only CC3M's: a url-first TSV (the CC12M
layout) under another dataset name, crawled through the engine API on the loopback sample web."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import webdataset as wds

from vlprep.pipeline.engines import webcrawl
from vlprep.pipeline.layout import Layout
from vlprep.pipeline.records.urllist import TsvList, caption_hash
from vlprep.pipeline.samples.web import KINDS_OK, serve_web
from vlprep.pipeline.transforms.text import clean_caption

KINDS = ["404", "good", "html", "png", "invalid", "empty-caption", "redirect", "bomb", "webp", "good", "403", "good"]
COUNT = 4


def write_url_first(path: Path, web, kinds: list[str]) -> list[tuple[str, str]]:
    """url⇥caption lines (no header), one per kind; return the (url, caption) rows."""
    rows = []
    for n, kind in enumerate(kinds):
        url = "not a url" if kind == "invalid" else web.url("good" if kind == "empty-caption" else kind, n)
        rows.append((url, " \x00 " if kind == "empty-caption" else f"photo {n}\twith a tab in its caption"))
    path.write_text("".join(f"{url}\t{caption}\n" for url, caption in rows), encoding="utf-8")
    return rows


def samples(out: Path) -> list[dict]:
    return [json.loads(s["json"]) for shard in sorted(out.glob(f"{out.name}-train-0*.tar"))
            for s in wds.WebDataset(str(shard), shardshuffle=False, empty_check=False)]


def test_the_engine_crawls_a_url_first_list_under_its_own_name(tmp_path):
    config = webcrawl.DownloadConfig(timeout=3.0, retries=1, processes=1, threads=4, shard_samples=3)
    with serve_web(trickle_seconds=1) as web:
        path = tmp_path / "cc12m.tsv"
        rows = write_url_first(path, web, KINDS)
        urls = webcrawl.UrlList(name="cc12m", path=path, reader=TsvList(url_first=True), raw_name="cc12m.tsv",
                                command="vlprep fetch cc12m")
        layout = Layout(tmp_path / "data")
        stats = webcrawl.fetch_first(layout, urls, COUNT, config)

        expected = [n for n, kind in enumerate(KINDS) if kind in KINDS_OK][:COUNT]
        out = layout.out("cc12m")
        metas = samples(out)
        assert [m["row"] for m in metas] == expected
        for meta in metas:
            url, caption = rows[meta["row"]]
            assert (meta["dataset"], meta["url"], meta["caption"]) == ("cc12m", url, clean_caption(caption))
        assert sorted(p.name for p in out.glob("cc12m-train-*.tar")) == ["cc12m-train-000000.tar",
                                                                         "cc12m-train-000001.tar"]
        assert (out / "cc12m-train.index.json").exists()
        split = stats["splits"]["train"]
        assert stats["dataset"] == "cc12m" and split["last_row_kept"] == expected[-1]
        assert split["inputs"] == {str(path.resolve()): split["inputs"][str(path.resolve())]}
        assert split["failures"]["invalid_url"] == 1 and split["failures"]["empty_caption"] == 1
        assert list(layout.work("cc12m").glob("*/windows/000000/ledger.tsv"))
        assert webcrawl.summary_lines(stats)[0].startswith(f"cc12m: first {COUNT} reachable rows")

        manifest = layout.manifests() / f"cc12m-train-{COUNT}.tsv.gz"
        lines = gzip.decompress(manifest.read_bytes()).decode().splitlines()
        assert [line.split("\t")[:2] for line in lines[1:]] == [[str(r), rows[r][0]] for r in expected]
        assert [line.split("\t")[3] for line in lines[1:]] == [caption_hash(rows[r][1]) for r in expected]

        # The manifest rebuilds the same rows from the same list, through the same reader.
        again = Layout(tmp_path / "again")
        rebuilt = webcrawl.rebuild(again, urls, manifest, config)
    assert rebuilt["splits"]["train"]["rebuilt"] == COUNT
    assert webcrawl.summary_lines(rebuilt)[0].startswith(f"cc12m from manifest: {COUNT} rows listed")
    assert {p.name: p.read_bytes() for p in again.out("cc12m").glob("cc12m-train-*.tar")} == \
        {p.name: p.read_bytes() for p in out.glob("cc12m-train-*.tar")}
