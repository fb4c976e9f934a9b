"""Conceptual 12M → WebDataset shards of the first N rows whose image could be fetched.

The recipe: Google's ``cc12m.tsv`` (url⇥caption, no header, :mod:`..records.cc12m`) and its
published URL; everything else is the web-list fetch every such list shares (:mod:`.crawl`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..records import cc12m as records
from ..records.urllist import TsvList
from ..sinks.folder import About
from . import crawl
from .recipe import Run, option

NAME = "cc12m"
SPLIT = crawl.SPLIT
TSV_URL = "https://storage.googleapis.com/conceptual_12m/cc12m.tsv"


@dataclass(frozen=True)
class FetchOptions(crawl.ListFileOptions):
    tsv: Path | None = option(None, "cc12m.tsv you have (hard-linked, else copied, into DATA_DIR/raw/cc12m; "
                              "default: fetched from --mirror or its published URL).", type=Path, must_exist=True)


def fetch(run: Run, options: FetchOptions) -> None:
    from ..engines.webcrawl import UrlList

    crawl.check_options(options)
    path = crawl.fetch_list(run, records.TSV_NAME, options.tsv, TSV_URL, "--tsv")
    crawl.crawl(run, options, UrlList(name=NAME, path=path, reader=TsvList(url_first=True, max_line=options.max_line),
                                      raw_name=records.TSV_NAME, command=RECIPE.command("fetch"), split=SPLIT))


SAMPLE = crawl.sample_schema(NAME, "0-based line of the row in cc12m.tsv (the sample key is it, 9 digits).")
"""One TSV row: its one caption, and the image its URL gave."""

ABOUT = About(
    pretty_name="Conceptual 12M",
    summary="Google's Conceptual 12M: 12,423,374 image URLs with alt-text-derived captions, collected with "
            "relaxed filters for pretraining. Kept here: the first N rows, in TSV order, whose image could still be "
            "fetched and decoded.",
    homepage="https://github.com/google-research-datasets/conceptual-12m",
    version="1.0",
    license="other",
    license_name="conceptual-12m",
    license_url="https://github.com/google-research-datasets/conceptual-12m/blob/main/LICENSE",
    license_note="The cc12m.tsv list is Google's (it may be freely used for any purpose, with acknowledgement "
                 "of Google LLC appreciated; see its repository). The images belong to their owners on the web: "
                 "they are fetched from the URLs for research use, and are not relicensed here.",
    citation="""@inproceedings{changpinyo2021cc12m,
  title={Conceptual 12M: Pushing Web-Scale Image-Text Pre-Training To Recognize Long-Tail Visual Concepts},
  author={Changpinyo, Soravit and Sharma, Piyush and Ding, Nan and Soricut, Radu},
  booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2021}
}""",
    task_categories=("image-to-text", "text-to-image"),
    sources={f"{NAME}/{records.TSV_NAME}": TSV_URL},
    published={SPLIT: (records.ROWS, "rows")},
    roles={"train": SPLIT},
    notes=("Which rows are kept depends on which URLs answered when the crawl ran; the manifest "
           "manifests/cc12m-train-<N>.tsv.gz lists them with the sha256 of each image, and `vlprep fetch cc12m "
           "--tsv cc12m.tsv --from-manifest cc12m-train-<N>.tsv.gz` rebuilds exactly those rows.",),
)

RECIPE = crawl.recipe(
    NAME,
    "Conceptual 12M, the first N reachable rows of the TSV (pairs, fetched from the web)",
    crawl.fetch_stage(
        fetch, FetchOptions, NAME, "Fetch the first N reachable CC12M rows from the web into DATA_DIR/out/cc12m "
        "shards.",
        ("vlprep fetch cc12m --tsv cc12m.tsv --limit 500000 --workers 16",
         "vlprep fetch cc12m --tsv cc12m.tsv --from-manifest cc12m-train-500000.tsv.gz"),
        "cc12m.tsv is url<TAB>caption with no header (12,423,374 rows); it has no published checksum: its "
        "sha256 is recorded, never called verified."),
    crawl.manifest(NAME, "Conceptual 12M", "Rebuild CC12M exactly with `vlprep fetch cc12m --tsv cc12m.tsv "
                   "--from-manifest cc12m-train-<N>.tsv.gz`."),
    SAMPLE, ABOUT)
