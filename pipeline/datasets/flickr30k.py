"""Flickr30K → WebDataset shards, one sample per image with its 5 captions (the retrieval test set).

The recipe: Karpathy's split file from the ``caption_datasets.zip`` COCO's split comes in (fetched
from its published URL and verified against its published checksum), the images archive from
``--mirror`` or ``--images PATH`` (distributed on request only: no public URL and no published
checksum, so it is only ever "recorded"), the splits and the counts they must give. Captions are
read by :mod:`..records.karpathy` and sharded by ``engines/imagetext.py``, as COCO's are.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ..caps import DEFAULT_CAPS, Caps
from ..errors import VlprepError
from ..layout import Layout
from ..records import flickr30k as records
from ..sinks import manifests as manifest_sink
from ..records.karpathy import KARPATHY_CITATION
from ..sinks.features import INT64, STRING, Field, list_of
from ..sinks.folder import About
from . import shards
from .coco import URLS as COCO_URLS
from .recipe import FETCH_COMMON, Manifest, Recipe, Run, Stage, option

if TYPE_CHECKING:
    from ..engines import imagetext
    from ..engines.fetch import FetchReport

NAME = "flickr30k"
URLS = {records.KARPATHY_ZIP: COCO_URLS[records.KARPATHY_ZIP]}
"""The one file with a public URL (and a published checksum); the images archive has neither."""
DEFAULT_SPLIT = "test"
EXPECTED = {"train": (29_000, 145_000), "val": (1_014, 5_070), "test": (1_000, 5_000)}
"""(images, captions) of Karpathy's split file; checked unless ``--limit`` is set."""
NOT_PUBLIC = (f"{records.IMAGES_TAR} is distributed on request only (https://shannon.cs.illinois.edu/DenotationGraph/)"
              ", so vlprep cannot download it")


def archive_name(path: Path) -> str:
    """The name a user's images archive is kept under in ``raw/flickr30k``, by its form."""
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return records.IMAGES_TAR
    if name.endswith(".zip"):
        return records.IMAGES_ZIP
    raise VlprepError(f"{path}: not a .tar.gz or .zip", fix=f"pass the {records.IMAGES_TAR} (or .zip) you were given")


def mirror_archive(mirror: str) -> str:
    """The archive a mirror holds: the zip when its ``SHA256SUMS`` lists only the zip, else the tarball."""
    from ..sources.mirror import Mirror

    sums = Mirror(mirror).sums()
    return records.IMAGES_ZIP if records.IMAGES_ZIP in sums and records.IMAGES_TAR not in sums else records.IMAGES_TAR


def fetch(layout: Layout, mirror: str | None = None, images: Path | None = None,
          allow_unpublished: bool = False) -> list[FetchReport]:
    """Karpathy's zip (checked against its published size and sha256, as COCO's), then the images
    archive from ``images`` or the mirror, recorded with its sha256 (or checked against the mirror's
    ``SHA256SUMS``): no checksum of it is published, so it is never called verified."""
    from ..engines.fetch import fetch_files, fetch_from_mirror, fetch_local
    from ..sources.mirror import Mirror

    raw = layout.raw(NAME)
    reports = [fetch_files(raw, URLS, mirror, allow_unpublished=allow_unpublished)]
    if images is not None:
        reports.append(fetch_local(raw, {archive_name(Path(images)): Path(images)}))
    elif mirror:
        reports.append(fetch_from_mirror(raw, [mirror_archive(mirror)], Mirror(mirror)))
    elif not any((raw / name).is_file() for name in records.IMAGE_ARCHIVES):
        raise VlprepError(f"{NOT_PUBLIC} ({records.KARPATHY_ZIP} was fetched)",
                          fix=f"pass the archive you were given: vlprep fetch {NAME} --images PATH/{records.IMAGES_TAR} "
                              "(or --mirror DIR_OR_URL holding it)")
    return reports


def images_archive(raw: Path) -> str:
    """The images archive fetched into ``raw`` (the tarball when both forms are there)."""
    for name in records.IMAGE_ARCHIVES:
        if (raw / name).is_file():
            return name
    raise VlprepError(f"{raw}: no {records.IMAGES_TAR} or {records.IMAGES_ZIP}",
                      fix=f"run: vlprep fetch {NAME} --images PATH/{records.IMAGES_TAR}")


def image_zip(layout: Layout, archive: str, sha256: str, max_member_bytes: int) -> tuple[Path, dict[str, int]]:
    """The folder holding ``flickr30k-images.zip`` for the engine, and the members too large to read.

    A zip archive is read where it was fetched. A tarball is repacked once into
    ``work/flickr30k/images-<sha256>-<cap>/``, named by the tarball's bytes and the member cap, so a
    new tarball or cap repacks and a rerun reuses it."""
    from ..fileio import read_json, write_json

    if archive == records.IMAGES_ZIP:
        return layout.raw(NAME), {}
    folder = layout.work(NAME) / f"images-{sha256[:16]}-{max_member_bytes}"
    listed = folder / "oversized.json"
    if not listed.is_file() or not (folder / records.IMAGES_ZIP).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        oversized = records.repack_tarball(layout.raw(NAME) / archive, folder / records.IMAGES_ZIP, max_member_bytes)
        write_json(listed, oversized)
    return folder, read_json(listed)


def specs(found: list[records.Flickr30kImage], rejected: list[dict],
          oversized: dict[str, int], max_member_bytes: int) -> Iterator[imagetext.SampleSpec]:
    """One sample per image keyed by its Flickr id; an image whose key came before, or whose member
    was too large to repack, is appended to ``rejected`` instead."""
    from ..engines import imagetext

    seen: set[str] = set()
    for image in found:
        key, where = image.flickr_id, f"{records.IMAGES_ZIP}:{image.member}"
        if key in seen or image.member in oversized:
            error = (imagetext.DUPLICATE_KEY if key in seen
                     else imagetext.member_over_cap(oversized[image.member], max_member_bytes))
            rejected.append({"key": key, "file": where, "error": error})
            continue
        seen.add(key)
        meta = {"dataset": NAME, "image_id": image.imgid, "flickr_id": key, "file_name": image.filename}
        yield imagetext.caption_spec(key, records.IMAGES_ZIP, image.member, meta, image.captions, image.caption_ids,
                                     image.dropped)


def shard(layout: Layout, split: str = DEFAULT_SPLIT, workers: int = 1, seed: int = 0, resize: int | None = None,
          limit: int | None = None, max_count: int = 10_000, max_bytes: int = 1_000_000_000,
          tokenizer: str | None = None, force: bool = False, caps: Caps = DEFAULT_CAPS) -> dict:
    from ..engines import imagetext
    from ..engines.inputs import raw_inputs

    if split not in records.SPLITS:
        raise VlprepError(f"unknown Flickr30K split {split!r}", fix=f"use one of: {', '.join(records.SPLITS)}")
    raw = layout.raw(NAME)
    archive = images_archive(raw)
    inputs = raw_inputs(layout, NAME, [records.KARPATHY_ZIP, archive])
    found = records.images(raw, split, caps)[:limit]
    if not found:
        raise VlprepError(f"{raw / records.KARPATHY_ZIP}: no image of split {split} in {records.KARPATHY_MEMBER}",
                          fix=f"the file is not the published one: fetch it again with vlprep fetch {NAME}")
    root, oversized = image_zip(layout, archive, inputs[f"{NAME}/{archive}"],
                                caps.member_bytes)
    config = imagetext.ShardConfig(NAME, split, shuffle=split == "train", seed=seed, resize=resize,
                                   max_count=max_count, max_bytes=max_bytes, limit=limit, tokenizer=tokenizer,
                                   max_member_bytes=caps.member_bytes, max_text_bytes=caps.text_bytes)
    rejected: list[dict] = []
    return imagetext.build(layout, config, specs(found, rejected, oversized, caps.member_bytes), workers,
                           expected=EXPECTED[split], rejected=rejected, inputs=inputs, force=force, images_root=root)


# ------------------------------------------------------------------------------------------ recipe

SAMPLE = shards.captioned_sample(
    (
        Field("dataset", STRING, "Always 'flickr30k'."),
        Field("key", STRING, "The sample key: the Flickr photo id (the file name's stem)."),
        Field("image_id", INT64, "Karpathy's imgid of the image."),
        Field("flickr_id", STRING, "The Flickr photo id, as in the file name."),
        Field("file_name", STRING, "The image's file name in flickr30k-images/."),
        Field("text_ids", list_of(INT64), "Per caption: Karpathy's sentid."),
    ),
    "the Flickr30K image, JPEG",
)

ABOUT = About(
    pretty_name="Flickr30K",
    summary="31,783 Flickr photos of everyday activities with 5 crowd-sourced captions each, in Karpathy's "
            "train/val/test split (29,000 / 1,014 / 1,000 images): the standard image-text retrieval benchmark "
            "(1k test).",
    homepage="https://shannon.cs.illinois.edu/DenotationGraph/",
    version="2014",
    license="other",
    license_name="flickr30k-terms",
    license_url="https://shannon.cs.illinois.edu/DenotationGraph/",
    license_note="The captions are distributed by their authors for research use; the images come from Flickr "
                 "and their use must abide by the Flickr Terms of Use. The images archive is handed out on request "
                 "only. Karpathy's split file is distributed by its author.",
    citation=r"""@article{young2014image,
  title={From image descriptions to visual denotations: New similarity metrics for semantic inference over event
         descriptions},
  author={Young, Peter and Lai, Alice and Hodosh, Micah and Hockenmaier, Julia},
  journal={Transactions of the Association for Computational Linguistics},
  volume={2},
  pages={67--78},
  year={2014}
}
""" + KARPATHY_CITATION,
    task_categories=("image-to-text", "text-to-image"),
    sources={f"{NAME}/{records.KARPATHY_ZIP}": URLS[records.KARPATHY_ZIP],
             f"{NAME}/{records.IMAGES_TAR}": "on request from https://shannon.cs.illinois.edu/DenotationGraph/"},
    published={split: (images, "images") for split, (images, _) in EXPECTED.items()},
    roles={"train": "train", "val": "val", "test": "test"},
    notes=("Evaluation data: the method reports retrieval on the 1k test split; train and val are written for "
           "completeness and are not in Table 1's pretraining total.",),
)


@dataclass(frozen=True)
class FetchOptions:
    images: Path | None = option(None, f"Your copy of {records.IMAGES_TAR} (or {records.IMAGES_ZIP}): linked or "
                                 "copied into DATA_DIR/raw/flickr30k and its sha256 recorded (none is published).",
                                 type=Path, must_exist=True, metavar="PATH")
    allow_unpublished: bool = option(False, "Accept a --mirror caption_datasets.zip whose sha256 differs from the "
                                     "published one (a sample or a repacked copy): checked only against the "
                                     "mirror's SHA256SUMS, recorded and printed as NOT the published file.", type=bool)


@dataclass(frozen=True)
class ShardOptions(shards.TextShardOptions):
    split: str = option(DEFAULT_SPLIT, "train, val or test (Karpathy's; test is the 1k retrieval test set).",
                        choices=records.SPLITS)


@dataclass(frozen=True)
class PreviewOptions(shards.PreviewOptions):
    split: str | None = option(None, f"Split to show (default: {DEFAULT_SPLIT}).", choices=records.SPLITS)


def fetch_stage(run: Run, options: FetchOptions) -> None:
    for report in fetch(run.layout, run.common.mirror, options.images, options.allow_unpublished):
        run.say_fetch(report, "the published URL and your --images")


shard_stage = shards.captioned_shard_stage(shard)


RECIPE = Recipe(
    name=NAME,
    title="Flickr30K, Karpathy split, one sample per image with its 5 captions (pairs; retrieval evaluation)",
    kind="pairs",
    builder="shard",
    stages={
        "fetch": Stage(fetch_stage, FetchOptions, "Download Karpathy's split file and bring your Flickr30K images "
                       "archive into DATA_DIR/raw/flickr30k.",
                       (f"vlprep fetch flickr30k --images ~/Downloads/{records.IMAGES_TAR}",
                        "vlprep fetch flickr30k --mirror https://my-mirror.example.org/flickr30k"),
                       common=FETCH_COMMON,
                       details=f"caption_datasets.zip comes from its published URL and is checked against its "
                       f"published size and sha256. {NOT_PUBLIC}: pass your copy with --images, or a --mirror "
                       f"holding {records.IMAGES_TAR} (or {records.IMAGES_ZIP}); its sha256 is recorded, never "
                       "verified."),
        "shard": Stage(shard_stage, ShardOptions, "Write Flickr30K as WebDataset shards in DATA_DIR/out/flickr30k, "
                       "one sample per image.",
                       ("vlprep shard flickr30k                     # test: 1,000 images, 5,000 captions",
                        "vlprep shard flickr30k --split train --resize 256"),
                       common=shards.SHARD_COMMON, limit=shards.SHARD_LIMIT,
                       details="Each sample is <key>.jpg (original bytes unless --resize) and <key>.json (ids, cleaned "
                       "captions, token ids <s> + <=62 BPE + </s>, untruncated lengths); the key is the Flickr photo "
                       "id. A .tar.gz archive is repacked once into a stored zip under DATA_DIR/work/flickr30k. "
                       "Beside the shards: flickr30k-SPLIT.index.json, flickr30k-SPLIT.errors.jsonl, stats.json and "
                       "the manifest of the image ids used in DATA_DIR/manifests/." + shards.READERS_NOTE),
        "verify": shards.verify_stage(NAME, "token ids within the <s> + <=62 + </s> rule"),
        "preview": shards.preview_stage(NAME, PreviewOptions, ("vlprep preview flickr30k --split test",)),
    },
    manifest=Manifest("flickr30k-*.tsv.gz", manifest_sink.IMAGE_IDS,
                      "Flickr30K photo ids considered for the split: used, or skipped and why"),
    demo="vlprep.pipeline.samples.demo:flickr30k",
    summary=shards.pairs_summary,
    splits=records.SPLITS,
    default_split=DEFAULT_SPLIT,
    sample=SAMPLE,
    about=ABOUT,
)
