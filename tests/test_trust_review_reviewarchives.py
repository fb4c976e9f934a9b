"""Zip members Python's zipfile cannot read, and other hostile archive contents, through the real CLI.

A verified zip may hold an encrypted member, one compressed with a method zipfile lacks (Deflate64),
a corrupt deflate stream, or a central directory that overstates a member's size. zipfile answers
those with ``RuntimeError``, ``NotImplementedError``, ``zlib.error`` or ``EOFError`` rather than
``BadZipFile``; none may end in a traceback (or click's bare ``Aborted!``).
"""
from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

from .test_trust_coco_vg import COCO_FILES, base, copy_mirror, one_line_error, shard, write_sums  # noqa: F401
from .conftest import run_cli

ENCRYPTED = 0x1
DEFLATE64 = 9


def patch_central(path: Path, name: str, fields: dict[int, tuple[str, int]]) -> None:
    """Overwrite fields (offset → struct format, value) of ``name``'s central-directory entry, and
    the same flag/method fields of its local header (offsets 6 and 8 there, 8 and 10 here)."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        local = archive.getinfo(name).header_offset
    pos = raw.find(b"PK\x01\x02")
    while pos != -1:
        length = struct.unpack_from("<H", raw, pos + 28)[0]
        if raw[pos + 46:pos + 46 + length] == name.encode():
            for offset, (form, value) in fields.items():
                struct.pack_into(form, raw, pos + offset, value)
                if offset in (8, 10):
                    struct.pack_into(form, raw, local + offset - 2, value)
        pos = raw.find(b"PK\x01\x02", pos + 4)
    path.write_bytes(bytes(raw))


def restored(path: Path, method: int) -> list[str]:
    """Rewrite a zip with every member compressed by ``method``; its file names, in order."""
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            info.compress_type = method
            archive.writestr(info, data)
    return [info.filename for info, _ in members if not info.is_dir()]


def test_unreadable_image_members_are_listed_and_the_split_still_verifies(tmp_path, base):
    mirror = copy_mirror(base, tmp_path, "coco")
    images = mirror / "zips/train2014.zip"
    names = restored(images, zipfile.ZIP_DEFLATED)
    encrypted, deflate64, corrupt = names[:3]
    patch_central(images, encrypted, {8: ("<H", ENCRYPTED)})
    patch_central(images, deflate64, {10: ("<H", DEFLATE64)})
    with zipfile.ZipFile(images) as archive:
        info = archive.getinfo(corrupt)
    raw = bytearray(images.read_bytes())
    start = info.header_offset + 30 + len(corrupt.encode())
    raw[start:start + 16] = b"\xff" * 16  # an invalid deflate block type
    images.write_bytes(bytes(raw))
    write_sums(mirror, COCO_FILES)
    result, data = shard("coco", mirror, tmp_path, capped=True)
    assert result.returncode == 0, result.stderr
    out = data / "out" / "coco"
    errors = {e["file"].split(":", 1)[1]: e["error"]
              for path in out.glob("*.errors.jsonl") for e in map(json.loads, path.read_text().splitlines())}
    assert "it is encrypted" in errors[encrypted]
    assert "compression method is not supported" in errors[deflate64]
    assert "truncated or corrupt" in errors[corrupt]
    run_cli("verify", "coco", "--data-dir", str(data))


def test_a_central_directory_overstating_the_last_image_lists_it_instead_of_aborting(tmp_path, base):
    mirror = copy_mirror(base, tmp_path, "coco")
    images = mirror / "zips/train2014.zip"
    last = restored(images, zipfile.ZIP_STORED)[-1]
    patch_central(images, last, {20: ("<I", 10 << 20), 24: ("<I", 10 << 20)})  # sizes: 10 MB, past the file's end
    write_sums(mirror, COCO_FILES)
    result, data = shard("coco", mirror, tmp_path)
    assert result.returncode == 0 and "Aborted" not in result.stderr, result.stderr
    errors = "".join(path.read_text() for path in (data / "out" / "coco").glob("*.errors.jsonl"))
    assert last in errors and "EOFError" in errors
    run_cli("verify", "coco", "--data-dir", str(data))


def test_an_encrypted_or_deflate64_annotation_json_is_one_line(tmp_path, base):
    for offset, field, words in ((8, ENCRYPTED, "it is encrypted"), (10, DEFLATE64, "not supported")):
        mirror = copy_mirror(base, tmp_path / str(field), "coco")
        patch_central(mirror / "caption_datasets.zip", "dataset_coco.json", {offset: ("<H", field)})
        write_sums(mirror, COCO_FILES)
        result, _ = shard("coco", mirror, tmp_path / str(field))
        one_line_error(result, "caption_datasets.zip", "dataset_coco.json", words, "fetch")
