"""What every output folder of shards carries besides its shards, written after each build.

A reader points at a folder (``out/coco``, ``out/vg-concat``): DALI needs an index per shard, Hugging
Face ``datasets`` a card, Croissant tools ``croissant.json``, Energon ``.nv-meta``. They are derived
from what the folder holds (wids indexes, stats.json), so they are written after the build's index
(which says the split is whole) and rewritten by the next build of any split of the folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..layout import Layout
from ..sinks import dali
from ..sinks import shards as shard_sink
from ..sinks.splits import index_path

if TYPE_CHECKING:
    from .recipe import Recipe

SHARDED_KINDS = ("pairs", "labels")


def built_splits(out: Path, splits: list[str]) -> list[tuple[str, Path]]:
    """The splits of ``splits`` whose wids index is in ``out`` (a split is whole once its index is)."""
    return [(split, index_path(out, split)) for split in splits if index_path(out, split).exists()]


def describe(layout: Layout, recipe: Recipe) -> list[Path]:
    """Write the readers' metadata of every built folder of ``recipe``; return the files written."""
    from ..fileio import read_json

    if recipe.kind not in SHARDED_KINDS:
        return []
    written: list[Path] = []
    from .metadata import write_folder_metadata

    for folder, variant in recipe.folders():
        out = layout.out(folder)
        if not (out / "stats.json").exists():
            continue
        splits = list(read_json(out / "stats.json").get("splits", {}))
        for _split, index in built_splits(out, splits):
            written += dali.refresh(out, [(s.url, s.md5sum) for s in shard_sink.read_wids_index(index)])
        written += write_folder_metadata(out, recipe, variant)
    return written
