"""DALI's WebDataset index beside each shard, so ``fn.readers.webdataset`` needs no ``wds2idx`` run.

DALI's reader takes one index file per tar (``index_paths``). The format, version ``v1.2``, is a
first line ``v1.2 <samples>`` and then one line per sample listing each of its members as
``<ext> <data offset> <size> <name>``, members of a sample being consecutive entries that share the
name before the first dot. vlprep writes ``<shard stem>.idx`` (``<folder>-<split>-000000.idx``)
from the tar headers alone: the shards are plain USTAR with regular files only, so a header is one
512-byte block and data starts right after it.
"""
from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Iterable, Iterator

from .folder import DerivedIndexes, Shard

VERSION = "v1.2"
BLOCK = tarfile.BLOCKSIZE


def idx_path(shard: Path) -> Path:
    """``<dir>/<name up to the first dot>.idx``: where DALI's own ``wds2idx`` would put it."""
    shard = Path(shard)
    return shard.with_name(shard.name.split(".", 1)[0] + ".idx")


def members(shard: Path) -> Iterator[tuple[str, int, int]]:
    """``(name, data offset, size)`` of every regular file of a tar, read from the headers only."""
    with tarfile.open(shard, "r:") as archive:
        for member in archive:
            if member.isreg():
                yield member.name, member.offset_data, member.size


def index_lines(shard: Path) -> list[str]:
    """The index of one shard: the header line, then one line per sample in tar order."""
    samples: list[list[str]] = []
    last = None
    for name, offset, size in members(shard):
        stem, _, ext = name.partition(".")
        if not stem or stem.endswith("/"):
            continue
        if stem != last:
            samples.append([])
            last = stem
        samples[-1].append(f"{ext} {offset} {size} {name}")
    return [f"{VERSION} {len(samples)}", *(" ".join(parts) for parts in samples)]


def index_bytes(shard: Path) -> bytes:
    """The DALI index file of one shard."""
    return ("\n".join(index_lines(shard)) + "\n").encode("utf-8")


RECORD = ".dali-idx.json"
"""Per folder: for each shard, the sha256 it had when its DALI index was written and the sha256 of
that index (:class:`~.folder.DerivedIndexes`)."""


def indexes(folder: Path) -> DerivedIndexes:
    """The DALI indexes of ``folder``'s shards, with their record."""
    folder = Path(folder)
    return DerivedIndexes(folder, folder / RECORD, lambda name: idx_path(folder / name),
                          lambda shard: index_bytes(folder / shard.name))


def refresh(folder: Path, shards: Iterable[Shard]) -> list[Path]:
    """The DALI index of every shard, rewritten unless the record says it was written from a shard
    with that very sha256 and is intact; indexes of shards no longer there are removed."""
    folder = Path(folder)
    written = indexes(folder).refresh(shards)
    for stale in folder.glob("*.idx"):  # of shards a smaller rebuild removed; Energon's <shard>.tar.idx are not DALI's
        if not stale.name.endswith(".tar.idx") and not stale.with_suffix(".tar").exists():
            stale.unlink()
    return written
