"""WebDataset shards: plain tars whose members ``<key>.<ext>`` are grouped by sample.

Written so that the same input gives the same bytes: USTAR headers, mtime 0, owner 0/0 with empty
names, mode 0444, members of a sample contiguous and in a fixed extension order. Each shard is
written under a temporary name and renamed when complete; beside the shards, ``<split>.index.json``
follows the wids shard-index format (``url`` relative to the index, ``nsamples``, ``filesize``,
``md5sum``), which ``wids.ShardListDataset`` and webdataset pipelines read.
"""
from __future__ import annotations

import io
import json
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from ..fileio import atomic_path, file_digest

MTIME = 0
MODE = 0o444
WIDS_KIND = "wids-shard-index-v1"


@dataclass(frozen=True)
class ShardInfo:
    url: str
    nsamples: int
    filesize: int
    md5sum: str


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


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


def write_shard(path: Path, samples: Iterable[tuple[str, dict[str, bytes]]]) -> ShardInfo:
    """Write ``(key, {ext: bytes})`` samples to ``path`` atomically; extensions in sorted order."""
    count = 0
    with atomic_path(path, durable=False) as tmp:
        with open(tmp, "wb") as handle, tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for key, members in samples:
                check_key(key)
                for ext in sorted(members):
                    data = members[ext]
                    tar.addfile(_header(f"{key}.{ext}", len(data)), io.BytesIO(data))
                count += 1
        md5 = file_digest(tmp, "md5")
        size = tmp.stat().st_size
    return ShardInfo(path.name, count, size, md5)


def write_wids_index(path: Path, name: str, shards: list[ShardInfo]) -> None:
    """``<split>.index.json`` in the wids format, urls relative to the index file."""
    index = {"__kind__": WIDS_KIND, "wids_version": 1, "name": name,
             "shardlist": [asdict(shard) for shard in shards]}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")


def read_wids_index(path: Path) -> list[ShardInfo]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("__kind__") != WIDS_KIND:
        raise ValueError(f"{path} is not a wids shard index")
    return [ShardInfo(**shard) for shard in data["shardlist"]]


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
