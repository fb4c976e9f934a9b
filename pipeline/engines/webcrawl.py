"""The web crawl of a caption/URL list: the first N rows, in index order, whose image downloads and decodes.

The list is described by a :class:`UrlList` (the dataset's name and split, the list file, how its
rows are read, the command that builds the output); the recipe that owns the list builds one and
calls :func:`fetch_first` or :func:`rebuild`. A row's identity is its 0-based index in the list.

Rows are tried in windows of consecutive rows, as few as the success rate allows, because each
window is one img2dataset job that waits for its slowest part (on a cluster, one job the cluster
schedules). A small crawl (at most 20,000 rows at a 70 % success rate) is tried in one window of
that size. A larger one starts with a *probe* window (a quarter of those rows: its rows count like
any other, and its size sets how well it measures the rate), then one window sized for all the
successes still missing from the rate the probe measured, taken at its lower confidence bound so
that it falls short only rarely, then, if it does, a short *tail* window sized the same way (:func:`plan_window`; ``--max-window`` caps a window's rows). The
run stops at the first window that completes the count and so never tries more rows than needed
beyond that window; which windows ran never changes the result, which is the first N successes in
index order. Each window is one img2dataset run in a child process (see :mod:`.webdownload`)
writing parquet into ``work/<name>/<key>/windows/<n>/``, in parts of at most 1,000 rows (fewer in
a small window, so that it still runs in parallel).
The window list is written before a window starts, img2dataset's own shards inside a window are
kept as they finish (its incremental mode), and a window's summary is written when all its rows
are accounted for; so a run killed at any moment continues where it stood and ends with the same
rows. A window that runs past its time limit is killed with its process group and run again.

Every window keeps a ledger of its rows (``ledger.tsv``: status, cause, transient or permanent,
attempts, last attempt). A failure that passes with time (5xx, 429, timeout, DNS, a dropped
connection) is not final: a later run first retries such rows (``--retry-failed``, at most
``--max-attempts`` tries per row) in a retry pass of their window, and the first-N set is then
recomputed from the ledgers, so a host that was down for a minute does not change the set for good.
Only http(s) URLs with a host are fetched; any other row is an ``invalid_url`` before img2dataset
sees it.

The kept rows are then written in index order as WebDataset shards ``out/<name>/<name>-<split>-*.tar``,
with ``<name>-<split>.index.json``, ``stats.json`` and the manifest ``manifests/<name>-<split>-<N>.tsv.gz``.
"""
from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import heapq
import json
import math
import os
import signal
import subprocess
import sys
import tarfile
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Protocol

from tqdm import tqdm

from ..errors import VlprepError
from ..fileio import atomic_path, ensure_dir, file_digests, read_json, sha256_file, write_json
from ..layout import Layout
from ..records.urllist import Row, caption_hash
from ..sinks import manifests as manifest_sink
from ..sinks import shards as shard_sink
from ..sinks import splits as split_sink
from ..sources.politeness import AGENT_TOKEN, Politeness, host_of
from ..sources.webimage import CAUSES, TRANSIENT, classify, url_problem
from ..transforms.captions import MAX_BPE
from ..transforms.text import clean_caption
from . import clusters, imagetext
from .inputs import input_name
from .webdownload import MODULE as ENGINE

PRIOR_SUCCESS_RATE = 0.7
MIN_RATE = 0.02
WINDOW_MARGIN = 1.02
"""2 % more rows than the prior rate predicts, for the estimate the probe is a fraction of."""
ONE_WINDOW_ROWS = 20_000
"""A crawl the prior rate predicts to need at most this many rows is tried in one window of that size:
a window's start (img2dataset's workers, 7-15 s on 2 cores; a Spark application) costs more than the
rows a prior that is too low over-tries (at most 28 % of them, for a list whose rows all succeed)."""
PROBE_FRACTION, PROBE_ROWS = 0.25, 1000
"""The probe window of a larger crawl: a quarter of the rows the prior rate predicts for the whole
count, at least 1,000. Its rows are not lost, so a larger probe costs nothing but measures the rate better: the
window after it then over-tries fewer rows (for 50,000 rows, 1.4 % more than needed at a 70 % rate and
3.6 % at 30 %, on average over 60 simulated crawls)."""
CONFIDENCE_Z = 2.5
"""Standard deviations below the measured rate, and of the window's own successes, that a window is
sized for: the window after the probe falls short (and a short tail window runs) in under 1 % of
crawls whose rows fail at random (tests/engines/test_window_plan.py simulates it)."""
SUB_SHARD = 1000
"""Most rows per img2dataset shard inside a window: the unit of parallelism and of resume."""
MIN_SUB_SHARD, SUB_SHARDS_WANTED = 64, 16
"""A small window is cut into about 16 parts of at least 64 rows, so that a probe runs in parallel."""
DISTRIBUTORS = ("multiprocessing", "pyspark", "ray")
MANIFEST_HEADER = manifest_sink.URL_ROWS
RETRY_POLICIES = ("transient", "all", "none")
"""Which failed rows a rerun tries again: those with a transient cause (the default), every failed
row, or none."""
NOT_RETRIED = frozenset({"invalid_url", "empty_caption"})
"""Causes that come from the list itself: no fetch can change them, whatever ``--retry-failed`` says."""
LEDGER_HEADER = ("row", "status", "cause", "kind", "attempts", "last_attempt", "pass")


class RowReader(Protocol):
    """Reads the rows of a list file, each a :class:`~vlprep.pipeline.records.urllist.Row` (its index,
    caption and URL), in index order; :class:`~vlprep.pipeline.records.urllist.TsvList` is one."""

    def iter_rows(self, path: Path, start: int = 0, stop: int | None = None) -> Iterator[Row]: ...

    def select_rows(self, path: Path, wanted: Iterable[int]) -> Iterator[Row]: ...

    def count_rows(self, path: Path) -> int: ...


@dataclass(frozen=True)
class UrlList:
    """The list a crawl reads, and the names of what it writes; built by the recipe that owns the list."""

    name: str
    """The dataset: ``out/<name>/``, ``work/<name>/``, ``manifests/<name>-<split>-<N>.tsv.gz``, the
    ``dataset`` of stats.json and of every sample, and the first word of the messages."""
    path: Path
    """The list file."""
    reader: RowReader
    """How its rows are read."""
    raw_name: str
    """The list's file name under ``raw/<name>/`` where the recipe's fetch puts it: a list found there
    is named ``<name>/<raw_name>`` in the shards' ``inputs``, any other by its absolute path."""
    command: str
    """The command that builds the output from this list (``vlprep fetch <name>``), named in fixes."""
    split: str = "train"
    reader_key: str = ""
    """Added to the crawl's key when one file can be read as other rows (columns a user chose)."""


def missing_name(name: str, split: str) -> str:
    """Beside a rebuild's shards: the manifest rows the output does not hold, with their cause."""
    return f"{shard_sink.split_stem(name, split)}.missing.tsv"


@dataclass(frozen=True)
class DownloadConfig:
    """How images are fetched; the fields in :meth:`key` decide which bytes are kept."""

    resize: int | None = None
    timeout: float = 10.0
    retries: int = 1
    processes: int = max(1, os.cpu_count() or 1)
    threads: int = 64
    distributor: str = "multiprocessing"
    max_bytes: int = 50_000_000
    max_pixels: int = 89_478_485
    disallowed: tuple[str, ...] = ("noai", "noimageai", "noindex", "noimageindex")
    politeness: Politeness = field(default_factory=Politeness)
    max_window: int | None = None
    min_window: int = 64
    window_timeout: float | None = None
    shard_samples: int = 10_000
    retry_failed: str = "transient"
    max_attempts: int = 3
    ray_address: str | None = None
    spark_master: str | None = None

    def __post_init__(self) -> None:
        if self.retry_failed not in RETRY_POLICIES:
            raise VlprepError(f"unknown --retry-failed {self.retry_failed!r}",
                              fix=f"use one of: {', '.join(RETRY_POLICIES)}")
        if self.max_attempts < 1:
            raise VlprepError(f"--max-attempts {self.max_attempts} is below 1", fix="use 1 (no retries) or more")

    def key(self, source: str) -> str:
        """The crawl's folder: everything that decides which rows succeed with which bytes (robots.txt
        only when it is read, so that crawls made before the option keep their folder)."""
        blob = {"resize": self.resize, "max_bytes": self.max_bytes, "max_pixels": self.max_pixels,
                "disallowed": list(self.disallowed), "source": source, "version": 1}
        if self.politeness.robots_txt:
            blob["robots_txt"] = True
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]

    def time_limit(self, rows: int, busiest_host: int = 0) -> float:
        """A window's wall-clock limit: every thread's worst case (all its URLs at the deadline) twice, + 2 min;
        at least as long as the busiest host's rows take through its per-host slots in the worst case."""
        if self.window_timeout:
            return self.window_timeout
        per_thread = math.ceil(rows / max(1, self.processes * self.threads))
        per_slot = math.ceil(busiest_host / max(1, self.processes * self.politeness.per_host))
        attempt = self.timeout * (self.retries + 1) + self.politeness.retry_after_max * self.retries
        return 2 * max(per_thread, per_slot) * attempt * 2 + 120

    def record(self) -> dict:
        """The config as ``stats.json`` holds it."""
        found = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        found["politeness"] = self.politeness.record()
        return found


@dataclass
class Window:
    index: int
    start: int
    stop: int
    rows: list[int] | None = None
    """Explicit rows (rebuilding from a manifest); None for the consecutive rows start..stop-1."""
    sub_shard: int | None = None
    """Rows per img2dataset part, fixed when the window is planned (resumed parts must match); None in
    windows planned before it was recorded, which used :data:`SUB_SHARD`."""

    def size(self) -> int:
        return len(self.rows) if self.rows is not None else self.stop - self.start

    @property
    def part_rows(self) -> int:
        return self.sub_shard or SUB_SHARD


def sub_shard_rows(rows: int) -> int:
    """Rows per img2dataset part of a new window: about :data:`SUB_SHARDS_WANTED` parts for a small
    window, parts of :data:`SUB_SHARD` rows for a large one (a function of the size alone, so a
    resumed window is cut the same way whatever ``--workers`` the rerun has)."""
    return min(SUB_SHARD, max(MIN_SUB_SHARD, math.ceil(rows / SUB_SHARDS_WANTED)))


def plan_window(need: int, successes: int, tried: int, config: DownloadConfig) -> int:
    """Rows for the next window, expected to bring the ``need`` successes still missing.

    With nothing tried yet it is what the prior rate predicts when that is at most
    :data:`ONE_WINDOW_ROWS`, else the probe, :data:`PROBE_FRACTION` of it. After that, the rate measured so far at its lower confidence
    bound, plus the spread of the window's own successes, both :data:`CONFIDENCE_Z` deviations.
    """
    if not tried:
        estimate = math.ceil(need / PRIOR_SUCCESS_RATE * WINDOW_MARGIN)
        size = estimate if estimate <= ONE_WINDOW_ROWS else max(PROBE_ROWS, math.ceil(PROBE_FRACTION * estimate))
    else:
        rate = successes / tried
        low = max(MIN_RATE, rate - CONFIDENCE_Z * math.sqrt(max(rate * (1 - rate), 1e-4) / tried))
        size = math.ceil((need + CONFIDENCE_Z * math.sqrt(need * (1 - low))) / low)
    size = max(size, config.min_window)
    return min(size, config.max_window) if config.max_window else size


@dataclass
class WindowResult:
    tried: int
    successes: list[int]
    failures: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Attempt:
    """What became of one row so far: its latest status and cause, and how often it was tried."""

    row: int
    ok: bool
    cause: str
    """One of :data:`CAUSES`; empty when ``ok``."""
    attempts: int
    last_attempt: float
    """Unix time the latest pass that tried the row ended."""
    pass_no: int
    """The window's pass that tried it last: 0 for the window itself, k for its k-th retry pass."""

    @property
    def transient(self) -> bool:
        return not self.ok and self.cause in TRANSIENT

    def retried_by(self, policy: str, max_attempts: int) -> bool:
        """Whether a run with ``--retry-failed policy`` tries this row again."""
        if self.ok or self.attempts >= max_attempts or self.cause in NOT_RETRIED:
            return False
        return policy == "all" or (policy == "transient" and self.transient)


def write_ledger(path: Path, entries: dict[int, Attempt]) -> None:
    """One line per row, sorted: about 35 bytes a row, so 1.7 MB for a 50,000-row window (0.07 s to write)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="ascii", newline="\n") as handle:
        handle.write("\t".join(LEDGER_HEADER) + "\n")
        for row in sorted(entries):
            e = entries[row]
            kind = "" if e.ok else "transient" if e.transient else "permanent"
            handle.write(f"{row}\t{'ok' if e.ok else 'failed'}\t{e.cause}\t{kind}\t{e.attempts}\t"
                         f"{e.last_attempt:.0f}\t{e.pass_no}\n")


def read_ledger(path: Path) -> dict[int, Attempt]:
    """A window's ledger; a damaged one is an error naming its line, never a silent re-fetch."""
    entries: dict[int, Attempt] = {}
    with open(path, encoding="ascii", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.rstrip("\n").split("\t")
            if number == 1 and tuple(fields) == LEDGER_HEADER:
                continue
            try:
                row, status, cause, _, attempts, when, pass_no = fields
                entries[int(row)] = Attempt(int(row), status == "ok", cause, int(attempts), float(when), int(pass_no))
            except ValueError:
                raise VlprepError(f"{path}, line {number}: not a ledger line ({line.strip()[:80]!r})",
                                  fix=f"delete {path.parent} and run the same command again (the window is "
                                      "fetched again)") from None
    return entries


def _result(entries: dict[int, Attempt]) -> WindowResult:
    failures = Counter(e.cause for e in entries.values() if not e.ok)
    return WindowResult(len(entries), sorted(r for r, e in entries.items() if e.ok), dict(sorted(failures.items())))


# ----------------------------------------------------------------------------------------------- fetch


def check_distributor(name: str) -> None:
    """img2dataset's ray distributor silently does nothing without ray; refuse before that happens."""
    import importlib.util

    if name not in DISTRIBUTORS:
        raise VlprepError(f"unknown distributor {name!r}", fix=f"use one of: {', '.join(DISTRIBUTORS)}")
    module = {"pyspark": "pyspark", "ray": "ray"}.get(name)
    if module and importlib.util.find_spec(module) is None:
        raise VlprepError(f"--distributor {name} needs the {module} package, which is not installed",
                          fix=f"pip install {module}  (or use --distributor multiprocessing)")


def _list_identity(path: Path) -> str:
    """The list's sha256: any edited row (a caption, a URL) gives another crawl, never stale captions."""
    stat = Path(path).stat()
    return _sha256_of(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, once per process while its size and mtime stay (the list is read for the key and stats)."""
    return sha256_file(Path(path))


def _list_inputs(layout: Layout, urls: UrlList) -> dict[str, str]:
    """``inputs`` of the shards: the list, named under raw/ when fetch put it there, else by its path."""
    fetched = layout.raw(urls.name) / urls.raw_name
    if fetched.exists() and Path(urls.path).resolve() == fetched.resolve():
        return {input_name(urls.name, urls.raw_name): _list_identity(urls.path)}
    return {str(Path(urls.path).resolve()): _list_identity(urls.path)}


class Crawl:
    """The windows of one source (a list, or a list and a manifest) under ``work/<name>/<key>/``."""

    def __init__(self, layout: Layout, urls: UrlList, config: DownloadConfig, source: str) -> None:
        self.layout, self.urls, self.config = layout, urls, config
        self.root = ensure_dir(layout.work(urls.name) / config.key(source))
        self.windows_path = self.root / "windows.json"
        self.windows: list[Window] = ([Window(**w) for w in read_json(self.windows_path)["windows"]]
                                      if self.windows_path.exists() else [])
        self.cluster = clusters.resolve(config.distributor, config.ray_address, config.spark_master)
        self.checked = config.distributor == "multiprocessing"

    def window_dir(self, window: Window) -> Path:
        return self.root / "windows" / f"{window.index:06d}"

    def add(self, window: Window) -> Window:
        self.windows.append(window)
        write_json(self.windows_path, {"tsv": str(self.urls.path), "windows": [asdict(w) for w in self.windows]})
        return window

    def ledger(self, window: Window) -> dict[int, Attempt] | None:
        """The window's ledger, or None while its first pass is not complete."""
        folder = self.window_dir(window)
        if (folder / "ledger.tsv").exists():
            return read_ledger(folder / "ledger.tsv")
        done = folder / "done.json"
        if done.exists():  # finished before ledgers were kept: every row was tried once, by img2dataset
            entries = _pass_entries(folder / "i2d", 0, done.stat().st_mtime)
            self._save(window, entries)
            return entries
        return None

    def _save(self, window: Window, entries: dict[int, Attempt]) -> None:
        """The ledger first, then ``done.json`` (its summary): a window is done once both exist."""
        folder = self.window_dir(window)
        write_ledger(folder / "ledger.tsv", entries)
        write_json(folder / "done.json", asdict(_result(entries)))

    def result(self, window: Window) -> WindowResult | None:
        entries = self.ledger(window)
        return None if entries is None else _result(entries)

    def run(self, window: Window, bar: tqdm | None, verify_hash: dict[int, str] | None = None) -> WindowResult:
        """Run (or finish) one window; return its summary."""
        found = self.result(window)
        if found is not None:
            return found
        label = f"{self.urls.name} window {window.index} (rows {window.start:,}..{window.stop - 1:,})"
        entries = self._run_pass(ensure_dir(self.window_dir(window)), self._rows(window), 0, verify_hash,
                                 bar, label, window.part_rows)
        self._save(window, entries)
        return _result(entries)

    def retry(self, window: Window, bar: tqdm | None, verify_hash: dict[int, str] | None = None,
              below: int | None = None) -> tuple[int, int]:
        """One retry pass over the window's failed rows that ``--retry-failed`` picks; (rows tried, now ok).

        ``below``: only rows before it (rows after the last row kept cannot change the first N).

        The pass's rows are fixed by its ``input.parquet`` once written, so an interrupted pass is
        resumed with the same rows; its results enter the ledger only when the pass is complete.
        """
        entries = self.ledger(window)
        if entries is None:
            return 0, 0
        pass_no = max((e.pass_no for e in entries.values()), default=0) + 1
        folder = self.window_dir(window) / f"retry-{pass_no}"
        if (folder / "input.parquet").exists():
            rows = _input_rows(folder / "input.parquet")
        elif self.config.retry_failed == "none":
            return 0, 0
        else:
            rows = sorted(r for r, e in entries.items() if (below is None or r < below)
                          and e.retried_by(self.config.retry_failed, self.config.max_attempts))
        if not rows:
            return 0, 0
        label = f"{self.urls.name} window {window.index} retry pass {pass_no} ({len(rows):,} rows)"
        tried = self._run_pass(ensure_dir(folder), self.urls.reader.select_rows(self.urls.path, rows), pass_no,
                               verify_hash, bar, label, SUB_SHARD)
        for row, entry in tried.items():
            entry.attempts = entries[row].attempts + 1
            entries[row] = entry
        self._save(window, entries)
        return len(tried), sum(e.ok for e in tried.values())

    def _run_pass(self, folder: Path, rows: Iterable[Row], pass_no: int, verify_hash: dict[int, str] | None,
                  bar: tqdm | None, label: str, part_rows: int) -> dict[int, Attempt]:
        """Fetch ``rows`` with img2dataset into ``folder/i2d``, in parts of ``part_rows``; rows that
        cannot be fetched never reach it."""
        rejected: dict[int, str] = {}
        given = _write_window_input(folder / "input.parquet", rows, verify_hash, rejected)
        output = folder / "i2d"
        entries: dict[int, Attempt] = {}
        if given.rows:
            if not self.checked:  # every node sees the crawl's folder and can run the downloader
                self.cluster = clusters.preflight(self.cluster, self.root, self.config.processes, say=tqdm.write)
                self.checked = True
            expected_shards = math.ceil(given.rows / part_rows)
            limit = self.config.time_limit(given.rows, given.busiest_host)
            for attempt in range(1, 4):
                finished = _run_engine(folder, output, self.config, limit, verify_hash is not None, bar, part_rows,
                                       self.cluster)
                if finished and _complete(output, expected_shards):
                    break
                if bar is not None:
                    bar.write(f"{label}: "
                              f"{'past its ' + format(limit, '.0f') + ' s limit' if not finished else 'incomplete'}"
                              f", attempt {attempt} of 3; its finished parts are kept")
            else:
                cause = clusters.engine_cause(folder / "engine.log")
                raise VlprepError(f"{label} did not complete in 3 attempts"
                                  f"{': ' + cause if cause else ''}; img2dataset's log: {folder / 'engine.log'}",
                                  fix="run the same command again once that is fixed (finished parts are kept)")
            entries = _pass_entries(output, pass_no, time.time())
        if bar is not None:
            bar.update(len(rejected))
        when = time.time()
        entries.update({row: Attempt(row, False, cause, 1, when, pass_no) for row, cause in rejected.items()})
        if len(entries) != given.rows + len(rejected):
            raise VlprepError(f"{output}: img2dataset accounted for {len(entries) - len(rejected):,} of the "
                              f"{given.rows:,} rows it was given", fix="run the same command again")
        return entries

    def _rows(self, window: Window) -> Iterator[Row]:
        if window.rows is not None:
            return self.urls.reader.select_rows(self.urls.path, window.rows)
        return self.urls.reader.iter_rows(self.urls.path, window.start, window.stop)

    def passes(self, window: Window) -> list[tuple[int, list[Path]]]:
        """``(pass number, its img2dataset parquet files in row order)`` for the window and its retry passes."""
        folder = self.window_dir(window)
        found = [(0, folder / "i2d")] + [(int(d.name.split("-")[1]), d / "i2d") for d in folder.glob("retry-*")
                                         if d.name.split("-")[1].isdigit()]
        return [(number, sorted(path.glob("[0-9]*.parquet"))) for number, path in sorted(found)]

    def pending(self, policy: str, below: int | None = None) -> int:
        """Failed rows (before ``below``) of complete windows that ``--retry-failed policy`` would try again."""
        return sum(e.retried_by(policy, self.config.max_attempts) and (below is None or row < below)
                   for window in self.windows for row, e in (self.ledger(window) or {}).items())


def _rejected(row: Row) -> str | None:
    """The cause for a row that is never fetched: a URL that is not http(s) with a host, or an empty caption."""
    if url_problem(row.url) is not None:
        return "invalid_url"
    if not clean_caption(row.caption):
        return "empty_caption"
    return None


def _input_rows(path: Path) -> list[int]:
    import pyarrow.parquet as pq

    return [int(r) for r in pq.read_table(path, columns=["row"]).column("row").to_pylist()]


@dataclass
class PassInput:
    """What a pass gives img2dataset: its row count, and the most rows any one host has among them
    (the per-host slots make that host the slowest part of the pass)."""

    rows: int = 0
    busiest_host: int = 0


INPUT_BATCH = 10_000
"""Rows per record batch of a window's input parquet: a window of a million rows is written in
bounded memory."""


def _write_window_input(path: Path, rows: Iterable[Row], verify_hash: dict[int, str] | None,
                        rejected: dict[int, str]) -> PassInput:
    """The pass's ``input.parquet``, written as the rows stream by; rows that are never fetched go to
    ``rejected`` (row -> cause) instead. No file is left when every row is rejected."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("url", pa.string()), ("caption", pa.string()), ("row", pa.int64()), ("extra", pa.string())]
                       + ([("sha256", pa.string())] if verify_hash is not None else []))
    hosts: Counter = Counter()
    given = PassInput()
    with atomic_path(path, durable=False) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for batch in _batches(rows, INPUT_BATCH):
                kept = [row for row in batch if not _reject(row, rejected)]
                if not kept:
                    continue
                hosts.update(host_of(row.url) for row in kept)
                columns = [[r.url for r in kept], [r.caption for r in kept], [r.row for r in kept],
                           [json.dumps(dict(r.extra)) if r.extra else "" for r in kept]]
                if verify_hash is not None:
                    columns.append([verify_hash[r.row] for r in kept])
                writer.write_batch(pa.record_batch(columns, schema=schema))
                given.rows += len(kept)
    if not given.rows:
        path.unlink(missing_ok=True)
    given.busiest_host = max(hosts.values(), default=0)
    return given


def _reject(row: Row, rejected: dict[int, str]) -> bool:
    cause = _rejected(row)
    if cause:
        rejected[row.row] = cause
    return bool(cause)


def _batches(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := _take(iterator, size):
        yield batch


def _engine_config(folder: Path, output: Path, config: DownloadConfig, verify: bool, part_rows: int,
                   cluster: clusters.ClusterConfig | None = None) -> dict:
    resize = {"resize_mode": "no"} if config.resize is None else {
        "resize_mode": "keep_ratio", "image_size": config.resize, "resize_only_if_bigger": True,
        "downscale_interpolation": "area"}
    options = {
        "url_list": str(folder / "input.parquet"), "input_format": "parquet", "url_col": "url",
        "caption_col": "caption", "save_additional_columns": ["row", "extra"], "output_format": "parquet",
        "output_folder": str(output), "processes_count": config.processes, "thread_count": config.threads,
        "number_sample_per_shard": part_rows, "timeout": config.timeout, "retries": config.retries,
        "encode_format": "jpg", "encode_quality": 95, "skip_reencode": True, "compute_hash": "sha256",
        "distributor": config.distributor, "incremental_mode": "incremental", "enable_wandb": False,
        "extract_exif": False, "max_shard_retry": 1, "oom_shard_count": 5,
        "disallowed_header_directives": list(config.disallowed), "user_agent_token": AGENT_TOKEN,
        **resize,
    }
    if verify:
        options["verify_hash"] = ["sha256", "sha256"]
    settings = {"max_bytes": config.max_bytes, "max_pixels": config.max_pixels,
                "politeness": asdict(config.politeness)}
    return {"img2dataset": options, "settings": settings, "parent_pid": os.getpid(),
            "cluster": (cluster or clusters.ClusterConfig(config.distributor)).to_json(),
            "name": f"vlprep window {folder.name}"}


def _run_engine(folder: Path, output: Path, config: DownloadConfig, limit: float, verify: bool,
                bar: tqdm | None, part_rows: int, cluster: clusters.ClusterConfig | None = None) -> bool:
    """img2dataset on the window in its own process group; False if it ran past ``limit`` and was killed."""
    config_path = folder / "engine.json"
    write_json(config_path, _engine_config(folder, output, config, verify, part_rows, cluster), durable=False)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    with open(folder / "engine.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", ENGINE, str(config_path)], stdout=log, stderr=log,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            shown = 0
            while process.poll() is None:
                if time.monotonic() - started > limit:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    return False
                if bar is not None:
                    done = _rows_done(output)
                    bar.update(max(0, done - shown))
                    shown = max(shown, done)
                time.sleep(0.3)
            if bar is not None:
                bar.update(max(0, _rows_done(output) - shown))
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise
    return True


def _rows_done(output: Path) -> int:
    total = 0
    for stats in output.glob("*_stats.json"):
        try:
            total += json.loads(stats.read_text())["count"]
        except (OSError, ValueError, KeyError):
            pass
    return total


def _complete(output: Path, expected_shards: int) -> bool:
    return all((output / f"{i:05d}_stats.json").exists() and (output / f"{i:05d}.parquet").exists()
               for i in range(expected_shards))


def _pass_entries(output: Path, pass_no: int, when: float) -> dict[int, Attempt]:
    """What img2dataset made of each row of one pass, as ledger entries (one attempt each)."""
    import pyarrow.parquet as pq

    entries: dict[int, Attempt] = {}
    for path in sorted(output.glob("[0-9]*.parquet")):
        table = pq.read_table(path, columns=["row", "status", "error_message", "caption"]).to_pydict()
        for row, status, message, caption in zip(table["row"], table["status"], table["error_message"],
                                                 table["caption"]):
            if not clean_caption(caption or ""):
                cause = "empty_caption"
            else:
                cause = "" if status == "success" else classify(message)
            entries[int(row)] = Attempt(int(row), not cause, cause, 1, when, pass_no)
    return entries


# ----------------------------------------------------------------------------------------------- first N


def fetch_first(layout: Layout, urls: UrlList, count: int, config: DownloadConfig,
                tokenizer: str | None = None) -> dict:
    """Hold the first ``count`` reachable rows of the list in index order, then write shards, stats and manifest.

    Rows that failed in an earlier run are retried first (``config.retry_failed``, bounded by
    ``config.max_attempts``); the kept rows are then the first ``count`` successes of all ledgers,
    so a row that passes on retry takes its place in index order and pushes the last one out.
    """
    check_distributor(config.distributor)
    total_rows = urls.reader.count_rows(urls.path)
    crawl = Crawl(layout, urls, config, f"tsv:{_list_identity(urls.path)}{urls.reader_key}")  # "tsv:", so earlier crawls resume
    with tqdm(desc=f"{urls.name} rows tried", unit="row", disable=None) as bar:
        retried, recovered = _retry_windows(crawl, bar, below=_nth_success(crawl, count))
        results = [crawl.run(window, bar) for window in crawl.windows]  # finish what an earlier run planned
        successes, tried, failures = _tally(results)
        next_row = crawl.windows[-1].stop if crawl.windows else 0
        while len(successes) < count and next_row < total_rows:
            size = min(plan_window(count - len(successes), len(successes), tried, config), total_rows - next_row)
            window = crawl.add(Window(len(crawl.windows), next_row, next_row + size, sub_shard=sub_shard_rows(size)))
            results.append(crawl.run(window, bar))
            successes, tried, failures = _tally(results)
            next_row = window.stop
            bar.set_postfix(successes=f"{min(len(successes), count):,}/{count:,}")
    kept = successes[:count]
    passes = _success_passes(crawl, set(kept))
    positions = [kept[i:i + config.shard_samples] for i in range(0, len(kept), config.shard_samples)]
    pending = crawl.pending(config.retry_failed if config.retry_failed != "none" else "transient",
                            below=kept[-1] if len(kept) == count else None)
    stats, manifest_rows = _write_output(layout, crawl, passes, positions, tokenizer, None, extra={
        "mode": "first-n", "count": count, "tsv_rows": total_rows, "rows_tried": tried,
        "successes": len(successes), "failures": {c: failures.get(c, 0) for c in CAUSES if failures.get(c)},
        "failed": sum(failures.values()), "last_row_kept": kept[-1] if kept else None,
        "retried": retried, "recovered": recovered, "retry_pending": pending,
        "windows": [{"start": w.start, "stop": w.stop} for w in crawl.windows]})
    write_manifest(layout, urls, manifest_rows, count)
    if len(kept) < count:
        raise VlprepError(f"{urls.name}: only {len(kept):,} of the {total_rows:,} rows could be fetched, fewer than "
                          f"--limit {count}; the shards hold those {len(kept):,}", fix=_advice(config, pending))
    return stats


def _advice(config: DownloadConfig, pending: int) -> str:
    """What a rerun would change: only rows with tries left are retried, so say so."""
    if pending and config.retry_failed == "none":
        return (f"run again with --retry-failed transient: {pending:,} rows failed for a cause that passes with "
                "time (5xx, 429, timeout, DNS, connection)")
    if pending:
        return (f"run the same command again later: {pending:,} rows that failed for a cause that passes with time "
                f"(5xx, 429, timeout, DNS, connection) are retried first, up to --max-attempts "
                f"{config.max_attempts} tries per row")
    return (f"lower --limit: every row was tried, and rows that failed for a transient cause have had "
            f"--max-attempts {config.max_attempts} tries (raise it, or use --retry-failed all, to try them again)")


def _nth_success(crawl: Crawl, count: int) -> int | None:
    """The row of the ``count``-th success of the complete windows, or None if they hold fewer."""
    results = [crawl.result(window) for window in crawl.windows]
    successes = sorted(r for result in results if result is not None for r in result.successes)
    return successes[count - 1] if len(successes) >= count else None


def _retry_windows(crawl: Crawl, bar: tqdm | None, hashes: dict[int, str] | None = None,
                   below: int | None = None) -> tuple[int, int]:
    """One retry pass for every window an earlier run completed; (rows retried, rows now fetched)."""
    retried = recovered = 0
    for window in crawl.windows:
        verify = None if hashes is None else {r: hashes[r] for r in window.rows or []}
        tried, ok = crawl.retry(window, bar, verify, below)
        retried, recovered = retried + tried, recovered + ok
    return retried, recovered


def _tally(results: list[WindowResult]) -> tuple[list[int], int, Counter]:
    """All successes in index order, rows tried, failures by cause."""
    failures: Counter = Counter()
    for result in results:
        failures.update(result.failures)
    return sorted(r for result in results for r in result.successes), sum(r.tried for r in results), failures


def _success_passes(crawl: Crawl, rows: set[int]) -> dict[int, int]:
    """For each of ``rows``, the pass of its window whose img2dataset output holds its image."""
    found: dict[int, int] = {}
    for window in crawl.windows:
        for row, entry in (crawl.ledger(window) or {}).items():
            if row in rows and entry.ok:
                found[row] = entry.pass_no
    return found


# ----------------------------------------------------------------------------------------------- manifest


def rebuild(layout: Layout, urls: UrlList, manifest: Path, config: DownloadConfig,
            tokenizer: str | None = None) -> dict:
    """Fetch exactly a manifest's rows of the list, check every sha256, report what is gone or changed.

    Shard ``i`` holds the rebuilt rows among the manifest's rows ``i * shard_samples ..``, so a gone
    row never shifts later shards; an existing shard that holds more of its rows (with the same
    sha256) than this rebuild fetched is kept, so a rebuild never makes the output less complete.
    """
    check_distributor(config.distributor)
    listed = _read_manifest(manifest, _manifest_fix(urls))
    wanted = {r[0]: r for r in listed}
    rows = {row.row: row for row in urls.reader.select_rows(urls.path, wanted)}
    mismatched = sorted(r for r, (_, url, _, caption_sha) in wanted.items()
                        if r not in rows or rows[r].url != url or rows[r].caption_hash != caption_sha)
    if mismatched:
        raise VlprepError(f"{manifest}: {len(mismatched):,} rows differ from {urls.path} (url or caption), first "
                          f"rows {mismatched[:5]}", fix=f"pass the {urls.raw_name} the manifest was made from")
    manifest_sha = _file_sha256(manifest)
    crawl = Crawl(layout, urls, config, f"manifest:{manifest_sha}:tsv:{_list_identity(urls.path)}{urls.reader_key}")
    ordered = sorted(wanted)
    hashes = {r: wanted[r][2] for r in ordered}
    if not crawl.windows:
        step = config.max_window or len(ordered)
        for start in range(0, len(ordered), step):
            part = ordered[start:start + step]
            crawl.add(Window(len(crawl.windows), part[0], part[-1] + 1, part, sub_shard_rows(len(part))))
    with tqdm(total=len(ordered), desc=f"{urls.name} rows from manifest", unit="row", disable=None) as bar:
        retried, recovered = _retry_windows(crawl, bar, hashes)
        results = [crawl.run(window, bar, verify_hash={r: hashes[r] for r in window.rows or []})
                   for window in crawl.windows]
    successes, _, failures = _tally(results)
    changed = failures.pop("changed", 0)
    positions = [ordered[i:i + config.shard_samples] for i in range(0, len(ordered), config.shard_samples)]
    stats, _ = _write_output(layout, crawl, _success_passes(crawl, set(successes)), positions, tokenizer, hashes,
                             extra={"mode": "from-manifest", "manifest": str(manifest), "manifest_sha256": manifest_sha,
                                    "manifest_rows": len(ordered), "rebuilt": len(successes), "changed": changed,
                                    "gone": sum(failures.values()), "gone_by_cause": dict(sorted(failures.items())),
                                    "retried": retried, "recovered": recovered,
                                    "retry_pending": crawl.pending(config.retry_failed if config.retry_failed != "none"
                                                                   else "transient")})
    return stats


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest_fix(urls: UrlList) -> str:
    return f"pass a {urls.name}-{urls.split}-<N>.tsv.gz written by {urls.command} (or fetch it again)"


def _read_manifest(path: Path, fix: str) -> list[tuple[int, str, str, str]]:
    """The rows of a manifest, checked line by line: an error names the file, the line and the fix."""
    path = Path(path)
    rows: list[tuple[int, str, str, str]] = []
    number = 0
    try:
        with gzip.open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                fields = raw.rstrip(b"\n").decode("utf-8").split("\t")
                if number == 1:
                    if tuple(fields) != MANIFEST_HEADER:
                        raise VlprepError(f"{path}, line 1: header {' '.join(fields)[:80]!r}, expected columns "
                                          f"{' '.join(MANIFEST_HEADER)}", fix=fix)
                    continue
                rows.append(_manifest_row(path, number, fields, rows[-1][0] if rows else -1, fix))
    except VlprepError:
        raise
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        where = f"after line {number}" if number else "at its start"
        raise VlprepError(f"{path}: not a readable gzip manifest {where} ({type(exc).__name__}: {exc})",
                          fix=fix) from None
    if number == 0:
        raise VlprepError(f"{path}: empty manifest (no header line)", fix=fix)
    if not rows:
        raise VlprepError(f"{path}: the manifest lists no rows (header only); nothing would be rebuilt and the "
                          "existing output is left as it is", fix=fix)
    return rows


def _manifest_row(path: Path, number: int, fields: list[str], previous: int,
                  fix: str) -> tuple[int, str, str, str]:
    if len(fields) != len(MANIFEST_HEADER):
        raise VlprepError(f"{path}, line {number}: {len(fields)} columns, expected {len(MANIFEST_HEADER)} "
                          f"({' '.join(MANIFEST_HEADER)})", fix=fix)
    row, url, sha256, caption_sha = fields
    if not (row.isascii() and row.isdigit()):
        raise VlprepError(f"{path}, line {number}: row {row[:40]!r} is not a non-negative integer", fix=fix)
    if int(row) <= previous:
        raise VlprepError(f"{path}, line {number}: row {row} is not after row {previous} (rows are listed once, in "
                          "ascending order)", fix=fix)
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise VlprepError(f"{path}, line {number}: sha256 {sha256[:70]!r} is not 64 hex digits", fix=fix)
    return int(row), url, sha256, caption_sha


def _write_missing(out: Path, crawl: Crawl, listed: Iterable[int], held: set[int]) -> list[int]:
    """``<split>.missing.tsv``: every manifest row the output does not hold, with the cause of its last failure."""
    causes = {row: e.cause for window in crawl.windows for row, e in (crawl.ledger(window) or {}).items()}
    missing = [row for row in listed if row not in held]
    path = out / missing_name(crawl.urls.name, crawl.urls.split)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        handle.write("row\tcause\n")
        handle.writelines(f"{row}\t{causes.get(row) or 'other'}\n" for row in missing)
    return missing


# ----------------------------------------------------------------------------------------------- output


SAMPLE_COLUMNS = ["row", "status", "url", "caption", "sha256", "width", "height", "jpg"]


def _pass_samples(files: list[Path], pass_no: int, wanted: dict[int, int]) -> Iterator[tuple[int, dict]]:
    """The successful rows of one pass that ``wanted`` takes from it, in row order, one parquet file at a time."""
    import pyarrow.parquet as pq

    for path in files:
        extra = ["extra"] if "extra" in pq.read_schema(path).names else []  # a row's further columns, if any
        table = pq.read_table(path, columns=SAMPLE_COLUMNS + extra).to_pydict()
        order = sorted((row, i) for i, row in enumerate(table["row"])
                       if wanted.get(row) == pass_no and table["status"][i] == "success")
        for row, i in order:
            yield row, {column: table[column][i] for column in SAMPLE_COLUMNS + extra}


def _kept_samples(crawl: Crawl, kept: dict[int, int], tokenizer: str | None, counts: Counter,
                  manifest_rows: list[tuple]) -> Iterator[tuple[int, str, dict[str, bytes]]]:
    """Every kept row in index order as ``(row, key, {"jpg", "json"})``.

    ``kept`` maps a row to the pass of its window that fetched it; the passes of a window are each
    in row order, so they are merged holding one img2dataset shard per pass at a time.
    """
    encoder = imagetext.caption_encoder(tokenizer)
    for window in crawl.windows:
        streams = [_pass_samples(files, number, kept) for number, files in crawl.passes(window)]
        merged = heapq.merge(*streams, key=lambda item: item[0])
        while batch := _take(merged, SUB_SHARD):
            captions = [values["caption"] for _, values in batch]
            texts = [clean_caption(c) for c in captions]
            for (row, values), caption, text, token in zip(batch, captions, texts, encoder.encode(texts)):
                data = values["jpg"]
                meta = {**json.loads(values.get("extra") or "{}"),  # first: a list's column never replaces ours
                        "dataset": crawl.urls.name, "row": row, "url": values["url"], "caption": text,
                        "sha256": values["sha256"], "width": values["width"], "height": values["height"],
                        "texts": [text], "tokens": [token.ids], "lengths": [token.length]}
                changed = hashlib.sha256(data).hexdigest() != meta["sha256"]
                meta.update(shard_sink.conversion_fields(
                    ("re-encoded as JPEG" if crawl.config.resize is None else "resized") if changed else None))
                _count_lengths(counts, token.length)
                manifest_rows.append((row, meta["url"], meta["sha256"], caption_hash(caption)))  # in row order
                yield row, f"{row:09d}", {"jpg": data, "json": shard_sink.json_bytes(meta)}


def _count_lengths(counts: Counter, length: int) -> None:
    counts["texts"] += 1
    counts["truncated"] += length > MAX_BPE
    counts[f"length:{length}"] += 1


def _write_output(layout: Layout, crawl: Crawl, kept: dict[int, int], positions: list[list[int]],
                  tokenizer: str | None, expected: dict[int, str] | None, extra: dict) -> tuple[dict, list[tuple]]:
    """Shards of the kept rows in index order, the wids index and ``stats.json``; return stats and manifest rows.

    Shard ``i`` holds the kept rows among ``positions[i]``. With ``expected`` (a rebuild: row ->
    sha256), an existing shard that holds more of its position's rows with those sha256 than the new
    one would is kept instead: a rebuild with hosts down never replaces a fuller shard.
    """
    urls = crawl.urls
    out = ensure_dir(layout.out(urls.name))
    staged = split_sink.staged_dir(crawl.root)  # new shards wait here until every one is written
    for leftover in staged.glob("*.tar"):  # of a run killed before its swap: rewritten below
        leftover.unlink()
    previous = _previous_config(out, urls.split)
    counts: Counter = Counter()
    manifest_rows: list[tuple] = []
    samples = _kept_samples(crawl, kept, tokenizer, counts, manifest_rows)
    pending = next(samples, None)
    shards, held, kept_previous = [], [], 0
    with tqdm(total=len(kept), desc=f"{urls.name} shards", unit="img", disable=None) as bar:
        for index, targets in enumerate(positions):
            batch = []
            while pending is not None and pending[0] <= targets[-1]:
                batch.append(pending)
                pending = next(samples, None)
            path = out / shard_sink.shard_name(split_sink.stem(out, urls.split), index)
            fuller = (_fuller_shard(path, targets, expected, len(batch))
                      if expected is not None and previous.get("resize", -1) == crawl.config.resize else None)
            if fuller is not None:
                info, metas = fuller
                for meta in metas:
                    _count_lengths(counts, meta["lengths"][0])
                held += [meta["row"] for meta in metas]
                shards.append(info)
                kept_previous += 1
            elif batch:
                shards.append(shard_sink.write_shard(staged / path.name,
                                                     ((key, sample) for _, key, sample in batch)))
                held += [row for row, _, _ in batch]
            bar.update(len(batch))
    split_sink.swap_in(staged, out, urls.split, {shard.url for shard in shards})
    lengths = {int(k.split(":")[1]): v for k, v in counts.items() if k.startswith("length:")}
    images = sum(s.nsamples for s in shards)
    split_stats = {
        "images": images, "texts": images, "pairs": images, "texts_per_image": 1.0 if images else 0.0,
        "mean_text_tokens": round(sum(k * v for k, v in lengths.items()) / images, 3) if images else 0.0,
        "truncated_texts": counts["truncated"], "shards": len(shards), "bytes": sum(s.filesize for s in shards),
        "text_length_histogram": {str(k): lengths[k] for k in sorted(lengths)},
        "config": crawl.config.record(),
        "inputs": _list_inputs(layout, urls), **extra,
    }
    if expected is not None:
        missing = _write_missing(out, crawl, expected, set(held))
        split_stats.update(kept_previous_shards=kept_previous, missing=len(missing), missing_first_rows=missing[:20])
    else:
        (out / missing_name(urls.name, urls.split)).unlink(missing_ok=True)
    stats = split_sink.merge_split_stats(out, urls.name, urls.split, split_stats)
    split_sink.write_index(out, urls.split, shards)  # last: the split is whole
    return stats, manifest_rows


def _previous_config(out: Path, split: str) -> dict:
    """The download config of the output now in ``out`` (empty if none or unreadable)."""
    try:
        return read_json(out / "stats.json")["splits"][split]["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _fuller_shard(path: Path, targets: list[int], expected: dict[int, str],
                  new_count: int) -> tuple[shard_sink.ShardInfo, list[dict]] | None:
    """The existing shard at ``path`` and its samples' json, if it holds more than ``new_count`` of ``targets``.

    Every sample must be one of ``targets`` with the sha256 the manifest lists; a shard that cannot
    be read to its end is not kept.
    """
    if not path.exists():
        return None
    metas: list[dict] = []
    allowed = set(targets)
    try:
        md5, sha256 = file_digests(path)
        with tarfile.open(path, "r:") as archive:
            for member in archive:
                if member.name.endswith(".json"):
                    meta = json.loads(archive.extractfile(member).read())
                    if meta.get("row") not in allowed or meta.get("sha256") != expected.get(meta["row"]):
                        return None
                    metas.append(meta)
    except (OSError, tarfile.TarError, ValueError, KeyError, AttributeError):
        return None
    if len(metas) <= new_count:
        return None
    return shard_sink.ShardInfo(path.name, len(metas), path.stat().st_size, md5, sha256), metas


def _take(iterator: Iterator, n: int) -> list:
    batch = []
    for item in iterator:
        batch.append(item)
        if len(batch) >= n:
            break
    return batch


def write_manifest(layout: Layout, urls: UrlList, rows: list[tuple], count: int) -> Path:
    """``manifests/<name>-<split>-<N>.tsv.gz``: row, url, sha256 of the bytes, caption hash (16 hex digits)."""
    path = layout.manifests() / f"{urls.name}-{urls.split}-{count}.tsv.gz"
    return manifest_sink.write_tsv_gz(path, MANIFEST_HEADER, rows)


def summary_lines(stats: dict) -> list[str]:
    """The summary of a crawl's ``stats.json``, one block per split, each line naming the dataset."""
    return [line for split, s in stats["splits"].items() for line in _split_lines(stats["dataset"], split, s)]


def _split_lines(name: str, split: str, s: dict) -> list[str]:
    if s["mode"] == "from-manifest":
        lines = [f"{name} from manifest: {s['manifest_rows']:,} rows listed, {s['rebuilt']:,} rebuilt, "
                 f"{s['changed']:,} changed (sha256 differs), {s['gone']:,} gone"]
        lines += [f"  gone, {cause}: {n:,}" for cause, n in s["gone_by_cause"].items()]
        if s["kept_previous_shards"]:
            lines.append(f"  {s['kept_previous_shards']} existing shards held more of their rows and were kept")
        if s["missing"]:
            lines.append(f"  {s['missing']:,} listed rows are not in the output (first: "
                         f"{', '.join(map(str, s['missing_first_rows'][:5]))}); all in {missing_name(name, split)}")
    else:
        lines = [f"{name}: first {s['images']:,} reachable rows (of {s['count']:,} wanted) up to row "
                 f"{s['last_row_kept']}; {s['rows_tried']:,} rows tried, {s['successes']:,} succeeded, "
                 f"{s['failed']:,} failed"]
        lines += [f"  failed, {cause}: {n:,}" for cause, n in s["failures"].items()]
    if s["retried"]:
        lines.append(f"  retried {s['retried']:,} rows that failed before; {s['recovered']:,} now fetched")
    if s["retry_pending"]:
        lines.append(f"  {s['retry_pending']:,} rows failed for a cause that passes with time (5xx, 429, timeout, "
                     "DNS, connection): " + ("run again with --retry-failed transient to retry them"
                                             if s["config"]["retry_failed"] == "none"
                                             else "running the same command again retries them"))
    lines.append(f"  {s['shards']} shards, {s['bytes'] / 1e6:,.1f} MB, mean caption {s['mean_text_tokens']:.2f} "
                 f"tokens, {s['truncated_texts']:,} truncated")
    return lines
