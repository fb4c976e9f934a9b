"""Labelled images in gzipped tarballs → WebDataset shards ``<key>.jpg`` + ``<key>.cls`` + ``<key>.json``.

The dataset is described by a :class:`TarballSource` that its recipe builds (where the class list and
the tarballs lie, how to read them, the published counts); this engine names no dataset.

A ``.tar.gz`` can only be read front to back, so a full shuffle cannot pick images at random from
it. Two phases keep memory bounded and the bytes reproducible:

1. *Distribute* (one worker per tarball): stream the tarball and append every image, untouched,
   to an uncompressed bucket file ``work/…/buckets/<bucket>-<tarball>.tar``. Train images go to a
   bucket drawn from a seeded hash of their name, so every bucket is a uniform random sample of the
   split. Val images go to buckets by position, so their file order is kept.
2. *Shard* (one worker per bucket): read the bucket's pieces (memory-mapped), put them in their
   order (train: seeded shuffle; val: archive order), check each image (the JPEG walk, or a full
   decode; CMYK and PNG-in-disguise converted to RGB JPEG), and write one shard. The pieces are then
   deleted.

Each tarball's and each bucket's completion is recorded, so an interrupted run resumes at that
granularity, and the output does not depend on ``--workers``. The split's staging, swap, errors,
stats and index are :class:`~vlprep.pipeline.sinks.splits.SplitWriter`'s.
"""
from __future__ import annotations

import hashlib
import mmap
import random
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Mapping

from tqdm import tqdm

from ..caps import DEFAULT_CAPS, MIB, OPTION_OF
from ..errors import VlprepError
from ..fileio import atomic_path, ensure_dir, naming_file, read_json, write_json
from ..layout import Layout
from ..parallel import process_pool, run_bounded
from ..sinks import manifests as manifest_sink
from ..sinks import shards as shard_sink
from ..sinks import splits as split_sink
from ..sources.archives import Oversized, list_tar_bytes
from ..transforms.images import ImageError, prepare_image
from .inputs import raw_inputs, work_key


@dataclass(frozen=True)
class TarballSource:
    """What the engine knows of a dataset: its files, how to read them, and the counts to expect.

    Worker processes receive it with their jobs, so it must pickle: the functions are module-level
    ones (of the dataset's records module) and the mappings plain dicts.
    """

    name: str
    """The dataset: ``raw/``, ``work/`` and ``out/<name>``, ``manifests/<name>-<split>.tsv.gz``, commands."""
    title: str
    """How an error names the dataset (``unknown <title> split``)."""
    work_version: str
    """Hashed into every work key; changed when the bytes written for the same inputs change."""
    classes_file: str
    """Relpath under ``raw/<name>`` of the class list; a class's index is its position in it."""
    read_classes: Callable[[Path], list[tuple[str, str]]]
    """The class list file → ``[(class id, class name), ...]`` in its order."""
    tarballs: Mapping[str, tuple[str, ...]]
    """Per split, the relpaths under ``raw/<name>`` of its ``.tar.gz`` files, in reading order."""
    expected: Mapping[str, Mapping[str, int]]
    """Per split that can be sharded, the published ``images``, ``classes``, ``max_per_class`` and
    ``min_per_class``, checked unless ``--limit`` is set."""
    iter_images: Callable[[Path, int], Iterator[tuple[str, bytes | Oversized]]]
    """A tarball and the member cap → ``(member name, bytes or Oversized)`` of each image, in archive order."""
    class_of: Callable[[str], str]
    """A member name → its class id."""
    key_of: Callable[[str], str]
    """A member name → its sample key (no ``.``; distinct names give distinct keys)."""
    class_word: str = "class"
    """What a class id is called in each sample's json, in stats.json (``unknown_<word>``) and in messages."""


MAX_BUCKETS = 512
"""At most this many train buckets (one open file each per tarball reader, within a process's limit)."""
BUCKETS_PER_SHARD = 4


def train_buckets(expected_images: int, limit: int | None, shard_samples: int) -> int:
    """How many buckets train images are hashed into: about four per shard, at most :data:`MAX_BUCKETS`.

    Consecutive buckets are grouped into shards of about ``--shard-samples`` once their counts are
    known (full train, 10,000 a shard: 129 shards of 4 buckets of ~2,500). Sizing the count to the
    work keeps buckets smaller than a shard, and keeps a trial (``--limit``) from creating hundreds of
    nearly empty bucket files per tarball: creating a file costs as much as copying ~100 images.
    ``expected_images``: the split's published image count.
    """
    images = expected_images if limit is None else min(limit, expected_images)
    return max(1, min(MAX_BUCKETS, BUCKETS_PER_SHARD * -(-images // shard_samples)))




@dataclass(frozen=True)
class ShardConfig:
    split: str
    seed: int = 0
    resize: int | None = None
    shard_samples: int = 10_000
    limit: int | None = None
    max_member: int = DEFAULT_CAPS.member_bytes
    """Bytes of the largest image member read (``--max-member-mb``); larger ones are skipped and listed."""

    def key(self, version: str, inputs: dict[str, str] | None = None) -> str:
        """The work folder's name: the options, ``version`` (the source's ``work_version``) and the
        sha256 of the class list and of every tarball read."""
        return work_key(self, version, inputs)


@dataclass(frozen=True)
class DistributeJob:
    source: TarballSource
    tarball: int
    path: str
    folder: str
    split: str
    seed: int
    shard_samples: int
    take: int | None
    """``--limit``: read at most this many images of the tarball (the limit applies across them later)."""
    classes: tuple[str, ...]
    record: str
    buckets: int
    max_member: int = DEFAULT_CAPS.member_bytes
    keys: str = ""
    """Where the digests of the keys bucketed go, for the duplicate check across tarballs."""


KEY_FORMAT = "<16sq"
"""One image in a ``keys-<tarball>.bin``: a 128-bit BLAKE2b of its key (collisions are out of reach)
and its stream position."""


def _key_record(key: str, position: int) -> bytes:
    return struct.pack(KEY_FORMAT, hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest(), position)


def _bucket(job: DistributeJob, key: str, position: int) -> int:
    if job.split == "train":
        digest = hashlib.sha256(f"{job.seed}:{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") * job.buckets >> 64
    return position // job.shard_samples


def distribute(job: DistributeJob) -> dict:
    """Phase 1: stream one tarball into bucket pieces; record per-bucket and per-class counts."""
    source = job.source
    known = set(job.classes)
    writers: dict[int, BinaryIO] = {}
    pieces: dict[int, Path] = {}
    per_bucket: Counter = Counter()
    per_class: Counter = Counter()
    unknown: list[str] = []
    oversized: list[tuple[int, str, int]] = []
    keys: list[bytes] = []
    position = 0
    try:
        for name, data in source.iter_images(Path(job.path), job.max_member):
            if job.take is not None and position >= job.take:
                break
            class_id, key = source.class_of(name), source.key_of(name)
            position += 1
            if isinstance(data, Oversized):
                oversized.append((position - 1, name, data.size))
                continue
            if class_id not in known:
                unknown.append(name)
                continue
            bucket = _bucket(job, key, position - 1)
            if bucket not in writers:
                pieces[bucket] = Path(job.folder) / f"{bucket:06d}-{job.tarball}.tar"
                writers[bucket] = open(pieces[bucket], "wb", buffering=1 << 18)
            with naming_file(pieces[bucket]):  # a full disk names the piece
                # The stream position goes in the name: it is what --limit keeps.
                for block in shard_sink.member_blocks(f"{position - 1:09d}_{Path(name).name}", data):
                    writers[bucket].write(block)
            keys.append(_key_record(key, position - 1))
            per_bucket[bucket] += 1
            per_class[class_id] += 1
    finally:
        for bucket, writer in writers.items():
            with naming_file(pieces[bucket]):
                writer.write(shard_sink.END_OF_ARCHIVE)  # each piece is a valid tar
                writer.close()
    with atomic_path(Path(job.keys), durable=False) as tmp:
        tmp.write_bytes(b"".join(keys))
    result = {"images": sum(per_bucket.values()), "seen": position,
              "per_bucket": {str(k): v for k, v in sorted(per_bucket.items())},
              "per_class": dict(sorted(per_class.items())), _unknown(source): unknown, "oversized": oversized}
    write_json(Path(job.record), result, durable=False)
    return result


def duplicates(keys: list[Path], allowed: tuple[int, ...]) -> frozenset[tuple[int, int]]:
    """``(tarball, position)`` of every image whose key an earlier image (in tarball order) already has.

    Two files of one name (or of one stem in two folders) would be two samples of one key, which
    webdataset and wids readers merge or reject. Only positions ``--limit`` keeps take part. The
    1.28 M keys of train take about a second and 100 MB here, once per run.
    """
    seen: set[bytes] = set()
    later: set[tuple[int, int]] = set()
    for tarball, path in enumerate(keys):
        for digest, position in struct.iter_unpack(KEY_FORMAT, path.read_bytes()):
            if position >= allowed[tarball]:
                break  # positions increase through a tarball
            if digest in seen:
                later.add((tarball, position))
            seen.add(digest)
    return frozenset(later)


def _unknown(source: TarballSource) -> str:
    """The key counting images of a class not in the class list (a tarball's record, stats.json)."""
    return f"unknown_{source.class_word}"


@dataclass(frozen=True)
class ShardJob:
    source: TarballSource
    buckets: tuple[int, ...]
    index: int
    folder: str
    path: str
    """The staged shard this job writes."""
    split: str
    seed: int
    resize: int | None
    labels: dict
    record: str
    allowed: tuple[int, ...]
    """Per tarball, the stream positions kept (all of them unless ``--limit`` stops earlier)."""
    dropped: frozenset[tuple[int, int]] = frozenset()
    """``(tarball, position)`` of images whose key an earlier image has: listed, not written."""


def shard_bucket(job: ShardJob) -> dict:
    """Phase 2: one bucket's pieces → one shard, in the split's order, every image checked."""
    source = job.source
    wanted = set(job.buckets)
    pieces = sorted((p for p in Path(job.folder).iterdir()
                     if p.suffix == ".tar" and int(p.stem.split("-")[0]) in wanted),
                    key=lambda p: tuple(int(x) for x in p.stem.split("-")))
    handles, maps, views, entries, duplicated = [], [], [], [], []
    try:
        for piece_index, piece in enumerate(pieces):
            handle = open(piece, "rb")
            handles.append(handle)
            view = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            maps.append(view)
            tarball = int(piece.stem.split("-")[1])
            for stored, offset, size in list_tar_bytes(view, str(piece)):
                position, name = int(stored[:9]), stored[10:]
                if (tarball, position) in job.dropped:
                    duplicated.append({"key": source.key_of(name), "file": name,
                                       "error": f"duplicate key: this file of {source.tarballs[job.split][tarball]} "
                                                "has the key of an earlier file in tarball order, which was kept"})
                elif position < job.allowed[tarball]:
                    entries.append((name, piece_index, offset, size))
        if job.split == "train":
            entries.sort()
            random.Random(f"{job.seed}-{job.index}").shuffle(entries)
        errors, converted, kept = list(duplicated), [], []

        views += [memoryview(view) for view in maps]  # slices of these are not copies

        def samples():
            for name, piece_index, offset, size in entries:
                data = views[piece_index][offset:offset + size]
                class_id = source.class_of(name)
                try:
                    image = prepare_image(data, job.resize)
                except ImageError as exc:
                    errors.append({"key": source.key_of(name), "file": name, "error": f"cannot decode: {exc}"})
                    continue
                label, class_name = job.labels[class_id]
                meta = {"file_name": name, source.class_word: class_id, "label": label, "class_name": class_name,
                        "width": image.width, "height": image.height}
                meta.update(shard_sink.conversion_fields(image.converted))
                if image.converted:
                    converted.append({"file": name, "converted": image.converted})
                kept.append((name, label))
                yield source.key_of(name), {"jpg": image.data, "cls": str(label).encode(),
                                             "json": shard_sink.json_bytes(meta)}

        info = shard_sink.write_shard(Path(job.path), samples())
    finally:
        for whole in views:
            whole.release()
        for view in maps:
            try:
                view.close()
            except BufferError:  # an error's traceback still holds a slice; closed when it is collected
                pass
        for handle in handles:
            handle.close()
    result = {"shard": info.__dict__, "errors": errors, "converted": converted, "kept": kept}
    write_json(Path(job.record), result, durable=False)
    for piece in pieces:
        piece.unlink()
    return result


def shard(layout: Layout, source: TarballSource, split: str, workers: int = 1, seed: int = 0,
          resize: int | None = None, limit: int | None = None, shard_samples: int = 10_000, force: bool = False,
          max_member: int = DEFAULT_CAPS.member_bytes) -> dict:
    """Both phases for one split of ``source``; the work key holds every tarball's sha256, so a changed
    tarball redoes the whole split (its images are hashed into every bucket, so every shard changes)."""
    if split not in source.expected:
        raise VlprepError(f"unknown {source.title} split {split!r}", fix=f"use {' or '.join(source.expected)}")
    raw = layout.raw(source.name)
    classes_path = raw / source.classes_file
    tarballs = [raw / rel for rel in source.tarballs[split]]
    for path in [classes_path, *tarballs]:
        if not path.exists():
            raise VlprepError(f"{path} is missing", fix=f"run: vlprep fetch {source.name}")
    classes = source.read_classes(classes_path)
    labels = {class_id: (index, name) for index, (class_id, name) in enumerate(classes)}
    config = ShardConfig(split, seed, resize, shard_samples, limit, max_member)
    inputs = raw_inputs(layout, source.name, [source.classes_file, *source.tarballs[split]])
    key = config.key(source.work_version, inputs)
    writer = split_sink.SplitWriter.start(layout, source.name, split, key, limit, force)
    work = writer.work
    buckets_dir = ensure_dir(work / "buckets")
    for _ in range(2):  # a second pass only if a consumed bucket must be read again
        _run_distribute(source, tarballs, work, buckets_dir, config, labels, workers)
        parts = [read_json(work / f"tarball-{i}.json") for i in range(len(tarballs))]
        counts = _check_counts(source, split, parts, labels, limit)
        filled = group_buckets(parts, shard_samples)
        allowed = _allowed(parts, limit)
        dropped = duplicates([work / f"keys-{i}.bin" for i in range(len(tarballs))], allowed)
        shard_jobs = []
        for index, buckets in enumerate(filled):
            if writer.done(index):
                continue
            shard_jobs.append(ShardJob(source, buckets, index, str(buckets_dir), str(writer.staged_path(index)), split,
                                       seed, resize, labels, str(writer.record_path(index)), allowed, dropped))
        have = {int(p.stem.split("-")[0]) for p in buckets_dir.glob("*.tar")}
        if all(set(job.buckets) <= have for job in shard_jobs):
            break
        # A shard went missing after its bucket files were consumed: read the tarballs again.
        for record in work.glob("tarball-*.json"):
            record.unlink()
        for piece in buckets_dir.glob("*.tar"):
            piece.unlink()
    with process_pool(min(workers, len(shard_jobs))) as pool, \
            tqdm(total=len(shard_jobs), desc=f"{source.name} {split}: write shards", unit="shard",
                 disable=None) as bar:
        for _ in run_bounded(shard_bucket, shard_jobs, pool, workers):
            bar.update(1)
    for piece in buckets_dir.glob("*.tar"):  # left by buckets whose shards were already complete
        piece.unlink()
    results = writer.results(len(filled))
    with writer.publishing(len(filled)):
        return _finish(layout, source, writer, config, results, counts, parts, allowed, inputs)


def _run_distribute(source: TarballSource, tarballs: list[Path], work: Path, buckets_dir: Path,
                    config: ShardConfig, labels: dict, workers: int) -> None:
    """Phase 1 for every tarball without a completion record."""
    jobs = []
    for index, path in enumerate(tarballs):
        record = work / f"tarball-{index}.json"
        if not record.exists():
            for stale in buckets_dir.glob(f"*-{index}.tar"):  # a run killed mid-tarball left partial pieces
                stale.unlink()
            jobs.append(DistributeJob(source, index, str(path), str(buckets_dir), config.split, config.seed,
                                      config.shard_samples, config.limit, tuple(labels), str(record),
                                      train_buckets(source.expected[config.split]["images"], config.limit,
                                                    config.shard_samples),
                                      config.max_member, str(work / f"keys-{index}.bin")))
    with process_pool(min(workers, len(jobs))) as pool, \
            tqdm(total=len(jobs), desc=f"{source.name} {config.split}: read tarballs", unit="tar",
                 disable=None) as bar:
        for _ in run_bounded(distribute, jobs, pool, workers):
            bar.update(1)


def group_buckets(parts: list[dict], shard_samples: int) -> list[tuple[int, ...]]:
    """Consecutive non-empty buckets grouped into shards of at most ``shard_samples`` (one bucket may exceed it)."""
    sizes: Counter = Counter()
    for part in parts:
        sizes.update({int(k): v for k, v in part["per_bucket"].items()})
    groups: list[list[int]] = []
    total = 0
    for bucket in sorted(sizes):
        if groups and total + sizes[bucket] <= shard_samples:
            groups[-1].append(bucket)
            total += sizes[bucket]
        else:
            groups.append([bucket])
            total = sizes[bucket]
    return [tuple(g) for g in groups]


def _allowed(parts: list[dict], limit: int | None) -> tuple[int, ...]:
    """Per tarball, how many of its first images ``--limit`` keeps: the first N in tarball order."""
    remaining = limit if limit is not None else sum(part["seen"] for part in parts)
    allowed = []
    for part in parts:
        allowed.append(max(0, min(part["seen"], remaining)))
        remaining -= allowed[-1]
    return tuple(allowed)


def _class_counts(per_class: Counter) -> dict:
    return {"images": sum(per_class.values()), "classes": len(per_class),
            "max_per_class": max(per_class.values(), default=0), "min_per_class": min(per_class.values(), default=0)}


def _check_counts(source: TarballSource, split: str, parts: list[dict], labels: dict, limit: int | None) -> dict:
    unknown_key = _unknown(source)
    per_class: Counter = Counter()
    for part in parts:
        per_class.update(part["per_class"])
    unknown = [name for part in parts for name in part[unknown_key]]
    counts = {**_class_counts(per_class), unknown_key: len(unknown)}
    if limit is None:
        expected = source.expected[split]
        wrong = {k: (counts[k], v) for k, v in expected.items() if counts[k] != v}
        if wrong or unknown or len(labels) != expected["classes"]:
            detail = ", ".join(f"{k} {found:,} (published {want:,})" for k, (found, want) in wrong.items())
            if unknown:
                detail += (f"; {len(unknown)} files of a {source.class_word} not in {source.classes_file}, "
                           f"e.g. {unknown[:3]}")
            if len(labels) != expected["classes"]:
                detail += f"; {source.classes_file} lists {len(labels)} classes"
            raise VlprepError(f"{source.name} {split}: {detail}",
                              fix="fetch the published files again (or pass --limit for a partial trial)")
    return {**counts, "per_class": dict(sorted(per_class.items()))}


def over_cap_errors(source: TarballSource, parts: list[dict], allowed: tuple[int, ...], cap: int) -> list[dict]:
    """errors.jsonl entries of the image members skipped unread for being over ``--max-member-mb``."""
    option = OPTION_OF["member_bytes"]
    return [{"key": source.key_of(name), "file": name,
             "error": f"member over the cap: {size:,} bytes, more than {cap / MIB:g} MiB (raise it with {option})"}
            for tarball, part in enumerate(parts) for position, name, size in part["oversized"]
            if position < allowed[tarball]]


def _finish(layout: Layout, source: TarballSource, writer: split_sink.SplitWriter, config: ShardConfig,
            results: list[dict], counts: dict, parts: list[dict], allowed: tuple[int, ...],
            inputs: dict[str, str]) -> dict:
    split = config.split
    unknown_key = _unknown(source)
    if config.limit is not None:  # the tarballs were read past the limit; count what was kept
        per_class = Counter(source.class_of(name) for r in results for name, _ in r["kept"])
        counts = {**_class_counts(per_class), unknown_key: counts[unknown_key],
                  "per_class": dict(sorted(per_class.items()))}
    shards = writer.drop_empty([shard_sink.ShardInfo(**r["shard"]) for r in results])
    errors = sorted((e for r in results for e in r["errors"]), key=lambda e: e["file"])
    errors += [{"key": source.key_of(n), "file": n,
                "error": f"{source.class_word} not in {source.classes_file}"}
               for part in parts for n in part[unknown_key]]
    over_cap = over_cap_errors(source, parts, allowed, config.max_member)
    errors += over_cap
    converted = sorted((c for r in results for c in r["converted"]), key=lambda c: c["file"])
    writer.write_errors(errors)
    images = sum(s.nsamples for s in shards)
    split_stats = {"images": images, "shards": len(shards), "bytes": sum(s.filesize for s in shards),
                   "skipped_images": len(errors), "converted_images": len(converted), "converted": converted,
                   "over_member_cap": len(over_cap),
                   "duplicate_keys": sum(e["error"].startswith("duplicate key") for e in errors),
                   "read": {k: v for k, v in counts.items() if k != "per_class"},
                   "per_class": counts["per_class"], "config": config.__dict__, "work_key": writer.key,
                   "inputs": inputs}
    stats = writer.write_stats(split_stats)
    rows = [(name, str(label), "used") for r in results for name, label in r["kept"]]
    rows += [(e["file"], "", "skipped: " + e["error"].split(":")[0]) for e in errors]
    manifest_sink.write_tsv_gz(layout.manifests() / f"{source.name}-{split}.tsv.gz", manifest_sink.LABELLED_FILES, sorted(rows))
    writer.write_index(shards)  # last: the split is whole
    return stats


def summary_lines(stats: dict) -> list[str]:
    rows = [f"{'split':6} {'images':>10} {'classes':>7} {'min/class':>9} {'max/class':>9} {'shards':>6} "
            f"{'skipped':>7} {'converted':>9}"]
    for split, s in stats["splits"].items():
        read = s["read"]
        rows.append(f"{split:6} {s['images']:>10,} {read['classes']:>7,} {read['min_per_class']:>9,} "
                    f"{read['max_per_class']:>9,} {s['shards']:>6} {s['skipped_images']:>7,} "
                    f"{s['converted_images']:>9,}")
    return rows
