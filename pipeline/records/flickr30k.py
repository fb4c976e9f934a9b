"""Flickr30K as Karpathy's split file and the images archive give it.

``dataset_flickr30k.json`` (inside the ``caption_datasets.zip`` COCO's split comes in) lists each
image as ``{"filename": "1000092795.jpg", "imgid": 0, "split": "train"|"val"|"test", "sentences":
[{"raw": ..., "sentid": ...}, ...]}``: 29,000 train, 1,014 val and 1,000 test images with 5 captions
each. The images archive, distributed on request only, holds ``flickr30k-images/<filename>``; it
comes as ``flickr30k-images.tar.gz`` (the form its authors hand out) or ``flickr30k-images.zip``. A
tarball cannot be read at random, so it is repacked once, streamed, into a stored zip under
``work/`` that the sharding engine reads like any image zip.
"""
from __future__ import annotations

import re
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from zlib_ng import gzip_ng, zlib_ng

from ..caps import DEFAULT_CAPS, Caps
from ..errors import VlprepError
from ..fileio import atomic_path
from ..sources.archives import Oversized, iter_tar_members
from .karpathy import KARPATHY_ZIP, JsonMember, split_rows

KARPATHY_MEMBER = "dataset_flickr30k.json"
IMAGES_TAR = "flickr30k-images.tar.gz"
IMAGES_ZIP = "flickr30k-images.zip"
IMAGE_ARCHIVES = (IMAGES_TAR, IMAGES_ZIP)
"""The forms the images archive comes in; a tarball is preferred when both are there."""
IMAGE_FOLDER = "flickr30k-images"
SPLITS = ("train", "val", "test")
FILE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\.jpg", re.IGNORECASE)
"""A file name of the split file: a Flickr photo id and ``.jpg`` (the id becomes the sample key, which
webdataset cuts at the first dot, so none may hide in it)."""
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
"""Every member of a repacked zip carries this date, so the same tarball gives the same zip."""

__all__ = ["KARPATHY_ZIP", "KARPATHY_MEMBER", "IMAGES_TAR", "IMAGES_ZIP", "IMAGE_ARCHIVES", "SPLITS",
           "Flickr30kImage", "images", "repack_tarball"]


@dataclass(frozen=True)
class Flickr30kImage:
    imgid: int
    """Karpathy's image number (0 … 31,782), unique in the file."""
    filename: str
    captions: list[str]
    caption_ids: list[int]
    dropped: list[dict] = field(default_factory=list)
    """Captions left out for their value (over ``--max-text-kb``, not a string): id and cause."""

    @property
    def member(self) -> str:
        return f"{IMAGE_FOLDER}/{self.filename}"

    @property
    def flickr_id(self) -> str:
        """The Flickr photo id: the file name's stem (``1000092795``)."""
        return self.filename.rsplit(".", 1)[0]


def images(raw: Path, split: str, caps: Caps = DEFAULT_CAPS) -> list[Flickr30kImage]:
    """Images of one split in the file's order, each with its raw sentences (streamed)."""
    source = JsonMember(raw / KARPATHY_ZIP, KARPATHY_MEMBER, "flickr30k")
    found = []
    for row in split_rows(source, (split,), "imgid", caps):
        filename = source.get(row.row, "filename", str, row.record)
        if not FILE_NAME.fullmatch(filename):
            raise source.malformed(row.record, f"filename {filename!r:.60} is not a bare <id>.jpg name")
        found.append(Flickr30kImage(row.id, filename, row.captions, row.caption_ids, row.dropped))
    return found


def _is_image(name: str) -> bool:
    return name.startswith(IMAGE_FOLDER + "/") and name.count("/") == 1 and name.lower().endswith(".jpg")


def repack_tarball(tarball: Path, dest: Path, max_member_bytes: int) -> dict[str, int]:
    """Write the images of ``flickr30k-images.tar.gz`` to a stored zip at ``dest``; return the members
    skipped unread for being over ``max_member_bytes`` (name → size), for the errors list.

    One forward pass: zlib-ng inflates with its CRC checked and each member is read with one ``read``,
    so memory holds one image; other members are skipped. Members keep their names and archive order
    and carry a fixed date: the same tarball gives the same zip."""
    oversized: dict[str, int] = {}
    try:
        with atomic_path(dest, durable=False) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive, \
                gzip_ng.open(tarball, "rb") as stream:
            seen: set[str] = set()
            for name, data in iter_tar_members(stream, str(tarball), _is_image, max_member_bytes):
                if name in seen:
                    continue  # a later copy of a member name: the first is kept, as a zip reader would
                seen.add(name)
                if isinstance(data, Oversized):
                    oversized[name] = data.size
                else:
                    archive.writestr(zipfile.ZipInfo(name, FIXED_DATE), data)
    except (tarfile.TarError, OSError, EOFError, zlib.error, zlib_ng.error) as exc:
        raise VlprepError(f"{tarball} is damaged or not a .tar.gz: {exc}",
                          fix="run: vlprep fetch flickr30k  (a damaged file is fetched again)") from exc
    return oversized
