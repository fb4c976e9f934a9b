"""Conceptual Captions 3M → WebDataset shards of the first N rows whose image could be fetched.

The recipe: Google's TSV (caption⇥url, no header, read by :mod:`..records.cc3m`) and its published
URL; the kept rows are the first N reachable ones in index order. The crawl (windows sized from the
success rate, img2dataset, the attempt ledger, ordered shards) is done by ``engines/webcrawl.py``,
given the TSV as a :class:`~vlprep.pipeline.engines.webcrawl.UrlList` by :func:`url_list`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..layout import Layout
from ..records import cc3m as records
from ..records.urllist import LINE_BYTES, TsvList
from ..sinks.folder import About
from . import crawl
from .recipe import Run, option

if TYPE_CHECKING:
    from ..engines.webcrawl import UrlList

NAME = "cc3m"
SPLIT = crawl.SPLIT
TSV_URL = "https://storage.googleapis.com/gcc-data/Train/GCC-training.tsv"


@dataclass(frozen=True)
class FetchOptions(crawl.ListFileOptions):
    tsv: Path | None = option(None, "Train_GCC-training.tsv you have (hard-linked, else copied, into "
                              "DATA_DIR/raw/cc3m; "
                              "default: fetched from --mirror or its published URL).",
                              type=Path, must_exist=True)


def fetch_tsv(layout: Layout, tsv: Path | None, mirror: str | None) -> Path:
    """The TSV in ``raw/cc3m``: ``--tsv`` brought in, else fetched from ``--mirror`` or the published URL."""
    return crawl.bring_list(layout, NAME, records.TSV_NAME, tsv, TSV_URL, mirror, "--tsv")


def url_list(tsv: Path, max_line: int = LINE_BYTES) -> UrlList:
    """The TSV at ``tsv`` as the list the web crawl reads."""
    from ..engines.webcrawl import UrlList

    return UrlList(name=NAME, path=Path(tsv), reader=TsvList(url_first=False, max_line=max_line),
                   raw_name=records.TSV_NAME, command=RECIPE.command("fetch"), split=SPLIT)


def fetch(run: Run, options: FetchOptions) -> None:
    crawl.check_options(options)
    tsv_path = crawl.fetch_list(run, records.TSV_NAME, options.tsv, TSV_URL, "--tsv")
    crawl.crawl(run, options, url_list(tsv_path, options.max_line))


SAMPLE = crawl.sample_schema(NAME, "0-based line of the row in Train_GCC-training.tsv (the sample key is "
                             "it, 9 digits).")
"""One TSV row: its one caption, and the image its URL gave."""

ABOUT = About(
    pretty_name="Conceptual Captions 3M",
    summary="Google's Conceptual Captions: 3,318,333 image URLs with alt-text-derived captions. Kept here: the "
            "first N rows, in TSV order, whose image could still be fetched and decoded.",
    homepage="https://ai.google.com/research/ConceptualCaptions/",
    version="1.0",
    license="other",
    license_name="conceptual-captions",
    license_url="https://github.com/google-research-datasets/conceptual-captions",
    license_note="The Conceptual Captions TSV is Google's (it may be freely used for any purpose, with "
                 "acknowledgement of Google LLC appreciated; see its repository). The images belong to their "
                 "owners on the web: they are fetched from the URLs for research use, and are not relicensed here.",
    citation="""@inproceedings{sharma2018conceptual,
  title={Conceptual Captions: A Cleaned, Hypernymed, Image Alt-text Dataset For Automatic Image Captioning},
  author={Sharma, Piyush and Ding, Nan and Goodman, Sebastian and Soricut, Radu},
  booktitle={Proceedings of the 56th Annual Meeting of the Association for Computational Linguistics (ACL)},
  year={2018}
}""",
    task_categories=("image-to-text", "text-to-image"),
    sources={f"{NAME}/{records.TSV_NAME}": TSV_URL},
    published={SPLIT: (3_318_333, "rows")},
    roles={"train": SPLIT},
    notes=("Which rows are kept depends on which URLs answered when the crawl ran; the manifest "
           "manifests/cc3m-train-<N>.tsv.gz lists them with the sha256 of each image, and `vlprep fetch cc3m "
           "--tsv Train_GCC-training.tsv --from-manifest cc3m-train-<N>.tsv.gz` rebuilds exactly those rows.",),
)


RECIPE = crawl.recipe(
    NAME,
    "Conceptual Captions 3M, the first N reachable rows of the TSV (pairs, fetched from the web)",
    crawl.fetch_stage(
        fetch, FetchOptions, NAME, "Fetch the first N reachable CC3M rows from the web into DATA_DIR/out/cc3m "
        "shards.",
        ("vlprep fetch cc3m --tsv Train_GCC-training.tsv --limit 500000 --workers 16",
         "vlprep fetch cc3m --tsv Train_GCC-training.tsv --from-manifest "
         "cc3m-train-500000.tsv.gz   # a manifest you or others published"),
        "The TSV has no published checksum: its sha256 is recorded. CC3M has no shard stage: this fetch writes "
        "its shards."),
    crawl.manifest(NAME, "Conceptual Captions", "Rebuild CC3M exactly with `vlprep fetch cc3m --tsv "
                   "Train_GCC-training.tsv --from-manifest cc3m-train-<N>.tsv.gz`."),
    SAMPLE, ABOUT)
