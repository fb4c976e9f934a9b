"""Visual Genome 1.2 → WebDataset shards: ``regions`` (every region description a pair) or
``concat`` (an image's descriptions packed into as few ≤ 64-token captions as possible).

Leak guard: images whose ``coco_id`` is in COCO's Karpathy val or test split are left out unless
``--no-leak-guard``, so a model pretrained on VG is not evaluated on images it has seen.
"""
from __future__ import annotations

import re
from typing import Callable, Iterator

from ..caps import DEFAULT_CAPS, Caps
from ..errors import VlprepError
from ..layout import Layout
from ..records import coco as coco_records
from ..records import vg as records
from ..transforms.captions import MAX_BPE, CaptionEncoder
from ..transforms.text import clean_caption
from ..engines import imagetext
from .coco import NAME as COCO
from ..engines.fetch import FetchReport, fetch_files
from ..engines.inputs import raw_inputs

NAME = "vg"
SPLIT = "train"
VARIANTS = ("regions", "concat")
BASE = "https://homes.cs.washington.edu/~ranjay/visualgenome/data/dataset/"
URLS = {
    "images.zip": "https://cs.stanford.edu/people/rak248/VG_100K_2/images.zip",
    "images2.zip": "https://cs.stanford.edu/people/rak248/VG_100K_2/images2.zip",
    records.REGIONS_ZIP: BASE + records.REGIONS_ZIP,
    records.IMAGE_DATA_ZIP: BASE + records.IMAGE_DATA_ZIP,
}
LEAK_SPLITS = ("val", "test")
_SENTENCE_END = re.compile(r"[.!?]$")


def fetch(layout: Layout, mirror: str | None = None) -> FetchReport:
    return fetch_files(layout.raw(NAME), URLS, mirror)


def join_descriptions(first: str, second: str) -> str:
    """The ``concat`` joiner: ``". "`` between descriptions, or ``" "`` after one that already ends a
    sentence (``.``, ``!``, ``?``), so no ``..`` appears."""
    return f"{first} {second}" if _SENTENCE_END.search(first) else f"{first}. {second}"


def pack(phrases: list[str], length: Callable[[str], int]) -> list[tuple[str, list[int]]]:
    """Greedy in-order packing into captions of at most 62 BPE tokens (64 with ``<s>``/``</s>``).

    A description is never split; one longer than the limit stands alone (and is truncated, with its
    full length kept). Because the order is fixed, greedy filling gives the fewest captions.
    """
    groups: list[tuple[str, list[int]]] = []
    for index, phrase in enumerate(phrases):
        if groups:
            text, members = groups[-1]
            candidate = join_descriptions(text, phrase)
            if length(candidate) <= MAX_BPE:
                groups[-1] = (candidate, members + [index])
                continue
        groups.append((phrase, [index]))
    return groups


def guarded_coco_ids(layout: Layout, caps: Caps = DEFAULT_CAPS) -> set[int]:
    raw = layout.raw(COCO)
    if not (raw / coco_records.KARPATHY_ZIP).exists():
        raise VlprepError(f"the leak guard needs COCO's Karpathy split ({raw / coco_records.KARPATHY_ZIP})",
                          fix="run: vlprep fetch coco  (or pass --no-leak-guard to keep every VG image)")
    return coco_records.karpathy_cocoids(raw, LEAK_SPLITS, caps)


def specs(layout: Layout, variant: str, guard: set[int], limit: int | None, counts: dict,
          encoder: CaptionEncoder, caps: Caps = DEFAULT_CAPS,
          rejected: list[dict] | None = None) -> Iterator[imagetext.SampleSpec]:
    """One sample per image; an image id seen before is appended to ``rejected`` instead."""
    raw = layout.raw(NAME)
    for name in (records.IMAGE_DATA_ZIP, records.REGIONS_ZIP):
        if not (raw / name).exists():
            raise VlprepError(f"{raw / name} is missing", fix="run: vlprep fetch vg")
    meta_by_id = records.image_data(raw, caps)
    seen: set[int] = set()
    for image_id, regions, text_errors in records.iter_regions(raw, caps):
        if limit is not None and counts["images_considered"] >= limit:
            return
        counts["images_considered"] += 1
        image = meta_by_id.get(image_id)
        if image is None:
            counts["not_in_image_data"] += 1
            continue
        if image_id in seen:
            if rejected is not None:
                rejected.append({"key": f"{image_id:09d}", "file": f"{image.image_zip}:{image.member}",
                                 "error": imagetext.DUPLICATE_KEY})
            continue
        seen.add(image_id)
        if image.coco_id is not None and image.coco_id in guard:
            counts["leak_guarded_ids"].append(image_id)
            continue
        regions = sorted(regions, key=lambda r: r.region_id)
        cleaned = [(r, clean_caption(r.phrase)) for r in regions]
        dropped = sum(1 for _, text in cleaned if not text)
        cleaned = [(r, text) for r, text in cleaned if text]
        meta = {"dataset": NAME, "image_id": image_id, "coco_id": image.coco_id, "variant": variant}
        if variant == "regions":
            texts = [text for _, text in cleaned]
            meta.update(region_ids=[r.region_id for r, _ in cleaned],
                        boxes=[[r.x, r.y, r.width, r.height] for r, _ in cleaned])
        else:
            groups = pack([text for _, text in cleaned], encoder.length)
            texts = [text for text, _ in groups]
            meta.update(region_ids=[[cleaned[i][0].region_id for i in members] for _, members in groups],
                        boxes=[[[cleaned[i][0].x, cleaned[i][0].y, cleaned[i][0].width, cleaned[i][0].height]
                                for i in members] for _, members in groups],
                        joiner="'. ' between descriptions, ' ' after one ending in . ! or ?")
        yield imagetext.SampleSpec(f"{image_id:09d}", image.image_zip, image.member, meta, texts,
                                   dropped_texts=dropped, text_errors=text_errors)


def shard(layout: Layout, variant: str = "regions", workers: int = 1, seed: int = 0, resize: int | None = None,
          limit: int | None = None, leak_guard: bool = True, max_count: int = 10_000,
          max_bytes: int = 1_000_000_000, tokenizer: str | None = None, force: bool = False,
          caps: Caps = DEFAULT_CAPS) -> dict:
    if variant not in VARIANTS:
        raise VlprepError(f"unknown VG variant {variant!r}", fix=f"use one of: {', '.join(VARIANTS)}")
    guard = guarded_coco_ids(layout, caps) if leak_guard else set()
    counts: dict = {"images_considered": 0, "not_in_image_data": 0,
                    "leak_guarded_ids": []}
    encoder = imagetext.caption_encoder(tokenizer)
    config = imagetext.ShardConfig(NAME, SPLIT if variant == "regions" else f"{SPLIT}-{variant}", shuffle=True,
                                   seed=seed, resize=resize, max_count=max_count, max_bytes=max_bytes, limit=limit,
                                   variant={"variant": variant, "leak_guard": leak_guard}, tokenizer=tokenizer,
                                   manifest_name=variant, max_member_bytes=caps.member_bytes,
                                   max_text_bytes=caps.text_bytes)
    rejected: list[dict] = []
    return imagetext.build(layout, config, specs(layout, variant, guard, limit, counts, encoder, caps, rejected),
                           workers, extra=counts, rejected=rejected,
                           inputs=shard_inputs(layout, leak_guard), force=force)


def shard_inputs(layout: Layout, leak_guard: bool) -> dict[str, str]:
    """sha256 of the raw files a shard run reads: VG's four files, and COCO's Karpathy split for the guard."""
    inputs = raw_inputs(layout, NAME, [records.IMAGE_DATA_ZIP, records.REGIONS_ZIP, *records.IMAGE_ZIPS])
    if leak_guard:
        inputs.update(raw_inputs(layout, COCO, [coco_records.KARPATHY_ZIP]))
    return inputs
