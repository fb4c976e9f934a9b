"""``vlprep preview``: a contact sheet of a built split, as stored or as the trainer will see it.

Reads the first N samples of the split in index order. Pair datasets show the image's captions
decoded back from the stored token ids (so what is shown is what a model reads, cap included, and a
truncated caption is marked in red with its full length); a dataset of kind ``labels`` shows the
class index and name.
``--augmented`` adds, beside each image, the training view of epoch 0 drawn exactly as
``pair_dataset`` / ``image_dataset`` draw it (same seed, crop, flip and chosen caption).
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from ..errors import VlprepError
from ..fileio import ensure_dir
from ..layout import Layout
from ..sinks import contact_sheet
from ..sinks import shards as shard_sink
from ..transforms.bpe import decode_symbols
from ..transforms.captions import MAX_BPE
from ..transforms.dictionary import load_dictionary

if TYPE_CHECKING:
    from ..datasets.recipe import Recipe



@dataclass(frozen=True)
class PreviewResult:
    path: Path
    samples: int
    split: str


def index_path(layout: Layout, recipe: Recipe, split: str | None, variant: str | None = None) -> tuple[str, Path]:
    """The split's wids index, or an error that lists the splits that are built."""
    from ..sinks.splits import index_path as split_index

    folder = recipe.folder(variant)
    split = split or recipe.default_split
    path = split_index(layout.out(folder), split)
    if not path.is_file():
        from ..datasets.folders import check_current_layout

        check_current_layout(layout, recipe)
        built = sorted(p.name[len(folder) + 1: -len(".index.json")]
                       for p in layout.out(folder).glob(f"{folder}-*.index.json"))
        hint = f"built splits: {', '.join(built)}" if built else f"nothing is built in out/{folder} yet"
        from ..datasets.shards import rebuild_command

        raise VlprepError(f"{path}: split {split!r} of {folder} is not built ({hint})",
                          fix=f"pass --split of a built split, or run "
                              f"{rebuild_command(recipe.name, split, variant=variant)}")
    return split, path


def first_samples(index: Path, count: int) -> list[dict[str, Any]]:
    """The split's first ``count`` samples in index order, as webdataset groups tar members."""
    from webdataset.tariterators import tarfile_samples

    urls = [str(index.parent / shard.url) for shard in shard_sink.read_wids_index(index)]
    return list(islice(tarfile_samples({"url": url} for url in urls), count))


def caption_lengths(meta: dict[str, Any], tokens: list[list[int]]) -> list[int]:
    """Each caption's BPE length before the cap: stored as ``lengths``, else what its ids hold
    (less <s> and </s>), which for a caption cut at the cap is the cap."""
    return meta.get("lengths") or [len(t) - 2 for t in tokens]


def shown_captions(chosen: int | None) -> list[int]:
    """The captions a cell draws: the one the training view is paired with, else the first."""
    return [chosen] if chosen is not None else [0]


def caption_lines(meta: dict[str, Any], chosen: int | None, dictionary) -> tuple[list[str], list[str]]:
    """Caption text decoded from the stored ids, and warnings for those cut at the 64-token cap."""
    tokens = shard_sink.caption_token_lists(meta)
    lengths = caption_lengths(meta, tokens)
    lines, warnings = [], []
    for pick in shown_captions(chosen):
        text = decode_symbols(dictionary.symbols[i] for i in tokens[pick])
        lines.append(f"[{pick + 1}/{len(tokens)}] {text}")
        if lengths[pick] > MAX_BPE:
            warnings.append(f"truncated: {lengths[pick]} BPE tokens, {MAX_BPE} kept")
    if chosen is None and len(tokens) > 1:
        lines.append(f"(+{len(tokens) - 1} more caption{'s' if len(tokens) > 2 else ''})")
    return lines, warnings


def truncated_lines(meta: dict[str, Any], chosen: int | None) -> set[int]:
    """Which of :func:`caption_lines`' lines are captions cut at the cap: the sheet draws them marked,
    so that the caption a warning is about is seen, not only the warning."""
    lengths = caption_lengths(meta, shard_sink.caption_token_lists(meta))
    return {n for n, pick in enumerate(shown_captions(chosen)) if lengths[pick] > MAX_BPE}


def augmented_view(sample: dict[str, Any], meta: dict[str, Any], labelled: bool,
                   seed: int) -> tuple[Image.Image, int | None]:
    """The epoch-0 training view (as a picture) and, for pair datasets, the caption it is paired with."""
    from ..loader.augment import IMAGE_SCALE, PAIR_SCALE, ViewConfig
    from ..loader.images import caption_choice, view_pixels

    config = ViewConfig(train=True, scale=IMAGE_SCALE if labelled else PAIR_SCALE)
    view, flip = view_pixels(sample, 0, config, seed)
    if flip:
        view = view.flip(-1)
    picture = Image.fromarray(view.permute(1, 2, 0).contiguous().numpy())
    captions = shard_sink.caption_token_lists(meta)
    chosen = caption_choice(seed, 0, sample["__key__"], len(captions)) if not labelled and captions else None
    return picture, chosen


def sample_cell(sample: dict[str, Any], dataset: str, labelled: bool, augmented: bool, seed: int,
                dictionary) -> contact_sheet.Cell:
    try:
        meta = json.loads(sample["json"]) if "json" in sample else {}
    except ValueError as exc:
        raise VlprepError(f"{sample.get('__url__')}: sample {sample['__key__']}: unreadable json ({exc})",
                          fix=f"run vlprep verify {dataset}") from exc
    try:
        data = shard_sink.image_member(sample)
        if data is None:
            raise ValueError("the sample has no image member")
        pictures = [Image.open(io.BytesIO(data))]
        pictures[0].load()
    except Exception as exc:  # shown, not fatal: the sheet is for looking at a split, broken samples included
        return contact_sheet.Cell([Image.new("RGB", (224, 224), "#bbbbbb")], sample["__key__"], [],
                                  [f"image does not decode ({exc}); run vlprep verify {dataset}"])
    chosen = None
    if augmented:
        view, chosen = augmented_view(sample, meta, labelled, seed)
        pictures.append(view)
    if labelled:
        label = int(sample["cls"]) if "cls" in sample else meta.get("label")
        return contact_sheet.Cell(pictures, sample["__key__"], [f"class {label}: {meta.get('class_name', '?')}"])
    if not meta.get("tokens"):  # shards from elsewhere: show what text there is, and say so
        texts = meta.get("texts") or [meta.get("caption", "")]
        return contact_sheet.Cell(pictures, sample["__key__"], [str(t) for t in texts[:1]],
                                  ["no caption token ids in this sample"])
    lines, warnings = caption_lines(meta, chosen, dictionary)
    return contact_sheet.Cell(pictures, sample["__key__"], lines, warnings, truncated_lines(meta, chosen))


def preview(layout: Layout, recipe: Recipe, split: str | None, count: int, augmented: bool, seed: int = 0,
            out: Path | None = None, variant: str | None = None) -> PreviewResult:
    """The first ``count`` samples of a built split of ``recipe``'s dataset, drawn into a PNG."""
    dataset, labelled = recipe.name, recipe.kind == "labels"
    split, index = index_path(layout, recipe, split, variant)
    if augmented:
        try:
            import torch  # noqa: F401
        except ModuleNotFoundError as exc:
            raise VlprepError("--augmented draws the trainer's views, which needs torch",
                              fix="install the loader extra: pip install 'vlprep[loader]'") from exc
    samples = first_samples(index, count)
    if not samples:
        raise VlprepError(f"{index}: the split holds no samples", fix=f"rebuild it ({recipe.command(recipe.builder)})")
    dictionary = load_dictionary() if not labelled else None
    cells = [sample_cell(s, dataset, labelled, augmented, seed, dictionary) for s in samples]
    kind = "stored image | training view (epoch 0)" if augmented else "stored images"
    title = f"{recipe.folder(variant)} {split}: first {len(cells)} samples ({kind})"
    stem = index.name[: -len(".index.json")]
    path = Path(out) if out else index.parent / f"{stem}.preview{'-augmented' if augmented else ''}.png"
    ensure_dir(path.parent)
    contact_sheet.draw_sheet(path, cells, title, columns=4 if not augmented else 3)
    return PreviewResult(path, len(cells), split)

