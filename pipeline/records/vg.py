"""Visual Genome 1.2: image metadata and region descriptions, read as streams.

``region_descriptions.json`` is ~700 MB of JSON holding 5.4 M regions; it is parsed with ``ijson``
one image at a time, so memory holds one image's regions, never the file. Image files live in
``images.zip`` (``VG_100K/``) and ``images2.zip`` (``VG_100K_2/``); the folder is the one in the
image's ``url``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..caps import DEFAULT_CAPS, Caps
from ..errors import VlprepError
from ..sources.jsonstream import iter_zip_json, text_problem

IMAGE_DATA_ZIP = "image_data.json.zip"
REGIONS_ZIP = "region_descriptions.json.zip"
IMAGE_ZIPS = ("images.zip", "images2.zip")
FOLDER_ZIPS = {"VG_100K": "images.zip", "VG_100K_2": "images2.zip"}


@dataclass(frozen=True)
class VgImage:
    image_id: int
    coco_id: int | None
    folder: str
    width: int | None
    height: int | None

    @property
    def image_zip(self) -> str:
        return FOLDER_ZIPS[self.folder]

    @property
    def member(self) -> str:
        return f"{self.folder}/{self.image_id}.jpg"


@dataclass(frozen=True)
class Region:
    region_id: int
    phrase: str
    x: int
    y: int
    width: int
    height: int


def _malformed(path: Path, member: str, record: str, problem: str) -> VlprepError:
    """A row the published file cannot hold: the file is not the published one, so the stage stops."""
    return VlprepError(f"{path} (member {member}): {record}: {problem}",
                       fix=f"fetch the published {path.name} again (run: vlprep fetch vg)")


def _number(row: dict, key: str, path: Path, member: str, record: str, optional: bool = False) -> int | None:
    """``row[key]`` as an integer (JSON integers; whole floats too), or an error naming the record."""
    if key not in row:
        if optional:
            return None
        raise _malformed(path, member, record, f"no {key!r} field")
    value = row[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise _malformed(path, member, record, f"{key!r} is {value!r:.60}, not an integer")
    return int(value)


def image_data(raw: Path, caps: Caps = DEFAULT_CAPS) -> dict[int, VgImage]:
    """Every image's metadata by id (108 k small rows: fine in memory); the first row of an id wins."""
    path, member = raw / IMAGE_DATA_ZIP, "image_data.json"
    images: dict[int, VgImage] = {}
    for number, (row, _) in enumerate(iter_zip_json(path, member, "item", caps.text_bytes, caps.json_depth)):
        record = f"row {number}"
        if not isinstance(row, dict):
            raise _malformed(path, member, record, "not an object")
        image_id = _number(row, "image_id" if "image_id" in row else "id", path, member, record)
        url = row.get("url") or ""
        url = url if isinstance(url, str) else ""
        folder = url.rstrip("/").split("/")[-2] if "/" in url else "VG_100K"
        if folder not in FOLDER_ZIPS:
            raise VlprepError(f"{path}: image {image_id} has an unexpected url {url!r:.80}",
                              fix="fetch the published image_data.json.zip again")
        record = f"image {image_id}"
        images.setdefault(image_id, VgImage(image_id, _number(row, "coco_id", path, member, record, optional=True),
                                            folder, _number(row, "width", path, member, record, optional=True),
                                            _number(row, "height", path, member, record, optional=True)))
    return images


def iter_regions(raw: Path, caps: Caps = DEFAULT_CAPS) -> Iterator[tuple[int, list[Region], list[dict]]]:
    """``(image_id, regions, dropped)`` per image, in file order, streamed; ``dropped`` lists the
    descriptions left out for their value (over ``--max-text-kb``, not a string) with the cause."""
    path, member = raw / REGIONS_ZIP, "region_descriptions.json"
    for number, (row, stream) in enumerate(iter_zip_json(path, member, "item", caps.text_bytes, caps.json_depth)):
        record = f"image row {number}"
        if not isinstance(row, dict):
            raise _malformed(path, member, record, "not an object")
        regions = row.get("regions") or []
        if not isinstance(regions, list) or not all(isinstance(r, dict) for r in regions):
            raise _malformed(path, member, record, "'regions' is not a list of objects")
        if "id" in row:
            image_id = _number(row, "id", path, member, record)
        elif regions:
            image_id = _number(regions[0], "image_id", path, member, record)
        else:
            continue
        kept, dropped = [], []
        for region in regions:
            where = f"image {image_id}, region {region.get('region_id')!r:.30}"
            region_id = _number(region, "region_id", path, member, where)
            box = [_number(region, k, path, member, where) for k in ("x", "y", "width", "height")]
            phrase = region.get("phrase")
            problem = None if phrase is None else text_problem(phrase, stream, caps.text_bytes)
            if problem is None:
                kept.append(Region(region_id, phrase or "", *box))
            else:
                dropped.append({"text_id": region_id, "error": problem[0], "bytes": problem[1]})
        yield image_id, kept, dropped
