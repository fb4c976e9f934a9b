"""Where a split's shard and index files live, spelled in one place for the loader tests.

Shards are ``<dataset>-<split>-NNNNNN.tar`` beside ``<dataset>-<split>.index.json``; the loader
finds them through the index (or its prefix), so a rename of the files touches only this module.
Also small image-text shards for the stream tests: real JPEGs, several captions per image.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from vlprep.pipeline.sinks.shards import write_shard, write_wids_index


def split_prefix(root: Path, dataset: str, split: str) -> Path:
    """The prefix ``resolve_shards`` takes: ``root/<dataset>-<split>``."""
    return Path(root) / f"{dataset}-{split}"


def shard_path(prefix: Path, number: int) -> Path:
    return prefix.with_name(f"{prefix.name}-{number:06d}.tar")


def index_path(prefix: Path) -> Path:
    return prefix.with_name(f"{prefix.name}.index.json")


def demo_prefix(demo_data: Path, dataset: str, split: str) -> Path:
    """A split ``vlprep demo`` built: ``out/<dataset>/<dataset>-<split>``."""
    prefix = split_prefix(Path(demo_data) / "out" / dataset, dataset, split)
    if not index_path(prefix).is_file():
        raise FileNotFoundError(f"{prefix}: no index of this split")
    return prefix


def jpeg(key: int, width: int, height: int) -> bytes:
    """A smooth picture with some noise, different for every key, as JPEG."""
    rng = np.random.default_rng(key)
    y, x = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 6.28, 3)
    pixels = np.stack([128 + 100 * np.sin(x / (7 + c) + phase[c]) * np.cos(y / (5 + c)) for c in range(3)], -1)
    pixels = np.clip(pixels + rng.normal(0, 4, pixels.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def captions(key: int, count: int) -> list[list[int]]:
    """``count`` token id lists, each ``<s> … </s>``, all different."""
    rng = np.random.default_rng(1000 + key)
    return [[0, *rng.integers(4, 50000, int(rng.integers(3, 12))).tolist(), 2] for _ in range(count)]


def write_pair_shards(root: Path, shards: int, per_shard: int | list[int], dataset: str = "toy", split: str = "train",
                      captions_per_image: int = 3) -> Path:
    """Image-text shards (jpg, cls, json with caption tokens) and their wids index; returns the prefix.

    Shards hold unequal counts when ``per_shard`` is a list.
    """
    Path(root).mkdir(parents=True, exist_ok=True)
    prefix = split_prefix(root, dataset, split)
    counts = per_shard if isinstance(per_shard, list) else [per_shard] * shards
    infos, key = [], 0
    for number, count in enumerate(counts):
        samples = []
        for _ in range(count):
            meta = {"tokens": captions(key, captions_per_image), "label": key % 7}
            samples.append((f"{key:06d}", {"jpg": jpeg(key, 48 + 8 * (key % 4), 40 + 4 * (key % 3)),
                                           "cls": str(key % 7).encode(), "json": json.dumps(meta).encode()}))
            key += 1
        infos.append(write_shard(shard_path(prefix, number), samples))
    write_wids_index(index_path(prefix), prefix.name, infos)
    return prefix
