"""``README.md``: the folder's Hugging Face dataset card, so ``datasets.load_dataset(folder)`` needs nothing else.

The YAML header declares one config whose ``data_files`` give each split its shards by a glob, and
``dataset_info.features`` as the webdataset builder of ``datasets`` produces them (``__key__``,
``__url__``, ``jpg`` as an Image, ``json`` as a struct, ``cls`` for labels), so no reader infers the
schema from the first samples. Hugging Face split names must match ``\\w+(\\.\\w+)*``: ``-`` becomes
``_`` (``karpathy-train`` → ``karpathy_train``), and the card's table says which is which. The prose
says what the folder holds against the published counts, how to rebuild it byte for byte (vlprep
version, command, sha256 of every raw input) and how to load it with datasets, webdataset,
mlcroissant and Energon. Same folder, same bytes: no dates, no absolute paths.
"""
from __future__ import annotations

import hashlib

from typing import Any

import yaml

from .energon import split_parts
from .features import (CLASS_MEMBER, IMAGE_MEMBER, JSON_MEMBER, FieldType, ListOf, energon_field_map,
                       energon_sample_type, hf_features)
from .folder import PublishedFolder, PublishedSplit, hf_split_names, input_label, source_of

SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


def shard_glob(split: PublishedSplit) -> str:
    """The split's shards as a glob of six digits, so ``train`` never takes ``train-extra``'s shards."""
    return f"{split.stem}-" + "[0-9]" * 6 + ".tar"


def size_category(samples: int) -> str:
    for bound, name in SIZE_CATEGORIES:
        if samples < bound:
            return name
    return "n>1B"


def header(folder: PublishedFolder) -> dict[str, Any]:
    """The card's YAML metadata (Hugging Face's dataset card fields)."""
    about = folder.about
    names = hf_split_names(split.name for split in folder.splits)
    meta: dict[str, Any] = {"pretty_name": about.pretty_name, "license": about.license}
    if about.license_name:
        meta.update(license_name=about.license_name, license_link=about.license_url)
    if about.task_categories:
        meta["task_categories"] = list(about.task_categories)
    meta["size_categories"] = [size_category(sum(split.samples for split in folder.splits))]
    meta["tags"] = ["webdataset", "vlprep"]
    name = config_name(folder)
    meta["configs"] = [{"config_name": name, "default": True,
                        "data_files": [{"split": names[split.name], "path": shard_glob(split)}
                                       for split in folder.splits]}]
    meta["dataset_info"] = {"config_name": name, "features": hf_features(folder.sample)}
    return meta


def config_name(folder: PublishedFolder) -> str:
    """``shards-<12 hex digits>``, from the name and sha256 of every shard of the folder.

    ``datasets`` caches a local folder by its card alone (the ``data_files`` are globs, resolved
    after the cache is chosen), so a card that stayed the same across a rebuild would keep serving
    the old samples; a config named by the shards' contents gets a cache of its own after any
    rebuild. It is the default config, so ``load_dataset(folder)`` never needs the name."""
    digest = hashlib.sha256("".join(f"{shard.name} {shard.sha256}\n" for shard in folder.shards()).encode())
    return f"shards-{digest.hexdigest()[:12]}"


def type_text(kind: FieldType) -> str:
    """A field type as the card shows it: ``list<list<int64>[4]>``."""
    if isinstance(kind, ListOf):
        return f"list<{type_text(kind.item)}>" + (f"[{kind.length}]" if kind.length is not None else "")
    return kind.name


def _count(n: int) -> str:
    return f"{n:,}"


def published_text(folder: PublishedFolder, split: PublishedSplit) -> str:
    """``5,000 of 5,000 published images``, or ``published count unknown``."""
    known = folder.about.published.get(split.name)
    if known is None:
        return "published count unknown"
    count, unit = known
    return f"{_count(split.samples)} of {_count(count)} published {unit}"


def _limit_note(split: PublishedSplit) -> str:
    config = split.stats.get("config") or {}
    limit = config.get("limit") if isinstance(config, dict) else None
    return f" (a trial: built with --limit {limit:,})" if isinstance(limit, int) else ""


def splits_section(folder: PublishedFolder) -> list[str]:
    names = hf_split_names(split.name for split in folder.splits)
    parts = split_parts(folder)
    lines = ["## Splits", "",
             "| split | Hugging Face split | Energon split part | samples | shards | against the published split |",
             "|---|---|---|---:|---:|---|"]
    for split in folder.splits:
        part = ", ".join(name for name, target in parts.items() if target == split.name)
        lines.append(f"| {split.name} | {names[split.name]} | {part} | {_count(split.samples)} | "
                     f"{len(split.shards)} | {published_text(folder, split)}{_limit_note(split)} |")
    lines += ["", "Hugging Face split names must match `\\w+(\\.\\w+)*`, so `-` in a split name becomes `_`."]
    return lines


def format_section(folder: PublishedFolder) -> list[str]:
    sample = folder.sample
    lines = ["## Sample format", "",
             f"Each sample is the tar members sharing one key: `<key>.{IMAGE_MEMBER}` ({sample.image}), "
             f"`<key>.{JSON_MEMBER}` (the fields below, in every sample, with these types)"
             + (f" and `<key>.{CLASS_MEMBER}` ({sample.label})" if sample.label else "") + ".", "",
             "| json field | type | meaning |", "|---|---|---|"]
    lines += [f"| `{f.name}` | `{type_text(f.type)}` | {f.description} |" for f in sample.sorted_fields()]
    return lines


def raw_inputs(folder: PublishedFolder) -> dict[str, tuple[str, str, list[str]]]:
    """Every raw input of the folder's splits: label → (published URL, sha256, splits that read it)."""
    found: dict[str, tuple[str, str, list[str]]] = {}
    for split in folder.splits:
        for name, digest in sorted((split.stats.get("inputs") or {}).items()):
            url = source_of(folder.about, name) or "not a published file"
            found.setdefault(input_label(name), (url, digest, []))[2].append(split.name)
    return found


def build_section(folder: PublishedFolder) -> list[str]:
    lines = ["## How it was built", "",
             f"With vlprep {folder.vlprep_version}. Each split is rebuilt byte for byte by its command (same "
             "vlprep version, same raw files):", ""]
    for split in folder.splits:
        lines += [f"- {split.name}: `{split.rebuild}`"]
    lines += ["", "Raw inputs, where they are published, and the sha256 of the files read:", "",
              "| input | published at | sha256 | read by |", "|---|---|---|---|"]
    for label, (url, digest, readers) in sorted(raw_inputs(folder).items()):
        lines.append(f"| `{label}` | {url} | `{digest}` | {', '.join(readers)} |")
    return lines + ([""] + list(folder.about.notes) if folder.about.notes else [])


def _python(*code: str) -> list[str]:
    return ["```python", *code, "```", ""]


def hf_loading(folder: PublishedFolder) -> list[str]:
    split = hf_split_names(s.name for s in folder.splits)[folder.splits[0].name]
    columns = ", ".join(("__key__", "__url__", *folder.sample.members))
    return ["Hugging Face `datasets` (this card declares the splits and features; `streaming=True` reads the "
            "tars as they are):", "",
            *_python("from datasets import load_dataset", "", f'ds = load_dataset("out/{folder.name}")',
                     f'sample = ds["{split}"][0]  # {columns}')]


def wids_loading(folder: PublishedFolder) -> list[str]:
    return ["webdataset / wids (each split's index lists its shards with sample count, md5 and sha256):", "",
            *_python("import wids", "",
                     f'ds = wids.ShardListDataset("out/{folder.name}/{folder.splits[0].stem}.index.json")')]


def croissant_loading(folder: PublishedFolder) -> list[str]:
    split = hf_split_names(s.name for s in folder.splits)[folder.splits[0].name]
    members = "`<split>-images` and `<split>-labels`" if folder.sample.label else "`<split>-images`"
    return [f"Croissant (`croissant.json`, split names as on Hugging Face): record set `<split>` holds the json "
            f"fields, {members} the members. mlcroissant 1.1 yields the records of {members}; it reads no JSON "
            "inside an archive, so it validates `<split>` but does not yield it. It caches each extracted shard "
            "under `$CROISSANT_CACHE/extract` by file name: clear it after a rebuild.", "",
            *_python("import mlcroissant as mlc", "", f'ds = mlc.Dataset(jsonld="out/{folder.name}/croissant.json")',
                     f'images = ds.records("{split}-images")')]


def energon_loading(folder: PublishedFolder) -> list[str]:
    fields = ", ".join(f"{name} = `{source}`" for name, source in energon_field_map(folder.sample).items())
    parts = list(split_parts(folder))
    return [f"Megatron-Energon (`.nv-meta/` and a `.tar.idx` per shard are written: no `energon prepare`): samples "
            f"load as `{energon_sample_type(folder.sample)}` ({fields}); split parts "
            + ", ".join(f"`{part}`" for part in parts) + ". `index.sqlite` (random access by key) is not written: "
            "`energon prepare` adds it, and needs every key unique across the folder's splits.", "",
            *_python("from megatron.energon import WorkerConfig, get_loader, get_train_dataset", "",
                     f'ds = get_train_dataset("out/{folder.name}", split_part="{parts[0]}", batch_size=32,',
                     "                       shuffle_buffer_size=100, max_samples_per_sequence=100,",
                     "                       worker_config=WorkerConfig.default_worker_config())",
                     "batch = next(iter(get_loader(ds)))")]


def loading_section(folder: PublishedFolder) -> list[str]:
    return (["## Loading", ""] + hf_loading(folder) + wids_loading(folder) + croissant_loading(folder)
            + energon_loading(folder))


def card(folder: PublishedFolder) -> str:
    """The whole ``README.md``: YAML header, then the prose."""
    about = folder.about
    body = [f"# {about.pretty_name}", "", about.summary, "",
            f"This folder (`out/{folder.name}`) is {folder.title}, as WebDataset shards written by vlprep.", ""]
    body += splits_section(folder) + [""] + format_section(folder) + [""] + build_section(folder) + [""]
    body += loading_section(folder) + ["## License", "", about.license_note, "",
                                       "## Citation", "", "```bibtex", about.citation.strip(), "```"]
    meta = yaml.safe_dump(header(folder), sort_keys=False, allow_unicode=True, width=120)
    return "---\n" + meta + "---\n\n" + "\n".join(body).rstrip() + "\n"
