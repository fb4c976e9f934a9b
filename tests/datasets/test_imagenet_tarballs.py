"""Reading ImageNet ``.tar.gz`` files: damage that ``tarfile`` alone would pass over is an error."""
from __future__ import annotations

import gzip
import io
import os
import tarfile

import pytest

from vlprep.pipeline.errors import VlprepError
from vlprep.pipeline.records.imagenet import iter_images


def tar_bytes(count: int = 60, size: int = 20_000) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(count):
            data = os.urandom(size)
            info = tarfile.TarInfo(f"n0144{i % 3:04d}/n0144{i % 3:04d}_{i}.JPEG")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_a_whole_tarball_reads_every_image(tmp_path):
    path = tmp_path / "train_images_0.tar.gz"
    path.write_bytes(gzip.compress(tar_bytes()))
    assert len(list(iter_images(path))) == 60


@pytest.mark.parametrize("damage,message", [
    (lambda gz: gz[: len(gz) // 2], "damaged"),
    (lambda gz: b"not gzip at all" * 50, "damaged or not a .tar.gz"),
])
def test_damaged_gzip_is_an_error_naming_the_file(tmp_path, damage, message):
    path = tmp_path / "train_images_0.tar.gz"
    path.write_bytes(damage(gzip.compress(tar_bytes())))
    with pytest.raises(VlprepError, match=message) as info:
        list(iter_images(path))
    assert "train_images_0.tar.gz" in str(info.value) and "vlprep fetch imagenet" in str(info.value)


@pytest.mark.parametrize("damage,message", [
    (lambda raw, at: raw[:at] + b"\xff" * 100 + raw[at + 100:], "bad header checksum at byte"),
    (lambda raw, at: raw[:at] + b"\0" * 512 + raw[at + 512:], "stops at an empty header at byte .* but data follows"),
])
def test_a_damaged_tar_header_does_not_end_the_archive_silently(tmp_path, damage, message):
    raw = tar_bytes()
    offsets = [member.offset for member in tarfile.open(fileobj=io.BytesIO(raw))]
    damaged = damage(raw, offsets[20])
    assert len(tarfile.open(fileobj=io.BytesIO(damaged)).getmembers()) == 20  # tarfile alone stops without a word
    path = tmp_path / "train_images_1.tar.gz"
    path.write_bytes(gzip.compress(damaged))
    with pytest.raises(VlprepError, match=message) as info:
        list(iter_images(path))
    assert "train_images_1.tar.gz" in str(info.value)


def test_a_wrong_gzip_checksum_is_an_error(tmp_path):
    """The gzip trailer's CRC-32 is checked as the stream ends (flip one bit of it)."""
    packed = bytearray(gzip.compress(tar_bytes(count=5)))
    packed[-8] ^= 1
    path = tmp_path / "train_images_2.tar.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(VlprepError, match="damaged") as info:
        list(iter_images(path))
    assert "CRC" in str(info.value) or "crc" in str(info.value)
