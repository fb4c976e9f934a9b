"""What every dataset stored as WebDataset shards shares: shard options, ``verify`` and ``preview``.

A recipe subclasses these option dataclasses to add its own fields or to narrow ``--split`` to its
splits; the stage functions here read the recipe (kind, splits, variants) and never name a dataset.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..caps import DEFAULT_CAPS, Caps
from ..layout import Layout
from .recipe import Limit, Run, Stage, option

SHARD_COMMON = ("workers", "limit", "tokenizer")
SHARD_LIMIT = Limit("Only the first N images (a trial: the published counts are not checked, and a trial never "
                    "replaces a complete split unless --force).")


@dataclass(frozen=True)
class ShardOptions:
    """Options of every image shard stage (the split and variant fields are the recipe's)."""

    seed: int = option(0, "Seed of the train-split shuffle.", type=int)
    resize: int | None = option(None, "Scale the shorter side down to PIXELS (never up) and store JPEG q95. "
                                "Default: the original bytes.", type=int, low=16, metavar="PIXELS")
    shard_samples: int = option(10_000, "At most this many samples per shard.", type=int, low=1)
    force: bool = option(False, "Let a --limit trial replace a split built with no limit or a larger one "
                         "(refused by default, so a trial never throws away a full split).", type=bool)
    max_member_mb: int = option(DEFAULT_CAPS.member_bytes >> 20, "An image member over this many MiB is skipped "
                                "unread and listed in FOLDER-SPLIT.errors.jsonl.", type=int, low=1)


@dataclass(frozen=True)
class TextShardOptions(ShardOptions):
    """Shard options of datasets whose samples carry texts (captions, region descriptions)."""

    shard_mb: int = option(1000, "About this many MB per shard.", type=int, low=1)
    max_text_kb: int = option(DEFAULT_CAPS.text_bytes >> 10, "A caption or region description over this many "
                              "KiB is dropped and listed in FOLDER-SPLIT.errors.jsonl (the image keeps its other "
                              "texts).",
                              type=int, low=1)
    max_json_depth: int = option(DEFAULT_CAPS.json_depth, "Annotation JSON nested deeper than this stops the stage "
                                 "with an error.", type=int, low=1)


def caps_of(options: TextShardOptions) -> Caps:
    """The record caps the shard options set (``--max-text-kb``, ``--max-member-mb``, ``--max-json-depth``)."""
    return Caps(text_bytes=options.max_text_kb << 10, member_bytes=options.max_member_mb << 20,
                json_depth=options.max_json_depth)


def captioned_sample(fields: tuple, image: str):
    """The sample of an image with all its captions (COCO, Flickr30K): the dataset's own id fields, then
    the text and image fields every image-text writer stores; Energon gets the first caption."""
    from ..sinks.features import IMAGE_FIELDS, TEXT_FIELDS, SampleSchema

    return SampleSchema(fields=(*fields, *TEXT_FIELDS, *IMAGE_FIELDS), image=image, caption=("texts", 0))


def captioned_shard_stage(shard: Callable[..., dict]) -> Callable[[Run, TextShardOptions], None]:
    """The shard stage of a dataset whose ``shard(layout, split, workers=, seed=, resize=, limit=,
    max_count=, max_bytes=, tokenizer=, force=, caps=)`` writes one split of captioned images."""

    def shard_stage(run: Run, options: TextShardOptions) -> None:
        stats = shard(run.layout, options.split, workers=run.common.workers, seed=options.seed,
                      resize=options.resize, limit=run.common.limit, max_count=options.shard_samples,
                      max_bytes=options.shard_mb * 1_000_000, tokenizer=run.common.tokenizer, force=options.force,
                      caps=caps_of(options))
        run.say_built(pairs_summary(stats))

    return shard_stage


def pairs_summary(stats: dict) -> list[str]:
    """The ``vlprep stats`` table of an image–text dataset's splits."""
    from ..engines import imagetext

    return imagetext.summary_lines(stats)


@dataclass(frozen=True)
class VerifyOptions:
    pass


@dataclass(frozen=True)
class PreviewOptions:
    split: str | None = option(None, "Split to show (default: the dataset's default split).")
    augmented: bool = option(False, "Add the training view of epoch 0 beside each image (crop, flip and chosen "
                             "caption exactly as pair_dataset / image_dataset draw them; needs vlprep[loader]).",
                             type=bool)
    seed: int = option(0, "Loader seed of the --augmented views.", type=int)
    out: Path | None = option(None, "PNG to write [default: beside the split's index, "
                              "DATA_DIR/out/FOLDER/FOLDER-SPLIT.preview[-augmented].png].",
                              type=Path, parse=lambda value: _png_path(value))


def _png_path(value: str | Path) -> Path:
    path = Path(value)
    if not str(value).strip() or path.suffix.lower() != ".png":
        raise ValueError(f"{str(value)!r}: the sheet is a PNG; name a file ending in .png")
    return path


PREVIEW_LIMIT = Limit("How many samples, the first ones in index order.", default=16, high=256)


def recipe_of(run: Run):
    from .registry import recipe

    return recipe(run.dataset)


def verify(run: Run, options: VerifyOptions) -> None:
    """Read every shard back, decode every image, check ids and counts against stats.json, in every
    built folder of the dataset (a variant with its own folder included)."""
    from ..engines import imagetext

    from .folders import check_current_layout

    recipe = recipe_of(run)
    labelled = recipe.kind == "labels"
    check_current_layout(run.layout, recipe)
    built = [(folder, variant) for folder, variant in recipe.folders()
             if (run.layout.out(folder) / "stats.json").exists()] or [recipe.folders()[0]]
    for folder, variant in built:
        def rebuild(dataset: str, split: str, variant: str | None = variant) -> str:
            return rebuild_command(dataset, split, run.layout, variant)

        verified = imagetext.verify(run.layout, recipe.name, labelled, rebuild, folder)
        for split, found in verified.items():
            shards = f"{found['shards']} shard{'s' if found['shards'] != 1 else ''}"
            run.say(f"{folder} {split}: ok ({shards}, {found['images']:,} images decoded"
                    + (", labels in 0..999)" if labelled else f", {found['texts']:,} texts)"))
        check_readers_metadata(run.layout.out(folder), recipe, variant,
                               lambda split: rebuild(recipe.name, split or next(iter(verified), "")))


def check_readers_metadata(out: Path, recipe, variant: str | None, rebuild: Callable[[str | None], str]) -> None:
    """The card, Croissant, Energon and DALI files of a verified folder describe what it holds.

    The fix is the build of the split a stale file belongs to, with the options it was built with:
    it keeps every finished shard and rewrites the readers' files of the whole folder."""
    from ..errors import VlprepError
    from .metadata import stale_metadata

    stale = stale_metadata(out, recipe, variant)
    if stale:
        names = ", ".join(name for name, _ in stale[:6]) + (" …" if len(stale) > 6 else "")
        split = next((split for _, split in stale if split), None)
        raise VlprepError(f"{out}: {names} missing, damaged or out of date (readers would be told of other "
                          "shards or counts, or read past a sample)",
                          fix=f"run the build again to rewrite them: {rebuild(split)} (finished shards are kept)")


def rebuild_command(dataset: str, split: str, layout: Layout | None = None, variant: str | None = None) -> str:
    """The command that rebuilds one stored split of a variant. With the split's stats.json entry,
    it repeats what the split was built with (shard settings, ``--limit``), so the pasted command
    builds the same bytes."""
    from .metadata import rebuild_command as recorded_command
    from .registry import recipe

    found = recipe(dataset)
    entry = _split_entry(layout, found.folder(variant), split) if layout is not None and split else None
    return recorded_command(found, split, variant, entry or {})


def _split_entry(layout: Layout, folder: str, split: str) -> dict | None:
    """The split's entry of ``out/<folder>/stats.json``, or None when there is none to read."""
    from ..fileio import read_json

    try:
        entry = read_json(layout.out(folder) / "stats.json")["splits"][split]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return entry if isinstance(entry, dict) else None


def preview(run: Run, options: PreviewOptions) -> None:
    """A PNG contact sheet of a built split."""
    from ..reports import preview as sheet

    recipe = recipe_of(run)
    variant = getattr(options, "variant", None)
    result = sheet.preview(run.layout, recipe, options.split, run.common.limit, options.augmented, options.seed,
                           options.out, variant)
    run.say(f"{recipe.folder(variant)} {result.split}: {result.samples} samples")
    run.say(str(result.path))


READERS_NOTE = (" After every build the output folder also gets what other readers need, rewritten from what "
                "it holds: README.md (a Hugging Face dataset card), croissant.json, .nv-meta/ and <shard>.tar.idx "
                "(Energon), and <shard>.idx (DALI); see docs/use-with/.")
"""Appended to the help of every stage that builds shards."""


def verify_stage(name: str, kind_text: str) -> Stage:
    return Stage(verify, VerifyOptions, "Read every shard back and check it; exit non-zero on the first fault.",
                 (f"vlprep verify {name}",),
                 details=f"Every image decoded, {kind_text}, md5, sha256 and sizes against the wids index, no stray "
                 "shard, counts against stats.json, raw inputs unchanged since the build; in every output folder "
                 "of the dataset (a variant's included). The dataset card, croissant.json, Energon's and DALI's "
                 "files must describe the shards as they are.")


def preview_stage(name: str, options: type = PreviewOptions, examples: tuple[str, ...] = ()) -> Stage:
    return Stage(preview, options, "Write a PNG contact sheet of a built split and print its path.",
                 (f"vlprep preview {name}", *examples),
                 common=("limit",), limit=PREVIEW_LIMIT, aliases={"limit": ("--n",)},
                 details="Each cell shows a stored image with its captions decoded back from the stored token ids "
                 "(a caption cut at the 64-token cap is marked in red with its full length) or its class index "
                 "and name. With --augmented, the view the trainer will see is drawn beside it.")
