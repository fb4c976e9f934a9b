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
from ..errors import VlprepError
from ..sources.jsonstream import iter_zip_json, text_problem

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
    dropped: list[dict] = field(default_factory=list)
    """Captions left out for their value (over ``--max-text-kb``, not a string): id and cause."""

    @property
    def image_zip(self) -> str:
        return IMAGE_ZIPS[self.folder]

    @property
    def member(self) -> str:
        return f"{self.folder}/{self.file_name}"


def _malformed(path: Path, member: str, record: str, problem: str) -> VlprepError:
    """A row the published file cannot hold: the file is not the published one, so the stage stops."""
    return VlprepError(f"{path} (member {member}): {record}: {problem}",
                       fix=f"fetch the published {path.name} again (run: vlprep fetch coco)")


def _get(row: object, key: str, kind: type | tuple, path: Path, member: str, record: str):
    """``row[key]``, checked to be a ``kind``; a missing key or another type names the record."""
    if not isinstance(row, dict) or key not in row:
        raise _malformed(path, member, record, f"no {key!r} field")
    value = row[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _malformed(path, member, record, f"{key!r} is {value!r:.60}, not {getattr(kind, '__name__', kind)}")
    return value


def _texts(items: list, path: Path, member: str, record: str, text_key: str, id_key: str, stream,
           caps: Caps) -> tuple[list[str], list[int], list[dict]]:
    """The usable texts of a row with their ids, and the ones dropped for their value."""
    texts, ids, dropped = [], [], []
    for index, item in enumerate(items):
        where = f"{record}, {text_key} {index}"
        text_id = _get(item, id_key, int, path, member, where)
        if not isinstance(item, dict) or text_key not in item:
            raise _malformed(path, member, where, f"no {text_key!r} field")
        problem = text_problem(item[text_key], stream, caps.text_bytes)
        if problem is None:
            texts.append(item[text_key])
            ids.append(text_id)
        else:
            dropped.append({"text_id": text_id, "error": problem[0], "bytes": problem[1]})
    return texts, ids, dropped


def karpathy_images(raw: Path, split: str, caps: Caps = DEFAULT_CAPS) -> list[CocoImage]:
    """Images of a Karpathy split in the file's order, each with its raw sentences (streamed)."""
    wanted = set(KARPATHY_SPLITS[split])
    path, member = raw / KARPATHY_ZIP, "dataset_coco.json"
    images = []
    for number, (row, stream) in enumerate(iter_zip_json(path, member, "images.item", caps.text_bytes,
                                                         caps.json_depth)):
        record = f"image {number}"
        if _get(row, "split", str, path, member, record) not in wanted:
            continue
        cocoid = _get(row, "cocoid", int, path, member, record)
        record = f"image {number} (cocoid {cocoid})"
        folder = _get(row, "filepath", str, path, member, record)
        if folder not in IMAGE_ZIPS:
            raise _malformed(path, member, record, f"filepath {folder!r:.60} is not one of {', '.join(IMAGE_ZIPS)}")
        filename = _get(row, "filename", str, path, member, record)
        texts, ids, dropped = _texts(_get(row, "sentences", list, path, member, record), path, member, record,
                                     "raw", "sentid", stream, caps)
        images.append(CocoImage(cocoid, filename, folder, texts, ids, dropped))
    return images


def karpathy_cocoids(raw: Path, splits: tuple[str, ...], caps: Caps = DEFAULT_CAPS) -> set[int]:
    """COCO ids of the images in the given Karpathy splits (for VG's leak guard)."""
    path, member = raw / KARPATHY_ZIP, "dataset_coco.json"
    found = set()
    for number, (row, _) in enumerate(iter_zip_json(path, member, "images.item", caps.text_bytes, caps.json_depth)):
        if _get(row, "split", str, path, member, f"image {number}") in splits:
            found.add(_get(row, "cocoid", int, path, member, f"image {number}"))
    return found


def official_images(raw: Path, split: str, caps: Caps = DEFAULT_CAPS) -> list[CocoImage]:
    """Images of ``train2014``/``val2014`` sorted by id, captions in annotation-id order.

    The annotations are read in one streamed pass and the images in a second, so neither the
    file nor more than the captions themselves is held.
    """
    path, member = raw / ANNOTATIONS_ZIP, f"captions_{split}.json"
    captions: dict[int, list[tuple[int, object]]] = {}
    for number, (ann, stream) in enumerate(iter_zip_json(path, member, "annotations.item", caps.text_bytes,
                                                         caps.json_depth)):
        record = f"annotation {number}"
        image_id = _get(ann, "image_id", int, path, member, record)
        kept, ids, dropped = _texts([ann], path, member, record, "caption", "id", stream, caps)
        captions.setdefault(image_id, []).extend(
            [(i, text) for i, text in zip(ids, kept)] + [(d["text_id"], d) for d in dropped])
    rows = []
    for number, (row, _) in enumerate(iter_zip_json(path, member, "images.item", caps.text_bytes, caps.json_depth)):
        record = f"image {number}"
        rows.append((_get(row, "id", int, path, member, record), _get(row, "file_name", str, path, member, record)))
    images = []
    for image_id, file_name in sorted(rows, key=lambda row: row[0]):
        found = sorted(captions.get(image_id, []), key=lambda pair: pair[0])
        images.append(CocoImage(image_id, file_name, split, [t for _, t in found if isinstance(t, str)],
                                [i for i, t in found if isinstance(t, str)],
                                [t for _, t in found if isinstance(t, dict)]))
    return images
