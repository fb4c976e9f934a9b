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

from ..errors import VlprepError
from ..layout import Layout
from ..records import cc3m as records
from . import shards
from ..sinks import manifests as manifest_sink
from ..sinks.features import IMAGE_FIELDS, INT64, STRING, TEXT_FIELDS, Field, SampleSchema
from ..sinks.folder import About
from .crawloptions import PolitenessOptions, politeness
from .recipe import FETCH_COMMON, Limit, Manifest, Recipe, Run, Stage, option

if TYPE_CHECKING:
    from ..engines.webcrawl import UrlList

NAME = "cc3m"
SPLIT = "train"
TSV_URL = "https://storage.googleapis.com/gcc-data/Train/GCC-training.tsv"
DISTRIBUTORS = ("multiprocessing", "pyspark", "ray")
RETRY_POLICIES = ("transient", "all", "none")


@dataclass(frozen=True)
class FetchOptions(PolitenessOptions):
    tsv: Path | None = option(None, "Train_GCC-training.tsv you have (hard-linked, else copied, into "
                              "DATA_DIR/raw/cc3m; "
                              "default: fetched from --mirror or its published URL).",
                              type=Path, must_exist=True)
    from_manifest: Path | None = option(None, "Rebuild exactly the rows of this cc3m-train-<N>.tsv.gz, checking "
                                        "sha256.", type=Path, must_exist=True)
    resize: int | None = option(None, "Scale the shorter side down to PIXELS (never up) and store JPEG q95. "
                                "Default: the original bytes.", type=int, low=16, metavar="PIXELS")
    timeout: float = option(10.0, "Seconds for a whole image answer (not per read).", type=float, low=0.1)
    retries: int = option(1, "Extra tries after 5xx, timeouts and dropped connections (never after 4xx).",
                          type=int, low=0)
    retry_failed: str = option("transient", "Rows an earlier run failed that this run tries again first "
                               "(transient: 5xx, 429, timeout, DNS, connection).", choices=RETRY_POLICIES)
    max_attempts: int = option(3, "Most runs that try one row (--retry-failed stops there).", type=int, low=1)
    threads: int = option(64, "Download threads per worker process.", type=int, low=1)
    distributor: str = option("multiprocessing", "img2dataset distributor (pyspark and ray must be installed; a "
                              "cluster must be named: --ray-address, --spark-master).",
                              choices=DISTRIBUTORS)
    max_window: int | None = option(None, "Most rows tried in one window (one img2dataset job). Default: no cap; "
                                    "a probe window, then one sized for the rest from its success rate.",
                                    type=int, low=1)
    window_timeout: float | None = option(None, "Seconds before a stalled window is killed and run again (default: "
                                          "from its size).", type=float, low=1)
    shard_samples: int = option(10_000, "Samples per output shard.", type=int, low=1)
    # -- cluster options (engines/clusters.py; docs/clusters.md) --
    ray_address: str | None = option(None, "Ray cluster for --distributor ray: the head's HOST:PORT (default: "
                                     "RAY_ADDRESS), or 'local' for a Ray on this machine.", metavar="ADDRESS")
    spark_master: str | None = option(None, "Spark master for --distributor pyspark: spark://HOST:PORT or local[N] "
                                      "(default: your Spark configuration, MASTER or spark-defaults.conf).",
                                      metavar="URL")


@dataclass(frozen=True)
class PreviewOptions(shards.PreviewOptions):
    split: str | None = option(None, "CC3M has one split, train.", choices=(SPLIT,))


def fetch_tsv(layout: Layout, tsv: Path | None, mirror: str | None) -> Path:
    """The TSV in ``raw/cc3m``: ``--tsv`` brought in (hard-linked, or copied), else fetched from
    ``--mirror`` or the published URL. Either way the fetch loop records its sha256 and its source, so
    ``raw/cc3m`` has its ``SHA256SUMS`` and ``SOURCE.json`` like every other dataset."""
    from ..engines.fetch import fetch_files, fetch_local

    if tsv is not None:
        if not Path(tsv).is_file():
            raise VlprepError(f"{tsv} is not a file", fix=f"pass the path of {records.TSV_NAME} with --tsv")
        fetch_local(layout.raw(NAME), {records.TSV_NAME: Path(tsv)})
    else:
        fetch_files(layout.raw(NAME), {records.TSV_NAME: TSV_URL}, mirror)
    return layout.raw(NAME) / records.TSV_NAME


def url_list(tsv: Path) -> UrlList:
    """The TSV at ``tsv`` as the list the web crawl reads."""
    from ..engines.webcrawl import UrlList

    return UrlList(name=NAME, path=Path(tsv), reader=records.READER, raw_name=records.TSV_NAME,
                   command=RECIPE.command("fetch"), split=SPLIT)


def fetch(run: Run, options: FetchOptions) -> None:
    from ..engines import webcrawl
    from ..engines.fetch import check_line

    config = webcrawl.DownloadConfig(
        resize=options.resize, timeout=options.timeout, retries=options.retries, processes=run.common.workers,
        threads=options.threads, distributor=options.distributor, max_window=options.max_window,
        window_timeout=options.window_timeout, shard_samples=options.shard_samples,
        retry_failed=options.retry_failed, max_attempts=options.max_attempts, politeness=politeness(options),
        ray_address=options.ray_address, spark_master=options.spark_master)
    webcrawl.check_distributor(config.distributor)
    tsv_path = fetch_tsv(run.layout, options.tsv, run.common.mirror)
    run.say(check_line(run.layout.raw(NAME), tsv_path.name))
    urls = url_list(tsv_path)
    if options.from_manifest is not None:
        stats = webcrawl.rebuild(run.layout, urls, options.from_manifest, config, run.common.tokenizer)
    else:
        stats = webcrawl.fetch_first(run.layout, urls, run.common.limit, config, run.common.tokenizer)
    run.say_built(webcrawl.summary_lines(stats))


SAMPLE = SampleSchema(
    fields=(
        Field("dataset", STRING, "Always 'cc3m'."),
        Field("row", INT64, "0-based line of the row in Train_GCC-training.tsv (the sample key is it, 9 digits)."),
        Field("url", STRING, "The image URL of the row."),
        Field("caption", STRING, "The row's caption, cleaned."),
        Field("sha256", STRING, "sha256 of the image bytes as fetched (the manifest records it)."),
        *TEXT_FIELDS,
        *IMAGE_FIELDS,
    ),
    image="the image fetched from the row's URL, JPEG",
    caption=("caption",),
)
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


def summary(stats: dict) -> list[str]:
    from ..engines import webcrawl

    return webcrawl.summary_lines(stats)


RECIPE = Recipe(
    name=NAME,
    title="Conceptual Captions 3M, the first N reachable rows of the TSV (pairs, fetched from the web)",
    kind="pairs",
    builder="fetch",
    stages={
        "fetch": Stage(fetch, FetchOptions, "Fetch the first N reachable CC3M rows from the web into "
                       "DATA_DIR/out/cc3m shards.",
                       ("vlprep fetch cc3m --tsv Train_GCC-training.tsv --limit 500000 --workers 16",
                        "vlprep fetch cc3m --tsv Train_GCC-training.tsv --from-manifest "
                        "cc3m-train-500000.tsv.gz   # a manifest you or others published"),
                       common=(*FETCH_COMMON, "workers", "limit", "tokenizer"),
                       limit=Limit("Keep the first N rows, in index order, whose image downloads and decodes.",
                                   default=500_000),
                       aliases={"limit": ("--count",), "workers": ("--processes",)},
                       details="Rows are tried in index order, in windows sized from the success rate so far, with "
                       "img2dataset, until the first N rows whose image downloaded and decoded are held; they are "
                       "written as out/cc3m/cc3m-train-*.tar in index order with cc3m-train.index.json, "
                       "stats.json (rows "
                       "tried, failures by cause) and DATA_DIR/manifests/cc3m-train-N.tsv.gz. Interrupted runs "
                       "(even kill -9) continue where they stood and end with the same rows. A rerun first retries "
                       "rows that failed for a transient cause (--retry-failed, --max-attempts) and recomputes "
                       "the first N. The TSV has no published checksum: its sha256 is recorded. CC3M has no shard "
                       "stage: this fetch writes its shards." + shards.READERS_NOTE),
        "verify": shards.verify_stage(NAME, "token ids within the <s> + <=62 + </s> rule"),
        "preview": shards.preview_stage(NAME, PreviewOptions),
    },
    manifest=Manifest("cc3m-*.tsv.gz", manifest_sink.URL_ROWS,
                      "Conceptual Captions rows kept (0-based TSV line), their URL, sha256 of the bytes, caption "
                      "hash (first 16 hex digits of its sha256)",
                      rebuild="Rebuild CC3M exactly with `vlprep fetch cc3m --tsv Train_GCC-training.tsv "
                      "--from-manifest cc3m-train-<N>.tsv.gz`."),
    demo="vlprep.pipeline.samples.demo:cc3m",
    summary=summary,
    splits=(SPLIT,),
    default_split=SPLIT,
    pretraining_split=SPLIT,
    sample=SAMPLE,
    about=ABOUT,
)
