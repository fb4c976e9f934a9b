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
from typing import Iterator

from ..fileio import atomic_path

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


def write_index(shard: Path) -> Path:
    """Write the shard's DALI index atomically; return its path."""
    path = idx_path(shard)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(index_lines(shard)) + "\n", encoding="utf-8")
    return path


RECORD = ".dali-idx.json"
"""Per folder: the md5 (from the wids index) of each shard whose DALI index was written."""


def refresh(folder: Path, shards: list[tuple[str, str]]) -> list[Path]:
    """The DALI index of every ``(shard name, md5)`` in ``folder``, rewritten unless the folder's
    record says it was written for a shard with that very md5 (a rebuilt shard of the same name
    has another md5, whatever the file times say)."""
    from ..fileio import read_json, write_json

    folder = Path(folder)
    record_path = folder / RECORD
    try:
        record = read_json(record_path) if record_path.exists() else {}
    except ValueError:
        record = {}
    written = []
    for name, md5 in shards:
        path = idx_path(folder / name)
        if record.get(name) != md5 or not path.exists():
            write_index(folder / name)
            record[name] = md5
        written.append(path)
    present = {p.name for p in folder.glob("*.tar")}
    for stale in folder.glob("*.idx"):  # of shards a smaller rebuild removed; Energon's <shard>.tar.idx are not DALI's
        if not stale.name.endswith(".tar.idx") and stale.with_suffix(".tar").name not in present:
            stale.unlink()
    write_json(record_path, {name: md5 for name, md5 in sorted(record.items()) if name in present})
    return written
