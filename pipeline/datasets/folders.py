"""What every output folder of shards carries besides its shards, written after each build.

A reader points at a folder (``out/coco``, ``out/vg-concat``): DALI needs an index per shard, Hugging
Face ``datasets`` a card, Croissant tools ``croissant.json``, Energon ``.nv-meta``. They are derived
from what the folder holds (wids indexes, stats.json), so they are written after the build's index
(which says the split is whole) and rewritten by the next build of any split of the folder.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..layout import Layout
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


def legacy_stem(path: Path) -> str:
    """The older layout's split name in a file name: ``train2014-000003.tar`` → ``train2014``."""
    name = path.name
    for suffix in (".index.json", ".errors.jsonl"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return re.sub(r"-[0-9]{6}\.tar$", "", name)


def removal(files: list[Path]) -> str:
    """The ``rm`` arguments for ``files``: their names, or per split globs when there are many."""
    if len(files) <= 20:
        return " ".join(shlex.quote(p.name) for p in files)
    stems = sorted({legacy_stem(p) for p in files})
    return " ".join(f"{shlex.quote(stem)}-[0-9][0-9][0-9][0-9][0-9][0-9].tar {shlex.quote(stem)}.index.json "
                    f"{shlex.quote(stem)}.errors.jsonl" for stem in stems)


def legacy_splits(out: Path) -> list[str]:
    """The splits ``out/stats.json`` lists whose shards are still of the older layout (their index is
    ``<split>.index.json``, the folder-named one is not there): built, but not readable as built."""
    from ..fileio import read_json

    if not (out / "stats.json").exists():
        return []
    return [split for split in read_json(out / "stats.json").get("splits", {})
            if not index_path(out, split).exists() and (out / f"{split}.index.json").exists()]


def legacy_rebuild(layout: Layout, recipe: Recipe, folder: str, split: str) -> tuple[str, str, str | None]:
    """Where an older-layout split lives now and the command that builds it there, with the options
    it was built with: ``(folder, split, variant)`` and the command. A variant stored as a split
    suffix (VG's ``train-concat``) moves to its own folder (``vg-concat``, split ``train``)."""
    from ..fileio import read_json
    from .metadata import rebuild_command

    entry = read_json(layout.out(folder) / "stats.json")["splits"][split]
    for variant in recipe.variants[1:]:
        if split.endswith(f"-{variant}"):
            base = split[: -len(variant) - 1]
            return recipe.folder(variant), base, rebuild_command(recipe, base, variant, entry)
    variant = next((v for f, v in recipe.folders() if f == folder), None)
    return folder, split, rebuild_command(recipe, split, variant, entry)


def check_current_layout(layout: Layout, recipe: Recipe) -> None:
    """Refuse to read a folder that still holds splits of the older layout, naming each with the
    command that rebuilds it (where finished work is reused: only the shards are written again)."""
    from ..errors import VlprepError

    pending = [(folder, split) for folder, _ in recipe.folders() for split in legacy_splits(layout.out(folder))]
    if pending:
        commands = [legacy_rebuild(layout, recipe, folder, split)[2] for folder, split in pending]
        raise VlprepError(f"{layout.out(pending[0][0])}: {', '.join(split for _, split in pending)} "
                          f"{'are splits' if len(pending) > 1 else 'is a split'} of an older vlprep layout "
                          "(shards named without their folder), which this version does not read",
                          fix="rebuild " + ("each" if len(pending) > 1 else "it") + ": run " + ", then ".join(commands))


def replaced_legacy_splits(layout: Layout, recipe: Recipe, out: Path) -> list[str]:
    """Older-layout splits of ``out`` rebuilt elsewhere (a variant moved to its own folder): their
    entries leave ``stats.json``, or Table 1 and verify would still count them here."""
    from ..fileio import read_json, write_json

    replaced = []
    for split in legacy_splits(out):
        folder, new_split, _ = legacy_rebuild(layout, recipe, out.name, split)
        if folder != out.name and index_path(layout.out(folder), new_split).exists():
            replaced.append(split)
    if replaced:
        stats = read_json(out / "stats.json")
        stats["splits"] = {k: v for k, v in stats["splits"].items() if k not in replaced}
        write_json(out / "stats.json", stats)
    return replaced


def legacy_notes(layout: Layout, recipe: Recipe, out: Path) -> list[str]:
    """What a build says of older-layout files in ``out``: splits still to rebuild (with the command),
    and the files of rebuilt ones, with the ``rm`` that removes them (never removed for the user)."""
    pending = legacy_splits(out)
    notes = [f"note: {out}: {split} is still of the older vlprep layout; rebuild it: "
             f"{legacy_rebuild(layout, recipe, out.name, split)[2]}" for split in pending]
    old = [p for p in legacy_files(out) if legacy_stem(p) not in pending]
    if old:
        names = ", ".join(p.name for p in old[:4]) + (f" and {len(old) - 4} more" if len(old) > 4 else "")
        notes.append(f"note: {out} holds files of an older vlprep layout whose splits are rebuilt ({names}); "
                     f"nothing reads them now. Remove them: cd {shlex.quote(str(out))} && rm -- {removal(old)}")
    return notes


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
        replaced_legacy_splits(layout, recipe, out)
        splits = [split for split in read_json(out / "stats.json").get("splits", {})]
        for _split, index in built_splits(out, splits):
            for sheet in stale_previews(index):
                sheet.unlink()
                say(f"removed {sheet}: it showed the shards before this build (vlprep preview draws it again)")
        written += write_folder_metadata(out, recipe, variant)
    for folder, _ in recipe.folders():  # a variant's build may have replaced a split of the dataset's folder
        if (layout.out(folder) / "stats.json").exists():
            for note in legacy_notes(layout, recipe, layout.out(folder)):
                say(note)
    return written
