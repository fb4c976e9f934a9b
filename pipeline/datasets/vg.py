"""Visual Genome 1.2 → WebDataset shards: ``regions`` (every region description a pair) or
``concat`` (an image's descriptions packed into as few ≤ 64-token captions as possible).

Leak guard: images whose ``coco_id`` is in COCO's Karpathy val or test split are left out unless
``--no-leak-guard``, so a model pretrained on VG is not evaluated on images it has seen.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from ..caps import DEFAULT_CAPS, Caps
from ..errors import VlprepError
from ..layout import Layout
from ..records import coco as coco_records
from ..records import vg as records
from ..transforms.text import clean_caption
from . import shards
from .coco import NAME as COCO, URLS as COCO_URLS
from ..sinks import manifests as manifest_sink
from ..sinks.features import IMAGE_FIELDS, INT64, STRING, TEXT_FIELDS, Field, SampleSchema, list_of
from ..sinks.folder import About
from .recipe import FETCH_COMMON, Manifest, Recipe, Run, Stage, option

if TYPE_CHECKING:
    from ..engines import imagetext
    from ..engines.fetch import FetchReport
    from ..transforms.captions import CaptionEncoder

NAME = "vg"
SPLIT = "train"
NO_COCO_ID = -1
"""``coco_id`` of an image that is not in COCO (``null`` in ``image_data.json``): one int type for
every sample, so readers that infer a schema from the first samples do not break on it."""
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
    from ..engines.fetch import fetch_files

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
    from ..transforms.captions import MAX_BPE

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
    from ..engines import imagetext

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
        coco_id = NO_COCO_ID if image.coco_id is None else image.coco_id
        meta = {"dataset": NAME, "image_id": image_id, "coco_id": coco_id, "variant": variant}
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
    from ..engines import imagetext

    if variant not in VARIANTS:
        raise VlprepError(f"unknown VG variant {variant!r}", fix=f"use one of: {', '.join(VARIANTS)}")
    missing = [name for name in (records.IMAGE_DATA_ZIP, records.REGIONS_ZIP) if not (layout.raw(NAME) / name).exists()]
    if missing:  # VG's own files before COCO's split for the leak guard
        raise VlprepError(f"{', '.join(str(layout.raw(NAME) / name) for name in missing)} missing",
                          fix="run: vlprep fetch vg")
    guard = guarded_coco_ids(layout, caps) if leak_guard else set()
    counts: dict = {"images_considered": 0, "not_in_image_data": 0,
                    "leak_guarded_ids": []}
    encoder = imagetext.caption_encoder(tokenizer)
    config = imagetext.ShardConfig(NAME, SPLIT, shuffle=True, seed=seed, resize=resize, max_count=max_count,
                                   max_bytes=max_bytes, limit=limit,
                                   variant={"variant": variant, "leak_guard": leak_guard}, tokenizer=tokenizer,
                                   manifest_name=variant, max_member_bytes=caps.member_bytes,
                                   max_text_bytes=caps.text_bytes, folder=RECIPE.folder(variant))
    rejected: list[dict] = []
    return imagetext.build(layout, config, specs(layout, variant, guard, limit, counts, encoder, caps, rejected),
                           workers, extra=counts, rejected=rejected,
                           inputs=shard_inputs(layout, leak_guard), force=force)


def shard_inputs(layout: Layout, leak_guard: bool) -> dict[str, str]:
    """sha256 of the raw files a shard run reads: VG's four files, and COCO's Karpathy split for the guard."""
    from ..engines.inputs import raw_inputs

    inputs = raw_inputs(layout, NAME, [records.IMAGE_DATA_ZIP, records.REGIONS_ZIP, *records.IMAGE_ZIPS])
    if leak_guard:
        inputs.update(raw_inputs(layout, COCO, [coco_records.KARPATHY_ZIP]))
    return inputs


# ------------------------------------------------------------------------------------------ recipe

@dataclass(frozen=True)
class FetchOptions:
    pass


VARIANT_HELP = ("regions: every region description a pair (out/vg); concat: an image's descriptions packed into "
                "<=64-token captions (out/vg-concat).")


def parse_split(value: str) -> str:
    """VG has one split; its concat variant is a variant with its own folder, not a split."""
    if value == SPLIT:
        return value
    variant = value[len(SPLIT) + 1:] if value.startswith(f"{SPLIT}-") else ""
    if variant in VARIANTS:
        raise ValueError(f"{value!r} is split {SPLIT} of variant {variant}: pass --variant {variant}")
    raise ValueError(f"{value!r}: Visual Genome has one split, {SPLIT}")


@dataclass(frozen=True)
class ShardOptions(shards.TextShardOptions):
    split: str = option(SPLIT, "Visual Genome has one split.", parse=parse_split, metavar="[train]")
    variant: str = option("regions", VARIANT_HELP, choices=VARIANTS)
    leak_guard: bool = option(True, "Leave out images whose coco_id is in COCO Karpathy val or test.", type=bool,
                              negatable=True)


@dataclass(frozen=True)
class PreviewOptions(shards.PreviewOptions):
    split: str | None = option(None, "Visual Genome has one split.", parse=parse_split, metavar="[train]")
    variant: str = option("regions", VARIANT_HELP, choices=VARIANTS)


def fetch_stage(run: Run, options: FetchOptions) -> None:
    run.say_fetch(fetch(run.layout, run.common.mirror), "the official URLs")


def shard_stage(run: Run, options: ShardOptions) -> None:
    caps = shards.caps_of(options)
    stats = shard(run.layout, options.variant, workers=run.common.workers, seed=options.seed, resize=options.resize,
                  limit=run.common.limit, leak_guard=options.leak_guard, max_count=options.shard_samples,
                  max_bytes=options.shard_mb * 1_000_000, tokenizer=run.common.tokenizer, force=options.force,
                  caps=caps)
    run.say_built(shards.pairs_summary(stats), folder=RECIPE.folder(options.variant))


# ------------------------------------------------------------------------- samples, for the readers
# The two variants store different samples, so each has a folder and a schema of its own: regions
# (out/vg) has one box and one region id per description; concat (out/vg-concat) packs descriptions
# into captions of at most 64 tokens, so its boxes and region_ids have one list per caption, and it
# says how the descriptions were joined (joiner).

BOX = list_of(INT64, 4)
"""A region's box: x, y, width, height in pixels of the original image."""


def _common(texts: str) -> tuple[Field, ...]:
    return (
        Field("dataset", STRING, "Always 'vg'."),
        Field("key", STRING, "The sample key: the VG image id, 9 digits."),
        Field("image_id", INT64, "Visual Genome image id."),
        Field("coco_id", INT64, "The image's COCO id, or -1 when it is not a COCO image."),
        Field("variant", STRING, f"'{texts}'."),
        *TEXT_FIELDS,
        *IMAGE_FIELDS,
    )


REGIONS = SampleSchema(
    fields=(
        *_common("regions"),
        Field("region_ids", list_of(INT64), "Per description: its VG region id (regions sorted by id)."),
        Field("boxes", list_of(BOX), "Per description: its region's box [x, y, width, height]."),
    ),
    image="the Visual Genome image, JPEG",
    caption=("texts", 0),
)
"""One image with every region description a text (Energon gets the first description)."""

CONCAT = SampleSchema(
    fields=(
        *_common("concat"),
        Field("region_ids", list_of(list_of(INT64)), "Per packed caption: the region ids of the descriptions "
              "it joins, in order."),
        Field("boxes", list_of(list_of(BOX)), "Per packed caption: the boxes [x, y, width, height] of its "
              "descriptions."),
        Field("joiner", STRING, "How descriptions were joined into a caption."),
    ),
    image="the Visual Genome image, JPEG",
    caption=("texts", 0),
)
"""One image with its descriptions packed into captions of at most 64 tokens (Energon gets the first)."""

SAMPLE = {"regions": REGIONS, "concat": CONCAT}

ABOUT = About(
    pretty_name="Visual Genome 1.2 region descriptions",
    summary="Visual Genome 1.2 images with their region descriptions (short phrases, each with a box), one "
            "sample per image: every description a text (variant regions, out/vg), or descriptions packed in "
            "order into captions of at most 64 tokens (variant concat, out/vg-concat).",
    homepage="https://homes.cs.washington.edu/~ranjay/visualgenome/",
    version="1.2",
    license="cc-by-4.0",
    license_url="https://creativecommons.org/licenses/by/4.0/",
    license_note="Visual Genome is licensed under a Creative Commons Attribution 4.0 International License. "
                 "Its images come from YFCC100M and COCO (Flickr), whose own terms also apply to them.",
    citation="""@article{krishna2017visual,
  title={Visual Genome: Connecting Language and Vision Using Crowdsourced Dense Image Annotations},
  author={Krishna, Ranjay and Zhu, Yuke and Groth, Oliver and Johnson, Justin and Hata, Kenji and Kravitz, Joshua
          and Chen, Stephanie and Kalantidis, Yannis and Li, Li-Jia and Shamma, David A. and Bernstein, Michael S.
          and Fei-Fei, Li},
  journal={International Journal of Computer Vision (IJCV)},
  volume={123},
  number={1},
  pages={32--73},
  year={2017}
}""",
    task_categories=("image-to-text", "text-to-image"),
    sources={**{f"{NAME}/{relpath}": url for relpath, url in URLS.items()},
             f"{COCO}/{coco_records.KARPATHY_ZIP}": COCO_URLS[coco_records.KARPATHY_ZIP]},
    published={"train": (108_077, "images")},
    roles={"train": "train"},
    notes=("The leak guard (on unless --no-leak-guard) leaves out the images whose coco_id is in COCO's Karpathy "
           "val or test split, so a model pretrained here is not evaluated on images it has seen; that is why "
           "it reads COCO's caption_datasets.zip, and why fewer images than the 108,077 published are kept.",),
)


RECIPE = Recipe(
    name=NAME,
    title="Visual Genome 1.2 region descriptions, per region or packed into captions (pairs)",
    kind="pairs",
    builder="shard",
    stages={
        "fetch": Stage(fetch_stage, FetchOptions, "Download Visual Genome's four zips into DATA_DIR/raw/vg.",
                       ("vlprep fetch vg", "vlprep fetch vg --mirror /datasets/vg"), common=FETCH_COMMON,
                       details="images.zip, images2.zip, region_descriptions.json.zip and image_data.json.zip. No "
                       "public source states their checksums: the sha256 is recorded, and fetch says so."),
        "shard": Stage(shard_stage, ShardOptions, "Write Visual Genome as WebDataset shards in DATA_DIR/out/vg (the "
                       "concat variant in DATA_DIR/out/vg-concat), one sample per image.",
                       ("vlprep shard vg --workers 8", "vlprep shard vg --variant concat"),
                       common=shards.SHARD_COMMON, limit=shards.SHARD_LIMIT,
                       details="Each sample is <key>.jpg and <key>.json (image and COCO ids, cleaned region "
                       "descriptions with their region ids and boxes, token ids <s> + <=62 BPE + </s>, untruncated "
                       "lengths), shuffled with --seed. The leak guard needs COCO's Karpathy split (vlprep fetch "
                       "coco). Beside the shards: index, errors and stats.json; the manifest goes to "
                       "DATA_DIR/manifests/vg-VARIANT.tsv.gz. An image with no COCO counterpart has coco_id -1."
                       + shards.READERS_NOTE),
        "verify": shards.verify_stage(NAME, "token ids within the <s> + <=62 + </s> rule"),
        "preview": shards.preview_stage(NAME, PreviewOptions, ("vlprep preview vg --variant concat --limit 8 --augmented",)),
    },
    manifest=Manifest("vg-*.tsv.gz", manifest_sink.IMAGE_IDS,
                      "Visual Genome image ids considered: used, leak-guarded (coco_id in Karpathy val/test), or skipped"),
    demo="vlprep.pipeline.samples.demo:vg",
    summary=shards.pairs_summary,
    splits=(SPLIT,),
    default_split=SPLIT,
    pretraining_split=SPLIT,
    variants=VARIANTS,
    method_row=(108_249, 50.0, 4.7, 5_408_689),
    sample=SAMPLE,
    about=ABOUT,
)
