"""SBU Captions → WebDataset shards of the first N rows whose image could be fetched.

The recipe: ``sbu-captions-all.tar.gz`` (its published URL, ``--mirror`` or the user's own file
with ``--archive``), whose JSON holds three parallel lists. They are turned once into a JSON Lines
file of one row a line (:func:`..records.sbu.write_rows`) in ``work/sbu/rows-<sha256>/``, keyed by
the archive's sha256, so a changed archive gives a new file and a new crawl, and an unchanged one
is never converted twice. The crawl reads that file as any JSONL list, keeping each row's user id
in its sample json; everything else is the web-list fetch every such list shares (:mod:`.crawl`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..layout import Layout
from ..records import sbu as records
from ..sinks.features import STRING, Field
from ..sinks.folder import About
from . import crawl
from .recipe import Run, option

NAME = "sbu"
SPLIT = crawl.SPLIT
ARCHIVE_URL = "https://www.cs.rice.edu/~vo9/sbucaptions/sbu-captions-all.tar.gz"
CANONICAL_LINE = 8 << 20
"""The line cap of the canonical file: written here, with every text within the text cap."""


@dataclass(frozen=True)
class FetchOptions(crawl.CrawlOptions):
    archive: Path | None = option(None, "sbu-captions-all.tar.gz you have (hard-linked, else copied, into "
                                  "DATA_DIR/raw/sbu; default: fetched from --mirror or its published URL).",
                                  type=Path, must_exist=True)


def rows_file(layout: Layout, archive: Path) -> Path:
    """The canonical one-row-a-line file of ``archive`` in work/sbu, written unless already there."""
    from ..engines.inputs import raw_inputs

    sha256 = next(iter(raw_inputs(layout, NAME, [records.ARCHIVE_NAME]).values()))
    path = layout.work(NAME) / f"rows-{sha256[:16]}" / records.CANONICAL_NAME
    if not path.exists():
        records.write_rows(archive, path)
    return path


def fetch(run: Run, options: FetchOptions) -> None:
    from ..engines.webcrawl import UrlList
    from ..records.listreaders import JsonlList

    crawl.check_options(options)
    archive = crawl.fetch_list(run, records.ARCHIVE_NAME, options.archive, ARCHIVE_URL, "--archive")
    path = rows_file(run.layout, archive)
    crawl.crawl(run, options, UrlList(name=NAME, path=path, reader=JsonlList(records.COLUMNS, CANONICAL_LINE),
                                      raw_name=records.CANONICAL_NAME, command=RECIPE.command("fetch"), split=SPLIT))


SAMPLE = crawl.sample_schema(
    NAME, "0-based index of the row in the parallel lists of sbu-captions-all.json (the sample key is it, 9 "
    "digits).", url="The image URL of the row (image_urls).", caption="The row's caption (captions), cleaned.",
    extra=(Field("user_id", STRING, "The Flickr user id of the row (user_ids), as published."),))
"""One row of the parallel lists: its caption, its user id, and the image its URL gave."""

ABOUT = About(
    pretty_name="SBU Captioned Photo Dataset",
    summary="SBU Captions: 1,000,000 Flickr photo URLs with the captions their owners wrote. Kept here: the first N "
            "rows, in list order, whose image could still be fetched and decoded.",
    homepage="https://www.cs.rice.edu/~vo9/sbucaptions/",
    version="1.0",
    license="other",
    license_name="sbu-captions",
    license_url="https://www.cs.rice.edu/~vo9/sbucaptions/",
    license_note="The list of URLs and captions is distributed by its authors for research; the images belong to "
                 "their owners on Flickr: they are fetched from the URLs for research use, and are not relicensed "
                 "here.",
    citation="""@inproceedings{ordonez2011im2text,
  title={Im2Text: Describing Images Using 1 Million Captioned Photographs},
  author={Ordonez, Vicente and Kulkarni, Girish and Berg, Tamara L.},
  booktitle={Advances in Neural Information Processing Systems (NeurIPS)},
  year={2011}
}""",
    task_categories=("image-to-text", "text-to-image"),
    sources={f"{NAME}/{records.ARCHIVE_NAME}": ARCHIVE_URL},
    published={SPLIT: (records.ROWS, "rows")},
    roles={"train": SPLIT},
    notes=("Which rows are kept depends on which URLs answered when the crawl ran; the manifest "
           "manifests/sbu-train-<N>.tsv.gz lists them with the sha256 of each image, and `vlprep fetch sbu "
           "--from-manifest sbu-train-<N>.tsv.gz` rebuilds exactly those rows.",),
)

RECIPE = crawl.recipe(
    NAME,
    "SBU Captions, the first N reachable rows of the parallel lists (pairs, fetched from the web)",
    crawl.fetch_stage(
        fetch, FetchOptions, NAME, "Fetch the first N reachable SBU Captions rows from the web into "
        "DATA_DIR/out/sbu shards.",
        ("vlprep fetch sbu --limit 500000 --workers 16",
         "vlprep fetch sbu --archive sbu-captions-all.tar.gz --from-manifest sbu-train-500000.tsv.gz"),
        "sbu-captions-all.tar.gz holds sbu-captions-all.json, three parallel lists (image_urls, captions, "
        "user_ids; 1,000,000 rows), turned once into one row a line in DATA_DIR/work/sbu/rows-<sha256>/; the "
        "row is the index in the lists, and each sample keeps its user_id. The archive has no published "
        "checksum: its sha256 is recorded."),
    crawl.manifest(NAME, "SBU Captions", "Rebuild SBU exactly with `vlprep fetch sbu --from-manifest "
                   "sbu-train-<N>.tsv.gz`."),
    SAMPLE, ABOUT)
