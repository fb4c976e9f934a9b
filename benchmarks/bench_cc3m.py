"""CC3M fetch: ``vlprep fetch cc3m --limit N`` against plain img2dataset over exactly the rows vlprep tried.

Both run in the same process tree layout against the same loopback web (:mod:`vlprep.pipeline.samples.web`,
served from this process): a generated TSV of ``--rows`` (20,000) URLs, about 30 % failing fast
(404, HTML instead of an image, ``X-Robots-Tag: noai``). (v) vlprep keeps the first ``--limit``
(10,000) reachable rows, in windows, and writes shards, index, stats and manifest. (i) img2dataset's
own ``download`` runs once over rows 0 .. rows_tried-1 with the same processes, threads, timeout,
retries, parquet output and sha256. Prints wall time, images/s and peak RSS of each, and the ratio
(v)/(i) (target <= 1.15; peak RSS < 2 GB).
Run: ``.venv/bin/python benchmarks/bench_cc3m.py [--rows 20000 --limit 10000]``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_shards import timed  # noqa: E402

from vlprep.pipeline.samples.web import serve_web, write_tsv  # noqa: E402

WORK = Path(__file__).resolve().parent / "_work" / "cc3m"
PATTERN = ["good", "good", "404", "good", "png", "html", "good", "redirect", "noai", "good"]

REFERENCE = """
import sys, json, os
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
import img2dataset
img2dataset.download(**json.loads(sys.argv[1]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--limit", "--count", dest="count", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=32)
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    common = {"timeout": 5, "retries": 1}
    with serve_web(trickle_seconds=5) as web:
        tsv = WORK / "Train_GCC-training.tsv"
        write_tsv(tsv, web, (PATTERN * (args.rows // len(PATTERN) + 1))[: args.rows])
        data = WORK / "vlprep"
        seconds_v, rss_v = timed([sys.executable, "-m", "vlprep.cli", "fetch", "cc3m", "--data-dir", str(data),
                                  "--tsv", str(tsv), "--limit", str(args.count), "--workers", str(args.processes),
                                  "--threads", str(args.threads), "--timeout", str(common["timeout"]),
                                  "--retries", str(common["retries"])])
        stats = json.loads((data / "out" / "cc3m" / "stats.json").read_text())["splits"]["train"]
        tried = stats["rows_tried"]

        import pyarrow as pa
        import pyarrow.parquet as pq

        from vlprep.pipeline.records.cc3m import iter_rows

        rows = list(iter_rows(tsv, 0, tried))
        pq.write_table(pa.table({"url": [r.url for r in rows], "caption": [r.caption for r in rows],
                                 "row": [r.row for r in rows]}), WORK / "reference.parquet")
        options = {"url_list": str(WORK / "reference.parquet"), "input_format": "parquet", "url_col": "url",
                   "caption_col": "caption", "save_additional_columns": ["row"], "output_format": "parquet",
                   "output_folder": str(WORK / "img2dataset"), "processes_count": args.processes,
                   "thread_count": args.threads, "number_sample_per_shard": 1000, "resize_mode": "no",
                   "skip_reencode": True, "compute_hash": "sha256", "enable_wandb": False, "extract_exif": False,
                   **common}
        seconds_i, rss_i = timed([sys.executable, "-c", REFERENCE, json.dumps(options)])
    successes_i = sum(json.loads(p.read_text())["successes"] for p in (WORK / "img2dataset").glob("*_stats.json"))
    print(f"{args.rows:,} URLs (30 % failing), --limit {args.count:,}; {args.processes} processes x "
          f"{args.threads} threads; vlprep tried {tried:,} rows in {len(stats['windows'])} window(s)")
    print(f"{'':44} {'seconds':>8} {'images/s':>9} {'peak RSS MB':>12}")
    print(f"{'(v) vlprep fetch cc3m (shards, stats, manifest)':44} {seconds_v:8.2f} "
          f"{stats['images'] / seconds_v:9.0f} {rss_v / 1e6:12.0f}")
    print(f"{'(i) img2dataset over the same rows':44} {seconds_i:8.2f} {successes_i / seconds_i:9.0f} "
          f"{rss_i / 1e6:12.0f}")
    print(f"(v)/(i) = {seconds_v / seconds_i:.2f} (target <= 1.15); peak RSS {max(rss_v, rss_i) / 1e6:.0f} MB "
          "(target < 2000)")


if __name__ == "__main__":
    main()
