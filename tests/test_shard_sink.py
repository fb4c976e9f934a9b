"""The shard writer builds tar headers itself; its bytes must be exactly what tarfile writes."""
from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from vlprep.pipeline.sinks.shards import _header, ustar_header, write_shard


@pytest.mark.parametrize("name,size", [("a.jpg", 0), ("000000123456.json", 1234), ("k.cls", 1), ("x" * 100, 5),
                                       ("dir/" * 30 + "long.jpg", 99_999_999), ("é日本.jpg", 10)])
def test_header_equals_tarfiles(name, size):
    assert ustar_header(name, size) == _header(name, size).tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


def test_shard_bytes_and_md5_equal_tarfiles(tmp_path):
    samples = [(f"k{i:03d}", {"jpg": bytes(range(i % 256)) * i, "json": b'{"a":1}', "cls": b"7"}) for i in range(60)]
    # Sizes on both sides of the small-member join, and data given as a memoryview into a buffer.
    blob = bytes(range(256)) * 800
    samples += [(f"m{size}", {"jpg": memoryview(blob)[:size], "json": blob[:size // 7]})
                for size in (16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 200_000)]
    info = write_shard(tmp_path / "s.tar", iter(samples))
    reference = io.BytesIO()
    with tarfile.open(fileobj=reference, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for ext in sorted(members):
                tar.addfile(_header(f"{key}.{ext}", len(members[ext])), io.BytesIO(members[ext]))
    assert (tmp_path / "s.tar").read_bytes() == reference.getvalue()
    assert (info.nsamples, info.filesize, info.md5sum) == (64, len(reference.getvalue()),
                                                           hashlib.md5(reference.getvalue()).hexdigest())
