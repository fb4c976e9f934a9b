"""WebDataset shards: plain tars whose members ``<key>.<ext>`` are grouped by sample.

Written so that the same input gives the same bytes: USTAR headers, mtime 0, owner 0/0 with empty
names, mode 0444, members of a sample contiguous and in a fixed extension order. Each shard is
written under a temporary name and renamed when complete. A split's files are named by its *stem*,
``<folder>-<split>`` (the folder being a dataset or a variant of one), so every file name is unique
across ``out/``: readers that cache by file name (wids) or glob a folder (Hugging Face ``datasets``)
never mix two splits or datasets. Beside the shards, ``<stem>.index.json`` follows the wids
shard-index format (``url`` relative to the index, ``nsamples``, ``filesize``, ``md5sum``, and
``sha256`` for Croissant), which ``wids.ShardListDataset`` and webdataset pipelines read.
"""
from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..fileio import atomic_path

MTIME = 0
MODE = 0o444
WIDS_KIND = "wids-shard-index-v1"


@dataclass(frozen=True)
class ShardInfo:
    url: str
    nsamples: int
    filesize: int
    md5sum: str
    sha256: str = ""


def split_stem(folder: str, split: str) -> str:
    """``<folder>-<split>``: the prefix of a split's shards, index and errors (unique across ``out/``)."""
    return f"{folder}-{split}"


def shard_name(stem: str, index: int) -> str:
    """``<stem>-NNNNNN.tar``, ``stem`` from :func:`split_stem`."""
    return f"{stem}-{index:06d}.tar"


def check_key(key: str) -> str:
    """Keys must not contain dots (webdataset splits ``key.ext`` at the first dot) or slashes."""
    if not key or "." in key or "/" in key:
        raise ValueError(f"invalid sample key {key!r}: no dots or slashes allowed")
    return key


def _header(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, MTIME, MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


_NUL = b"\0"
_MODE_OWNER = b"%07o\0" % MODE + b"0000000\0" * 2
_MTIME = b"%011o\0" % MTIME
_AFTER_CHECKSUM = (b" 0" + _NUL * 100 + b"ustar\x0000").ljust(512 - 155, _NUL)
_FIXED_SUM = sum(_MODE_OWNER) + sum(_MTIME) + sum(b" " * 8) + sum(_AFTER_CHECKSUM) - sum(b" ")
"""What the fixed fields add to the header checksum (the checksum field counts as 8 spaces)."""


def ustar_header(name: str, size: int) -> bytes:
    """The 512-byte header ``tarfile`` writes for :func:`_header` (USTAR), built without ``tarfile``.

    ``tarfile.addfile`` costs tens of microseconds a member; shards of millions of members spend
    seconds there. Only the name and size vary, so the checksum sums just those. Names over 100
    bytes take tarfile's own path (the USTAR prefix split).
    """
    encoded = name.encode("utf-8")
    if len(encoded) > 100:
        return _header(name, size).tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    size_field = b"%011o\0" % size
    checksum = _FIXED_SUM + sum(encoded) + sum(size_field)
    return b"".join((encoded.ljust(100, _NUL), _MODE_OWNER, size_field, _MTIME, b"%06o\0" % checksum,
                     _AFTER_CHECKSUM))


def _padding(size: int) -> bytes:
    return _NUL * (-size % tarfile.BLOCKSIZE)


def json_bytes(data: dict) -> bytes:
    """A sample's json member: sorted keys, compact, UTF-8 (deterministic bytes)."""
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


END_OF_ARCHIVE = _NUL * (2 * tarfile.BLOCKSIZE)


def member_blocks(name: str, data: bytes | memoryview) -> tuple[bytes | memoryview, ...]:
    """One tar member as it is written: header, data, zero padding to the 512-byte block.

    A small member comes as one block (a copy cheaper than two more writes and digest updates); a
    large one as three, so its data (a memoryview into a mapped file, say) is never copied.
    """
    size = len(data)
    if size <= _SMALL:
        return (b"".join((ustar_header(name, size), data, _padding(size))),)
    return ustar_header(name, size), data, _padding(size)


_SMALL = 16 * 1024
"""Members up to this size are joined with their header."""


def write_shard(path: Path, samples: Iterable[tuple[str, dict[str, bytes]]]) -> ShardInfo:
    """Write ``(key, {ext: bytes})`` samples to ``path`` atomically; extensions in sorted order.

    The bytes are those ``tarfile`` writes in USTAR format (two zero blocks, padded to its 10 KiB
    record), and the md5 of the wids index (and the sha256 Croissant lists) is computed while writing.
    A member's data may be any
    bytes-like object: a memoryview into a mapped file is written without a copy.
    """
    count = 0
    written = 0
    digest, sha256 = hashlib.md5(), hashlib.sha256()
    with atomic_path(path, durable=False) as tmp, open(tmp, "wb", buffering=1 << 20) as handle:
        def put(block: bytes | memoryview) -> None:
            nonlocal written
            handle.write(block)
            digest.update(block)
            sha256.update(block)
            written += len(block)

        for key, members in samples:
            check_key(key)
            for ext in sorted(members):
                for block in member_blocks(f"{key}.{ext}", members[ext]):
                    put(block)
            count += 1
        put(END_OF_ARCHIVE)
        put(_padding_to_record(written))
        handle.flush()
    return ShardInfo(path.name, count, written, digest.hexdigest(), sha256.hexdigest())


def _padding_to_record(size: int) -> bytes:
    return _NUL * (-size % tarfile.RECORDSIZE)


def write_wids_index(path: Path, name: str, shards: list[ShardInfo]) -> None:
    """``<stem>.index.json`` in the wids format, urls relative to the index file."""
    index = {"__kind__": WIDS_KIND, "wids_version": 1, "name": name,
             "shardlist": [asdict(shard) for shard in shards]}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")


def conversion_fields(reason: str | None) -> dict[str, Any]:
    """A sample json's ``converted`` (bool) and ``conversion`` (why, ``""`` when stored as fetched).

    Both are on every sample, with the same types, so readers that infer a schema from the first
    samples (Hugging Face ``datasets``, Energon) see every field of every sample.
    """
    return {"converted": bool(reason), "conversion": reason or ""}


IMAGE_MEMBERS = ("jpg", "jpeg", "png", "webp")
"""Extensions a sample's image is stored under (vlprep writes ``jpg``; other writers use the rest)."""


def image_member(sample: Mapping[str, Any]) -> bytes | None:
    """A read sample's image bytes, under the first image extension it has; None when it has none."""
    for member in IMAGE_MEMBERS:
        if member in sample:
            return sample[member]
    return None


def caption_token_lists(meta: Mapping[str, Any]) -> list[list[int]]:
    """A sample json's caption ids, one list per caption (``[]`` when it holds none).

    Every image-text sample stores ``tokens`` as a list per caption; a single flat list (one
    caption) is read as one caption too.
    """
    tokens = meta.get("tokens") or []
    if tokens and isinstance(tokens[0], int):
        return [tokens]
    return tokens


def read_wids_index(path: Path) -> list[ShardInfo]:
    """The shards a wids index lists; a damaged one is a :class:`DamagedFile` naming it."""
    from ..errors import DamagedFile

    fix = "rebuild the split (its build writes the index last; finished shards are kept)"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("__kind__") != WIDS_KIND:
            raise DamagedFile(f"{path}: not a wids shard index", fix=fix)
        return [ShardInfo(**shard) for shard in data["shardlist"]]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, DamagedFile):
            raise
        raise DamagedFile(f"{path}: damaged wids shard index ({exc!r})", fix=fix) from exc


def plan_shards(sizes: list[int], max_count: int, max_bytes: int) -> list[tuple[int, int]]:
    """Cut a sequence of sample sizes into ``(start, stop)`` runs of at most ``max_count`` samples and
    about ``max_bytes`` (a run closes before the sample that would pass it; one sample always fits)."""
    runs, start, total = [], 0, 0
    for position, size in enumerate(sizes):
        overhead = size + 2048  # tar headers and the json member
        if position > start and (position - start >= max_count or total + overhead > max_bytes):
            runs.append((start, position))
            start, total = position, 0
        total += overhead
    if start < len(sizes):
        runs.append((start, len(sizes)))
    return runs
