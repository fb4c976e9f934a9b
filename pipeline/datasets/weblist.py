"""Any caption/URL list of the user's → WebDataset shards of its first N rows whose image could be fetched.

``vlprep fetch weblist --list FILE`` takes a list in TSV, CSV, parquet or JSON Lines (the format
from ``--format`` or the file's suffix), finds the URL and the caption by column name or, in a TSV
or CSV without a header, by 0-based position (:mod:`..records.listreaders`), and crawls it with
every guarantee of CC3M's fetch (:mod:`.crawl`). A list is a *split* of the ``weblist`` folder,
named by ``--split``: the list is kept as ``raw/weblist/<split>/<file name>``, and the output is
``out/weblist/weblist-<split>-*.tar`` with ``manifests/weblist-<split>-<N>.tsv.gz``, so ``verify``,
``preview --split``, ``stats`` and ``manifest build`` read it as any dataset's split.

The shards hold only what the rows hold (index, URL, caption, the image), so the same rows in any
format give the same shard bytes; the format and column choices are part of the crawl's key, so
reading the same file with other columns never reuses the other reading's downloads.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..sinks.folder import About
from . import crawl, shards
from .recipe import Run, option

NAME = "weblist"
FORMATS = ("tsv", "csv", "parquet", "jsonl")
SPLIT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def _split(value: str) -> str:
    if not SPLIT_NAME.fullmatch(value):
        raise ValueError(f"{value!r}: a split is 1-64 of a-z, 0-9, '-' and '_', starting with a letter or digit")
    return value


def _delimiter(value: str) -> str:
    value = "\t" if value in ("\\t", "tab") else value
    if len(value) != 1 or value in "\"\r\n":
        raise ValueError(f"{value!r}: the delimiter is one character (\\t or tab for a tab), not a quote or newline")
    return value


@dataclass(frozen=True)
class FetchOptions(crawl.ListFileOptions):
    list_path: Path | None = option(None, "The caption/URL list (hard-linked, else copied, into "
                                    "DATA_DIR/raw/weblist/SPLIT/).", type=Path, must_exist=True, flag_name="list",
                                    metavar="FILE")
    format: str | None = option(None, "The list's format (default: from its suffix: .tsv/.txt, .csv, .parquet, "
                                ".jsonl/.ndjson).", choices=FORMATS)
    url_col: str = option("url", "The column of the image URL: a name, or a 0-based position in a TSV or CSV "
                          "without a header.")
    caption_col: str = option("caption", "The column of the caption: a name, or a 0-based position.")
    header: bool = option(True, "Whether the first line of a TSV or CSV names the columns (it is not a row).",
                          type=bool, negatable=True)
    delimiter: str = option(",", "The CSV field delimiter (\\t or tab for a tab).", parse=_delimiter)
    split: str = option("train", "The split this list becomes: out/weblist/weblist-SPLIT-*.tar, "
                        "manifests/weblist-SPLIT-N.tsv.gz.", parse=_split)


def reader(path: Path, options: FetchOptions):
    """The reader of the list and the key of its reading (format and columns), for the crawl's key."""
    from ..records.listreaders import Columns, infer_format, reader_for

    fmt = options.format or infer_format(path)
    columns = Columns(url=options.url_col, caption=options.caption_col)
    header = options.header if fmt in ("tsv", "csv") else True
    delimiter = options.delimiter if fmt == "csv" else ""
    key = f"|{fmt}|url={columns.url}|caption={columns.caption}|header={header}|delimiter={delimiter!r}"
    return reader_for(fmt, columns, header, options.delimiter, options.max_line), key


def fetch(run: Run, options: FetchOptions) -> None:
    from ..engines.webcrawl import UrlList
    from ..errors import VlprepError

    crawl.check_options(options)
    if options.list_path is None:
        raise VlprepError("vlprep fetch weblist needs the list to crawl",
                          fix="pass it with --list FILE (TSV, CSV, parquet or JSONL)")
    relpath = f"{options.split}/{Path(options.list_path).name}"
    path = crawl.fetch_list(run, relpath, options.list_path, None, "--list")
    rows, key = reader(path, options)
    rows.count_rows(path)  # a missing column or an unreadable file is reported before any crawl starts
    crawl.crawl(run, options, UrlList(name=NAME, path=path, reader=rows, raw_name=relpath,
                                      command=f"{RECIPE.command('fetch')} --list {relpath.split('/')[-1]} "
                                              f"--split {options.split}", split=options.split, reader_key=key))


SAMPLE = crawl.sample_schema(
    NAME, "0-based index of the row among the list's data rows (a header line is not a row; in a CSV, a "
    "record spanning several lines is one row). The sample key is it, 9 digits.")
"""One row of the list: its one caption, and the image its URL gave."""

ABOUT = About(
    pretty_name="A caption/URL list",
    summary="A caption/URL list of the builder's own (one split per list). Kept here: the first N rows, in list "
            "order, whose image could be fetched and decoded.",
    homepage="https://github.com/rom1504/img2dataset",
    version="1.0",
    license="other",
    license_name="as-published",
    license_url="https://github.com/rom1504/img2dataset",
    license_note="The list is the builder's; its license is the list's own. The images belong to their owners on "
                 "the web: they are fetched from the URLs for research use, and are not relicensed here.",
    citation="",
    task_categories=("image-to-text", "text-to-image"),
    roles={"train": "train"},
    notes=("Each split's manifest manifests/weblist-<split>-<N>.tsv.gz lists the rows kept with the sha256 of each "
           "image; `vlprep fetch weblist --list FILE --split <split> --from-manifest weblist-<split>-<N>.tsv.gz` "
           "rebuilds exactly those rows from the same list.",),
)

RECIPE = crawl.recipe(
    NAME,
    "Any caption/URL list (TSV, CSV, parquet, JSONL), the first N reachable rows (pairs, fetched from the web)",
    crawl.fetch_stage(
        fetch, FetchOptions, NAME, "Fetch the first N reachable rows of any caption/URL list into "
        "DATA_DIR/out/weblist shards of split --split.",
        ("vlprep fetch weblist --list lists/laion-part.parquet --url-col URL --caption-col TEXT --split laion --limit "
         "100000",
         "vlprep fetch weblist --list lists/pairs.csv --split mine --limit 1000",
         "vlprep fetch weblist --list lists/cc12m.tsv --no-header --url-col 0 --caption-col 1 --split cc12m-trial "
         "--limit 1000"),
        "The list: TSV (tab-separated lines, no quoting), CSV (quoted fields, --delimiter), parquet (read in "
        "batches) or JSONL (one object a line), with --url-col and --caption-col naming its columns (0-based "
        "positions in a TSV or CSV with --no-header). A row is its 0-based index among the data rows. See "
        "docs/lists.md.", split="SPLIT",
        common=("workers", "limit", "tokenizer")),
    crawl.manifest(NAME, "A caption/URL list's", "Rebuild a list's split exactly with `vlprep fetch weblist "
                   "--list FILE --split <split> --from-manifest weblist-<split>-<N>.tsv.gz`."),
    SAMPLE, ABOUT, splits=(), preview=shards.PreviewOptions)
