"""``retrieval_dataset``: an image–text test split as recall@K needs it (COCO 5k, Flickr30K 1k).

Retrieval scores every image against every caption, so the split is read once into index maps:
image i (the i-th sample in index order) owns captions ``image_to_texts[i]``, and caption j belongs
to image ``text_to_image[j]``; captions are numbered image by image, so when every image has 5,
image i owns 5i … 5i+4. The caption token ids are held in memory (5,000 × 64 ids); the images are
read on demand from the shards (each JPEG's place in its tar is noted on the first pass) and given
as the eval view: the whole image resized to size × size (bicubic) and ImageNet-normalized, the
view ``pair_dataset(train=False)`` gives.

    from torch.utils.data import DataLoader
    from vlprep.pipeline.loader import recall_at_k, retrieval_dataset
    test = retrieval_dataset("data/out/flickr30k/flickr30k-test")
    images = torch.cat([encode_image(batch) for batch, _ in DataLoader(test, batch_size=256)])
    texts = encode_text(test.tokens, test.padding_mask)
    print(recall_at_k(images @ texts.T, test))
"""
from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.utils.data

from ..errors import VlprepError
from .augment import ViewConfig
from .images import CAPTION_LENGTH, caption_tokens, pad_caption, view_of
from .shards import resolve_shards


@dataclass(frozen=True)
class ImageAt:
    """Where one sample's JPEG lies: its shard, the byte offset of its data there, and its size."""

    key: str
    shard: str
    offset: int
    size: int


def _read_samples(urls: Sequence[str]) -> tuple[list[ImageAt], list[list[list[int]]]]:
    """One pass over the shards: each sample's image place and its captions' token ids, in order."""
    images: list[ImageAt] = []
    captions: list[list[list[int]]] = []
    for url in urls:
        pending: dict[str, ImageAt] = {}
        with tarfile.open(url, "r:") as archive:
            for member in archive:
                key, _, ext = member.name.partition(".")
                if ext == "jpg":
                    pending[key] = ImageAt(key, url, member.offset_data, member.size)
                elif ext == "json":
                    meta = json.loads(archive.extractfile(member).read())
                    if key not in pending:
                        raise VlprepError(f"{url}: sample {key} has its json before its jpg or no jpg",
                                          fix="pass shards written by vlprep shard")
                    images.append(pending.pop(key))
                    captions.append(caption_tokens(meta))
    return images, captions


class RetrievalSet(torch.utils.data.Dataset):
    """Item i: ``(image i's eval view, i)``. The texts and the index maps are attributes:

    - ``tokens`` [T, 64] long, ``padding_mask`` [T, 64] bool (True on ``<pad>``): every caption;
    - ``text_to_image`` [T] long: the image each caption belongs to;
    - ``image_to_texts``: per image, a long tensor of its captions' numbers (5i … 5i+4 when every
      image has 5); ``texts_per_image`` is that 5, or None when the counts differ;
    - ``keys``: each image's sample key.
    """

    def __init__(self, images: list[ImageAt], captions: list[list[list[int]]], config: ViewConfig) -> None:
        self.images, self.config = images, config
        self.keys = [image.key for image in images]
        padded = [pad_caption(ids) for per_image in captions for ids in per_image]
        self.tokens = torch.stack([t for t, _ in padded]) if padded else torch.empty(0, CAPTION_LENGTH, dtype=torch.long)
        self.padding_mask = (torch.stack([m for _, m in padded]) if padded
                             else torch.empty(0, CAPTION_LENGTH, dtype=torch.bool))
        counts = torch.tensor([len(c) for c in captions], dtype=torch.long)
        self.text_to_image = torch.repeat_interleave(torch.arange(len(captions)), counts)
        starts = torch.cumsum(counts, 0) - counts
        self.image_to_texts = [torch.arange(int(s), int(s) + int(n)) for s, n in zip(starts, counts)]
        self.texts_per_image = int(counts[0]) if len(counts) and bool((counts == counts[0]).all()) else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        with open(image.shard, "rb") as handle:
            handle.seek(image.offset)
            data = handle.read(image.size)
        return view_of({"__key__": image.key, "jpg": data}, 0, self.config, 0), index


def retrieval_dataset(shards: str | Path | Sequence[str | Path], *, size: int = 224,
                      interpolation: str = "bicubic") -> RetrievalSet:
    """An image–text split (``out/coco/coco-karpathy-test``, ``out/flickr30k/flickr30k-test``, their
    ``.index.json`` or tar paths) as a :class:`RetrievalSet`: eval views of the images, every caption's
    token ids padded to 64, and the image↔caption maps."""
    shard_set = resolve_shards(shards)
    images, captions = _read_samples(shard_set.urls)
    if not images:
        raise VlprepError(f"{shard_set.source}: no samples", fix="build the split first (vlprep shard ...)")
    return RetrievalSet(images, captions, ViewConfig(size=size, train=False, interpolation=interpolation))


def recall_at_k(scores: torch.Tensor, split: RetrievalSet, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Image→text and text→image recall@K (in %) from ``scores`` [images, texts] (higher is closer).

    Image→text: an image is a hit at K when any of its captions is among its K best-scored captions;
    text→image: a caption is a hit when its image is among its K best-scored images. Ties rank the
    lower index first (a stable sort), so the result never depends on the sort's implementation."""
    if tuple(scores.shape) != (len(split), len(split.text_to_image)):
        raise ValueError(f"scores {tuple(scores.shape)}: expected [{len(split)}, {len(split.text_to_image)}]")
    result = {}
    image_ranks = torch.argsort(scores, dim=1, descending=True, stable=True)
    text_ranks = torch.argsort(scores.T, dim=1, descending=True, stable=True)
    owner = split.text_to_image
    for k in ks:
        i2t = (owner[image_ranks[:, :k]] == torch.arange(len(split)).unsqueeze(1)).any(dim=1)
        t2i = (text_ranks[:, :k] == owner.unsqueeze(1)).any(dim=1)
        result[f"i2t_r{k}"] = 100.0 * int(i2t.sum()) / len(i2t)
        result[f"t2i_r{k}"] = 100.0 * int(t2i.sum()) / len(t2i)
    return result
