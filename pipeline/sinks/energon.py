"""Megatron-Energon's metadata for an output folder, so Energon loads it with no ``energon prepare``.

``energon prepare`` scans every tar and writes, beside the shards and in ``.nv-meta/``:

- ``<shard>.tar.idx``: the byte offset of each sample's first member, then the offset of the end of
  the last member (little-endian uint64 each); Energon's loader reads sample ``i`` of a shard as
  the bytes between entries ``i`` and ``i + 1``;
- ``.nv-meta/.info.json``: ``{"energon_version", "shard_counts": {shard: samples}}``;
- ``.nv-meta/split.yaml``: ``{"split_parts": {part: [shards]}, "exclude": []}``;
- ``.nv-meta/dataset.yaml``: the sample type and the ``field_map`` from members to its fields;
- ``.nv-meta/index.sqlite`` and ``index.uuid``: a key → offset table for random access by key
  (auxiliary datasets, ``WebdatasetFileStore``); the loader of ``get_train_dataset`` /
  ``get_val_dataset`` / ``get_loader`` does not read them.

This module writes the first four from what vlprep already knows (counts from the wids index, split
names from the recipe), and each ``.tar.idx`` from one pass over its shard's headers (again only
when the shard's sha256 changed); it leaves out the sqlite index, whose bytes depend on the SQLite
library (the rest is the same bytes for the same shards) and whose key column must be unique across
every split of a folder, which splits that share images by design (two splittings of one image
set) are not. Keys are checked where Energon needs them to
be: a sample's members contiguous, one sample per key within a shard.
"""
from __future__ import annotations

import json
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from ..errors import VlprepError
from .features import SampleSchema, energon_field_map, energon_sample_type
from .folder import DerivedIndexes, PublishedFolder, PublishedSplit, Shard

META_DIR = ".nv-meta"
INFO_NAME = ".info.json"
SPLIT_NAME = "split.yaml"
DATASET_NAME = "dataset.yaml"
ITAR_SUFFIX = ".idx"
"""``<folder>-<split>-000000.tar`` → ``<folder>-<split>-000000.tar.idx``."""
ENERGON_MODULE = "megatron.energon"


@dataclass(frozen=True)
class TarLayout:
    """What a pass over a shard's headers finds: the sample start offsets (plus the end) and the keys."""

    offsets: tuple[int, ...]
    keys: tuple[str, ...]

    def index_bytes(self) -> bytes:
        return b"".join(struct.pack("<Q", offset) for offset in self.offsets)


def sample_key(member: str) -> str | None:
    """Energon's (and webdataset's) key of a member: the name up to the first dot of its base name."""
    folder, _, base = member.rpartition("/")
    if "." not in base:
        return None
    return (folder + "/" if folder else "") + base.split(".", 1)[0]


def scan_tar(path: Path) -> TarLayout:
    """Sample start offsets and keys of one shard, as ``energon prepare`` computes them.

    A key that comes back after another key began would split one sample in two for Energon (and
    for every webdataset reader), so it is refused here rather than indexed.
    """
    offsets: list[int] = []
    keys: list[str] = []
    seen: set[str] = set()
    with tarfile.open(path, "r:") as archive:
        for member in archive:
            key = sample_key(member.name) if member.isreg() else None
            if key is None:
                continue
            if not keys or keys[-1] != key:
                if key in seen:
                    raise VlprepError(f"{path}: the members of sample {key!r} are not contiguous",
                                      fix="rebuild the split: a sample's members must follow each other")
                seen.add(key)
                keys.append(key)
                offsets.append(member.offset)
        offsets.append(archive.offset)
    return TarLayout(tuple(offsets), tuple(keys))


def split_parts(folder: PublishedFolder) -> dict[str, str]:
    """Energon split part → split: the recipe's roles (``train`` → ``karpathy-train``) that are
    published, then every published split under its own name (``train2014``), so any split loads."""
    published = {split.name for split in folder.splits}
    parts = {role: split for role, split in folder.about.roles.items() if split in published}
    for split in folder.splits:
        parts.setdefault(split.name, split.name)
    return parts


def _shard_pattern(split: PublishedSplit) -> list[str]:
    """The split's shard names, as one brace range when they are ``<stem>-000000 … -N`` (as
    ``energon prepare`` collapses them), else listed."""
    names = [shard.name for shard in split.shards]
    expected = [f"{split.stem}-{index:06d}.tar" for index in range(len(names))]
    if len(names) > 1 and names == expected:
        return [f"{split.stem}-{{{0:06d}..{len(names) - 1:06d}}}.tar"]
    return names


def split_yaml(folder: PublishedFolder) -> str:
    parts = {part: _shard_pattern(folder.split(split)) for part, split in split_parts(folder).items()}
    return yaml.safe_dump({"split_parts": parts, "exclude": []}, sort_keys=False)


def info_json(folder: PublishedFolder) -> str:
    """``.info.json`` with every published shard's sample count (``energon_version`` null: not
    written by energon)."""
    counts = {shard.name: shard.nsamples for shard in folder.shards()}
    return json.dumps({"energon_version": None, "shard_counts": counts}, indent=2) + "\n"


def dataset_yaml(schema: SampleSchema) -> str:
    """``dataset.yaml`` as ``energon prepare --sample-type ... --field-map ...`` writes it."""
    definition = {"sample_type": {"__module__": ENERGON_MODULE, "__class__": energon_sample_type(schema)},
                  "field_map": energon_field_map(schema)}
    return yaml.safe_dump(definition, sort_keys=False)


def meta_files(folder: PublishedFolder) -> dict[str, str]:
    """The ``.nv-meta`` files by name (relative to the output folder)."""
    return {f"{META_DIR}/{DATASET_NAME}": dataset_yaml(folder.sample),
            f"{META_DIR}/{SPLIT_NAME}": split_yaml(folder),
            f"{META_DIR}/{INFO_NAME}": info_json(folder)}


def index_name(shard: str) -> str:
    return shard + ITAR_SUFFIX


RECORD_NAME = "vlprep-tar-idx.json"
"""In ``.nv-meta/``: per shard, its sha256 when its ``.tar.idx`` was written and the index's own
(:class:`~.folder.DerivedIndexes`), so a shard is scanned again only when it or its index changed
(a million-image split is millions of tar headers)."""


def index_shard(path: Path, nsamples: int) -> bytes:
    """The ``.tar.idx`` bytes of one shard, refusing a tar whose sample count is not its index's:
    Energon would read past a sample or skip one."""
    layout = scan_tar(path)
    if len(layout.keys) != nsamples:
        raise VlprepError(f"{path}: {len(layout.keys)} samples in the tar, {nsamples} in its wids index",
                          fix="rebuild the split: the shard and its index disagree")
    return layout.index_bytes()


def indexes(out_dir: Path) -> DerivedIndexes:
    """The ``.tar.idx`` of ``out_dir``'s shards, with their record in ``.nv-meta/``."""
    out_dir = Path(out_dir)
    return DerivedIndexes(out_dir, out_dir / META_DIR / RECORD_NAME, lambda name: out_dir / index_name(name),
                          lambda shard: index_shard(out_dir / shard.name, shard.nsamples))


def refresh_tar_indexes(out_dir: Path, shards: Iterable[Shard]) -> list[Path]:
    """Write ``<shard>.tar.idx`` for every shard that is new or changed (by sha256) or whose index is
    damaged, remove those of shards no longer in the folder; return every index path and the record."""
    derived = indexes(out_dir)
    written = derived.refresh(shards)
    for stale in Path(out_dir).glob("*.tar" + ITAR_SUFFIX):
        if not stale.with_suffix("").exists():
            stale.unlink()
    return written + [derived.record]
