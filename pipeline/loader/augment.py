"""The method's image views: torchvision's RandomResizedCrop and flip, drawn from a per-sample seed.

Each sample's randomness comes from a ``torch.Generator`` seeded by (seed, epoch, sample key), so a
view depends on neither the worker that decodes it nor the order samples arrive in: the same seed
gives the same views on 1 or 64 workers. The draws are made in torchvision's order (area, log-ratio
for up to 10 tries, then ``i`` and ``j``; then the flip), so with the same generator state the
crop equals ``torchvision.transforms.RandomResizedCrop.get_params`` followed by
``RandomHorizontalFlip``.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SCALE = (0.08, 1.0)   # image-only students (BEiT / data2vec 2.0 image pretraining)
PAIR_SCALE = (0.6, 1.0)     # image-text students: a caption still describes most of the view
RATIO = (3 / 4, 4 / 3)
INTERPOLATIONS = ("bicubic", "bilinear")


@dataclass(frozen=True)
class Crop:
    """A crop box in source pixels: top row ``i``, left column ``j``, height ``h``, width ``w``."""

    i: int
    j: int
    h: int
    w: int


@dataclass(frozen=True)
class ViewConfig:
    """How a view is made. ``train`` draws a random crop and flip; eval resizes the whole image."""

    size: int = 224
    train: bool = True
    scale: tuple[float, float] = IMAGE_SCALE
    ratio: tuple[float, float] = RATIO
    interpolation: str = "bicubic"
    flip_p: float = 0.5

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {self.interpolation!r}: choose one of {', '.join(INTERPOLATIONS)}")
        if not (0 < self.scale[0] <= self.scale[1] <= 1):
            raise ValueError(f"scale {self.scale}: need 0 < low <= high <= 1")
        if not (0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"ratio {self.ratio}: need 0 < low <= high")
        if self.size < 1:
            raise ValueError(f"size {self.size}: must be positive")


def sample_seed(seed: int, epoch: int, key: str, purpose: str = "view") -> int:
    """A 63-bit seed for one sample's draws, stable across processes, workers and Python versions."""
    digest = hashlib.blake2b(f"{seed}\x00{epoch}\x00{purpose}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def sample_generator(seed: int, epoch: int, key: str, purpose: str = "view") -> torch.Generator:
    return torch.Generator().manual_seed(sample_seed(seed, epoch, key, purpose))


def crop_params(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                generator: torch.Generator | None = None) -> Crop:
    """torchvision's ``RandomResizedCrop.get_params``, draw for draw, on an explicit generator.

    Up to 10 tries of an area in ``scale`` × image area and an aspect ratio log-uniform in ``ratio``;
    the first that fits is placed uniformly. If none fits, the largest center crop whose aspect
    ratio lies in ``ratio`` (the whole image when its own ratio does).
    """
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0].item(), log_ratio[1].item(),
                                                   generator=generator)).item()
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            j = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return Crop(i, j, h, w)
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return Crop((height - h) // 2, (width - w) // 2, h, w)


def flip_draw(p: float, generator: torch.Generator | None = None) -> bool:
    """``RandomHorizontalFlip``'s draw: flip when ``torch.rand(1) < p``."""
    return bool(torch.rand(1, generator=generator).item() < p)


def draw_view(height: int, width: int, config: ViewConfig,
              generator: torch.Generator | None) -> tuple[Crop, bool]:
    """The crop and flip of one training view (the whole image, unflipped, for eval)."""
    if not config.train:
        return Crop(0, 0, height, width), False
    crop = crop_params(height, width, config.scale, config.ratio, generator)
    return crop, flip_draw(config.flip_p, generator)
