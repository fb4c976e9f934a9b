"""An output folder as its metadata sees it: what the dataset is (declared) and what is on disk (read).

``out/<folder>/`` (the dataset, or a variant with a folder of its own: ``<dataset>-<variant>``) holds, per
published split, shards ``<folder>-<split>-NNNNNN.tar``, the wids index ``<folder>-<split>.index.json``
(written last: it says the split is whole) and the split's entry in ``stats.json``. The dataset
card, the Croissant file and Energon's ``.nv-meta`` are all rendered from one
:class:`PublishedFolder`, read here from those files only, so they describe exactly what a reader
finds, whatever run wrote it.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..fileio import atomic_path, sha256_file
from .features import SampleSchema
from .shards import read_wids_index
from .splits import index_path


@dataclass(frozen=True)
class About:
    """What a dataset is, as published: the facts a card and a Croissant file state about it.

    ``sources`` maps a raw input as ``stats.json`` names it (``<dataset>/<relpath>``) to its
    published URL; ``published`` a split to its published size and unit (``(113_287, "images")``);
    ``roles`` Energon's split parts (``train``, ``val``, ``test``) to the splits that play them.
    ``license`` is a Hugging Face license id (``other`` with ``license_name``), ``license_url``
    what Croissant records.
    """

    pretty_name: str
    summary: str
    homepage: str
    version: str
    license: str
    license_url: str
    license_note: str
    citation: str
    task_categories: tuple[str, ...] = ()
    license_name: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)
    published: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    roles: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    """Further sentences for the card (a leak guard, how captions were packed)."""


@dataclass(frozen=True)
class Shard:
    """One published shard: its file name (relative to the folder), samples, bytes and sha256."""

    name: str
    nsamples: int
    filesize: int
    sha256: str


@dataclass(frozen=True)
class PublishedSplit:
    """One split whose index is on disk: its shards, its ``stats.json`` entry and the command that rebuilds it."""

    name: str
    shards: tuple[Shard, ...]
    stats: Mapping[str, Any]
    rebuild: str

    @property
    def samples(self) -> int:
        return sum(shard.nsamples for shard in self.shards)

    @property
    def stem(self) -> str:
        """``<folder>-<split>``: the common prefix of the split's shards (taken from their names)."""
        return self.shards[0].name.rsplit("-", 1)[0] if self.shards else ""


@dataclass(frozen=True)
class PublishedFolder:
    """Everything the metadata of ``out/<name>/`` is rendered from."""

    name: str
    dataset: str
    title: str
    variant: str | None
    vlprep_version: str
    about: About
    sample: SampleSchema
    splits: tuple[PublishedSplit, ...]

    def split(self, name: str) -> PublishedSplit:
        for found in self.splits:
            if found.name == name:
                return found
        raise KeyError(name)

    def shards(self) -> Iterable[Shard]:
        for split in self.splits:
            yield from split.shards


HF_SPLIT = re.compile(r"^\w+(\.\w+)*$")


def hf_split_name(split: str) -> str:
    """A split's name for Hugging Face, whose split names must match ``\\w+(\\.\\w+)*``:
    every other character becomes ``_`` (``karpathy-train`` → ``karpathy_train``)."""
    mapped = re.sub(r"[^\w.]", "_", split)
    if not HF_SPLIT.match(mapped):
        raise ValueError(f"split {split!r} has no valid Hugging Face name ({mapped!r})")
    return mapped


def hf_split_names(splits: Iterable[str]) -> dict[str, str]:
    """Every split's Hugging Face name, refusing two splits that would get the same one."""
    names = {split: hf_split_name(split) for split in splits}
    if len(set(names.values())) != len(names):
        raise ValueError(f"splits {sorted(names)} collide once mapped to Hugging Face names")
    return names


def read_shards(index: Path) -> tuple[Shard, ...]:
    """The shards a wids index lists, with their sha256: from the index, else streamed from the file.

    Indexes written before ``sha256`` was recorded lack it; hashing the shard is the only way to a
    checksum Croissant can state, and it reads every byte once.
    """
    folder = Path(index).parent
    return tuple(Shard(info.url, info.nsamples, info.filesize, info.sha256 or sha256_file(folder / info.url))
                 for info in read_wids_index(index))


def published_splits(out_dir: Path, order: Iterable[str], stats: Mapping[str, Any]) -> list[str]:
    """The splits of ``out_dir`` that are published: an entry in ``stats.json`` and an index on disk.

    ``order`` (the recipe's splits) comes first, in its order; splits only ``stats.json`` knows follow,
    sorted, so nothing published is left out of the metadata.
    """
    entries = stats.get("splits", {})
    known = list(dict.fromkeys([*order, *sorted(entries)]))
    return [split for split in known if split in entries and index_path(out_dir, split).exists()]


def source_of(about: About, name: str) -> str | None:
    """The published URL of a raw input as ``stats.json`` names it: ``<dataset>/<relpath>``, or
    a file passed by path (``--tsv /data/Train_GCC-training.tsv``), matched by its file name."""
    if name in about.sources:
        return about.sources[name]
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    matches = [url for key, url in about.sources.items() if key.rsplit("/", 1)[-1] == base]
    return matches[0] if len(matches) == 1 else None


def input_label(name: str) -> str:
    """How a raw input is named in published metadata: ``<dataset>/<relpath>`` as recorded, but a
    file passed by absolute path by its file name only (the path is the builder's machine's)."""
    return name.replace("\\", "/").rsplit("/", 1)[-1] if name.startswith(("/", "~")) or ":\\" in name else name


def write_if_changed(path: Path, data: bytes) -> Path:
    """Write ``data`` atomically unless ``path`` already holds exactly it, so rewriting a folder's
    metadata leaves unchanged files (and the caches of readers that watch them) alone."""
    path = Path(path)
    if not (path.exists() and path.read_bytes() == data):
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return path


@dataclass(frozen=True)
class DerivedIndexes:
    """Per-shard index files derived from the shards alone (DALI's ``.idx``, Energon's ``.tar.idx``)
    and their record: for each shard, the sha256 it had when its index was written and the index's
    own sha256. A rebuilt shard (another sha256 under the same name) or a damaged index is noticed
    from the record and the small index file, and an unchanged shard's tar is not read again."""

    folder: Path
    """The output folder whose shards are indexed."""
    record: Path
    index_of: Callable[[str], Path]
    """Shard file name → its index file."""
    build: Callable[[Shard], bytes]
    """The index bytes of one shard (reads its tar)."""

    def entries(self) -> dict[str, list[str]]:
        """The record (empty when absent, unreadable or of an older form: every index is redone)."""
        try:
            record = json.loads(self.record.read_text(encoding="utf-8")) if self.record.exists() else {}
        except (OSError, ValueError):
            return {}
        if not isinstance(record, dict):
            return {}
        return {name: entry for name, entry in record.items() if isinstance(entry, list) and len(entry) == 2}

    def is_current(self, shard: Shard, entries: Mapping[str, list[str]]) -> bool:
        path = self.index_of(shard.name)
        entry = entries.get(shard.name)
        return (entry is not None and entry[0] == shard.sha256 and path.is_file()
                and sha256_file(path) == entry[1])

    def stale(self, shards: Iterable[Shard]) -> list[Path]:
        """The index files of ``shards`` that are missing, damaged or of an older shard."""
        entries = self.entries()
        return [self.index_of(shard.name) for shard in shards if not self.is_current(shard, entries)]

    def refresh(self, shards: Iterable[Shard]) -> list[Path]:
        """Write the index of every shard whose index is not current, keep the record of the shards
        still on disk; return every shard's index path."""
        entries = self.entries()
        written = []
        for shard in shards:
            path = self.index_of(shard.name)
            if not self.is_current(shard, entries):
                data = self.build(shard)
                write_if_changed(path, data)
                entries[shard.name] = [shard.sha256, hashlib.sha256(data).hexdigest()]
            written.append(path)
        kept = {name: entry for name, entry in sorted(entries.items()) if (self.folder / name).exists()}
        write_if_changed(self.record, (json.dumps(kept, indent=1, sort_keys=True) + "\n").encode("utf-8"))
        return written
