"""Caption/URL lists in their published formats, pointing at the sample web (:mod:`.web`).

One list of rows, written as CC12M's TSV (url⇥caption, no header), as SBU's archive (a tar.gz
holding one JSON object of parallel lists) or as any list format the ``weblist`` recipe reads (TSV
with a header, CSV, parquet, JSONL), so the same rows can be crawled from every format. Used by the
demo and the tests.
"""
from __future__ import annotations

import csv
import io
import json
import random
import tarfile
from pathlib import Path

from .web import SampleWeb

WORDS = "a dog cat man woman on the beach with red blue car street tree sky at night".split()


def list_rows(web: SampleWeb, kinds: list[str], seed: int = 0) -> list[tuple[str, str]]:
    """``(url, caption)`` per kind: ``"invalid"`` (not a URL), ``"empty-caption"``, ``"quoted"`` (a caption
    with a comma, quotes, a tab and a newline), or a kind of the sample web."""
    rng = random.Random(seed)
    rows = []
    for n, kind in enumerate(kinds):
        caption = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10)))
        if kind == "quoted":
            caption = f'"{caption}", she said,\tthen\nleft'
        url = "not a url" if kind == "invalid" else web.url(kind if kind in _WEB_KINDS else "good", n)
        rows.append((url, " \x00 " if kind == "empty-caption" else caption))
    return rows


_WEB_KINDS = ("good", "png", "webp", "flaky", "redirect", "slow", "truncated", "html", "bomb", "noai", "404", "403",
              "500")


def write_url_first_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    """CC12M's layout: url⇥caption lines, no header (a newline in a caption becomes a space)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{url}\t{caption.replace(chr(10), ' ')}\n" for url, caption in rows), encoding="utf-8")
    return path


def write_sbu_archive(path: Path, rows: list[tuple[str, str]], json_name: str = "sbu-captions-all.json",
                      lists: dict | None = None) -> Path:
    """SBU's layout: a tar.gz holding one JSON object of three parallel lists (``lists`` replaces them)."""
    data = lists if lists is not None else {"image_urls": [u for u, _ in rows], "captions": [c for _, c in rows],
                                            "user_ids": [f"{10_000_000 + n}@N0{n % 7}" for n in range(len(rows))]}
    body = json.dumps(data).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(json_name)
        info.size = len(body)
        archive.addfile(info, io.BytesIO(body))
    return path


def write_list(path: Path, fmt: str, rows: list[tuple[str, str]], url_col: str = "url",
               caption_col: str = "caption") -> Path:
    """The rows as a list in ``fmt`` (tsv with a header, csv, parquet, jsonl), with a column the crawl ignores."""
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [{"id": n, caption_col: caption, url_col: url} for n, (url, caption) in enumerate(rows)]
    if fmt == "tsv":
        lines = [f"id\t{caption_col}\t{url_col}\n"]
        lines += [f"{r['id']}\t{r[caption_col].replace(chr(9), ' ').replace(chr(10), ' ')}\t{r[url_col]}\n"
                  for r in records]
        path.write_text("".join(lines), encoding="utf-8")
    elif fmt == "csv":
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", caption_col, url_col])
            writer.writeheader()
            writer.writerows(records)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path, row_group_size=max(1, len(records) // 3))
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return path
