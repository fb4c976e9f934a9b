"""COCO captions 2014 → WebDataset shards, one sample per image with all its captions."""
from __future__ import annotations

from typing import Iterator

from ..caps import DEFAULT_CAPS, Caps
from ..errors import VlprepError
from ..layout import Layout
from ..records import coco as records
from ..transforms.text import clean_caption
from ..engines import imagetext
from ..engines.inputs import raw_inputs
from ..engines.fetch import FetchReport, fetch_files

NAME = "coco"
URLS = {
    records.IMAGE_ZIPS["train2014"]: "http://images.cocodataset.org/zips/train2014.zip",
    records.IMAGE_ZIPS["val2014"]: "http://images.cocodataset.org/zips/val2014.zip",
    records.ANNOTATIONS_ZIP: "http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
    records.KARPATHY_ZIP: "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip",
}
DEFAULT_SPLIT = "karpathy-train"
EXPECTED = {"karpathy-train": (113_287, 566_747), "train2014": (82_783, 414_113),
            "karpathy-val": (5_000, None), "karpathy-test": (5_000, None), "val2014": (40_504, None)}
"""(images, captions) of the published files; checked unless ``--limit`` is set."""


def fetch(layout: Layout, mirror: str | None = None, allow_unpublished: bool = False) -> FetchReport:
    """The four files, checked against their published size and sha256 (``allow_unpublished``: a
    mirror's files that are not the published ones, e.g. a sample, are accepted and reported so)."""
    return fetch_files(layout.raw(NAME), URLS, mirror, allow_unpublished=allow_unpublished)


def images(layout: Layout, split: str, caps: Caps = DEFAULT_CAPS) -> list[records.CocoImage]:
    raw = layout.raw(NAME)
    needed = records.KARPATHY_ZIP if split in records.KARPATHY_SPLITS else records.ANNOTATIONS_ZIP
    if not (raw / needed).exists():
        raise VlprepError(f"{raw / needed} is missing", fix="run: vlprep fetch coco")
    if split in records.KARPATHY_SPLITS:
        found = records.karpathy_images(raw, split, caps)
    else:
        found = records.official_images(raw, split, caps)
    if not found:  # every published split has images; none means the file has another shape
        raise VlprepError(f"{raw / needed}: no image of split {split} found in its annotations",
                          fix="the file is not the published one (COCO's JSON is an object with an "
                          "'images' list): run vlprep fetch coco again")
    return found


def specs(found: list[records.CocoImage], rejected: list[dict]) -> Iterator[imagetext.SampleSpec]:
    """One sample per image; an image whose cocoid came before is appended to ``rejected`` instead
    (the key is the cocoid, zero-padded: distinct integers give distinct keys)."""
    seen: set[int] = set()
    for image in found:
        key = f"{image.cocoid:012d}"
        if image.cocoid in seen:
            rejected.append({"key": key, "file": f"{image.image_zip}:{image.member}", "error": imagetext.DUPLICATE_KEY})
            continue
        seen.add(image.cocoid)
        kept = [(i, text) for i, text in zip(image.caption_ids, map(clean_caption, image.captions)) if text]
        meta = {"dataset": NAME, "image_id": image.cocoid, "cocoid": image.cocoid, "file_name": image.file_name,
                "text_ids": [i for i, _ in kept]}
        yield imagetext.SampleSpec(key, image.image_zip, image.member, meta,
                                   [text for _, text in kept], dropped_texts=len(image.captions) - len(kept),
                                   text_errors=list(image.dropped))


def shard(layout: Layout, split: str = DEFAULT_SPLIT, workers: int = 1, seed: int = 0, resize: int | None = None,
          limit: int | None = None, max_count: int = 10_000, max_bytes: int = 1_000_000_000,
          tokenizer: str | None = None, force: bool = False, caps: Caps = DEFAULT_CAPS) -> dict:
    if split not in records.SPLITS:
        raise VlprepError(f"unknown COCO split {split!r}", fix=f"use one of: {', '.join(records.SPLITS)}")
    found = images(layout, split, caps)[:limit]
    config = imagetext.ShardConfig(NAME, split, shuffle=split in ("karpathy-train", "train2014"), seed=seed,
                                   resize=resize, max_count=max_count, max_bytes=max_bytes, limit=limit,
                                   tokenizer=tokenizer, max_member_bytes=caps.member_bytes,
                                   max_text_bytes=caps.text_bytes)
    rejected: list[dict] = []
    return imagetext.build(layout, config, specs(found, rejected), workers, expected=EXPECTED[split],
                           rejected=rejected, inputs=split_inputs(layout, split, found), force=force)


def split_inputs(layout: Layout, split: str, found: list[records.CocoImage]) -> dict[str, str]:
    """sha256 of the raw files a split reads: its annotations and the image zips its images lie in."""
    annotations = records.KARPATHY_ZIP if split in records.KARPATHY_SPLITS else records.ANNOTATIONS_ZIP
    return raw_inputs(layout, NAME, [annotations, *sorted({image.image_zip for image in found})])
