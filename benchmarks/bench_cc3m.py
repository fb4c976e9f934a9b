"""CC3M fetch: ``vlprep fetch cc3m --limit N`` against plain img2dataset over exactly the rows vlprep tried,
with each distributor: multiprocessing, Ray on a two-node cluster, Spark on a standalone cluster.

Every run is against the same loopback web (:mod:`vlprep.pipeline.samples.web`, served from this
process): a generated TSV of ``--rows`` (20,000) URLs, about 30 % failing fast (404, HTML instead of
an image, ``X-Robots-Tag: noai``). (v) vlprep keeps the first ``--limit`` (10,000) reachable rows, in
as few windows as the rate allows, and writes shards, index, stats and manifest. (i) img2dataset's
own ``download`` runs once over rows 0 .. rows_tried-1 with the same distributor, processes,
threads, timeout, retries, parquet output and sha256. The clusters are those of the tests
(``tests/engines/clusters_fixtures.py``): Ray with a head and a second node whose Python lacks vlprep
(one CPU each), Spark with a master and one 2-core worker whose executors' Python lacks vlprep.

Prints, per distributor: wall time, images/s, windows (img2dataset jobs), the peak RSS of the
vlprep driver process alone and of its whole process tree, and the ratio (v)/(i).
Run: ``.venv/bin/python benchmarks/bench_cc3m.py [--rows 20000 --limit 10000 --distributor all]``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from bench_owt import PeakRss  # noqa: E402

from vlprep.pipeline.samples.web import serve_web, write_tsv  # noqa: E402

WORK = Path(__file__).resolve().parent / "_work" / "cc3m"
PATTERN = ["good", "good", "404", "good", "png", "html", "good", "redirect", "noai", "good"]
DISTRIBUTORS = ("multiprocessing", "ray", "pyspark")

REFERENCE = """
import sys, json, os
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
options, cluster = json.loads(sys.argv[1]), json.loads(sys.argv[2])
if cluster.get("ray"):
    import ray
    ray.init(address=cluster["ray"], logging_level="ERROR")
if cluster.get("spark"):
    from pyspark.sql import SparkSession
    SparkSession.builder.master(cluster["spark"]).appName("img2dataset reference").getOrCreate()
import img2dataset
img2dataset.download(**options)
"""


def timed(command: list[str], env: dict) -> tuple[float, PeakRss]:
    started = time.perf_counter()
    with open(WORK / "runs.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, env={**env, "NO_ALBUMENTATIONS_UPDATE": "1"})
        with PeakRss(process.pid) as peaks:
            if process.wait():
                raise SystemExit(f"{command[:6]} failed; see {WORK / 'runs.log'}")
    return time.perf_counter() - started, peaks


@contextlib.contextmanager
def cluster(distributor: str) -> Iterator[tuple[list[str], dict, dict]]:
    """(vlprep's cluster options, the reference's cluster, the environment) for one distributor."""
    if distributor == "multiprocessing":
        yield [], {}, dict(os.environ)
        return
    from tests.engines.clusters_fixtures import ray_cluster, spark_cluster

    if distributor == "ray":
        with ray_cluster() as ray:
            yield ["--ray-address", ray.address], {"ray": ray.address}, dict(ray.env)
        return
    with spark_cluster() as spark:
        env = {**os.environ, "PYSPARK_PYTHON": str(spark.python)}
        yield ["--spark-master", spark.master], {"spark": spark.master}, env


def run_one(distributor: str, tsv: Path, args: argparse.Namespace, web) -> dict:
    common = {"timeout": 5, "retries": 1}
    with cluster(distributor) as (flags, reference_cluster, env):
        data = WORK / f"vlprep-{distributor}"
        seconds_v, peaks_v = timed([sys.executable, "-m", "vlprep.cli", "fetch", "cc3m", "--data-dir", str(data),
                                    "--tsv", str(tsv), "--limit", str(args.count), "--workers", str(args.processes),
                                    "--threads", str(args.threads), "--timeout", str(common["timeout"]),
                                    "--retries", str(common["retries"]), "--distributor", distributor, *flags,
                                    *(["--per-host", str(args.per_host)] if args.per_host else [])], env)
        stats = json.loads((data / "out" / "cc3m" / "stats.json").read_text())["splits"]["train"]
        reference = write_reference(tsv, stats["rows_tried"], distributor)
        output = WORK / f"img2dataset-{distributor}"
        options = {"url_list": str(reference), "input_format": "parquet", "url_col": "url",
                   "caption_col": "caption", "save_additional_columns": ["row"], "output_format": "parquet",
                   "output_folder": str(output), "processes_count": args.processes,
                   "thread_count": args.threads, "number_sample_per_shard": 1000, "resize_mode": "no",
                   "skip_reencode": True, "compute_hash": "sha256", "enable_wandb": False, "extract_exif": False,
                   "distributor": distributor, **common}
        seconds_i, peaks_i = timed([sys.executable, "-c", REFERENCE, json.dumps(options),
                                    json.dumps(reference_cluster)], env)
    successes_i = sum(json.loads(p.read_text())["successes"] for p in output.glob("*_stats.json"))
    return {"distributor": distributor, "seconds_v": seconds_v, "seconds_i": seconds_i, "images_v": stats["images"],
            "images_i": successes_i, "tried": stats["rows_tried"], "windows": len(stats["windows"]),
            "driver_v": peaks_v.own, "tree_v": peaks_v.peak, "driver_i": peaks_i.own, "tree_i": peaks_i.peak,
            "shards": sorted(p.name for p in (data / "out" / "cc3m").glob("*.tar")), "data": data}


def write_reference(tsv: Path, rows: int, name: str) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vlprep.pipeline.records.cc3m import iter_rows

    found = list(iter_rows(tsv, 0, rows))
    path = WORK / f"reference-{name}.parquet"
    pq.write_table(pa.table({"url": [r.url for r in found], "caption": [r.caption for r in found],
                             "row": [r.row for r in found]}), path)
    return path


def same_bytes(a: Path, b: Path) -> bool:
    first, second = sorted((a / "out" / "cc3m").glob("*.tar")), sorted((b / "out" / "cc3m").glob("*.tar"))
    return [p.name for p in first] == [p.name for p in second] and all(
        x.read_bytes() == y.read_bytes() for x, y in zip(first, second))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--limit", "--count", dest="count", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--distributor", choices=(*DISTRIBUTORS, "all"), default="multiprocessing")
    parser.add_argument("--per-host", type=int, default=None,
                        help="vlprep's --per-host (default: its own, 8); every URL here is on one host, 127.0.0.1, "
                             "so the default holds each process to 8 requests at a time where img2dataset has no limit")
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    chosen = DISTRIBUTORS if args.distributor == "all" else (args.distributor,)
    results = []
    with serve_web(trickle_seconds=5) as web:
        tsv = WORK / "Train_GCC-training.tsv"
        write_tsv(tsv, web, (PATTERN * (args.rows // len(PATTERN) + 1))[: args.rows])
        for distributor in chosen:
            results.append(run_one(distributor, tsv, args, web))
            print(f"{distributor} done", flush=True)
    print(f"{args.rows:,} URLs (30 % failing), --limit {args.count:,}; {args.processes} processes x "
          f"{args.threads} threads; vlprep --per-host {args.per_host or 'default (8)'}")
    print(f"{'':16} {'(v) s':>7} {'(i) s':>7} {'(v)/(i)':>8} {'img/s (v)':>10} {'windows':>8} {'rows tried':>11} "
          f"{'driver MB':>10} {'tree MB':>8}")
    for r in results:
        print(f"{r['distributor']:16} {r['seconds_v']:7.1f} {r['seconds_i']:7.1f} {r['seconds_v'] / r['seconds_i']:8.2f} "
              f"{r['images_v'] / r['seconds_v']:10.0f} {r['windows']:8d} {r['tried']:11,} "
              f"{r['driver_v'] / 1e6:10.0f} {r['tree_v'] / 1e6:8.0f}")
    for r in results[1:]:
        print(f"{r['distributor']} shards byte-identical to {results[0]['distributor']}: "
              f"{same_bytes(r['data'], results[0]['data'])}")


if __name__ == "__main__":
    main()
