"""Image shard throughput: ``vlprep shard coco`` against a naive Pillow baseline, same run, same input.

Input: a generated COCO-format mirror of N JPEGs (default 2,000) of 640×480 at quality 90, with a
Karpathy split file listing them all as train. Measured: (s) ``vlprep shard coco`` keeping the
original bytes; (r) the same with ``--resize 256``; (n) a naive resize baseline in one process
per worker (full decode, resize shorter side to 256, JPEG encode), same images read from the zip.
Prints images/s, MB/s and peak RSS (process tree). Targets: (s) >= 1,000 images/s per worker;
(r) >= 1.5 x (n); peak RSS < 2 GB. Run: ``.venv/bin/python benchmarks/bench_shards.py [--images 2000]``.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_owt import PeakRss  # noqa: E402

WORK = Path(__file__).resolve().parent / "_work"


def make_mirror(n: int) -> Path:
    root = WORK / f"coco-{n}"
    if (root / "done").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    (root / "zips").mkdir(parents=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    rows = []
    with zipfile.ZipFile(root / "zips" / "train2014.zip", "w") as archive:
        for i in range(1, n + 1):
            base = rng.integers(0, 256, 3)
            pixels = np.stack([(x * base[0] / 640 + y / 4) % 256, (y * base[1] / 480 + x / 8) % 256,
                               (x + y + base[2]) % 256], -1) + rng.normal(0, 12, (480, 640, 3))
            out = io.BytesIO()
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
            name = f"COCO_train2014_{i:012d}.jpg"
            archive.writestr(f"train2014/{name}", out.getvalue())
            rows.append({"filepath": "train2014", "filename": name, "cocoid": i, "split": "train", "imgid": i,
                         "sentences": [{"raw": f"A picture number {i}.", "sentid": i}]})
    with zipfile.ZipFile(root / "caption_datasets.zip", "w") as archive:
        archive.writestr("dataset_coco.json", json.dumps({"images": rows}))
    (root / "done").write_text("ok")
    return root


def naive(args: tuple[str, list[str]]) -> int:
    path, names = args
    total = 0
    with zipfile.ZipFile(path) as archive:
        for name in names:
            image = Image.open(io.BytesIO(archive.read(name))).convert("RGB")
            scale = 256 / min(image.size)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
            out = io.BytesIO()
            image.save(out, "JPEG", quality=95)
            total += len(out.getvalue())
    return total


def timed(command: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with PeakRss(process.pid) as rss:
        if process.wait():
            raise SystemExit(f"{command} failed")
    return time.perf_counter() - started, rss.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    mirror = make_mirror(args.images)
    data = WORK / "shards-run"
    shutil.rmtree(data, ignore_errors=True)
    raw = data / "raw" / "coco"
    raw.mkdir(parents=True)
    for rel in ("zips/train2014.zip", "caption_datasets.zip"):
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(mirror / rel, raw / rel)
    megabytes = (mirror / "zips" / "train2014.zip").stat().st_size / 1e6
    base = [sys.executable, "-m", "vlprep.cli", "shard", "coco", "--data-dir", str(data), "--limit", str(args.images),
            "--workers", str(args.workers)]
    rows = []
    seconds, peak = timed(base)
    rows.append(("(s) vlprep shard, original bytes", seconds, peak))
    shutil.rmtree(data / "work")
    seconds, peak = timed(base + ["--resize", "256"])
    rows.append(("(r) vlprep shard --resize 256", seconds, peak))
    names = [f"train2014/COCO_train2014_{i:012d}.jpg" for i in range(1, args.images + 1)]
    parts = [(str(mirror / "zips" / "train2014.zip"), names[w::args.workers]) for w in range(args.workers)]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        list(pool.map(naive, parts))
    rows.append(("(n) naive Pillow decode+resize+encode", time.perf_counter() - started, 0))
    print(f"{args.images} JPEGs 640x480 q90, {megabytes:.0f} MB; workers {args.workers}")
    print(f"{'':40} {'seconds':>8} {'img/s':>8} {'img/s/worker':>12} {'MB/s':>7} {'peak RSS MB':>12}")
    rate = {}
    for name, seconds, peak in rows:
        rate[name[:3]] = args.images / seconds
        print(f"{name:40} {seconds:8.2f} {args.images / seconds:8.0f} {args.images / seconds / args.workers:12.0f} "
              f"{megabytes / seconds:7.1f} {peak / 1e6:12.0f}")
    print(f"(s) per worker = {rate['(s)'] / args.workers:.0f} img/s (target >= 1000)")
    print(f"(r)/(n) = {rate['(r)'] / rate['(n)']:.2f} (target >= 1.5)")


if __name__ == "__main__":
    main()
