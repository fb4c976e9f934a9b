"""COCO captions 2014: the Karpathy split file and the official caption annotations.

Karpathy's ``dataset_coco.json`` (inside ``caption_datasets.zip``) lists 123,287 images with a
``split`` of ``train``, ``restval``, ``val`` or ``test``; ``karpathy-train`` is train + restval
(113,287 images, 566,747 captions). The official ``captions_{train,val}2014.json`` (inside
``annotations_trainval2014.zip``) give ``train2014`` (82,783 images, 414,113 captions) and
``val2014``. Images live in ``zips/{train,val}2014.zip`` as ``{folder}/{file_name}``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..sources.archives import ARCHIVE_ERRORS, corrupt_archive, open_zip_member

KARPATHY_ZIP = "caption_datasets.zip"
ANNOTATIONS_ZIP = "annotations/annotations_trainval2014.zip"
IMAGE_ZIPS = {"train2014": "zips/train2014.zip", "val2014": "zips/val2014.zip"}
KARPATHY_SPLITS = {"karpathy-train": ("train", "restval"), "karpathy-val": ("val",), "karpathy-test": ("test",)}
OFFICIAL_SPLITS = ("train2014", "val2014")
SPLITS = (*KARPATHY_SPLITS, *OFFICIAL_SPLITS)
@dataclass(frozen=True)
class CocoImage:
    cocoid: int
    file_name: str
    folder: str
    captions: list[str]
    caption_ids: list[int]

    @property
    def image_zip(self) -> str:
        return IMAGE_ZIPS[self.folder]

    @property
    def member(self) -> str:
        return f"{self.folder}/{self.file_name}"


def _read_zip_json(path: Path, suffix: str) -> dict:
    try:
        with open_zip_member(path, suffix) as handle:
            return json.load(handle)
    except (json.JSONDecodeError, *ARCHIVE_ERRORS) as exc:
        raise corrupt_archive(path, suffix, exc) from exc


def karpathy_images(raw: Path, split: str) -> list[CocoImage]:
    """Images of a Karpathy split in the file's order, each with its raw sentences."""
    wanted = set(KARPATHY_SPLITS[split])
    data = _read_zip_json(raw / KARPATHY_ZIP, "dataset_coco.json")
    images = []
    for row in data["images"]:
        if row["split"] in wanted:
            sentences = row["sentences"]
            images.append(CocoImage(int(row["cocoid"]), row["filename"], row["filepath"],
                                    [s["raw"] for s in sentences], [int(s["sentid"]) for s in sentences]))
    return images


def karpathy_cocoids(raw: Path, splits: tuple[str, ...]) -> set[int]:
    """COCO ids of the images in the given Karpathy splits (for VG's leak guard)."""
    data = _read_zip_json(raw / KARPATHY_ZIP, "dataset_coco.json")
    return {int(row["cocoid"]) for row in data["images"] if row["split"] in splits}


def official_images(raw: Path, split: str) -> list[CocoImage]:
    """Images of ``train2014``/``val2014`` sorted by id, captions in annotation-id order."""
    data = _read_zip_json(raw / ANNOTATIONS_ZIP, f"captions_{split}.json")
    captions: dict[int, list[tuple[int, str]]] = {}
    for ann in data["annotations"]:
        captions.setdefault(int(ann["image_id"]), []).append((int(ann["id"]), ann["caption"]))
    images = []
    for row in sorted(data["images"], key=lambda r: int(r["id"])):
        found = sorted(captions.get(int(row["id"]), []))
        images.append(CocoImage(int(row["id"]), row["file_name"], split,
                                [text for _, text in found], [i for i, _ in found]))
    return images
