"""What every output folder of shards carries besides its shards, written after each build.

A reader points at a folder (``out/coco``, ``out/vg-concat``): DALI needs an index per shard, Hugging
Face ``datasets`` a card, Croissant tools ``croissant.json``, Energon ``.nv-meta``. They are derived
from what the folder holds (wids indexes, stats.json), so they are written after the build's index
(which says the split is whole) and rewritten by the next build of any split of the folder.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Callable

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


def stale_previews(index: Path) -> list[Path]:
    """The split's preview sheets (``<stem>.preview*.png``) drawn before its index was last written."""
    stem = index.name[: -len(".index.json")]
    written = index.stat().st_mtime_ns
    return sorted(p for p in index.parent.glob(f"{stem}.preview*.png") if p.stat().st_mtime_ns < written)


def legacy_files(out: Path) -> list[Path]:
    """Shards, indexes and errors of the older layout in ``out`` (``<split>-NNNNNN.tar``, named
    without the folder): nothing reads them any more, and their names clash across folders."""
    prefix = f"{out.name}-"
    return sorted(p for pattern in ("*.tar", "*.index.json", "*.errors.jsonl") for p in out.glob(pattern)
                  if not p.name.startswith(prefix))


def removal(files: list[Path]) -> str:
    """The ``rm`` arguments for ``files``: their names, or per split a glob when there are many."""
    if len(files) <= 20:
        return " ".join(shlex.quote(p.name) for p in files)
    stems = sorted({p.name.split(".", 1)[0].rstrip("0123456789").rstrip("-") for p in files})
    return " ".join(f"{shlex.quote(stem)}-[0-9]*.tar {shlex.quote(stem)}.*.json*" for stem in stems)


def drop_legacy_splits(out: Path) -> list[str]:
    """Remove from ``stats.json`` the splits whose only index is of the older layout; return them.

    Left there, ``verify`` and Table 1 would look for them under the new names."""
    from ..fileio import read_json, write_json

    stats = read_json(out / "stats.json")
    legacy = [split for split in stats.get("splits", {})
              if not index_path(out, split).exists() and (out / f"{split}.index.json").exists()]
    if legacy:
        stats["splits"] = {k: v for k, v in stats["splits"].items() if k not in legacy}
        write_json(out / "stats.json", stats)
    return legacy


def describe(layout: Layout, recipe: Recipe, say: Callable[[str], None] = print) -> list[Path]:
    """Write the readers' metadata of every built folder of ``recipe``; return the files written.

    Files of the older layout found on the way are named, with the command that removes them."""
    from ..fileio import read_json
    from .metadata import write_folder_metadata

    if recipe.kind not in SHARDED_KINDS:
        return []
    written: list[Path] = []
    for folder, variant in recipe.folders():
        out = layout.out(folder)
        if not (out / "stats.json").exists():
            continue
        dropped = drop_legacy_splits(out)
        splits = list(read_json(out / "stats.json").get("splits", {}))
        for _split, index in built_splits(out, splits):
            written += dali.refresh(out, [(s.url, s.md5sum) for s in shard_sink.read_wids_index(index)])
            for sheet in stale_previews(index):
                sheet.unlink()
                say(f"removed {sheet}: it showed the shards before this build (vlprep preview draws it again)")
        written += write_folder_metadata(out, recipe, variant)
        old = legacy_files(out)
        if old or dropped:
            names = ", ".join(p.name for p in old[:4]) + (f" and {len(old) - 4} more" if len(old) > 4 else "")
            say(f"note: {out} holds files of an older vlprep layout ({names}); nothing reads them now"
                + (f", and stats.json no longer lists their splits ({', '.join(dropped)})" if dropped else "")
                + f". Remove them: cd {shlex.quote(str(out))} && rm -- {removal(old)}")
    return written
