"""COCO captions 2014 → WebDataset shards, one sample per image with all its captions.

The recipe: the four published files, the splits (Karpathy's and the official ones) and the counts
they must give; one sample per image. Sharding is done by ``engines/imagetext.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from ..caps import DEFAULT_CAPS, Caps
from ..errors import VlprepError
from ..layout import Layout
from ..records import coco as records
from . import shards
from ..sinks import manifests as manifest_sink
from ..records.karpathy import KARPATHY_CITATION
from ..sinks.features import INT64, STRING, Field, list_of
from ..sinks.folder import About
from .recipe import FETCH_COMMON, Manifest, Recipe, Run, Stage, option

if TYPE_CHECKING:
    from ..engines import imagetext
    from ..engines.fetch import FetchReport

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
    from ..engines.fetch import fetch_files

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
                          "'images' list): fetch it again with vlprep fetch coco")
    return found


def specs(found: list[records.CocoImage], rejected: list[dict]) -> Iterator[imagetext.SampleSpec]:
    """One sample per image; an image whose cocoid came before is appended to ``rejected`` instead
    (the key is the cocoid, zero-padded: distinct integers give distinct keys)."""
    from ..engines import imagetext

    seen: set[int] = set()
    for image in found:
        key = f"{image.cocoid:012d}"
        if image.cocoid in seen:
            rejected.append({"key": key, "file": f"{image.image_zip}:{image.member}", "error": imagetext.DUPLICATE_KEY})
            continue
        seen.add(image.cocoid)
        meta = {"dataset": NAME, "image_id": image.cocoid, "cocoid": image.cocoid, "file_name": image.file_name}
        yield imagetext.caption_spec(key, image.image_zip, image.member, meta, image.captions, image.caption_ids,
                                     image.dropped)


def shard(layout: Layout, split: str = DEFAULT_SPLIT, workers: int = 1, seed: int = 0, resize: int | None = None,
          limit: int | None = None, max_count: int = 10_000, max_bytes: int = 1_000_000_000,
          tokenizer: str | None = None, force: bool = False, caps: Caps = DEFAULT_CAPS) -> dict:
    from ..engines import imagetext

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
    from ..engines.inputs import raw_inputs

    annotations = records.KARPATHY_ZIP if split in records.KARPATHY_SPLITS else records.ANNOTATIONS_ZIP
    return raw_inputs(layout, NAME, [annotations, *sorted({image.image_zip for image in found})])


# ------------------------------------------------------------------------------------------ recipe

SAMPLE = shards.captioned_sample(
    (
        Field("dataset", STRING, "Always 'coco'."),
        Field("key", STRING, "The sample key: the cocoid, 12 digits."),
        Field("image_id", INT64, "COCO image id."),
        Field("cocoid", INT64, "COCO image id (Karpathy's name for it)."),
        Field("file_name", STRING, "The image's file name in train2014.zip or val2014.zip."),
        Field("text_ids", list_of(INT64), "Per caption: its id (COCO's annotation id, or Karpathy's sentid)."),
    ),
    "the COCO image, JPEG",
)

ABOUT = About(
    pretty_name="COCO Captions 2014",
    summary="Microsoft COCO 2014 images with their human captions (about 5 per image), in Karpathy's "
            "train/val/test split (train includes restval) and in the official train2014/val2014 split.",
    homepage="https://cocodataset.org",
    version="2014",
    license="cc-by-4.0",
    license_url="https://creativecommons.org/licenses/by/4.0/",
    license_note="The COCO annotations (captions) are licensed under CC BY 4.0 by the COCO Consortium. The images "
                 "are not: they come from Flickr, and their use must abide by the Flickr Terms of Use "
                 "(https://cocodataset.org/#termsofuse). Karpathy's split file is distributed by its author.",
    citation=r"""@inproceedings{lin2014coco,
  title={Microsoft {COCO}: Common Objects in Context},
  author={Lin, Tsung-Yi and Maire, Michael and Belongie, Serge and Hays, James and Perona, Pietro and
          Ramanan, Deva and Doll{\'a}r, Piotr and Zitnick, C. Lawrence},
  booktitle={European Conference on Computer Vision (ECCV)},
  year={2014}
}
""" + KARPATHY_CITATION,
    task_categories=("image-to-text", "text-to-image"),
    sources={f"{NAME}/{relpath}": url for relpath, url in URLS.items()},
    published={split: (images, "images") for split, (images, _) in EXPECTED.items()},
    roles={"train": "karpathy-train", "val": "karpathy-val", "test": "karpathy-test"},
    notes=("Karpathy's val and test images all come from val2014, and karpathy-train is train2014 plus "
           "restval (from val2014): the Karpathy and official splits hold the same images under the same keys.",),
)

@dataclass(frozen=True)
class FetchOptions:
    allow_unpublished: bool = option(False, "Accept --mirror files whose sha256 differs from the published one (a "
                                     "sample or a repacked copy): checked only against the mirror's SHA256SUMS, "
                                     "recorded and printed as NOT the published file.", type=bool)


@dataclass(frozen=True)
class ShardOptions(shards.TextShardOptions):
    split: str = option(DEFAULT_SPLIT, "karpathy-train (train + restval), karpathy-val, karpathy-test, train2014 or "
                        "val2014.", choices=records.SPLITS)


@dataclass(frozen=True)
class PreviewOptions(shards.PreviewOptions):
    split: str | None = option(None, f"Split to show (default: {DEFAULT_SPLIT}).", choices=records.SPLITS)


def fetch_stage(run: Run, options: FetchOptions) -> None:
    run.say_fetch(fetch(run.layout, run.common.mirror, options.allow_unpublished), "the official URLs")


shard_stage = shards.captioned_shard_stage(shard)


RECIPE = Recipe(
    name=NAME,
    title="COCO captions 2014, one sample per image with all its captions (pairs)",
    kind="pairs",
    builder="shard",
    stages={
        "fetch": Stage(fetch_stage, FetchOptions, "Download and check COCO's four files into DATA_DIR/raw/coco.",
                       ("vlprep fetch coco", "vlprep fetch coco --mirror https://my-mirror.example.org/coco"),
                       common=FETCH_COMMON,
                       details="train2014.zip, val2014.zip, annotations_trainval2014.zip and Karpathy's "
                       "caption_datasets.zip, each checked against its published size and sha256 (from "
                       "tensorflow/datasets' url_checksums)."),
        "shard": Stage(shard_stage, ShardOptions, "Write COCO as WebDataset shards in DATA_DIR/out/coco, one sample "
                       "per image.",
                       ("vlprep shard coco                          # karpathy-train: 113,287 images",
                        "vlprep shard coco --split train2014 --resize 256"),
                       common=shards.SHARD_COMMON, limit=shards.SHARD_LIMIT,
                       details="Each sample is <key>.jpg (original bytes unless --resize) and <key>.json (ids, cleaned "
                       "captions, token ids <s> + <=62 BPE + </s>, untruncated lengths). Train splits are shuffled "
                       "with --seed; the same input gives byte-identical shards, named coco-SPLIT-NNNNNN.tar. "
                       "Beside them: coco-SPLIT.index.json (wids format), coco-SPLIT.errors.jsonl (images skipped "
                       "and why), stats.json, and the manifest "
                       "of the image ids used in DATA_DIR/manifests/. An interrupted run resumes at shard "
                       "granularity." + shards.READERS_NOTE),
        "verify": shards.verify_stage(NAME, "token ids within the <s> + <=62 + </s> rule"),
        "preview": shards.preview_stage(NAME, PreviewOptions, ("vlprep preview coco --split karpathy-test --augmented",)),
    },
    manifest=Manifest("coco-*.tsv.gz", manifest_sink.IMAGE_IDS,
                      "COCO image ids (cocoid, 12 digits) considered for the split: used, or skipped and why"),
    demo="vlprep.pipeline.samples.demo:coco",
    summary=shards.pairs_summary,
    splits=records.SPLITS,
    default_split=DEFAULT_SPLIT,
    pretraining_split=DEFAULT_SPLIT,
    sample=SAMPLE,
    about=ABOUT,
    method_row=(82_783, 5.0, 11.0, 566_747),  # train2014's images with Karpathy train's pairs (docs/image-text.md)
)
