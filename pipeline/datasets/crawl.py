"""What every recipe of a caption/URL list crawled from the web shares: its fetch options and stage.

CC3M, CC12M, SBU and a list of the user's own (``weblist``) differ only in where their list comes
from and how its rows are read; each recipe brings its list into ``raw/<name>/`` (or builds its
canonical form in ``work/<name>/``), describes it as a :class:`~vlprep.pipeline.engines.webcrawl.UrlList`
and hands it to :func:`crawl` with the options declared here once, so every list gets the same
guarantees: the first N reachable rows in index order, resume after a kill, the attempt ledger with
retries of transient failures, the manifest, and ``--from-manifest`` rebuilds that check every sha256.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import VlprepError
from ..layout import Layout
from ..records.urllist import LINE_BYTES
from ..sinks import manifests as manifest_sink
from ..sinks.features import IMAGE_FIELDS, INT64, STRING, TEXT_FIELDS, Field, SampleSchema
from ..sinks.folder import About
from . import shards
from ..sources.politeness import DEFAULT_CONTACT, Politeness, check_contact
from .recipe import FETCH_COMMON, Limit, Manifest, Recipe, Run, Stage, option

if TYPE_CHECKING:
    from ..engines.webcrawl import UrlList

SPLIT = "train"
DISTRIBUTORS = ("multiprocessing", "pyspark", "ray")
RETRY_POLICIES = ("transient", "all", "none")
COUNT = 500_000
"""The default ``--limit``: the first 500,000 reachable rows."""


@dataclass(frozen=True)
class PolitenessOptions:
    contact: str = option(DEFAULT_CONTACT, "URL or mailto: address sent in every request's User-Agent "
                          "(vlprep/VERSION (+CONTACT)), where a site owner can learn about your crawl and reach you.",
                          parse=check_contact, metavar="URL")
    per_host: int = option(8, "Most requests one worker process has open to one host at a time.", type=int, low=1,
                           metavar="N")
    retry_after_max: float = option(60.0, "Longest pause honoured when a host answers 429 (or 503) with "
                                    "Retry-After; a longer one fails the row as http_429, retried by a later run.",
                                    type=float, low=0, metavar="SECONDS")
    robots_txt: bool = option(False, "Read each host's robots.txt and skip the URLs it disallows for vlprep "
                              "(cause robots_txt). X-Robots-Tag opt-outs are always honoured.", type=bool)


def politeness(options: PolitenessOptions) -> Politeness:
    """The crawl's manners from its options."""
    return Politeness(contact=options.contact, per_host=options.per_host, retry_after_max=options.retry_after_max,
                      robots_txt=options.robots_txt)


@dataclass(frozen=True)
class CrawlOptions(PolitenessOptions):
    """The options of every web-list fetch; a recipe adds the field that names its own list file."""

    from_manifest: Path | None = option(None, "Rebuild exactly the rows of this <dataset>-<split>-<N>.tsv.gz, "
                                        "checking sha256.", type=Path, must_exist=True)
    resize: int | None = option(None, "Scale the shorter side down to PIXELS (never up) and store JPEG q95. "
                                "Default: the original bytes.", type=int, low=16, metavar="PIXELS")
    timeout: float = option(10.0, "Seconds for a whole image answer (not per read).", type=float, low=0.1)
    retries: int = option(1, "Extra tries after 5xx, 429, timeouts and dropped connections (never after other 4xx).",
                          type=int, low=0)
    retry_failed: str = option("transient", "Rows an earlier run failed that this run tries again first "
                               "(transient: 5xx, 429, timeout, DNS, connection).", choices=RETRY_POLICIES)
    max_attempts: int = option(3, "Most runs that try one row (--retry-failed stops there).", type=int, low=1)
    threads: int = option(64, "Download threads per worker process.", type=int, low=1)
    distributor: str = option("multiprocessing", "img2dataset distributor (pyspark and ray must be installed; a "
                              "cluster must be named: --ray-address, --spark-master).",
                              choices=DISTRIBUTORS)
    ray_address: str | None = option(None, "Ray cluster for --distributor ray: the head's HOST:PORT (default: "
                                     "RAY_ADDRESS), or 'local' for a Ray on this machine.", metavar="ADDRESS")
    spark_master: str | None = option(None, "Spark master for --distributor pyspark: spark://HOST:PORT or local[N] "
                                      "(default: your Spark configuration, MASTER or spark-defaults.conf).",
                                      metavar="URL")
    max_window: int | None = option(None, "Most rows tried in one window (one img2dataset job). Default: no cap; "
                                    "one window for a small crawl, else a probe and one window for the rest.",
                                    type=int, low=1)
    window_timeout: float | None = option(None, "Seconds before a stalled window is killed and run again (default: "
                                          "from its size).", type=float, low=1)
    shard_samples: int = option(10_000, "Samples per output shard.", type=int, low=1)


@dataclass(frozen=True)
class ListFileOptions(CrawlOptions):
    """The options of a fetch that reads a list file line by line (or record by record): the line cap."""

    max_line_kb: int = option(LINE_BYTES >> 10, "A line (or CSV field) of the list longer than this many KiB stops "
                              "the fetch with an error naming it.", type=int, low=1)

    @property
    def max_line(self) -> int:
        return self.max_line_kb << 10


@dataclass(frozen=True)
class PreviewOptions(shards.PreviewOptions):
    split: str | None = option(None, "The list has one split, train.", choices=(SPLIT,))


def bring_list(layout: Layout, dataset: str, relpath: str, given: Path | None, url: str | None,
               mirror: str | None, option_name: str) -> Path:
    """The list file in ``raw/<dataset>``: the user's own (``given``, hard-linked or copied), else fetched
    from ``mirror`` or the published ``url``; either way recorded with its sha256 and its source, so
    ``raw/<dataset>`` has its ``SHA256SUMS`` and ``SOURCE.json`` like every other dataset's."""
    from ..engines.fetch import fetch_files, fetch_local

    raw = layout.raw(dataset)
    if given is not None:
        if not Path(given).is_file():
            raise VlprepError(f"{given} is not a file", fix=f"pass the path of {Path(relpath).name} with {option_name}")
        fetch_local(raw, {relpath: Path(given)})
    elif url is None:
        raise VlprepError(f"vlprep fetch {dataset} needs its list", fix=f"pass it with {option_name} FILE")
    else:
        fetch_files(raw, {relpath: url}, mirror)
    return raw / relpath


def fetch_list(run: Run, relpath: str, given: Path | None, url: str | None, option_name: str) -> Path:
    """:func:`bring_list` for a stage, saying how the file was checked."""
    from ..engines.fetch import check_line

    path = bring_list(run.layout, run.dataset, relpath, given, url, run.common.mirror, option_name)
    run.say(check_line(run.layout.raw(run.dataset), relpath))
    return path


def crawl(run: Run, options: CrawlOptions, urls: UrlList) -> None:
    """The first ``--limit`` reachable rows of ``urls``, or exactly a manifest's rows with ``--from-manifest``."""
    from ..engines import webcrawl

    config = webcrawl.DownloadConfig(
        resize=options.resize, timeout=options.timeout, retries=options.retries, processes=run.common.workers,
        threads=options.threads, distributor=options.distributor, max_window=options.max_window,
        window_timeout=options.window_timeout, shard_samples=options.shard_samples,
        retry_failed=options.retry_failed, max_attempts=options.max_attempts, politeness=politeness(options),
        ray_address=options.ray_address, spark_master=options.spark_master)
    if options.from_manifest is not None:
        stats = webcrawl.rebuild(run.layout, urls, options.from_manifest, config, run.common.tokenizer)
    else:
        check_first_rows(urls)
        stats = webcrawl.fetch_first(run.layout, urls, run.common.limit, config, run.common.tokenizer)
    run.say_built(webcrawl.summary_lines(stats))


FIRST_ROWS = 200
"""Rows read before a crawl starts to tell a list read with the wrong columns from a dirty one."""


def check_first_rows(urls: UrlList) -> None:
    """Refuse a list whose first rows hold no http(s) URL at all: the columns, the format or the header
    option are wrong, and every row would fail as ``invalid_url`` after the whole list was tried."""
    from ..sources.webimage import url_problem

    first = list(urls.reader.iter_rows(urls.path, 0, FIRST_ROWS))
    if not first:
        raise VlprepError(f"{urls.path}: the list has no rows", fix="pass the list's file (a header alone is no row)")
    if all(url_problem(row.url) for row in first):
        raise VlprepError(f"{urls.path}: none of its first {len(first)} rows has an http(s) URL where the URL is "
                          f"read (row 0 gives {first[0].url[:80]!r}, caption {first[0].caption[:60]!r})",
                          fix="check --format, the URL and caption columns (--url-col, --caption-col) and "
                              "--header/--no-header")


def check_options(options: CrawlOptions) -> None:
    """Options the engine checks too, refused before any list is fetched or converted."""
    from ..engines import clusters, webcrawl

    webcrawl.check_distributor(options.distributor)
    clusters.resolve(options.distributor, options.ray_address, options.spark_master)  # named and answering


def summary(stats: dict) -> list[str]:
    from ..engines import webcrawl

    return webcrawl.summary_lines(stats)


def details(name: str, list_note: str, split: str = SPLIT) -> str:
    """The help text of a web-list fetch: what it keeps, what it writes, what a rerun does."""
    return (f"Rows are tried in index order with img2dataset, in as few windows (jobs) as the success rate allows "
            f"(one for a small crawl; a probe, one window for the rest and rarely a short tail for a large one), "
            f"politely (User-Agent with --contact, --per-host, Retry-After, --robots-txt), "
            f"until the first N rows whose image downloaded and decoded are held; they are written as "
            f"out/{name}/{name}-{split}-*.tar in index order with {name}-{split}.index.json, stats.json (rows tried, "
            f"failures by cause) and DATA_DIR/manifests/{name}-{split}-N.tsv.gz. Interrupted runs (even kill -9) "
            "continue where they stood and end with the same rows. A rerun first retries rows that failed for a "
            "transient cause (--retry-failed, --max-attempts) and recomputes the first N. " + list_note
            + shards.READERS_NOTE)


def fetch_stage(run, options: type, name: str, summary_text: str, examples: tuple[str, ...], list_note: str,
                split: str = SPLIT, common: tuple[str, ...] = (*FETCH_COMMON, "workers", "limit", "tokenizer"),
                ) -> Stage:
    """The fetch stage of a web-list recipe: its own options class, the shared common options and limit."""
    return Stage(run, options, summary_text, examples, common=common,
                 limit=Limit("Keep the first N rows, in index order, whose image downloads and decodes.",
                             default=COUNT),
                 aliases={"limit": ("--count",), "workers": ("--processes",)},
                 details=details(name, list_note, split))


def manifest(name: str, what: str, rebuild: str) -> Manifest:
    """The manifest of a web list: the rows kept, their URL, the sha256 of their bytes and a caption hash."""
    return Manifest(f"{name}-*.tsv.gz", manifest_sink.URL_ROWS,
                    f"{what} rows kept (0-based row index), their URL, sha256 of the bytes, caption hash (first 16 "
                    "hex digits of its sha256)", rebuild=rebuild)


def sample_schema(name: str, row: str, url: str = "The image URL of the row.", caption: str = "The row's caption, "
                  "cleaned.", extra: tuple[Field, ...] = ()) -> SampleSchema:
    """The sample of a web list: one row, its caption (and any column kept beside it), the image its URL gave."""
    return SampleSchema(
        fields=(Field("dataset", STRING, f"Always {name!r}."), Field("row", INT64, row), Field("url", STRING, url),
                Field("caption", STRING, caption), *extra,
                Field("sha256", STRING, "sha256 of the image bytes as fetched (the manifest records it)."),
                *TEXT_FIELDS, *IMAGE_FIELDS),
        image="the image fetched from the row's URL, JPEG",
        caption=("caption",),
    )


def recipe(name: str, title: str, fetch: Stage, manifest: Manifest, sample: SampleSchema, about: About,
           splits: tuple[str, ...] = (SPLIT,), preview: type = PreviewOptions) -> Recipe:
    """A web list's recipe: its fetch builds the shards; verify and preview are those of every sharded dataset."""
    return Recipe(
        name=name, title=title, kind="pairs", builder="fetch",
        stages={"fetch": fetch, "verify": shards.verify_stage(name, "token ids within the <s> + <=62 + </s> rule"),
                "preview": shards.preview_stage(name, preview)},
        manifest=manifest, demo=f"vlprep.pipeline.samples.demo:{name}", summary=summary, splits=splits,
        default_split=SPLIT, pretraining_split=SPLIT, sample=sample, about=about)
