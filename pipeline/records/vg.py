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

from ..errors import VlprepError
from ..sources.archives import ARCHIVE_ERRORS, corrupt_archive, open_zip_member

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


def image_data(raw: Path) -> dict[int, VgImage]:
    """Every image's metadata by id (108 k small rows: fine in memory)."""
    import ijson

    path = raw / IMAGE_DATA_ZIP
    images: dict[int, VgImage] = {}
    try:
        with open_zip_member(path, "image_data.json") as handle:
            for row in ijson.items(handle, "item", use_float=True):
                image_id = int(row.get("image_id", row.get("id")))
                url = str(row.get("url") or "")
                folder = url.rstrip("/").split("/")[-2] if "/" in url else "VG_100K"
                if folder not in FOLDER_ZIPS:
                    raise VlprepError(f"{path}: image {image_id} has an unexpected url {url!r}",
                                      fix="fetch the published image_data.json.zip again")
                coco = row.get("coco_id")
                images[image_id] = VgImage(image_id, int(coco) if coco is not None else None, folder,
                                           row.get("width"), row.get("height"))
    except (ijson.JSONError, *ARCHIVE_ERRORS) as exc:
        raise corrupt_archive(path, "image_data.json", exc) from exc
    return images


def iter_regions(raw: Path) -> Iterator[tuple[int, list[Region]]]:
    """``(image_id, regions)`` per image, in file order, streamed."""
    import ijson

    path = raw / REGIONS_ZIP
    try:
        with open_zip_member(path, "region_descriptions.json") as handle:
            for row in ijson.items(handle, "item", use_float=True):
                regions = row.get("regions") or []
                image_id = row.get("id", regions[0]["image_id"] if regions else None)
                if image_id is None:
                    continue
                yield int(image_id), [Region(int(r["region_id"]), str(r.get("phrase") or ""), int(r["x"]),
                                             int(r["y"]), int(r["width"]), int(r["height"])) for r in regions]
    except (ijson.JSONError, *ARCHIVE_ERRORS) as exc:
        raise corrupt_archive(path, "region_descriptions.json", exc) from exc
