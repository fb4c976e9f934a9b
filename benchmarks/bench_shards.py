"""Image shard throughput: ``vlprep shard coco`` against a naive Pillow baseline, same run, same input.

Input: a generated COCO-format mirror of N JPEGs (default 2,000) of 640×480 at quality 90, with a
Karpathy split file listing them all as train. Measured: (s) ``vlprep shard coco`` keeping the
original bytes; (r) the same with ``--resize 256``; (n) a naive resize baseline in one process
per worker (full decode, resize shorter side to 256, JPEG encode), same images read from the zip.
Each vlprep mode is timed end to end and as its shard phase alone (a rerun with only the shard
files missing, minus a rerun with nothing to do), since start-up and caption encoding are fixed
costs that a 2,000-image set cannot amortize. Prints images/s, MB/s and peak RSS (process tree). Targets: (s) >= 1,000 images/s per worker;
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

from vlprep.pipeline.fileio import sha256_file
from vlprep.pipeline.sources.checksums import VerifiedRecord

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


def naive_resize(data: bytes) -> bytes:
    """The naive baseline for one image: full decode, antialiased bicubic to 256, JPEG q95."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    scale = 256 / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    return out.getvalue()


def naive(args: tuple[str, list[str]]) -> int:
    path, names = args
    with zipfile.ZipFile(path) as archive:
        return sum(len(naive_resize(archive.read(name))) for name in names)


def timed(command: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    with PeakRss(process.pid) as rss:
        if process.wait():
            raise SystemExit(f"{command} failed")
    return time.perf_counter() - started, rss.peak


def prepare(doc: str, build_mirror, run: str, repeat: int | None = None) -> tuple[argparse.Namespace, Path, Path]:
    """Parse ``--images``/``--workers`` (and ``--repeat`` when given a default), build the input once
    (kept between runs), and clear the data dir."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    if repeat is not None:
        parser.add_argument("--repeat", type=int, default=repeat, help="runs per measurement; the best counts")
    args = parser.parse_args()
    mirror = build_mirror(args.images)
    data = WORK / run
    shutil.rmtree(data, ignore_errors=True)
    return args, mirror, data


def main() -> None:
    args, mirror, data = prepare(__doc__, make_mirror, "shards-run")
    raw = data / "raw" / "coco"
    raw.mkdir(parents=True)
    record = VerifiedRecord(raw)
    for rel in ("zips/train2014.zip", "caption_datasets.zip"):
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(mirror / rel, raw / rel)
        # as `vlprep fetch` leaves them: recorded, so a shard run reads their sha256 instead of hashing
        record.add(rel, sha256_file(raw / rel), "benchmark input")
    megabytes = (mirror / "zips" / "train2014.zip").stat().st_size / 1e6
    base = [sys.executable, "-m", "vlprep.cli", "shard", "coco", "--data-dir", str(data), "--limit", str(args.images),
            "--workers", str(args.workers), "--shard-samples", str(max(1, args.images // (4 * args.workers)))]
    measured = {}
    for label, extra in (("(s) vlprep shard, original bytes", []), ("(r) vlprep shard --resize 256", ["--resize", "256"])):
        shutil.rmtree(data / "work", ignore_errors=True)
        shutil.rmtree(data / "out", ignore_errors=True)
        total, peak = timed(base + extra)
        idle, _ = timed(base + extra)  # nothing left to do: start-up, plan load, index and stats
        for shard in (data / "out" / "coco").glob("*.tar"):
            shard.unlink()
        again, _ = timed(base + extra)  # shards only: captions are encoded and the plan is kept
        measured[label] = (total, max(again - idle, 1e-9), peak)
    names = [f"train2014/COCO_train2014_{i:012d}.jpg" for i in range(1, args.images + 1)]
    parts = [(str(mirror / "zips" / "train2014.zip"), names[w::args.workers]) for w in range(args.workers)]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        list(pool.map(naive, parts))
    naive_seconds = time.perf_counter() - started
    measured["(n) naive Pillow decode+resize+encode"] = (naive_seconds, naive_seconds, 0)
    n, w = args.images, args.workers
    print(f"{n} JPEGs 640x480 q90, {megabytes:.0f} MB; {w} workers")
    print("end to end = the whole command (start-up, caption encoding, plan, shards, index, stats);")
    print("shard phase = a rerun with only the shard files missing, minus a rerun with nothing to do")
    print(f"{'':40} {'end to end s':>12} {'img/s/worker':>12} {'shard phase s':>13} {'img/s/worker':>12} "
          f"{'MB/s':>7} {'peak RSS MB':>11}")
    for label, (total, phase, peak) in measured.items():
        print(f"{label:40} {total:12.2f} {n / total / w:12.0f} {phase:13.2f} {n / phase / w:12.0f} "
              f"{megabytes / phase:7.1f} {peak / 1e6:11.0f}")
    s_total, s_phase, _ = measured["(s) vlprep shard, original bytes"]
    r_total, r_phase, _ = measured["(r) vlprep shard --resize 256"]
    print(f"(s) per worker: shard phase {n / s_phase / w:.0f} img/s, end to end {n / s_total / w:.0f} "
          "(target >= 1000)")
    print(f"(r)/(n): shard phase {naive_seconds / r_phase:.2f}, end to end {naive_seconds / r_total:.2f} "
          "(target >= 1.5)")
    print(f"peak RSS {max(p for _, _, p in measured.values()) / 1e6:.0f} MB (target < 2000)")

if __name__ == "__main__":
    main()
