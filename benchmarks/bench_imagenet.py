"""ImageNet shard throughput: ``vlprep shard imagenet`` against a naive Pillow baseline, same run, same input.

Input: N generated JPEGs (default 2,000) of 640×480 at quality 90 over 10 classes, spread over the
five hub-layout ``train_images_<i>.tar.gz`` with a ``classes.py``. Measured: (s) ``vlprep shard
imagenet`` keeping the original bytes; (r) the same with ``--resize 256``; (n) the naive baseline
of ``bench_shards.py`` (full decode, resize to 256, JPEG encode) on the same images, read from the
tarballs. vlprep is timed end to end and without start-up (minus a rerun with nothing to do); the
whole pipeline is included: gunzip, bucket files, checks, shards. Each figure is the best of
``--repeat`` runs (default 3; this is a shared machine whose timings vary by 10-40 %), the same
for every contender. Targets: (s) >= 1,000 images/s per worker; (r) >= 1.5 x (n); peak RSS < 2 GB.
Run: ``.venv/bin/python benchmarks/bench_imagenet.py``.
"""
from __future__ import annotations

import io
import os
import shutil
import sys
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_shards import naive_resize, prepare, timed  # noqa: E402

WORK = Path(__file__).resolve().parent / "_work"
SYNSETS = [f"n{1440764 + 1000 * i:08d}" for i in range(10)]


def make_mirror(n: int) -> Path:
    root = WORK / f"imagenet-{n}"
    if (root / "done").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    (root / "data").mkdir(parents=True)
    (root / "classes.py").write_text("from collections import OrderedDict\nIMAGENET2012_CLASSES = OrderedDict({"
                                     + ", ".join(f'"{s}": "class {i}"' for i, s in enumerate(SYNSETS)) + "})\n")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    tars = [tarfile.open(root / "data" / f"train_images_{i}.tar.gz", "w:gz") for i in range(5)]
    for i in range(n):
        base = rng.integers(0, 256, 3)
        pixels = np.stack([(x * base[0] / 640 + y / 4) % 256, (y * base[1] / 480 + x / 8) % 256,
                           (x + y + base[2]) % 256], -1) + rng.normal(0, 12, (480, 640, 3))
        out = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
        synset = SYNSETS[i % len(SYNSETS)]
        info = tarfile.TarInfo(f"{synset}_{i}_{synset}.JPEG")
        info.size = len(out.getvalue())
        tars[i % 5].addfile(info, io.BytesIO(out.getvalue()))
    for tar in tars:
        tar.close()
    with tarfile.open(root / "data" / "val_images.tar.gz", "w:gz"):
        pass
    (root / "done").write_text("ok")
    return root


def naive(path: str) -> int:
    with tarfile.open(path, "r|gz") as tar:
        return sum(len(naive_resize(tar.extractfile(member).read())) for member in tar)


def best_of(repeat: int, measure) -> tuple[float, int]:
    """The shortest time of ``repeat`` runs of ``measure() -> (seconds, peak RSS)``, and the highest peak."""
    runs = [measure() for _ in range(repeat)]
    return min(seconds for seconds, _ in runs), max(peak for _, peak in runs)


def run_naive(tarballs: list[str], workers: int) -> tuple[float, int]:
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(naive, tarballs))
    return time.perf_counter() - started, 0


def main() -> None:
    args, mirror, data = prepare(__doc__, make_mirror, "imagenet-run", repeat=3)
    (data / "raw").mkdir(parents=True)
    os.symlink(mirror, data / "raw" / "imagenet")
    megabytes = sum(p.stat().st_size for p in (mirror / "data").glob("train_*.tar.gz")) / 1e6
    base = [sys.executable, "-m", "vlprep.cli", "shard", "imagenet", "--data-dir", str(data), "--limit",
            str(args.images), "--workers", str(args.workers), "--shard-samples", "250"]
    measured = {}
    for label, extra in (("(s) vlprep shard imagenet, original bytes", []),
                         ("(r) vlprep shard imagenet --resize 256", ["--resize", "256"])):
        def fresh_run(command=base + extra):
            shutil.rmtree(data / "work", ignore_errors=True)
            shutil.rmtree(data / "out", ignore_errors=True)
            return timed(command)

        total, peak = best_of(args.repeat, fresh_run)
        idle, _ = best_of(args.repeat, lambda command=base + extra: timed(command))
        measured[label] = (total, max(total - idle, 1e-9), peak)
    tarballs = [str(p) for p in sorted((mirror / "data").glob("train_*.tar.gz"))]
    naive_seconds, _ = best_of(args.repeat, lambda: run_naive(tarballs, args.workers))
    measured["(n) naive Pillow decode+resize+encode"] = (naive_seconds, naive_seconds, 0)
    n, w = args.images, args.workers
    print(f"{n} JPEGs 640x480 q90 in 5 tar.gz, {megabytes:.0f} MB; {w} workers (--limit {n}: the first N images "
          f"in tarball order); best of {args.repeat} runs each")
    print(f"{'':44} {'end to end s':>12} {'img/s/worker':>12} {'no start-up s':>13} {'img/s/worker':>12} "
          f"{'peak RSS MB':>11}")
    for label, (total, work, peak) in measured.items():
        print(f"{label:44} {total:12.2f} {n / total / w:12.0f} {work:13.2f} {n / work / w:12.0f} {peak / 1e6:11.0f}")
    s_total, s_work, _ = measured["(s) vlprep shard imagenet, original bytes"]
    r_total, r_work, _ = measured["(r) vlprep shard imagenet --resize 256"]
    print(f"(s) per worker: {n / s_work / w:.0f} img/s without start-up, {n / s_total / w:.0f} end to end "
          "(target >= 1000)")
    print(f"(r)/(n): {naive_seconds / r_work:.2f} without start-up, {naive_seconds / r_total:.2f} end to end "
          "(target >= 1.5)")


if __name__ == "__main__":
    main()
