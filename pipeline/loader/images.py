"""``image_dataset`` and ``pair_dataset``: the shards ``vlprep`` writes, as the method's training items.

An item is made from the raw tar members (no generic decoder runs): the JPEG goes through the
one-pass view of :mod:`.decode`, the class index is read from ``.cls`` and the caption ids from the
sample's json. Every random choice (crop, flip, caption) is seeded by (seed, epoch, sample key).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import VlprepError
from ..sinks.shards import caption_token_lists, image_member
from ..transforms.dictionary import BOS, EOS, PAD
from .augment import IMAGE_SCALE, PAIR_SCALE, RATIO, ViewConfig, draw_view, sample_generator, sample_seed
from .decode import flip_view, make_view_uint8, normalize_view
from .shards import ShardStream, resolve_shards

CAPTION_LENGTH = 64  # <s> + at most 62 BPE tokens + </s>, as the shards store them
DTYPES = ("float32", "uint8")


def pixel_dtype(dtype: str | torch.dtype) -> str:
    """``"float32"`` (normalized in the worker) or ``"uint8"`` (normalized by the trainer); torch dtypes too."""
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise VlprepError(f"dtype {dtype!r}: the views come as {' or '.join(DTYPES)}",
                          fix="pass dtype='float32' (normalized views) or dtype='uint8' (then normalize(batch, "
                              "device) in the trainer)")
    return name


def image_bytes(sample: dict[str, Any]) -> bytes:
    data = image_member(sample)
    if data is None:
        raise ValueError(f"no image member (has {', '.join(k for k in sample if not k.startswith('__'))})")
    return data


def view_pixels(sample: dict[str, Any], epoch: int, config: ViewConfig, seed: int) -> tuple[torch.Tensor, bool]:
    """The sample's uint8 view for this epoch and whether to flip it: crop and flip from (seed, epoch, key)."""
    generator = sample_generator(seed, epoch, sample["__key__"]) if config.train else None
    return make_view_uint8(image_bytes(sample), lambda h, w: draw_view(h, w, config, generator), config)


def view_of(sample: dict[str, Any], epoch: int, config: ViewConfig, seed: int,
            dtype: str = "float32") -> torch.Tensor:
    """The view the trainer sees: normalized float32, or the flipped uint8 pixels for ``dtype="uint8"``."""
    pixels, flip = view_pixels(sample, epoch, config, seed)
    return normalize_view(pixels, flip) if dtype == "float32" else flip_view(pixels, flip)


def caption_tokens(meta: dict[str, Any]) -> list[list[int]]:
    """The sample's captions as token id lists (COCO, VG regions and concat, CC3M alike)."""
    tokens = caption_token_lists(meta)
    if not tokens:
        raise ValueError("the json has no caption tokens; image_dataset reads image-only shards")
    return tokens


def caption_choice(seed: int, epoch: int, key: str, count: int) -> int:
    """Which of an image's captions this epoch uses: one per image per epoch, seeded."""
    return 0 if count == 1 else sample_seed(seed, epoch, key, "caption") % count


def pad_caption(ids: Sequence[int], length: int = CAPTION_LENGTH) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids right-padded with ``<pad>`` (1) to ``length``, and the mask that is True on pads.

    A caption longer than ``length`` (shards from elsewhere) keeps its first ``length − 1`` ids and
    ends in ``</s>``, as the writer caps them.
    """
    ids = list(ids)
    if len(ids) > length:
        ids = ids[: length - 1] + [EOS]
    tokens = torch.full((length,), PAD, dtype=torch.long)
    tokens[: len(ids)] = torch.tensor(ids, dtype=torch.long)
    mask = torch.ones(length, dtype=torch.bool)
    mask[: len(ids)] = False
    return tokens, mask


class ImageItem:
    """(view, class index) from an ImageNet-style sample (``.jpg`` + ``.cls``)."""

    def __init__(self, config: ViewConfig, seed: int, with_keys: bool, dtype: str = "float32") -> None:
        self.config, self.seed, self.with_keys, self.dtype = config, seed, with_keys, pixel_dtype(dtype)

    def __call__(self, sample: dict[str, Any], epoch: int) -> tuple:
        if "cls" not in sample:
            raise ValueError("no .cls member: image_dataset needs class-labelled shards (vlprep shard imagenet); "
                             "use pair_dataset for image-text shards")
        label = int(sample["cls"])
        item = (view_of(sample, epoch, self.config, self.seed, self.dtype), label)
        return item + (sample["__key__"],) if self.with_keys else item


class PairItem:
    """(view, caption ids padded to 64, padding mask) from an image-text sample."""

    def __init__(self, config: ViewConfig, seed: int, with_keys: bool, dtype: str = "float32") -> None:
        self.config, self.seed, self.with_keys, self.dtype = config, seed, with_keys, pixel_dtype(dtype)

    def __call__(self, sample: dict[str, Any], epoch: int) -> tuple:
        key = sample["__key__"]
        captions = caption_tokens(json.loads(sample["json"]))
        chosen = captions[caption_choice(self.seed, epoch, key, len(captions))]
        if not chosen or chosen[0] != BOS:
            raise ValueError("a caption does not start with <s>; were these shards written by vlprep?")
        tokens, mask = pad_caption(chosen)
        item = (view_of(sample, epoch, self.config, self.seed, self.dtype), tokens, mask)
        return item + (key,) if self.with_keys else item


def image_dataset(shards: str | Path | Sequence[str | Path], train: bool = True, *, size: int = 224,
                  scale: tuple[float, float] = IMAGE_SCALE, ratio: tuple[float, float] = RATIO,
                  interpolation: str = "bicubic", seed: int = 0, resampled: bool = False,
                  epoch_samples: int | None = None, shuffle_buffer: int = 1000, with_keys: bool = False,
                  skip_errors: bool = False, dtype: str | torch.dtype = "float32") -> ShardStream:
    """ImageNet-style shards → ``(image 3×size×size float32, class index)``.

    ``train=True``: RandomResizedCrop(size, scale, ratio) as torchvision draws it, horizontal flip
    with p = 0.5, ImageNet mean/std; shards shuffled per epoch and samples through a shuffle buffer.
    ``train=False``: the whole image resized to size×size and normalized, in index order.
    ``shards``: ``out/imagenet/imagenet-train.index.json`` or its prefix ``out/imagenet/imagenet-train``,
    or tar paths.
    ``dtype="uint8"``: the view as uint8 3×size×size, flipped but not normalized, a quarter of the
    bytes from worker to trainer; :func:`~.decode.normalize` (``batch, device``) then gives exactly
    the float32 views.
    """
    config = ViewConfig(size=size, train=train, scale=scale, ratio=ratio, interpolation=interpolation)
    return ShardStream(resolve_shards(shards), ImageItem(config, seed, with_keys, dtype), seed=seed, shuffle=train,
                       shuffle_buffer=shuffle_buffer, resampled=resampled, epoch_samples=epoch_samples,
                       skip_errors=skip_errors)


def pair_dataset(shards: str | Path | Sequence[str | Path], train: bool = True, *, size: int = 224,
                 scale: tuple[float, float] = PAIR_SCALE, ratio: tuple[float, float] = RATIO,
                 interpolation: str = "bicubic", seed: int = 0, resampled: bool = False,
                 epoch_samples: int | None = None, shuffle_buffer: int = 1000, with_keys: bool = False,
                 skip_errors: bool = False, dtype: str | torch.dtype = "float32") -> ShardStream:
    """Image-text shards (COCO, VG regions or concat, CC3M) → ``(image, tokens[64], padding mask[64])``.

    One caption per image per epoch, chosen by (seed, epoch, key); tokens are right-padded with
    ``<pad>`` = 1 and the mask is True on the pads. The view is as in :func:`image_dataset` with
    crop scale (0.6, 1) by default, and ``dtype="uint8"`` works the same.
    """
    config = ViewConfig(size=size, train=train, scale=scale, ratio=ratio, interpolation=interpolation)
    return ShardStream(resolve_shards(shards), PairItem(config, seed, with_keys, dtype), seed=seed, shuffle=train,
                       shuffle_buffer=shuffle_buffer, resampled=resampled, epoch_samples=epoch_samples,
                       skip_errors=skip_errors)
