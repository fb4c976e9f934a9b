"""Trainer-side loader throughput: ``pair_dataset`` / ``image_dataset`` against a naive pipeline, and text.

Image sets: (demo) the shards ``vlprep demo`` writes (COCO karpathy-train, ImageNet train; tiny
images), and (gen) N generated 640×480 q90 JPEGs (default 2,000) in 4 shards whose samples carry
``.jpg``, ``.cls`` and a caption json (written by vlprep's shard writer), so both datasets read the
same bytes. Each is read in one
process (samples/s per worker, torch at one thread as in a DataLoader worker) by
  (v) vlprep's dataset: DCT-scaled libjpeg-turbo decode, crop view, torch antialiased resize;
  (n) the naive pipeline on the same webdataset stream and the same crop draws: full Pillow decode,
      crop, Pillow resize (same filter), flip, ToTensor + Normalize.
(v)/(n) target >= 2. Also (v) through a DataLoader with 2 workers (wall samples/s).

dtype: the generated set through a DataLoader (2 workers, batches of 64) with ``dtype="float32"``
against ``dtype="uint8"``: samples/s per worker and through the DataLoader (measured in alternation)
and bytes per image batch shipped from the workers, as ratios in the same run; what finishing a view
costs a worker either way, and what ``normalize`` of one uint8 batch costs on this CPU (a trainer
runs it on the GPU).

Text: ``text_dataset`` over a generated fairseq binary of 50 M tokens (uint16, Zipf ids, documents of
~1,000 tokens), 512-token blocks read in order and in a shuffled order; reference: fairseq's own
TokenBlockDataset + PrependTokenDataset over the same files. Target > 50 M tokens/s.

Prints peak RSS (this process, and the largest child). Run: ``.venv/bin/python benchmarks/bench_loader.py
[--images 2000] [--tokens 50000000] [--sections demo,generated,dtype,text]``.
"""
from __future__ import annotations

import argparse
import io
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader

from vlprep.pipeline.loader import (IMAGENET_MEAN, IMAGENET_STD, ViewConfig, image_dataset, normalize, pair_dataset,
                                    text_dataset)
from vlprep.pipeline.loader.augment import IMAGE_SCALE, PAIR_SCALE, draw_view, sample_generator
from vlprep.pipeline.loader.decode import flip_view, normalize_view
from vlprep.pipeline.loader.images import caption_choice, caption_tokens, pad_caption
from vlprep.pipeline.sinks.fairseq import write_dataset
from vlprep.pipeline.sinks.shards import shard_name, write_shard, write_wids_index

WORK = Path(__file__).resolve().parent / "_work"
MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def make_image_shards(n: int) -> Path:
    root = WORK / f"loader-{n}"
    if (root / "done").exists():
        return root / "train.index.json"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    shards, per = 4, -(-n // 4)
    infos = []

    def samples(first: int, stop: int):
        for k in range(first, stop):
            base = rng.integers(0, 256, 3)
            pixels = np.stack([(x * base[0] / 640 + y / 4) % 256, (y * base[1] / 480 + x / 8) % 256,
                               (x + y + base[2]) % 256], -1) + rng.normal(0, 12, (480, 640, 3))
            out = io.BytesIO()
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
            tokens = [[0, *rng.integers(4, 50000, int(rng.integers(8, 30))).tolist(), 2] for _ in range(5)]
            yield f"{k:09d}", {"jpg": out.getvalue(), "cls": str(k % 1000).encode(),
                               "json": json.dumps({"tokens": tokens}).encode()}

    for s in range(shards):
        infos.append(write_shard(root / shard_name("train", s), samples(s * per, min(n, (s + 1) * per))))
    write_wids_index(root / "train.index.json", "train", infos)
    (root / "done").write_text("ok")
    return root / "train.index.json"


def demo_outputs() -> Path:
    root = WORK / "loader-demo"
    if not (root / "out" / "coco" / "karpathy-train.index.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "vlprep.cli", "demo", "--data-dir", str(root)], check=True,
                       stdout=subprocess.DEVNULL)
    return root / "out"


def naive_item(sample: dict, epoch: int, pair: bool, seed: int = 0) -> tuple:
    """torchvision's PIL pipeline written out: full decode, crop, resize, flip, ToTensor, Normalize."""
    image = Image.open(io.BytesIO(sample["jpg"])).convert("RGB")
    config = ViewConfig(scale=PAIR_SCALE if pair else IMAGE_SCALE)
    crop, flip = draw_view(image.height, image.width, config, sample_generator(seed, epoch, sample["__key__"]))
    image = image.crop((crop.j, crop.i, crop.j + crop.w, crop.i + crop.h)).resize((224, 224),
                                                                                   Image.Resampling.BICUBIC)
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)
    tensor = (tensor - MEAN) / STD
    if not pair:
        return tensor, int(sample["cls"])
    captions = caption_tokens(json.loads(sample["json"]))
    tokens, mask = pad_caption(captions[caption_choice(seed, epoch, sample["__key__"], len(captions))])
    return tensor, tokens, mask


def naive_stream(index: Path, pair: bool):
    urls = [str(index.parent / e["url"]) for e in json.loads(index.read_text())["shardlist"]]
    samples = wds.tarfile_to_samples()({"url": u} for u in urls)
    return (naive_item(s, 0, pair) for s in samples)


def rate(make_iter, repeats: int = 3, min_seconds: float = 1.0) -> tuple[float, int]:
    """Best samples/s of ``repeats`` measurements; each runs whole passes for at least ``min_seconds``
    (the demo's splits hold a few dozen samples) after one warm-up pass that fills the page cache."""
    count = sum(1 for _ in make_iter())
    best = 0.0
    for _ in range(repeats):
        start, seen = time.perf_counter(), 0
        while True:
            seen += sum(1 for _ in make_iter())
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = max(best, seen / elapsed)
    return best, count


def image_rows(label: str, index: Path, pair: bool) -> None:
    make = pair_dataset if pair else image_dataset
    ours, n = rate(lambda: iter(make(index, shuffle_buffer=0)))
    naive, _ = rate(lambda: naive_stream(index, pair))
    loader, _ = rate(lambda: iter(DataLoader(make(index, shuffle_buffer=0), batch_size=None, num_workers=2)), 1, 0)
    kind = "pair_dataset " if pair else "image_dataset"
    print(f"{label:<22} {kind} {n:>6,} samples   (v) {ours:7.0f}/s/worker   (n) {naive:7.0f}/s/worker   "
          f"(v)/(n) {ours / naive:4.2f}   2 workers {loader:7.0f}/s")


def loader_pass(loader: DataLoader) -> tuple[float, float, torch.Tensor]:
    """One pass: samples/s, image bytes per batch received, and the first image batch."""
    start, samples, batches, nbytes, first = time.perf_counter(), 0, 0, 0, None
    for batch in loader:
        first = batch[0] if first is None else first
        samples += len(batch[0])
        batches += 1
        nbytes += batch[0].nbytes
    return samples / (time.perf_counter() - start), nbytes / batches, first


def finish_rows(kind: str, view: torch.Tensor, repeats: int = 2000) -> None:
    """What finishing one decoded, resized view costs a worker: normalize to float32, or flip only."""
    costs = {}
    for name, finish in (("float32", normalize_view), ("uint8", flip_view)):
        start = time.perf_counter()
        for n in range(repeats):
            finish(view, n % 2 == 0)
        costs[name] = (time.perf_counter() - start) / repeats * 1e3
    print(f"{kind} finishing a {view.shape[-1]}x{view.shape[-1]} view in the worker (half flipped): float32 "
          f"{costs['float32']:.3f} ms, uint8 {costs['uint8']:.3f} ms")


def dtype_rows(index: Path, pair: bool, batch_size: int = 64, workers: int = 2, repeats: int = 3) -> None:
    """float32 against uint8 views: per worker, and through the same DataLoader with bytes per batch.

    The two are measured in alternation, best of ``repeats`` each, so load from elsewhere on the
    machine weighs on both alike.
    """
    make = pair_dataset if pair else image_dataset
    kind = "pair_dataset " if pair else "image_dataset"
    dtypes = ("float32", "uint8")
    per_worker = {dtype: 0.0 for dtype in dtypes}
    for _ in range(repeats):
        for dtype in dtypes:
            measured, _ = rate(lambda: iter(make(index, shuffle_buffer=0, dtype=dtype)), repeats=1)
            per_worker[dtype] = max(per_worker[dtype], measured)
    loaders = {dtype: DataLoader(make(index, shuffle_buffer=0, dtype=dtype), batch_size=batch_size,
                                 num_workers=workers, persistent_workers=True) for dtype in dtypes}
    through, nbytes, first = {dtype: 0.0 for dtype in dtypes}, {}, {}
    for loader in loaders.values():
        loader_pass(loader)  # warm-up: page cache, worker start
    for _ in range(repeats):
        for dtype in dtypes:
            speed, nbytes[dtype], first[dtype] = loader_pass(loaders[dtype])
            through[dtype] = max(through[dtype], speed)
    del loaders  # their workers stop: the timings below run alone
    finish_rows(kind, first["uint8"][0])
    for dtype in dtypes:
        print(f"{kind} {dtype:<7} {per_worker[dtype]:6.0f}/s/worker   {workers} workers, batch {batch_size}: "
              f"{through[dtype]:6.0f} samples/s, {nbytes[dtype] / 2**20:5.1f} MiB per image batch")
    start = time.perf_counter()
    for _ in range(5):
        normalize(first["uint8"])
    print(f"{kind} normalize(uint8 batch of {len(first['uint8'])}) on this CPU at one thread: "
          f"{(time.perf_counter() - start) / 5 * 1e3:5.1f} ms (a trainer calls normalize(batch, 'cuda'))")
    print(f"{kind} uint8/float32: {per_worker['uint8'] / per_worker['float32']:4.2f}x samples/s per worker, "
          f"{through['uint8'] / through['float32']:4.2f}x samples/s through the DataLoader, "
          f"{nbytes['float32'] / nbytes['uint8']:4.2f}x fewer bytes per batch")


def make_text(tokens: int) -> Path:
    root = WORK / f"text-{tokens}"
    if not (root / "train.idx").exists():
        root.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        ids = np.minimum(rng.zipf(1.2, tokens), 50000).astype(np.int64) + 3
        sizes = []
        left = tokens
        while left:
            size = int(min(left, rng.integers(200, 1800)))
            sizes.append(size)
            left -= size
        ends = np.cumsum(sizes) - 1
        ids[ends] = 2
        write_dataset(root / "train.bin", root / "train.idx", ids, np.array(sizes, dtype=np.int32), 50260)
        shutil.copy(demo_outputs() / "owt" / "dict.txt", root / "dict.txt")
    return root


def text_rows(tokens: int) -> None:
    import logging

    from fairseq.data import Dictionary, PrependTokenDataset, TokenBlockDataset, data_utils

    logging.getLogger("fairseq").setLevel(logging.WARNING)

    root = make_text(tokens)
    ours = text_dataset(root, "train", 512)
    order = np.random.default_rng(0).permutation(len(ours))
    for name, indices in (("in order", range(len(ours))), ("shuffled", order)):
        start = time.perf_counter()
        total = sum(len(ours[int(i)]) for i in indices)
        ours_rate = total / (time.perf_counter() - start)
        dictionary = Dictionary.load(str(root / "dict.txt"))
        raw = data_utils.load_indexed_dataset(str(root / "train"), dictionary)
        blocks = PrependTokenDataset(TokenBlockDataset(raw, raw.sizes, 511, pad=1, eos=2, break_mode="none"), 0)
        sample = list(indices)[: max(1, len(ours) // 10)]
        start = time.perf_counter()
        ref_total = sum(len(blocks[int(i)]) for i in sample)
        ref_rate = ref_total / (time.perf_counter() - start)
        print(f"text_dataset {name:<9} {total / 1e6:6.1f} M tokens   {ours_rate / 1e6:6.1f} M tokens/s   "
              f"fairseq TokenBlock+Prepend {ref_rate / 1e6:6.1f} M tokens/s   ratio {ours_rate / ref_rate:5.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=50_000_000)
    parser.add_argument("--sections", default="demo,generated,dtype,text",
                        help="which measurements, comma-separated: demo, generated, dtype, text")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    torch.set_num_threads(1)
    if "demo" in sections:
        out = demo_outputs()
        image_rows("demo coco (tiny)", out / "coco" / "karpathy-train.index.json", pair=True)
        image_rows("demo imagenet (tiny)", out / "imagenet" / "train.index.json", pair=False)
    if sections & {"generated", "dtype"}:
        generated = make_image_shards(args.images)
    if "generated" in sections:
        image_rows("generated 640x480", generated, pair=True)
        image_rows("generated 640x480", generated, pair=False)
    if "dtype" in sections:
        dtype_rows(generated, pair=True)
    if "text" in sections:
        text_rows(args.tokens)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: {own:.0f} MB this process (all measurements, text memory-mapped), "
          f"{workers:.0f} MB the largest DataLoader worker or child")


if __name__ == "__main__":
    main()
