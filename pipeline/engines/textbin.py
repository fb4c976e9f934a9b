"""Text corpora → fairseq binaries (``out/<dataset>/{dict.txt,<split>.{bin,idx}}``).

A corpus (:class:`TextCorpus`, built by the dataset's recipe) is a set of numbered *sources*: raw
files fetched into ``raw/<dataset>``. Each source is split into *chunks* (named byte ranges of the
file, a few hundred documents each) and each chunk read as *documents* by the corpus's reader. The
:class:`BinarizeConfig` says which sources form each split, in order.

Work is split at the chunks. Every chunk becomes a small fairseq dataset under ``work/<dataset>/``
written by one worker process; a chunk already done is never redone, so an interrupted run (even
``kill -9``) resumes where it was. The chunks are then concatenated in source order into the split
files, which are therefore byte-identical for every ``--workers`` value and to an uninterrupted run.

stats.json and provenance.json name a source a *subset*: stats.json lists them under ``subsets``
(keyed by the number written ``%02d``), each split its ``subsets``, and a provenance row its
``subset``; the summary rows are ``subset<NN>``.

Example (a recipe's binarize stage)::

    corpus = TextCorpus("books", {0: "part-0.tar", 1: "part-1.tar"}, books.list_chunks,
                        books.read_documents, fetch_command="vlprep fetch books --parts {sources}",
                        binarize_command="vlprep binarize books")
    stats = binarize(layout, corpus, BinarizeConfig({"train": (0,), "valid": (1,)}), workers=8)
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Protocol

import numpy as np
from tqdm import tqdm

from .. import __version__
from ..caps import DEFAULT_CAPS, MIB, OPTION_OF
from ..errors import VlprepError
from ..fileio import TMP_MARK, atomic_path, ensure_dir, read_json, sha256_file, write_json
from ..layout import Layout
from ..parallel import process_pool, run_bounded
from ..sinks import fairseq
from ..sinks.splits import refuse_smaller_trial
from ..sources.archives import TarMember
from ..sources.checksums import VerifiedRecord
from ..transforms.bpe import BATCH_CHARS, REFERENCE, LineEncoder, check_backend, default_backend, get_backend
from ..transforms.dictionary import EOS, Dictionary, load_dictionary
from ..transforms.text import clean_document
from .inputs import check_inputs, file_input, input_name

VERSION = 1
"""Bumped whenever the bytes a chunk produces would change (here or in a corpus's reader), so stale
work is never reused. A work key hashes it as ``<dataset>-<VERSION>``."""

PROVENANCE = "provenance.json"
"""Per split, the chunk behind each run of items (read by ``verify --tokenizer-check``)."""

COUNTERS = ("documents", "documents_kept", "lines", "bpe_tokens", "ids", "text_bytes", "nul_removed",
            "empty_lines_dropped", "unk", "separators", "documents_skipped")
"""``documents`` counts every document read; ``documents_skipped`` those over ``--max-document-mb``."""


class Document(Protocol):
    """What a corpus's reader yields for each document of a chunk, in order."""

    @property
    def name(self) -> str: ...
    @property
    def raw(self) -> bytes | None:
        """The document's bytes, or None when it is over the cap (then it was not read)."""
    @property
    def size(self) -> int: ...


ChunkLister = Callable[[Path], list[TarMember]]
"""A source file → its chunks in order: named byte ranges of the file."""
DocumentReader = Callable[[Path, TarMember, int | None], Iterator[Document]]
"""``(source file, chunk, max document bytes)`` → the chunk's documents in order."""


@dataclass(frozen=True)
class TextCorpus:
    """A dataset's text as this engine reads it: its sources, how they are read, how they are repaired."""

    dataset: str
    """Names ``raw/``, ``work/`` and ``out/<dataset>``; stats.json's and provenance.json's ``dataset``."""
    sources: Mapping[int, str]
    """Every source's number → its path under ``raw/<dataset>``, where fetch verified it."""
    list_chunks: ChunkLister
    """A source file's chunks in order (the unit of work and of provenance)."""
    read_documents: DocumentReader
    """``(source file, chunk, max document bytes)`` → the chunk's documents in order, one over the cap
    with ``raw=None``. It runs in the worker processes: a module-level function (pickled by name)."""
    fetch_command: str
    """The command that fetches sources again (missing, or changed since fetch): ``{sources}`` becomes
    their numbers, comma-separated."""
    binarize_command: str
    """The command that builds ``out/<dataset>`` (named in the fixes of verify's faults)."""
    chunks_field: str = "chunks_listed"
    """stats.json's name for the number of chunks a source holds (``chunks`` counts those binarized)."""
    origin: Callable[[Path, str], dict] | None = None
    """``(raw/<dataset>, relpath)`` → where that fetched source came from, written to stats.json as the
    source's ``source`` (``{}`` when None)."""

    def fetch_fix(self, sources: tuple[int, ...]) -> str:
        """``run: <fetch_command>`` for these sources."""
        return "run: " + self.fetch_command.format(sources=",".join(str(s) for s in sources))


# -------------------------------------------------------------------------------------- binarize

@dataclass(frozen=True)
class BinarizeConfig:
    """Everything that decides the output bytes (hashed into the name of the work folder)."""

    splits: dict[str, tuple[int, ...]]
    """Split name → the numbers of the sources that form it, in order."""
    doc_separator: bool = False
    limit: int | None = None
    dict_path: str | None = None
    tokenizer: str = field(default_factory=default_backend)
    """Not part of :meth:`key`: every backend gives the same ids, so finished work is shared."""
    max_document_bytes: int = DEFAULT_CAPS.document_bytes
    """A document over this is skipped and listed (``--max-document-mb``)."""

    def key(self, dictionary: Dictionary, dataset: str) -> str:
        blob = json.dumps({"pipeline": f"{dataset}-{VERSION}", "dict": dictionary.sha256,
                           "sep": self.doc_separator, "limit": self.limit,
                           "max_document_bytes": self.max_document_bytes}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ChunkJob:
    """One chunk to turn into a small fairseq dataset at ``prefix`` (picklable: sent to a worker)."""

    source_file: str
    member: TarMember
    read_documents: DocumentReader
    prefix: str
    dict_path: str | None
    tokenizer: str
    doc_separator: bool
    max_docs: int | None
    max_document_bytes: int = DEFAULT_CAPS.document_bytes


def binarize(layout: Layout, corpus: TextCorpus, config: BinarizeConfig, workers: int = 1,
             force: bool = False) -> dict:
    """Build ``out/<dataset>`` from the fetched sources; return the statistics written to stats.json.

    A ``limit`` build that would replace an ``out/<dataset>`` built with no limit or a larger one is
    refused unless ``force`` (:func:`check_not_worse`).
    """
    dictionary = load_dictionary(Path(config.dict_path) if config.dict_path else None)
    check_backend(config.tokenizer)  # fail now with a clear message, not inside a worker
    out = ensure_dir(layout.out(corpus.dataset))
    check_not_worse(out, corpus, config.limit, force)
    key = config.key(dictionary, corpus.dataset)
    sources = [s for split in config.splits.values() for s in split]
    plans = {s: _plan_source(layout, corpus, s, key) for s in sources}

    jobs_done = _run_chunks(plans, corpus, config, workers)
    stats_path = out / "stats.json"
    if stats_path.exists() and _outputs_current(read_json(stats_path), key, plans, config, out) \
            and read_json(stats_path).get("inputs") == _inputs(corpus, plans, config):
        return read_json(stats_path)

    dtype = fairseq.dtype_for_vocab(len(dictionary))
    stats: dict = {
        "dataset": corpus.dataset, "vlprep_version": __version__, "work_key": key,
        "tokenizer": config.tokenizer, "doc_separator": config.doc_separator, "limit": config.limit,
        "max_document_bytes": config.max_document_bytes,
        "dictionary": {"sha256": dictionary.sha256, "source": dictionary.source, "symbols": len(dictionary)},
        "dtype": dtype.name, "subsets": {}, "splits": {}, "files": {},
        "inputs": _inputs(corpus, plans, config),
    }
    for source, plan in plans.items():
        stats["subsets"][f"{source:02d}"] = {**_sum_counts(jobs_done[source]), **plan.describe(corpus.chunks_field)}
    stats["skipped_documents"] = [{"subset": part["subset"], "member": part["member"], **skip}
                                  for parts in jobs_done.values() for part in parts for skip in part["skipped"]]
    staged: list[tuple[Path, Path]] = []
    provenance: dict = {"dataset": corpus.dataset, "doc_separator": config.doc_separator, "splits": {}}
    try:
        for split, split_sources in config.splits.items():
            parts = [part for s in split_sources for part in jobs_done[s]]
            tmp_prefix = out / f"{split}{TMP_MARK}{os.getpid()}"
            counts = _merge(parts, tmp_prefix, dtype, config.doc_separator, split)
            stats["splits"][split] = {"subsets": list(split_sources), **counts}
            provenance["splits"][split] = _provenance(parts, config.doc_separator)
            staged += [(Path(f"{tmp_prefix}.bin"), out / f"{split}.bin"),
                       (Path(f"{tmp_prefix}.idx"), out / f"{split}.idx")]
        dict_tmp = out / f"dict.txt{TMP_MARK}{os.getpid()}"
        dict_tmp.write_text(dictionary.to_text(), encoding="utf-8")
        staged.append((dict_tmp, out / "dict.txt"))
        provenance_tmp = out / f"{PROVENANCE}{TMP_MARK}{os.getpid()}"
        write_json(provenance_tmp, provenance, durable=False)
        staged.append((provenance_tmp, out / PROVENANCE))
        for tmp, final in staged:
            stats["files"][final.name] = {"sha256": sha256_file(tmp), "bytes": tmp.stat().st_size}
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    stats_path.unlink(missing_ok=True)  # outputs and stats change together: no stale stats meanwhile
    for tmp, final in staged:
        os.replace(tmp, final)
    write_json(stats_path, stats)
    return stats


def check_not_worse(out: Path, corpus: TextCorpus, limit: int | None, force: bool) -> None:
    """Refuse a ``--limit`` trial that would replace ``out`` (every split is rewritten together) when
    it was built with no limit or a larger one, unless ``force``."""
    stats_path = out / "stats.json"
    if force or limit is None or not stats_path.exists():
        return
    stats = read_json(stats_path)
    documents = sum(split.get("documents", 0) for split in stats.get("splits", {}).values())
    refuse_smaller_trial(out, stats.get("limit"), f"{documents:,} documents", limit, force,
                         corpus.binarize_command, what="the published output")


def _inputs(corpus: TextCorpus, plans: dict[int, SourcePlan], config: BinarizeConfig) -> dict[str, str]:
    """sha256 of every raw input: each source read (its chunks' work is keyed by it) and a ``--dict``."""
    inputs = {input_name(corpus.dataset, plan.relpath): plan.sha256 for plan in plans.values()}
    if config.dict_path:  # the file's bytes, as verify hashes them (Dictionary.sha256 is of its normal form)
        inputs.update(file_input(Path(config.dict_path)))
    return inputs


@dataclass(frozen=True)
class SourcePlan:
    source: int
    relpath: str
    file: Path
    sha256: str
    chunks: list[TarMember]
    work_dir: Path
    origin: dict

    def prefix(self, index: int) -> Path:
        return self.work_dir / f"{index:05d}"

    def describe(self, chunks_field: str) -> dict:
        return {"file": self.relpath, "sha256": self.sha256, chunks_field: len(self.chunks), "source": self.origin}


def _verified_source(layout: Layout, corpus: TextCorpus, source: int) -> tuple[Path, str]:
    """The fetched source file and its sha256, refused unless it is still the file fetch verified."""
    raw = layout.raw(corpus.dataset)
    relpath = corpus.sources[source]
    record = VerifiedRecord(raw)
    if not (raw / relpath).exists():
        raise VlprepError(f"{raw / relpath} is missing", fix=corpus.fetch_fix((source,)))
    if not record.is_current(relpath):
        raise VlprepError(
            f"{raw / relpath} is not the file that fetch verified (changed or never verified)",
            fix=f"{corpus.fetch_fix((source,))}  (it re-verifies or re-downloads the file)",
        )
    return raw / relpath, record.entries[relpath].sha256


def _plan_source(layout: Layout, corpus: TextCorpus, source: int, key: str) -> SourcePlan:
    raw = layout.raw(corpus.dataset)
    relpath = corpus.sources[source]
    _, sha = _verified_source(layout, corpus, source)
    work_dir = layout.work(corpus.dataset) / f"chunks-{key}" / f"{source:02d}-{sha[:16]}"
    origin = corpus.origin(raw, relpath) if corpus.origin else {}
    return SourcePlan(source, relpath, raw / relpath, sha, corpus.list_chunks(raw / relpath), work_dir, origin)


def _run_chunks(plans: dict[int, SourcePlan], corpus: TextCorpus, config: BinarizeConfig,
                workers: int) -> dict[int, list[dict]]:
    """Binarize every chunk not done yet; return each source's chunk results in order."""
    done: dict[int, dict[int, dict]] = {s: {} for s in plans}
    pending: list[tuple[int, int, ChunkJob]] = []
    for source, plan in plans.items():
        ensure_dir(plan.work_dir)
        remaining = config.limit
        for index, member in enumerate(plan.chunks):
            if remaining is not None and remaining <= 0:
                break
            result = _load_chunk_result(plan.prefix(index))
            job = ChunkJob(str(plan.file), member, corpus.read_documents, str(plan.prefix(index)), config.dict_path,
                           config.tokenizer, config.doc_separator, remaining, config.max_document_bytes)
            if result is None and remaining is not None:
                result = binarize_chunk(job)  # --limit: counts decide the next job, so run in order
            if result is None:
                pending.append((source, index, job))
            else:
                done[source][index] = {**result, "prefix": job.prefix}
                if remaining is not None:
                    remaining -= result["documents"]
    total = sum(job.member.size for _, _, job in pending)
    if pending:
        _encoder(config.dict_path, config.tokenizer)  # built once here, inherited by forked workers
    with process_pool(workers if len(pending) > 1 else 1) as pool, \
            tqdm(total=total, desc=f"binarize {corpus.dataset}", unit="B", unit_scale=True, disable=None) as bar:
        for (source, index, job), result in run_bounded(_run_job, pending, pool, workers):
            bar.update(job.member.size)
            done[source][index] = {**result, "prefix": job.prefix}
    for source, results in done.items():
        for index, result in results.items():
            member = plans[source].chunks[index]
            result.update(subset=source, offset=member.offset, size=member.size)
    return {s: [results[i] for i in sorted(results)] for s, results in done.items()}


@functools.lru_cache(maxsize=4)
def _encoder(dict_path: str | None, tokenizer: str) -> tuple[LineEncoder, int]:
    dictionary = load_dictionary(Path(dict_path) if dict_path else None)
    return LineEncoder(dictionary, get_backend(tokenizer)), len(dictionary)


@dataclass
class ChunkText:
    """The cleaned lines of some consecutive documents of one chunk, grouped by the documents that
    kept any, and the documents skipped for their size."""

    lines: list[str]
    kept_line_counts: list[int]
    counts: dict[str, int]
    skipped: list[dict] = field(default_factory=list)

    def document_starts(self, first_kept_before: bool) -> np.ndarray:
        """Line numbers that begin a kept document and get a ``[</s>]`` item before them: every one
        but the chunk's first (``first_kept_before``: a document of this chunk was kept earlier)."""
        if not self.kept_line_counts:
            return np.empty(0, np.int64)
        starts = np.cumsum([0, *self.kept_line_counts[:-1]], dtype=np.int64)
        return starts if first_kept_before else starts[1:]


BATCH_DOCUMENT_BYTES = 8 * BATCH_CHARS
"""Documents are cleaned and encoded in groups of about this many bytes (8 MiB), so memory holds one
group, not a whole chunk, however far the chunk expands. Groups of 1 MiB cost ~10 % more
CPU (a fresh set of pages per group: 4.8x the page faults); 8 MiB matched reading the member whole."""


def read_chunk_batches(read_documents: DocumentReader, source_file: Path, member: TarMember, max_docs: int | None,
                       max_document_bytes: int) -> Iterator[ChunkText]:
    """Read and clean the first ``max_docs`` (all when None) documents of one chunk, in groups; a
    document over ``max_document_bytes`` is skipped unread and listed with its cause."""
    batch, size, read = ChunkText([], [], dict.fromkeys(COUNTERS, 0)), 0, 0
    for document in read_documents(source_file, member, max_document_bytes):
        if max_docs is not None and read >= max_docs:
            break
        read += 1
        _add_document(batch, document, max_document_bytes)
        size += len(document.raw or b"")
        if size >= BATCH_DOCUMENT_BYTES:
            yield batch
            batch, size = ChunkText([], [], dict.fromkeys(COUNTERS, 0)), 0
    yield batch


def _add_document(batch: ChunkText, document: Document, max_document_bytes: int) -> None:
    counts = batch.counts
    counts["documents"] += 1
    if document.raw is None:
        counts["documents_skipped"] += 1
        batch.skipped.append({"document": document.name, "bytes": document.size,
                              "cause": f"document over the cap of {max_document_bytes / MIB:g} MB "
                                       f"({OPTION_OF['document_bytes']})"})
        return
    cleaned = clean_document(document.raw)
    counts["text_bytes"] += len(document.raw)
    counts["nul_removed"] += cleaned.nul_removed
    counts["empty_lines_dropped"] += cleaned.empty_dropped
    if cleaned.lines:
        batch.lines.extend(cleaned.lines)
        batch.kept_line_counts.append(len(cleaned.lines))


def _run_job(item: tuple[int, int, ChunkJob]) -> dict:
    return binarize_chunk(item[2])


def binarize_chunk(job: ChunkJob) -> dict:
    """Clean, encode and write one chunk as ``<prefix>.{bin,idx}`` + ``<prefix>.json``.

    Documents are read, encoded and written a group at a time, so memory stays bounded whatever
    the chunk expands to. The ``.json`` is written last: its presence means the chunk is complete.
    """
    encoder, vocab_size = _encoder(job.dict_path, job.tokenizer)
    counts, skipped = dict.fromkeys(COUNTERS, 0), []
    prefix = Path(job.prefix)
    with atomic_path(Path(f"{prefix}.bin"), durable=False) as tmp_bin, \
            atomic_path(Path(f"{prefix}.idx"), durable=False) as tmp_idx:
        writer = fairseq.DatasetWriter(tmp_bin, tmp_idx, fairseq.dtype_for_vocab(vocab_size))
        try:
            for batch in read_chunk_batches(job.read_documents, Path(job.source_file), job.member, job.max_docs,
                                            job.max_document_bytes):
                starts = batch.document_starts(counts["documents_kept"] > 0) if job.doc_separator else None
                for tokens, sizes, unk in _encode_pieces(encoder, batch.lines, starts):
                    writer.add(tokens, sizes)
                    counts["unk"] += unk
                for name, value in batch.counts.items():
                    counts[name] += value
                counts["documents_kept"] += len(batch.kept_line_counts)
                counts["lines"] += len(batch.lines)
                skipped += batch.skipped
        except BaseException:
            writer.abandon()
            raise
        writer.close()
    counts.update(ids=writer.ids, separators=writer.items - counts["lines"],
                  bpe_tokens=writer.ids - writer.items)
    result = {"member": job.member.name, "items": writer.items, **counts, "skipped": skipped}
    write_json(Path(f"{prefix}.json"), result, durable=False)
    return result


def _encode_pieces(encoder: LineEncoder, lines: list[str],
                   separators_before: np.ndarray | None) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """``(ids, sizes, unk)`` of ``lines`` about :data:`BATCH_CHARS` characters at a time, with one
    ``[</s>]`` item put before each line number in ``separators_before``."""
    if not lines:
        return
    ends = np.cumsum(np.fromiter(map(len, lines), np.int64, len(lines)) + 1)
    cuts = np.searchsorted(ends, np.arange(BATCH_CHARS, ends[-1], BATCH_CHARS), side="right")
    bounds = [0, *sorted(set(cuts.tolist()) - {0, len(lines)}), len(lines)]
    for first, stop in zip(bounds, bounds[1:]):
        encoded = encoder.encode(lines[first:stop])
        tokens, sizes = encoded.tokens, encoded.sizes
        if separators_before is not None:
            here = separators_before[(separators_before >= first) & (separators_before < stop)] - first
            if here.size:
                tokens, sizes = _insert_separators(tokens, sizes, here)
        yield tokens, sizes, encoded.unk


def _insert_separators(tokens: np.ndarray, sizes: np.ndarray, line_cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put one ``[</s>]`` item before each of the lines numbered ``line_cuts``."""
    token_ends = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    return np.insert(tokens, token_ends[line_cuts], EOS), np.insert(sizes, line_cuts, 1)


def chunk_items(read_documents: DocumentReader, source_file: Path, member: TarMember, max_docs: int | None,
                max_document_bytes: int, doc_separator: bool, wanted: set[int]) -> tuple[int, dict[int, str | None]]:
    """How many items one chunk gives, and the ``wanted`` ones by number: a cleaned line,
    or None for a ``[</s>]`` separator. Read as :func:`binarize_chunk` reads, a group at a time."""
    found: dict[int, str | None] = {}
    position, kept_before = 0, False
    for batch in read_chunk_batches(read_documents, source_file, member, max_docs, max_document_bytes):
        starts = set(batch.document_starts(kept_before).tolist()) if doc_separator else set()
        for number, line in enumerate(batch.lines):
            if number in starts:
                if position in wanted:
                    found[position] = None
                position += 1
            if position in wanted:
                found[position] = line
            position += 1
        kept_before = kept_before or bool(batch.kept_line_counts)
    return position, found


def _load_chunk_result(prefix: Path) -> dict | None:
    """A finished chunk's counts, or None if it is missing, partial or inconsistent."""
    meta = Path(f"{prefix}.json")
    if not meta.exists():
        return None
    try:
        result = read_json(meta)
        index = fairseq.read_index(Path(f"{prefix}.idx"))
        ids = Path(f"{prefix}.bin").stat().st_size // index.dtype.itemsize
    except (OSError, ValueError):
        return None
    if index.sizes.size != result.get("items") or ids != result.get("ids"):
        return None
    return result


def _sum_counts(results: list[dict]) -> dict:
    return {name: sum(r[name] for r in results) for name in COUNTERS} | {"chunks": len(results)}


def _merge(parts: list[dict], tmp_prefix: Path, dtype: np.dtype, doc_separator: bool, split: str) -> dict:
    """Concatenate chunk datasets in order into ``tmp_prefix.{bin,idx}``; return the split's counts."""
    prefixes = [Path(p["prefix"]) for p in parts]
    separator_before = _separators_between(parts) if doc_separator else [False] * len(parts)
    eos = np.array([EOS], dtype=dtype).tobytes()
    with open(f"{tmp_prefix}.bin", "wb") as out, tqdm(total=len(parts), desc=f"write {split}", disable=None,
                                                         leave=False) as bar:
        for prefix, separator in zip(prefixes, separator_before):
            if separator:
                out.write(eos)
            with open(f"{prefix}.bin", "rb") as src:
                shutil.copyfileobj(src, out, 8 << 20)
            bar.update()
    sizes = _SizeStream(prefixes, separator_before)
    n_items = sum(p["items"] for p in parts) + sum(separator_before)
    with open(f"{tmp_prefix}.idx", "wb") as handle:
        fairseq.write_index(handle, dtype, sizes, n_items)
    counts = _sum_counts(parts)
    counts["separators"] += sum(separator_before)
    counts["ids"] += sum(separator_before)
    counts["items"] = n_items
    return counts


def _provenance(parts: list[dict], doc_separator: bool) -> list[dict]:
    """Where each chunk's items start in the split, so any item can be traced to its text."""
    separator_before = _separators_between(parts) if doc_separator else [False] * len(parts)
    rows, first = [], 0
    for part, separator in zip(parts, separator_before):
        first += separator
        rows.append({"subset": part["subset"], "member": part["member"], "offset": part["offset"],
                     "size": part["size"], "documents": part["documents"], "first_item": first,
                     "items": part["items"]} | ({"skipped": part["skipped"]} if part["skipped"] else {}))
        first += part["items"]
    return rows


def _separators_between(parts: list[dict]) -> list[bool]:
    """Which chunks need a ``[</s>]`` item before them: a kept document came earlier and one is here."""
    flags, seen = [], False
    for part in parts:
        has_docs = part["documents_kept"] > 0
        flags.append(seen and has_docs)
        seen = seen or has_docs
    return flags


class _SizeStream:
    """Item sizes of the merged split, chunk by chunk (re-iterable: the index reads them twice)."""

    def __init__(self, prefixes: list[Path], separator_before: list[bool]) -> None:
        self.prefixes, self.separator_before = prefixes, separator_before

    def __iter__(self) -> Iterator[np.ndarray]:
        one = np.ones(1, dtype=np.int32)
        for prefix, separator in zip(self.prefixes, self.separator_before):
            if separator:
                yield one
            yield np.array(fairseq.read_index(Path(f"{prefix}.idx")).sizes)


def _outputs_current(stats: dict, key: str, plans: dict[int, SourcePlan], config: BinarizeConfig,
                     out: Path) -> bool:
    """True if ``out`` already holds the result of this exact work (nothing to merge again)."""
    if stats.get("work_key") != key:
        return False
    if {k: v.get("subsets") for k, v in stats.get("splits", {}).items()} != {
            k: list(v) for k, v in config.splits.items()}:
        return False
    if {k: v.get("sha256") for k, v in stats.get("subsets", {}).items()} != {
            f"{s:02d}": p.sha256 for s, p in plans.items()}:
        return False
    for name, info in stats.get("files", {}).items():
        path = out / name
        if not path.exists() or path.stat().st_size != info["bytes"]:
            return False
    return bool(stats.get("files"))


# ---------------------------------------------------------------------------------------- verify

def verify(layout: Layout, corpus: TextCorpus) -> dict:
    """Re-read ``out/<dataset>`` and check structure and counts against stats.json; raise on the first fault."""
    out = layout.out(corpus.dataset)
    rebuild = f"run: {corpus.binarize_command}"
    stats_path = out / "stats.json"
    if not stats_path.exists():
        raise VlprepError(f"{stats_path} is missing: out/{corpus.dataset} was never completed", fix=rebuild)
    stats = read_json(stats_path)
    check_inputs(layout, stats.get("inputs"), f"run again: {corpus.binarize_command}", corpus.dataset)
    dictionary = load_dictionary(out / "dict.txt")
    if dictionary.sha256 != stats["dictionary"]["sha256"]:
        raise VlprepError(f"{out / 'dict.txt'} is not the dictionary the binaries were written with",
                          fix=f"{rebuild} (it rewrites out/{corpus.dataset})")
    report = {}
    for split, expected in stats["splits"].items():
        prefix = out / split
        try:
            found = fairseq.check_dataset(prefix, len(dictionary), EOS)
        except (fairseq.IndexFormatError, FileNotFoundError) as exc:
            raise VlprepError(f"{prefix}: {exc}", fix=f"{rebuild} (finished work is reused)") from exc
        for name in ("items", "ids"):
            if found[name] != expected[name]:
                raise VlprepError(f"{prefix}: {found[name]:,} {name} on disk, stats.json says {expected[name]:,}",
                                  fix=rebuild)
        report[split] = found
    for name, info in stats["files"].items():
        sha = sha256_file(out / name)
        if sha != info["sha256"]:
            raise VlprepError(f"{out / name}: sha256 {sha} differs from stats.json ({info['sha256']})", fix=rebuild)
    return report


def tokenizer_check(layout: Layout, corpus: TextCorpus, samples: int, seed: int = 0) -> dict:
    """Re-encode ``samples`` random items' source lines with the reference BPE; compare with disk.

    Items are drawn uniformly over all splits without replacement (seeded, so a failure can be
    replayed): at most the items ``provenance.json`` traces (``traced``; ``capped`` when ``samples``
    asked for more, and then every one is checked). Each drawn
    item is traced through ``provenance.json`` to its chunk, whose documents are read and cleaned
    again; the line is encoded by :data:`~vlprep.pipeline.transforms.bpe.REFERENCE`, mapped through
    ``dict.txt``, ended with ``</s>`` and compared id for id.
    """
    out = layout.out(corpus.dataset)
    rebuild = f"run: {corpus.binarize_command}"
    provenance_path = out / PROVENANCE
    if not provenance_path.exists():
        raise VlprepError(f"{provenance_path} is missing", fix=rebuild)
    provenance = read_json(provenance_path)
    stats_path = out / "stats.json"
    cap = read_json(stats_path).get("max_document_bytes", DEFAULT_CAPS.document_bytes) if stats_path.exists() \
        else DEFAULT_CAPS.document_bytes
    encoder = LineEncoder(load_dictionary(out / "dict.txt"), get_backend(REFERENCE))
    rng = random.Random(seed)
    population = [(split, row) for split, rows in provenance["splits"].items() for row in rows if row["items"]]
    if not population or samples <= 0:
        return {"checked": 0, "reference": REFERENCE, "seed": seed}
    starts = list(itertools.accumulate((row["items"] for _, row in population), initial=0))
    traced = starts[-1]
    wanted: dict[int, list[int]] = {}
    for position in rng.sample(range(traced), min(samples, traced)):  # each item once, memory bounded by traced
        index = bisect.bisect_right(starts, position) - 1
        wanted.setdefault(index, []).append(position - starts[index])
    datasets = {split: _open_items(out / split) for split in provenance["splits"]}
    files = {s: _verified_source(layout, corpus, s)[0] for s in {population[i][1]["subset"] for i in wanted}}
    checked = 0
    for index in tqdm(sorted(wanted), desc="tokenizer check", unit="member", disable=None, leave=False):
        split, row = population[index]
        source_file = files[row["subset"]]
        member = TarMember(row["member"], row["offset"], row["size"])
        count, items = chunk_items(corpus.read_documents, source_file, member, row["documents"], cap,
                                   provenance["doc_separator"], set(wanted[index]))
        if count != row["items"]:
            raise VlprepError(f"{source_file}:{row['member']} now gives {count} items, {row['items']} were written",
                              fix=f"the raw file changed since binarize; {rebuild}")
        for within in wanted[index]:
            line, position = items[within], row["first_item"] + within
            expected = [EOS] if line is None else encoder.encode([line]).tokens.tolist()
            found = datasets[split](position)
            if found != expected:
                shown = "a document separator" if line is None else repr(line[:60])
                raise VlprepError(
                    f"{out / split}.bin item {position:,} ({source_file.name}:{row['member']}, {shown}): "
                    f"{len(found)} ids on disk differ from the {REFERENCE} encoding ({len(expected)} ids)",
                    fix="build it again with --tokenizer tiktoken into a fresh --data-dir and compare")
            checked += 1
    return {"checked": checked, "reference": REFERENCE, "seed": seed, "members": len(wanted), "traced": traced,
            "capped": samples > traced}


def _open_items(prefix: Path):
    """A function from item number to its ids, reading ``prefix.{idx,bin}`` memory-mapped."""
    index = fairseq.read_index(Path(f"{prefix}.idx"))
    tokens = fairseq.read_tokens(Path(f"{prefix}.bin"), index.dtype)
    itemsize = index.dtype.itemsize

    def item(number: int) -> list[int]:
        start = int(index.pointers[number]) // itemsize
        return tokens[start:start + int(index.sizes[number])].tolist()
    return item


def summary_lines(stats: dict) -> list[str]:
    """A short table of what stats.json holds, for the terminal."""
    rows = [f"{'':8} {'documents':>11} {'lines':>12} {'tokens':>14} {'MB text':>9} {'NULs':>6} "
            f"{'empty':>9} {'<unk>':>6}"]

    def row(name: str, c: dict) -> str:
        return (f"{name:8} {c['documents']:>11,} {c['lines']:>12,} {c['bpe_tokens']:>14,} "
                f"{c['text_bytes'] / 1e6:>9.1f} {c['nul_removed']:>6,} {c['empty_lines_dropped']:>9,} {c['unk']:>6,}")

    rows += [row(f"subset{k}", c) for k, c in stats["subsets"].items()]
    rows += [row(split, c) for split, c in stats["splits"].items()]
    return rows
