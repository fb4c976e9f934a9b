"""Image–text datasets → WebDataset shards: one engine for every dataset of images with texts.

Stages: the dataset's recipe yields one :class:`SampleSpec` per image (ids, cleaned texts, where the
image lies); captions are encoded in batches and each sample's json is written to a work file in
sample order (memory holds one batch). The order is then fixed (seeded shuffle for train splits),
shards are planned from the images' stored sizes, and each shard is written by a worker from the
work file and the image zips. A shard whose completion record exists is never rewritten, so an
interrupted run resumes at shard granularity and ends with the same bytes; the split's bookkeeping
(staging, swap, errors, stats, index) is :class:`~vlprep.pipeline.sinks.splits.SplitWriter`'s.
"""
from __future__ import annotations

import functools
import json
import lzma
import random
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tqdm import tqdm

from ..caps import DEFAULT_CAPS, MIB, OPTION_OF
from ..errors import VlprepError
from ..fileio import atomic_path, file_digests, read_json, write_json
from ..layout import Layout
from ..parallel import process_pool, run_bounded
from ..sinks import manifests as manifest_sink
from ..sinks import shards as shard_sink
from ..sinks import splits as split_sink
from ..sources.archives import open_zip_info
from ..transforms.bpe import get_backend
from ..transforms.captions import MAX_BPE, MAX_TOKENS, CaptionEncoder
from ..transforms.dictionary import Dictionary, load_dictionary
from ..transforms.images import ImageError, prepare_image
from ..transforms.text import clean_caption
from .inputs import check_inputs, work_key

WORK_VERSION = "imagetext-1"
DUPLICATE_KEY = "duplicate key"
"""The ``errors.jsonl`` cause of an image whose key an earlier image of the split already has."""
BATCH_IMAGES = 2000


@dataclass
class SampleSpec:
    """One image and its texts, before encoding."""

    key: str
    image_zip: str
    member: str
    meta: dict
    texts: list[str]
    dropped_texts: int = 0
    """Texts of the annotations left empty by cleaning (not in ``texts``; counted)."""
    text_errors: list[dict] = field(default_factory=list)
    """Texts left out for their value (over ``--max-text-kb``, not a string): ``errors.jsonl`` lines."""


def caption_spec(key: str, image_zip: str, member: str, meta: dict, captions: list[str], caption_ids: list[int],
                 text_errors: list[dict]) -> SampleSpec:
    """One image with its captions cleaned (:func:`clean_caption`); a caption left empty by cleaning is
    counted, not kept, and ``meta["text_ids"]`` lists the ids of the kept ones in their order."""
    kept = [(i, text) for i, text in zip(caption_ids, map(clean_caption, captions)) if text]
    return SampleSpec(key, image_zip, member, {**meta, "text_ids": [i for i, _ in kept]}, [text for _, text in kept],
                      dropped_texts=len(captions) - len(kept), text_errors=list(text_errors))


@dataclass(frozen=True)
class ShardConfig:
    """Everything that decides the shard bytes (hashed into the work folder's name)."""

    dataset: str
    split: str
    shuffle: bool
    seed: int = 0
    resize: int | None = None
    max_count: int = 10_000
    max_bytes: int = 1_000_000_000
    limit: int | None = None
    variant: dict = field(default_factory=dict)
    tokenizer: str | None = None
    manifest_name: str | None = None
    """``manifests/<dataset>-<manifest_name>.tsv.gz`` (default: the split)."""
    folder: str | None = None
    """``out/<folder>`` when the split is a variant with a folder of its own (default: the dataset's)."""
    max_member_bytes: int = DEFAULT_CAPS.member_bytes
    """An image member over this is skipped unread (``--max-member-mb``)."""
    max_text_bytes: int = DEFAULT_CAPS.text_bytes
    """A caption or description over this is dropped and listed (``--max-text-kb``)."""

    def key(self, dictionary_sha: str, inputs: dict[str, str] | None = None) -> str:
        """The work folder's name: the options that decide the bytes and the sha256 of every raw input."""
        blob = {k: v for k, v in self.__dict__.items() if k not in ("tokenizer", "manifest_name")}
        blob.update(dict=dictionary_sha)
        return work_key(blob, WORK_VERSION, inputs)


def write_samples(specs: Iterable[SampleSpec], encoder: CaptionEncoder, path: Path) -> list[dict]:
    """Encode texts in batches and write one json line per sample; return each sample's locator."""
    locators: list[dict] = []
    with atomic_path(path, durable=False) as tmp, open(tmp, "wb") as handle:
        batch: list[SampleSpec] = []

        def flush() -> None:
            encoded = iter(encoder.encode([t for spec in batch for t in spec.texts]))
            for spec in batch:
                tokens = [next(encoded) for _ in spec.texts]
                meta = {**spec.meta, "key": spec.key, "texts": spec.texts,
                        "tokens": [t.ids for t in tokens], "lengths": [t.length for t in tokens]}
                offset = handle.tell()
                handle.write(shard_sink.json_bytes(meta) + b"\n")
                locators.append({"key": spec.key, "zip": spec.image_zip, "member": spec.member,
                                 "offset": offset, "texts": len(spec.texts), "dropped": spec.dropped_texts}
                                | ({"text_errors": spec.text_errors} if spec.text_errors else {}))
            batch.clear()

        for spec in specs:
            batch.append(spec)
            if len(batch) >= BATCH_IMAGES:
                flush()
        flush()
    return locators


_ZIPS: dict[str, zipfile.ZipFile] = {}


def _zip(path: str) -> zipfile.ZipFile:
    """One open handle per image zip and process (the central directory is read once)."""
    if path not in _ZIPS:
        try:
            _ZIPS[path] = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise VlprepError(f"{path} is missing or not a readable zip: {exc}",
                              fix="run the fetch command for this dataset again") from exc
    return _ZIPS[path]


def _close_zips() -> None:
    for handle in _ZIPS.values():
        handle.close()
    _ZIPS.clear()


def _member_size(raw: Path, locator: dict) -> int | None:
    try:
        return _zip(str(raw / locator["zip"])).getinfo(locator["member"]).file_size
    except KeyError:
        return None


def _skipped(locator: dict, error: str) -> dict:
    """One line of ``<split>.errors.jsonl``: the sample, the file inside its zip, and why."""
    return {"key": locator["key"], "file": f"{locator['zip']}:{locator['member']}", "error": error}


@functools.lru_cache(maxsize=1)
def shipped_dictionary() -> Dictionary:
    """The shipped GPT-2 dictionary, parsed once per process (captions always use it)."""
    return load_dictionary()


@functools.lru_cache(maxsize=4)
def caption_encoder(tokenizer: str | None) -> CaptionEncoder:
    """The process-wide caption encoder (default dictionary; the backend is built once)."""
    return CaptionEncoder(shipped_dictionary(), get_backend(tokenizer))


@dataclass(frozen=True)
class ShardJob:
    index: int
    path: str
    raw: str
    samples_path: str
    locators: list[dict]
    resize: int | None
    record: str
    max_member_bytes: int = DEFAULT_CAPS.member_bytes


class MemberTooLarge(Exception):
    """An image member over ``--max-member-mb``: skipped unread and listed, the stage goes on."""


def member_over_cap(size: int, cap: int) -> str:
    """The ``errors.jsonl`` cause of an image member too large to read."""
    return f"image over the cap: {size:,} bytes > {cap / MIB:g} MB ({OPTION_OF['member_bytes']})"


def read_image(raw: Path, locator: dict, cap: int) -> bytes:
    """An image member's bytes, never more than ``cap``: the size in the central directory is checked
    first, and the read is bounded too (``zipfile`` stops at the stored size, which a hand-made
    zip may understate). Raises ``KeyError`` for a missing member, :class:`MemberTooLarge` over the cap."""
    archive = _zip(str(raw / locator["zip"]))
    info = archive.getinfo(locator["member"])
    if info.file_size > cap:
        raise MemberTooLarge(member_over_cap(info.file_size, cap))
    try:
        with open_zip_info(archive, info) as stream:
            data = stream.read(cap + 1)
    except (EOFError, zlib.error, lzma.LZMAError) as exc:  # not OSError: the caller would not list it
        raise zipfile.BadZipFile(f"the member's data is truncated or corrupt ({type(exc).__name__}: {exc})") from exc
    if len(data) > cap:
        raise MemberTooLarge(member_over_cap(len(data), cap))
    return data


def write_one_shard(job: ShardJob) -> dict:
    """Write one shard from its samples; return (and record) what it holds and what was skipped."""
    raw = Path(job.raw)
    errors: list[dict] = []
    lengths: Counter = Counter()
    counts = Counter()

    def samples() -> Iterator[tuple[str, dict[str, bytes]]]:
        with open(job.samples_path, "rb") as handle:
            for locator in job.locators:
                handle.seek(locator["offset"])
                meta = json.loads(handle.readline())
                try:
                    data = read_image(raw, locator, job.max_member_bytes)
                    image = prepare_image(data, job.resize)
                except KeyError:
                    errors.append(_skipped(locator, "missing from the zip"))
                    continue
                except MemberTooLarge as exc:
                    errors.append(_skipped(locator, str(exc)))
                    continue
                except (ImageError, zipfile.BadZipFile, OSError) as exc:
                    errors.append(_skipped(locator, f"cannot decode: {exc}"))
                    continue
                meta.update(width=image.width, height=image.height, **shard_sink.conversion_fields(image.converted))
                counts["converted"] += bool(image.converted)
                counts["images"] += 1
                counts["texts"] += len(meta["texts"])
                if "region_ids" in meta:  # region descriptions written (a packed text holds several)
                    counts["descriptions"] += sum(len(r) if isinstance(r, list) else 1 for r in meta["region_ids"])
                counts["truncated"] += sum(length > MAX_BPE for length in meta["lengths"])
                lengths.update(meta["lengths"])
                yield locator["key"], {"jpg": image.data, "json": shard_sink.json_bytes(meta)}

    info = shard_sink.write_shard(Path(job.path), samples())
    result = {"shard": info.__dict__, "errors": errors, "counts": dict(counts),
              "lengths": {str(k): v for k, v in sorted(lengths.items())}}
    write_json(Path(job.record), result, durable=False)
    return result


def build(layout: Layout, config: ShardConfig, specs: Iterable[SampleSpec], workers: int,
          extra: dict | None = None, expected: tuple[int | None, int | None] | None = None,
          inputs: dict[str, str] | None = None, force: bool = False, rejected: list[dict] | None = None,
          images_root: Path | None = None) -> dict:
    """Write ``out/<folder>/<folder>-<split>-*.tar`` + index, errors, stats and the manifest; return stats.

    ``inputs`` (``{<dataset>/<relpath>: sha256}`` of every raw file the split reads) is part of the
    work key, so a changed raw file rebuilds every shard of the split (its plan depends on the
    annotations and on the image zips' member sizes). Shards are staged and swapped in when all are
    written; a ``--limit`` build does not replace a more complete split unless ``force``.

    ``rejected``: ``errors.jsonl`` lines of images the dataset left out before they became samples
    (a key seen before); filled while ``specs`` is consumed. ``images_root``: the folder the specs'
    image zips are relative to (default ``raw/<dataset>``; a zip repacked from a tarball lies under
    ``work/``).
    """
    dictionary = shipped_dictionary()
    key = config.key(dictionary.sha256, inputs)
    raw = images_root or layout.raw(config.dataset)
    writer = split_sink.SplitWriter.start(layout, config.dataset, config.split, key, config.limit, force,
                                          folder=config.folder)
    work = writer.work
    plan_path = work / "plan.json"
    if plan_path.exists():
        plan = read_json(plan_path)
    else:
        locators = write_samples(tqdm(specs, desc=f"encode {config.dataset} {config.split}", unit="img",
                                      disable=None, leave=False), caption_encoder(config.tokenizer),
                                 work / "samples.jsonl")
        plan = _plan(raw, config, locators, expected, rejected or [])
        plan["extra"] = extra or {}
        write_json(plan_path, plan, durable=False)
    runs = plan["runs"]
    jobs = []
    for index, (start, stop) in enumerate(runs):
        if writer.done(index):
            continue
        jobs.append(ShardJob(index, str(writer.staged_path(index)), str(raw), str(work / "samples.jsonl"),
                             [plan["locators"][i] for i in plan["order"][start:stop]], config.resize,
                             str(writer.record_path(index)), config.max_member_bytes))
    _close_zips()  # a forked worker must not share the parent's file offsets
    with process_pool(min(workers, len(jobs))) as pool, \
            tqdm(total=sum(len(j.locators) for j in jobs), desc=f"shard {config.dataset} {config.split}",
                 unit="img", disable=None) as bar:
        for job, _ in run_bounded(write_one_shard, jobs, pool, workers):
            bar.update(len(job.locators))
    results = writer.results(len(runs))
    with writer.publishing(len(runs)):
        return _finish(layout, writer, config, plan, results, inputs)


def _plan(raw: Path, config: ShardConfig, locators: list[dict], expected, rejected: list[dict]) -> dict:
    """Fix the sample order and cut it into shards by the images' stored sizes."""
    missing = []
    sizes = []
    kept = []
    for position, locator in enumerate(locators):
        size = _member_size(raw, locator)
        if not locator["texts"]:
            missing.append(_skipped(locator, "no text left after cleaning"))
        elif size is None:
            missing.append(_skipped(locator, "missing from the zip"))
        elif size > config.max_member_bytes:
            missing.append(_skipped(locator, member_over_cap(size, config.max_member_bytes)))
        else:
            kept.append(position)
            sizes.append(size)
    if expected and config.limit is None:
        images, texts = expected
        found_texts = sum(loc["texts"] + loc["dropped"] + len(loc.get("text_errors", [])) for loc in locators)
        if (images is not None and len(locators) + len(rejected) != images) or (texts is not None and found_texts != texts):
            raise VlprepError(
                f"{config.dataset} {config.split}: the annotations list {len(locators):,} images and "
                f"{found_texts:,} texts; the published files have {images:,} images"
                + (f" and {texts:,} texts" if texts is not None else ""),
                fix="fetch the published files again (or pass --limit for a partial trial)")
    order = list(range(len(kept)))
    if config.shuffle:
        random.Random(config.seed).shuffle(order)
    size_of = dict(zip(kept, sizes))
    order = [kept[i] for i in order]
    runs = shard_sink.plan_shards([size_of[i] for i in order], config.max_count, config.max_bytes)
    dropped = [{"key": loc["key"], "file": loc["zip"] + ":" + loc["member"], **error}
               for loc in locators for error in loc.get("text_errors", [])]
    return {"locators": locators, "order": order, "runs": runs, "missing": missing + rejected, "dropped": dropped}


def _finish(layout: Layout, writer: split_sink.SplitWriter, config: ShardConfig, plan: dict, results: list[dict],
            inputs: dict[str, str] | None) -> dict:
    shards = writer.drop_empty([shard_sink.ShardInfo(**r["shard"]) for r in results])
    errors = plan["missing"] + [e for r in results for e in r["errors"]]
    dropped = plan.get("dropped", [])
    writer.write_errors(sorted(errors + dropped, key=lambda e: e["key"]))
    counts: Counter = Counter()
    lengths: Counter = Counter()
    for result in results:
        counts.update(result["counts"])
        lengths.update({int(k): v for k, v in result["lengths"].items()})
    images, texts = counts["images"], counts["texts"]
    token_sum = sum(k * v for k, v in lengths.items())
    split_stats = {
        "images": images, "texts": texts, "pairs": texts,
        "texts_per_image": round(texts / images, 3) if images else 0.0,
        "mean_text_tokens": round(token_sum / texts, 3) if texts else 0.0,
        "truncated_texts": counts["truncated"], "converted_images": counts["converted"],
        "empty_texts_dropped": sum(loc["dropped"] for loc in plan["locators"]),
        "dropped_texts": len(dropped), "dropped_texts_by_cause": dict(Counter(e["error"].split(":")[0] for e in dropped)),
        **({"descriptions": counts["descriptions"]} if "descriptions" in counts else {}),
        "skipped_images": len(errors), "skipped_by_cause": dict(Counter(e["error"].split(":")[0] for e in errors)),
        "shards": len(shards), "bytes": sum(s.filesize for s in shards),
        "text_length_histogram": {str(k): lengths[k] for k in sorted(lengths)},
        "config": {k: v for k, v in config.__dict__.items()}, "work_key": writer.key, "inputs": inputs,
        **_extra_stats(plan),
    }
    stats = writer.write_stats(split_stats)
    _write_manifest(layout, config, plan, errors)
    writer.write_index(shards)  # last: the split is whole
    return stats


def _extra_stats(plan: dict) -> dict:
    extra = dict(plan.get("extra", {}))
    if "leak_guarded_ids" in extra:
        extra["leak_guarded"] = len(extra.pop("leak_guarded_ids"))
    return extra


def verify(layout: Layout, dataset: str, labelled: bool, rebuild: Callable[[str, str], str],
           folder: str | None = None) -> dict:
    """Read every shard back with webdataset, decode every image, check ids and counts; raise on a fault.

    ``labelled``: samples are image + class index (``cls``) instead of image + texts; ``rebuild(dataset,
    split)`` is the command that rebuilds a split, named in every fix; ``folder``: ``out/<folder>``
    (default: the dataset's)."""
    import io

    import webdataset as wds
    from PIL import Image

    out = layout.out(folder or dataset)
    stats_path = out / "stats.json"
    if not stats_path.exists():
        raise VlprepError(f"{stats_path} is missing", fix=f"run: {rebuild(dataset, '')}")
    stats = read_json(stats_path)
    n_symbols = len(shipped_dictionary())
    report = {}
    for split, expected in stats["splits"].items():
        check_inputs(layout, expected.get("inputs"), f"run again: {rebuild(dataset, split)}",
                     f"{dataset} {split}")
        fix = f"run: {rebuild(dataset, split)}"
        index = split_sink.index_path(out, split)
        shards = shard_sink.read_wids_index(index)
        strays = split_sink.unlisted_shards(out, split, {shard.url for shard in shards})
        if strays:  # a reader that globs the split (datasets, DALI) would read them as part of it
            raise VlprepError(f"{strays[0]}{f' and {len(strays) - 1} more' if len(strays) > 1 else ''}: named as a "
                              f"shard of {split} but not in {index.name}",
                              fix=f"remove {'them' if len(strays) > 1 else 'it'} (a file of another build), or {fix}")
        images = texts = 0
        for shard in tqdm(shards, desc=f"verify {dataset} {split}", unit="shard", disable=None, leave=False):
            path = out / shard.url
            if not path.exists() or path.stat().st_size != shard.filesize:
                raise VlprepError(f"{path}: missing or not {shard.filesize:,} bytes as the index says",
                                  fix=f"{fix} (finished shards are kept)")
            md5, sha256 = file_digests(path)
            if md5 != shard.md5sum or (shard.sha256 and sha256 != shard.sha256):
                raise VlprepError(f"{path}: {'md5' if md5 != shard.md5sum else 'sha256'} differs from {index.name}",
                                  fix=fix)
            count = 0
            for sample in wds.WebDataset(str(path), shardshuffle=False, empty_check=False):
                where = f"{path}:{sample['__key__']}"
                members = set(sample) - {"__key__", "__url__", "__local_path__"}
                if members != {"jpg", "json"} | ({"cls"} if labelled else set()):
                    raise VlprepError(f"{where}: members {sorted(members)} are not jpg + json"
                                      + (" + cls" if labelled else ""), fix=fix)
                meta = json.loads(sample["json"])
                try:
                    with Image.open(io.BytesIO(sample["jpg"])) as image:
                        image.load()
                except OSError as exc:
                    raise VlprepError(f"{where}: image does not decode ({exc})",
                                      fix=fix) from exc
                if labelled:
                    if sample["cls"] != str(meta["label"]).encode() or not 0 <= meta["label"] < 1000:
                        raise VlprepError(f"{where}: class {sample['cls']!r} disagrees with its json or is out of "
                                          "0..999", fix=fix)
                else:
                    _check_tokens(meta, n_symbols, where)
                    texts += len(meta["texts"])
                count += 1
            if count != shard.nsamples:
                raise VlprepError(f"{path}: {count} samples, the index says {shard.nsamples}",
                                  fix=fix)
            images += count
        if (images, texts) != (expected["images"], expected.get("texts", 0)):
            raise VlprepError(f"{dataset} {split}: {images:,} images / {texts:,} texts in the shards, stats.json "
                              f"says {expected['images']:,} / {expected.get('texts', 0):,}",
                              fix=fix)
        report[split] = {"shards": len(shards), "images": images, "texts": texts}
    return report


def _check_tokens(meta: dict, n_symbols: int, where: str) -> None:
    from ..transforms.dictionary import BOS, EOS

    if len(meta["tokens"]) != len(meta["texts"]) or len(meta["lengths"]) != len(meta["texts"]):
        raise VlprepError(f"{where}: texts, tokens and lengths differ in number", fix="run the shard command again")
    for ids, length in zip(meta["tokens"], meta["lengths"]):
        if (len(ids) > MAX_TOKENS or ids[0] != BOS or ids[-1] != EOS or len(ids) != min(length, MAX_BPE) + 2
                or any(not 0 <= i < n_symbols for i in ids) or BOS in ids[1:] or EOS in ids[:-1]):
            raise VlprepError(f"{where}: token ids {ids[:8]}... break the <s> + <=62 + </s> rule",
                              fix="run the shard command again")


def summary_lines(stats: dict) -> list[str]:
    rows = [f"{'split':16} {'images':>9} {'texts/img':>9} {'tokens/text':>11} {'pairs':>10} {'skipped':>8} "
            f"{'truncated':>9}"]
    for split, s in stats["splits"].items():
        rows.append(f"{split:16} {s['images']:>9,} {s['texts_per_image']:>9.2f} {s['mean_text_tokens']:>11.2f} "
                    f"{s['pairs']:>10,} {s['skipped_images']:>8,} {s['truncated_texts']:>9,}")
    return rows


def _write_manifest(layout: Layout, config: ShardConfig, plan: dict, errors: list[dict]) -> None:
    """``manifests/<dataset>-<split or variant>.tsv.gz``: every image id considered and what became of it."""
    skipped = {e["key"]: e["error"].split(":")[0] for e in errors if e["error"] != DUPLICATE_KEY}
    rows = [(loc["key"], "skipped: " + skipped[loc["key"]] if loc["key"] in skipped else "used")
            for loc in plan["locators"]]
    rows += [(f"{k:09d}", "leak-guarded") for k in plan.get("extra", {}).get("leak_guarded_ids", [])]
    path = layout.manifests() / f"{config.dataset}-{config.manifest_name or config.split}.tsv.gz"
    manifest_sink.write_tsv_gz(path, manifest_sink.IMAGE_IDS, sorted(rows))
