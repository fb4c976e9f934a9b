"""``prompt_tokens``: the ImageNet zero-shot prompts of ``vlprep binarize imagenet-prompts`` as one tensor.

A zero-shot classifier encodes every (class, template) prompt and averages each class's 80
embeddings; the tokens come as ``[classes, templates, L]`` (L: the longest prompt), right-padded
with ``<pad>`` = 1, with the mask that is True on the pads. Each item is placed by the table written
beside the binaries, so the class axis is the ImageNet shards' class index.

    from vlprep.pipeline.loader import prompt_tokens
    tokens, padding_mask = prompt_tokens("data/out/imagenet-prompts")   # [1000, 80, L]
    weights = encode_text(tokens.flatten(0, 1), padding_mask.flatten(0, 1)).view(1000, 80, -1).mean(1)
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import VlprepError
from ..sinks.manifests import read_tsv_gz
from ..transforms.dictionary import PAD
from .text import TokenFile

PREFIX = "prompts"


def prompt_tokens(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens [C, T, L] long, padding_mask [C, T, L] bool)`` from ``out/imagenet-prompts`` (or a
    folder holding ``prompts.{bin,idx}`` and ``prompts.tsv.gz``)."""
    folder = Path(path)
    table = folder / f"{PREFIX}.tsv.gz"
    if not table.is_file():
        raise VlprepError(f"{table}: not found", fix="build it first: vlprep binarize imagenet-prompts")
    header, rows = read_tsv_gz(table)
    items = TokenFile(folder / PREFIX)
    if header[:3] != ["item", "class_index", "template_index"] or len(rows) != len(items.sizes):
        raise VlprepError(f"{table}: not the table of {folder / PREFIX}.bin ({len(rows)} rows, "
                          f"{len(items.sizes)} items)", fix="rebuild it: vlprep binarize imagenet-prompts")
    places = [(int(item), int(c), int(t)) for item, c, t, *_ in rows]
    classes, templates = max(c for _, c, _ in places) + 1, max(t for _, _, t in places) + 1
    if len(places) != classes * templates or len({(c, t) for _, c, t in places}) != len(places):
        raise VlprepError(f"{table}: the items do not cover every (class, template) once",
                          fix="rebuild it: vlprep binarize imagenet-prompts")
    length = int(items.sizes.max())
    tokens = torch.full((classes, templates, length), PAD, dtype=torch.long)
    for item, c, t in places:
        ids = torch.from_numpy(items.item(item).astype("int64"))
        tokens[c, t, : ids.numel()] = ids
    mask = torch.ones_like(tokens, dtype=torch.bool)
    lengths = torch.from_numpy(items.sizes)[torch.tensor([p[0] for p in places])]
    flat = mask.view(-1, length)
    order = torch.tensor([c * templates + t for _, c, t in places])
    flat[order] = torch.arange(length).unsqueeze(0) >= lengths.unsqueeze(1)
    return tokens, mask
