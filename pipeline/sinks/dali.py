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
"""Per folder: for each shard, the md5 (from the wids index) it had when its DALI index was written,
and the sha256 of that index, so a changed shard or a damaged index is noticed without reading a tar."""


def read_record(folder: Path) -> dict[str, list[str]]:
    """The folder's record (empty when absent, unreadable or of an older form: everything is redone)."""
    from ..fileio import read_json

    try:
        record = read_json(Path(folder) / RECORD)
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in record.items() if isinstance(v, list) and len(v) == 2} if isinstance(record, dict) else {}


def is_current(folder: Path, name: str, md5: str, record: dict[str, list[str]]) -> bool:
    """Whether ``name``'s DALI index was written from a shard with ``md5`` and is unchanged since."""
    from ..fileio import sha256_file

    path = idx_path(Path(folder) / name)
    return record.get(name, [None])[0] == md5 and path.is_file() and sha256_file(path) == record[name][1]


def refresh(folder: Path, shards: list[tuple[str, str]]) -> list[Path]:
    """The DALI index of every ``(shard name, md5)`` in ``folder``, rewritten unless the record says
    it was written from a shard with that very md5 and is intact (a rebuilt shard of the same name
    has another md5, whatever the file times say)."""
    from ..fileio import sha256_file, write_json

    folder = Path(folder)
    record = read_record(folder)
    written = []
    for name, md5 in shards:
        path = idx_path(folder / name)
        if not is_current(folder, name, md5, record):
            write_index(folder / name)
            record[name] = [md5, sha256_file(path)]
        written.append(path)
    present = {p.name for p in folder.glob("*.tar")}
    for stale in folder.glob("*.idx"):  # of shards a smaller rebuild removed; Energon's <shard>.tar.idx are not DALI's
        if not stale.name.endswith(".tar.idx") and stale.with_suffix(".tar").name not in present:
            stale.unlink()
    write_json(folder / RECORD, {name: entry for name, entry in sorted(record.items()) if name in present})
    return written
