"""COCO captions 2014: the Karpathy split file and the official caption annotations.

Karpathy's ``dataset_coco.json`` (inside ``caption_datasets.zip``) lists 123,287 images with a
``split`` of ``train``, ``restval``, ``val`` or ``test``; ``karpathy-train`` is train + restval
(113,287 images, 566,747 captions). The official ``captions_{train,val}2014.json`` (inside
``annotations_trainval2014.zip``) give ``train2014`` (82,783 images, 414,113 captions) and
``val2014``. Images live in ``zips/{train,val}2014.zip`` as ``{folder}/{file_name}``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..caps import DEFAULT_CAPS, Caps
from .karpathy import KARPATHY_ZIP, JsonMember, split_ids, split_rows

KARPATHY_MEMBER = "dataset_coco.json"
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
    dropped: list[dict] = field(default_factory=list)
    """Captions left out for their value (over ``--max-text-kb``, not a string): id and cause."""

    @property
    def image_zip(self) -> str:
        return IMAGE_ZIPS[self.folder]

    @property
    def member(self) -> str:
        return f"{self.folder}/{self.file_name}"


def karpathy_images(raw: Path, split: str, caps: Caps = DEFAULT_CAPS) -> list[CocoImage]:
    """Images of a Karpathy split in the file's order, each with its raw sentences (streamed)."""
    source = JsonMember(raw / KARPATHY_ZIP, KARPATHY_MEMBER, "coco")
    images = []
    for found in split_rows(source, KARPATHY_SPLITS[split], "cocoid", caps):
        folder = source.get(found.row, "filepath", str, found.record)
        if folder not in IMAGE_ZIPS:
            raise source.malformed(found.record, f"filepath {folder!r:.60} is not one of {', '.join(IMAGE_ZIPS)}")
        filename = source.get(found.row, "filename", str, found.record)
        images.append(CocoImage(found.id, filename, folder, found.captions, found.caption_ids, found.dropped))
    return images


def karpathy_cocoids(raw: Path, splits: tuple[str, ...], caps: Caps = DEFAULT_CAPS) -> set[int]:
    """COCO ids of the images in the given Karpathy splits (for VG's leak guard)."""
    return split_ids(JsonMember(raw / KARPATHY_ZIP, KARPATHY_MEMBER, "coco"), splits, "cocoid", caps)


def official_images(raw: Path, split: str, caps: Caps = DEFAULT_CAPS) -> list[CocoImage]:
    """Images of ``train2014``/``val2014`` sorted by id, captions in annotation-id order.

    The annotations are read in one streamed pass and the images in a second, so neither the
    file nor more than the captions themselves is held.
    """
    source = JsonMember(raw / ANNOTATIONS_ZIP, f"captions_{split}.json", "coco")
    captions: dict[int, list[tuple[int, object]]] = {}
    for number, ann, stream in source.rows("annotations.item", caps):
        record = f"annotation {number}"
        image_id = source.get(ann, "image_id", int, record)
        kept, ids, dropped = source.texts([ann], record, "caption", "id", stream, caps)
        captions.setdefault(image_id, []).extend(
            [(i, text) for i, text in zip(ids, kept)] + [(d["text_id"], d) for d in dropped])
    rows = []
    for number, row, _ in source.rows("images.item", caps):
        record = f"image {number}"
        rows.append((source.get(row, "id", int, record), source.get(row, "file_name", str, record)))
    images = []
    for image_id, file_name in sorted(rows, key=lambda row: row[0]):
        found = sorted(captions.get(image_id, []), key=lambda pair: pair[0])
        images.append(CocoImage(image_id, file_name, split, [t for _, t in found if isinstance(t, str)],
                                [i for i, t in found if isinstance(t, str)],
                                [t for _, t in found if isinstance(t, dict)]))
    return images
