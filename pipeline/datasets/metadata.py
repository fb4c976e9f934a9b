"""The metadata of an output folder, rewritten from what is on disk after a split is published.

One call per folder after a build published a split (``folders.describe`` runs it for every built
folder of the recipe)::

    write_folder_metadata(layout.out(recipe.folder(variant)), recipe, variant)

reads every published split of the folder (its wids index and its ``stats.json`` entry), checks the
shards against the recipe's :class:`~vlprep.pipeline.sinks.features.SampleSchema`, and (re)writes,
each atomically and only when its bytes change: ``README.md`` (the Hugging Face dataset card),
``croissant.json``, ``.nv-meta/{dataset.yaml,split.yaml,.info.json}``, and per shard a
``<shard>.tar.idx`` (Energon) and a ``<shard>.idx`` (DALI). Derived from the files alone, it gives the same bytes for the same folder whichever
run, machine or order of splits wrote it, and it can be run again at any time.
"""
from __future__ import annotations

import dataclasses
import json
import tarfile
from pathlib import Path
from typing import Any, Mapping

from ..errors import VlprepError
from ..fileio import read_json
from ..sinks import dali, energon
from ..sinks.cards import card
from ..sinks.croissant import croissant
from ..sinks.features import JSON_MEMBER, SampleSchema, problems
from ..sinks.folder import PublishedFolder, PublishedSplit, published_splits, read_shards, write_if_changed
from ..sinks.splits import index_path
from .recipe import Recipe, flag_of, opt_of

CARD_NAME = "README.md"
CROISSANT_NAME = "croissant.json"

REBUILD_OPTIONS = (("seed", "seed", 1), ("resize", "resize", 1), ("max_count", "shard_samples", 1),
                   ("shard_samples", "shard_samples", 1), ("max_bytes", "shard_mb", 1_000_000),
                   ("leak_guard", "leak_guard", 1))
"""(key in a split's ``stats.json`` config, option of the building stage, config units per option
unit): the settings that change the shards' bytes, so a rebuild command must repeat them."""


def sample_schema(recipe: Recipe, variant: str | None = None) -> SampleSchema:
    """The schema of the folder of ``variant`` (the recipe's default variant when None)."""
    declared = recipe.sample
    if isinstance(declared, SampleSchema):
        return declared
    if not declared:
        raise VlprepError(f"{recipe.name} declares no sample schema", fix="add sample=SampleSchema(...) to its RECIPE")
    chosen = variant or (recipe.variants[0] if recipe.variants else "")
    if chosen not in declared:
        raise VlprepError(f"{recipe.name} declares no sample schema for variant {chosen!r}",
                          fix=f"declare one of {', '.join(declared)} or add it to sample=")
    return declared[chosen]


def _flat_config(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A split's build config with its ``variant`` settings (VG's ``leak_guard``) lifted to the top."""
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    nested = config.get("variant") if isinstance(config.get("variant"), dict) else {}
    return {**config, **nested}


def built_limit(entry: Mapping[str, Any]) -> int | None:
    """The ``--limit`` a split was built with: its config's, or a crawl's ``count``."""
    limit = _flat_config(entry).get("limit")
    if limit is None and isinstance(entry.get("count"), int):
        return entry["count"]
    return limit if isinstance(limit, int) else None


def _option_flags(recipe: Recipe, entry: Mapping[str, Any]) -> list[str]:
    """The builder's options that differ from their defaults in this split's recorded config."""
    fields = {f.name: f for f in dataclasses.fields(recipe.stages[recipe.builder].options)}
    config = _flat_config(entry)
    flags: dict[str, str] = {}
    for key, name, scale in REBUILD_OPTIONS:
        if key not in config or name not in fields or config[key] is None:
            continue
        found, value = fields[name], config[key]
        value = value // scale if scale != 1 and isinstance(value, int) else value
        if value == found.default:
            continue
        if isinstance(value, bool):
            how = opt_of(found)
            flag = flag_of(found)
            flags[name] = flag if value else ("--no-" + flag[2:] if how and how.negatable else "")
        else:
            flags[name] = f"{flag_of(found)} {value}"
    return [flag for flag in flags.values() if flag]


def rebuild_command(recipe: Recipe, split: str, variant: str | None, entry: Mapping[str, Any]) -> str:
    """The command that rebuilds a published split byte for byte: variant, split, the shard settings
    it was built with and its ``--limit``."""
    command = [recipe.command(recipe.builder)]
    if variant and recipe.variants and variant != recipe.variants[0]:
        command.append(f"--variant {variant}")
    builder_fields = {f.name for f in dataclasses.fields(recipe.stages[recipe.builder].options)}
    open_splits = not recipe.splits and "split" in builder_fields
    if split and (len(recipe.splits) > 1 or open_splits):  # a recipe whose splits the user names
        command.append(f"--split {split}")
    command += _option_flags(recipe, entry)
    limit = built_limit(entry)
    if limit is not None:
        command.append(f"--limit {limit}")
    return " ".join(command)


def read_folder(out_dir: Path, recipe: Recipe, variant: str | None = None) -> PublishedFolder | None:
    """The folder as its metadata describes it, or None when no split of it is published yet."""
    out_dir = Path(out_dir)
    stats_path = out_dir / "stats.json"
    if not stats_path.exists():
        return None
    stats = read_json(stats_path)
    names = published_splits(out_dir, recipe.splits, stats)
    if not names:
        return None
    if recipe.about is None:
        raise VlprepError(f"{recipe.name} declares no about=About(...)", fix="add it to its RECIPE")
    splits = tuple(PublishedSplit(name, read_shards(index_path(out_dir, name)), stats["splits"][name],
                                  rebuild_command(recipe, name, variant, stats["splits"][name])) for name in names)
    return PublishedFolder(out_dir.name, recipe.name, recipe.title, variant, str(stats.get("vlprep_version", "")),
                           recipe.about, sample_schema(recipe, variant), splits)


def _first_json(path: Path) -> dict | None:
    with tarfile.open(path, "r:") as archive:
        for member in archive:
            if member.isreg() and member.name.endswith("." + JSON_MEMBER):
                return json.loads(archive.extractfile(member).read())
    return None


def check_samples(out_dir: Path, folder: PublishedFolder) -> None:
    """Refuse metadata that would misdescribe the shards: the first sample json of every shard must
    have exactly the schema's keys with its types (readers take the schema from the card)."""
    for shard in folder.shards():
        meta = _first_json(Path(out_dir) / shard.name)
        found = problems(folder.sample, meta) if meta is not None else ["no json member"]
        if found:
            raise VlprepError(f"{Path(out_dir) / shard.name}: its first sample does not match {folder.dataset}'s "
                              f"sample schema: {'; '.join(found[:5])}",
                              fix="make the recipe's sample= declaration and the sample the writer stores agree")


def write_folder_metadata(out_dir: Path, recipe: Recipe, variant: str | None = None) -> list[Path]:
    """(Re)write the dataset card, ``croissant.json`` and Energon's metadata of ``out_dir`` from the
    splits published there; return the files. Nothing is written while no split is published.

    Call it after a split's index is written (the split is whole); ``variant`` is the variant the
    folder holds (None: the recipe's default). Raises :class:`VlprepError` when the shards do not
    match the recipe's sample schema or the wids index.
    """
    folder = read_folder(out_dir, recipe, variant)
    if folder is None:
        return []
    out_dir = Path(out_dir)
    check_samples(out_dir, folder)
    indexes = energon.refresh_tar_indexes(out_dir, folder.shards()) + dali.refresh(out_dir, folder.shards())
    return [write_if_changed(out_dir / name, data) for name, data in folder_files(folder).items()] + indexes


def folder_files(folder: PublishedFolder) -> dict[str, bytes]:
    """The card, ``croissant.json`` and Energon's files of a folder, by name relative to it."""
    files = {CARD_NAME: card(folder).encode("utf-8"),
             CROISSANT_NAME: (json.dumps(croissant(folder), indent=1, sort_keys=True, ensure_ascii=False)
                              + "\n").encode("utf-8")}
    files.update({name: text.encode("utf-8") for name, text in energon.meta_files(folder).items()})
    return files


def stale_metadata(out_dir: Path, recipe: Recipe, variant: str | None = None) -> list[tuple[str, str | None]]:
    """The metadata files of ``out_dir`` that are missing or differ from what its splits give now,
    each with the split it belongs to (None: the whole folder's). ``verify`` reports them: a reader
    would be told of shards or counts that are not there, or read past a sample."""
    folder = read_folder(out_dir, recipe, variant)
    if folder is None:
        return []
    out_dir = Path(out_dir)
    stale: list[tuple[str, str | None]] = [
        (name, None) for name, data in folder_files(folder).items()
        if not (out_dir / name).is_file() or (out_dir / name).read_bytes() != data]
    for derived in (energon.indexes(out_dir), dali.indexes(out_dir)):
        stale += [(path.name, split.name) for split in folder.splits for path in derived.stale(split.shards)]
    return stale
