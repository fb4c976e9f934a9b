"""Conceptual Captions 3M: the first N rows, in index order, whose image downloads and decodes.

Rows are tried in windows of consecutive rows, each sized from the success rate seen so far so
that it is expected to bring exactly the successes still missing (a first guess of 70 %, never
more than ``max_window`` rows): the run stops at the first window that completes the count and so
never tries more rows than needed beyond that window. Each window is one img2dataset run in a
child process (see :mod:`.webdownload`) writing parquet into ``work/cc3m/<key>/windows/<n>/``.
The window list is written before a window starts, img2dataset's own shards inside a window are
kept as they finish (its incremental mode), and a window's summary is written when all its rows
are accounted for; so a run killed at any moment continues where it stood and ends with the same
rows. A window that runs past its time limit is killed with its process group and run again.

The kept rows are then written in index order as WebDataset shards ``out/cc3m/train-*.tar``, with
``train.index.json``, ``stats.json`` and the manifest ``manifests/cc3m-train-<N>.tsv.gz``.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from tqdm import tqdm

from .. import __version__
from ..errors import VlprepError
from ..fileio import atomic_path, ensure_dir, read_json, sha256_file, write_json
from ..layout import Layout
from ..records import cc3m as records
from ..sinks import manifests as manifest_sink
from ..sinks import shards as shard_sink
from ..sources.webimage import CAUSES, classify
from ..transforms.captions import MAX_BPE
from ..transforms.text import clean_caption
from . import imagetext
from .fetching import fetch_files
from .inputs import input_name
from .webdownload import MODULE as ENGINE

NAME = "cc3m"
SPLIT = "train"
TSV_URL = "https://storage.googleapis.com/gcc-data/Train/GCC-training.tsv"
PRIOR_SUCCESS_RATE = 0.7
MIN_RATE = 0.02
WINDOW_MARGIN = 1.02
"""2 % more rows than the rate predicts: a window that falls a few successes short costs a whole
extra img2dataset start (seconds); 2 % covers about four standard deviations of a 14k-row window."""
SUB_SHARD = 1000
"""Rows per img2dataset shard inside a window: the unit of parallelism and of resume."""
DISTRIBUTORS = ("multiprocessing", "pyspark", "ray")
MANIFEST_HEADER = ("row", "url", "sha256", "caption_hash")


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
    user_agent_token: str | None = None
    max_window: int = 50_000
    min_window: int = 64
    window_timeout: float | None = None
    shard_samples: int = 10_000

    def key(self, source: str) -> str:
        blob = {"resize": self.resize, "max_bytes": self.max_bytes, "max_pixels": self.max_pixels,
                "disallowed": list(self.disallowed), "source": source, "version": 1}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]

    def time_limit(self, rows: int) -> float:
        """A window's wall-clock limit: every thread's worst case (all its URLs at the deadline) twice, + 2 min."""
        if self.window_timeout:
            return self.window_timeout
        per_thread = math.ceil(rows / max(1, self.processes * self.threads))
        return 2 * per_thread * self.timeout * 2 * (self.retries + 1) + 120


@dataclass
class Window:
    index: int
    start: int
    stop: int
    rows: list[int] | None = None
    """Explicit rows (rebuilding from a manifest); None for the consecutive rows start..stop-1."""

    def size(self) -> int:
        return len(self.rows) if self.rows is not None else self.stop - self.start


@dataclass
class WindowResult:
    tried: int
    successes: list[int]
    failures: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- fetch


def fetch_tsv(layout: Layout, tsv: Path | None, mirror: str | None) -> Path:
    """Where the TSV is: ``--tsv``, else fetched from ``--mirror`` or the published URL into raw/."""
    if tsv is not None:
        if not Path(tsv).is_file():
            raise VlprepError(f"{tsv} is not a file", fix="pass the path of Train_GCC-training.tsv with --tsv")
        return Path(tsv)
    fetch_files(layout.raw(NAME), {records.TSV_NAME: TSV_URL}, mirror)
    return layout.raw(NAME) / records.TSV_NAME


def check_distributor(name: str) -> None:
    """img2dataset's ray distributor silently does nothing without ray; refuse before that happens."""
    import importlib.util

    if name not in DISTRIBUTORS:
        raise VlprepError(f"unknown distributor {name!r}", fix=f"use one of: {', '.join(DISTRIBUTORS)}")
    module = {"pyspark": "pyspark", "ray": "ray"}.get(name)
    if module and importlib.util.find_spec(module) is None:
        raise VlprepError(f"--distributor {name} needs the {module} package, which is not installed",
                          fix=f"pip install {module}  (or use --distributor multiprocessing)")


def _tsv_identity(tsv: Path) -> str:
    """The TSV's sha256: any edited row (a caption, a URL) gives another crawl, never stale captions."""
    stat = Path(tsv).stat()
    return _sha256_of(str(Path(tsv).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, once per process while its size and mtime stay (the TSV is read for the key and stats)."""
    return sha256_file(Path(path))


def _tsv_inputs(layout: Layout, tsv: Path) -> dict[str, str]:
    """``inputs`` of the shards: the TSV, named under raw/ when fetch put it there, else by its path."""
    fetched = layout.raw(NAME) / records.TSV_NAME
    if fetched.exists() and Path(tsv).resolve() == fetched.resolve():
        return {input_name(NAME, records.TSV_NAME): _tsv_identity(tsv)}
    return {str(Path(tsv).resolve()): _tsv_identity(tsv)}


class Crawl:
    """The windows of one source (a TSV, or a TSV and a manifest) under ``work/cc3m/<key>/``."""

    def __init__(self, layout: Layout, tsv: Path, config: DownloadConfig, source: str) -> None:
        self.layout, self.tsv, self.config = layout, tsv, config
        self.root = ensure_dir(layout.work(NAME) / config.key(source))
        self.windows_path = self.root / "windows.json"
        self.windows: list[Window] = ([Window(**w) for w in read_json(self.windows_path)["windows"]]
                                      if self.windows_path.exists() else [])

    def window_dir(self, window: Window) -> Path:
        return self.root / "windows" / f"{window.index:06d}"

    def add(self, window: Window) -> Window:
        self.windows.append(window)
        write_json(self.windows_path, {"tsv": str(self.tsv), "windows": [asdict(w) for w in self.windows]})
        return window

    def result(self, window: Window) -> WindowResult | None:
        done = self.window_dir(window) / "done.json"
        return WindowResult(**read_json(done)) if done.exists() else None

    def run(self, window: Window, bar: tqdm | None, verify_hash: dict[int, str] | None = None) -> WindowResult:
        """Run (or finish) one window; return its summary."""
        found = self.result(window)
        if found is not None:
            return found
        folder = ensure_dir(self.window_dir(window))
        _write_window_input(folder / "input.parquet", self._rows(window), verify_hash)
        output = folder / "i2d"
        expected_shards = math.ceil(window.size() / SUB_SHARD)
        limit = self.config.time_limit(window.size())
        for attempt in range(1, 4):
            finished = _run_engine(folder, output, self.config, limit, verify_hash is not None, bar, window)
            if finished and _complete(output, expected_shards):
                break
            if bar is not None:
                bar.write(f"cc3m window {window.index} (rows {window.start:,}..{window.stop - 1:,}): "
                          f"{'past its ' + format(limit, '.0f') + ' s limit' if not finished else 'incomplete'}"
                          f", attempt {attempt} of 3; its finished parts are kept")
        else:
            raise VlprepError(f"cc3m window {window.index} (rows {window.start:,}..{window.stop - 1:,}) did not "
                              f"complete in 3 attempts; img2dataset's log: {folder / 'engine.log'}",
                              fix="check the network and run the same command again (finished parts are kept)")
        result = _summarize(output, window.size())
        write_json(folder / "done.json", asdict(result))
        return result

    def _rows(self, window: Window) -> Iterator[records.Row]:
        if window.rows is not None:
            return records.select_rows(self.tsv, window.rows)
        return records.iter_rows(self.tsv, window.start, window.stop)

    def parquet_files(self, window: Window) -> list[Path]:
        return sorted((self.window_dir(window) / "i2d").glob("[0-9]*.parquet"))


def _write_window_input(path: Path, rows: Iterable[records.Row], verify_hash: dict[int, str] | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(rows)
    columns = {"url": [r.url for r in rows], "caption": [r.caption for r in rows], "row": [r.row for r in rows]}
    if verify_hash is not None:
        columns["sha256"] = [verify_hash[r.row] for r in rows]
    with atomic_path(path, durable=False) as tmp:
        pq.write_table(pa.table(columns), tmp)


def _engine_config(folder: Path, output: Path, config: DownloadConfig, verify: bool) -> dict:
    resize = {"resize_mode": "no"} if config.resize is None else {
        "resize_mode": "keep_ratio", "image_size": config.resize, "resize_only_if_bigger": True,
        "downscale_interpolation": "area"}
    options = {
        "url_list": str(folder / "input.parquet"), "input_format": "parquet", "url_col": "url",
        "caption_col": "caption", "save_additional_columns": ["row"], "output_format": "parquet",
        "output_folder": str(output), "processes_count": config.processes, "thread_count": config.threads,
        "number_sample_per_shard": SUB_SHARD, "timeout": config.timeout, "retries": config.retries,
        "encode_format": "jpg", "encode_quality": 95, "skip_reencode": True, "compute_hash": "sha256",
        "distributor": config.distributor, "incremental_mode": "incremental", "enable_wandb": False,
        "extract_exif": False, "max_shard_retry": 1, "oom_shard_count": 5,
        "disallowed_header_directives": list(config.disallowed), "user_agent_token": config.user_agent_token,
        **resize,
    }
    if verify:
        options["verify_hash"] = ["sha256", "sha256"]
    return {"img2dataset": options, "max_bytes": config.max_bytes, "max_pixels": config.max_pixels,
            "parent_pid": os.getpid()}


def _run_engine(folder: Path, output: Path, config: DownloadConfig, limit: float, verify: bool,
                bar: tqdm | None, window: Window) -> bool:
    """img2dataset on the window in its own process group; False if it ran past ``limit`` and was killed."""
    config_path = folder / "engine.json"
    write_json(config_path, _engine_config(folder, output, config, verify), durable=False)
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


def _summarize(output: Path, size: int) -> WindowResult:
    import pyarrow.parquet as pq

    successes: list[int] = []
    failures: Counter = Counter()
    tried = 0
    for path in sorted(output.glob("[0-9]*.parquet")):
        table = pq.read_table(path, columns=["row", "status", "error_message", "caption"]).to_pydict()
        for row, status, message, caption in zip(table["row"], table["status"], table["error_message"],
                                                 table["caption"]):
            tried += 1
            if not clean_caption(caption or ""):
                failures["empty_caption"] += 1
            elif status == "success":
                successes.append(int(row))
            else:
                failures[classify(message)] += 1
    if tried != size:
        raise VlprepError(f"{output}: img2dataset accounted for {tried:,} of the window's {size:,} rows",
                          fix="run the same command again")
    return WindowResult(tried, sorted(successes), dict(sorted(failures.items())))


# ----------------------------------------------------------------------------------------------- first N


def fetch_first(layout: Layout, tsv: Path, count: int, config: DownloadConfig,
                tokenizer: str | None = None) -> dict:
    """Hold the first ``count`` reachable rows in index order, then write shards, stats and manifest."""
    check_distributor(config.distributor)
    total_rows = records.count_rows(tsv)
    crawl = Crawl(layout, tsv, config, f"tsv:{_tsv_identity(tsv)}")
    successes: list[int] = []
    tried = 0
    failures: Counter = Counter()
    with tqdm(desc="cc3m rows tried", unit="row", disable=None) as bar:
        for window in crawl.windows:  # finish what an earlier run planned, in order
            result = crawl.run(window, bar)
            successes += result.successes
            tried += result.tried
            failures.update(result.failures)
        next_row = crawl.windows[-1].stop if crawl.windows else 0
        while len(successes) < count and next_row < total_rows:
            rate = max(MIN_RATE, len(successes) / tried) if tried else PRIOR_SUCCESS_RATE
            size = math.ceil((count - len(successes)) / rate * WINDOW_MARGIN)
            size = min(max(size, config.min_window), config.max_window, total_rows - next_row)
            window = crawl.add(Window(len(crawl.windows), next_row, next_row + size))
            result = crawl.run(window, bar)
            successes += result.successes
            tried += result.tried
            failures.update(result.failures)
            next_row = window.stop
            bar.set_postfix(successes=f"{min(len(successes), count):,}/{count:,}")
    kept = sorted(successes)[:count]
    stats, manifest_rows = _write_output(layout, crawl, set(kept), tokenizer, extra={
        "mode": "first-n", "count": count, "tsv_rows": total_rows, "rows_tried": tried,
        "successes": len(successes), "failures": {c: failures.get(c, 0) for c in CAUSES if failures.get(c)},
        "failed": sum(failures.values()), "last_row_kept": kept[-1] if kept else None,
        "windows": [{"start": w.start, "stop": w.stop} for w in crawl.windows]})
    write_manifest(layout, manifest_rows, count)
    if len(kept) < count:
        raise VlprepError(f"cc3m: only {len(kept):,} of the {total_rows:,} rows could be fetched, fewer than "
                          f"--count {count:,}; the shards hold those {len(kept):,}",
                          fix="lower --count, or run again later (unreachable hosts are retried)")
    return stats


# ----------------------------------------------------------------------------------------------- manifest


def rebuild(layout: Layout, tsv: Path, manifest: Path, config: DownloadConfig,
            tokenizer: str | None = None) -> dict:
    """Fetch exactly a manifest's rows, check every sha256, report what is gone or changed."""
    check_distributor(config.distributor)
    header, rows = _read_manifest(manifest)
    wanted = {int(r[0]): r for r in rows}
    tsv_rows = {row.row: row for row in records.select_rows(tsv, wanted)}
    mismatched = sorted(r for r, (_, url, _, caption_sha) in wanted.items()
                        if r not in tsv_rows or tsv_rows[r].url != url or tsv_rows[r].caption_hash != caption_sha)
    if mismatched:
        raise VlprepError(f"{manifest}: {len(mismatched):,} rows differ from {tsv} (url or caption), first rows "
                          f"{mismatched[:5]}", fix="pass the Train_GCC-training.tsv the manifest was made from")
    manifest_sha = hashlib.sha256(manifest.read_bytes()).hexdigest()
    crawl = Crawl(layout, tsv, config, f"manifest:{manifest_sha}:tsv:{_tsv_identity(tsv)}")
    ordered = sorted(wanted)
    if not crawl.windows:
        for start in range(0, len(ordered), config.max_window):
            part = ordered[start:start + config.max_window]
            crawl.add(Window(len(crawl.windows), part[0], part[-1] + 1, part))
    successes: list[int] = []
    failures: Counter = Counter()
    with tqdm(total=len(ordered), desc="cc3m rows from manifest", unit="row", disable=None) as bar:
        for window in crawl.windows:
            result = crawl.run(window, bar, verify_hash={r: wanted[r][2] for r in window.rows or []})
            successes += result.successes
            failures.update(result.failures)
    changed = failures.pop("changed", 0)
    stats, _ = _write_output(layout, crawl, set(successes), tokenizer, extra={
        "mode": "from-manifest", "manifest": str(manifest), "manifest_sha256": manifest_sha,
        "manifest_rows": len(ordered), "rebuilt": len(successes), "changed": changed,
        "gone": sum(failures.values()), "gone_by_cause": dict(sorted(failures.items()))})
    return stats


def _read_manifest(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        header, rows = manifest_sink.read_tsv_gz(Path(path))
    except (OSError, ValueError, EOFError) as exc:
        raise VlprepError(f"{path}: not a readable cc3m manifest ({exc})",
                          fix="pass a cc3m-train-<N>.tsv.gz written by vlprep fetch cc3m") from exc
    if tuple(header) != MANIFEST_HEADER or any(len(r) != 4 or not r[0].isdigit() for r in rows):
        raise VlprepError(f"{path}: expected columns {' '.join(MANIFEST_HEADER)}",
                          fix="pass a cc3m-train-<N>.tsv.gz written by vlprep fetch cc3m")
    return header, rows


# ----------------------------------------------------------------------------------------------- output


def _kept_samples(crawl: Crawl, kept: set[int], tokenizer: str | None, counts: Counter,
                  manifest_rows: list[tuple]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Every kept row in index order as ``(key, {"jpg", "json"})``, read one img2dataset shard at a time."""
    import pyarrow.parquet as pq

    encoder = imagetext.caption_encoder(tokenizer)
    columns = ["row", "status", "url", "caption", "sha256", "width", "height", "jpg"]
    for window in crawl.windows:
        for path in crawl.parquet_files(window):
            table = pq.read_table(path, columns=columns).to_pydict()
            order = sorted((row, i) for i, row in enumerate(table["row"])
                           if row in kept and table["status"][i] == "success")
            captions = [table["caption"][i] for _, i in order]
            texts = [clean_caption(c) for c in captions]
            tokens = encoder.encode(texts)
            for (row, i), caption, text, token in zip(order, captions, texts, tokens):
                data = table["jpg"][i]
                meta = {"dataset": NAME, "row": row, "url": table["url"][i], "caption": text,
                        "sha256": table["sha256"][i], "width": table["width"][i], "height": table["height"][i],
                        "texts": [text], "tokens": [token.ids], "lengths": [token.length]}
                if hashlib.sha256(data).hexdigest() != meta["sha256"]:
                    meta["stored"] = "re-encoded as JPEG" if crawl.config.resize is None else "resized"
                counts["texts"] += 1
                counts["truncated"] += token.length > MAX_BPE
                counts[f"length:{token.length}"] += 1
                manifest_rows.append((row, meta["url"], meta["sha256"], records.caption_hash(caption)))  # in row order
                yield f"{row:09d}", {"jpg": data, "json": shard_sink.json_bytes(meta)}


def _write_output(layout: Layout, crawl: Crawl, kept: set[int], tokenizer: str | None,
                  extra: dict) -> tuple[dict, list[tuple]]:
    """Shards of the kept rows in index order, the wids index and ``stats.json``; return stats and manifest rows."""
    out = ensure_dir(layout.out(NAME))
    counts: Counter = Counter()
    manifest_rows: list[tuple] = []
    samples = _kept_samples(crawl, kept, tokenizer, counts, manifest_rows)
    shards = []
    with tqdm(total=len(kept), desc="cc3m shards", unit="img", disable=None) as bar:
        while True:
            batch = _take(samples, crawl.config.shard_samples)
            if not batch:
                break
            info = shard_sink.write_shard(out / shard_sink.shard_name(SPLIT, len(shards)), iter(batch))
            shards.append(info)
            bar.update(len(batch))
    for stale in out.glob(f"{SPLIT}-[0-9][0-9][0-9][0-9][0-9][0-9].tar"):
        if int(stale.stem.rsplit("-", 1)[1]) >= len(shards):
            stale.unlink()
    shard_sink.write_wids_index(out / f"{SPLIT}.index.json", SPLIT, shards)
    lengths = {int(k.split(":")[1]): v for k, v in counts.items() if k.startswith("length:")}
    images = sum(s.nsamples for s in shards)
    split_stats = {
        "images": images, "texts": images, "pairs": images, "texts_per_image": 1.0 if images else 0.0,
        "mean_text_tokens": round(sum(k * v for k, v in lengths.items()) / images, 3) if images else 0.0,
        "truncated_texts": counts["truncated"], "shards": len(shards), "bytes": sum(s.filesize for s in shards),
        "text_length_histogram": {str(k): lengths[k] for k in sorted(lengths)},
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(crawl.config).items()},
        "inputs": _tsv_inputs(layout, crawl.tsv), **extra,
    }
    stats = {"dataset": NAME, "vlprep_version": __version__, "splits": {SPLIT: split_stats}}
    write_json(out / "stats.json", stats)
    return stats, manifest_rows


def _take(iterator: Iterator, n: int) -> list:
    batch = []
    for item in iterator:
        batch.append(item)
        if len(batch) >= n:
            break
    return batch


def write_manifest(layout: Layout, rows: list[tuple], count: int) -> Path:
    """``manifests/cc3m-train-<N>.tsv.gz``: row, url, sha256 of the bytes, caption hash (16 hex digits)."""
    path = layout.manifests() / f"{NAME}-{SPLIT}-{count}.tsv.gz"
    return manifest_sink.write_tsv_gz(path, MANIFEST_HEADER, rows)


def summary_lines(stats: dict) -> list[str]:
    s = stats["splits"][SPLIT]
    if s["mode"] == "from-manifest":
        lines = [f"cc3m from manifest: {s['manifest_rows']:,} rows listed, {s['rebuilt']:,} rebuilt, "
                 f"{s['changed']:,} changed (sha256 differs), {s['gone']:,} gone"]
        lines += [f"  gone, {cause}: {n:,}" for cause, n in s["gone_by_cause"].items()]
    else:
        lines = [f"cc3m: first {s['images']:,} reachable rows (of {s['count']:,} wanted) up to row "
                 f"{s['last_row_kept']}; {s['rows_tried']:,} rows tried, {s['successes']:,} succeeded, "
                 f"{s['failed']:,} failed"]
        lines += [f"  failed, {cause}: {n:,}" for cause, n in s["failures"].items()]
    lines.append(f"  {s['shards']} shards, {s['bytes'] / 1e6:,.1f} MB, mean caption {s['mean_text_tokens']:.2f} "
                 f"tokens, {s['truncated_texts']:,} truncated")
    return lines
