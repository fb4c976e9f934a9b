"""OpenWebText binarization throughput: vlprep against the best plain tokenizer use and fairseq.

Everything runs in one process tree on the same input, a generated OpenWebText-format subset of at
least 50 MB of text whose words follow Zipf's law over a large vocabulary (as real text does: a
small uniform vocabulary would flatter tokenizers with caches). Rates are MB/s of cleaned text (the
same numerator for all), tokens/s and peak RSS (largest sum over the process tree, from /proc):

(a)  tiktoken on the cleaned lines in memory, ``encode_ordinary`` over chunks of 100 lines on as
     many threads as vlprep has workers (about 3x faster than per-line ``encode_ordinary_batch``);
(a') gigatoken ``encode_batch`` of the same lines in memory, on its own thread pool;
(x)  xz decompression of the same archive members alone, one core;
(b)  ``vlprep binarize owt`` end to end from the archives (default tokenizer: gigatoken);
(bt) the same with ``--tokenizer tiktoken``;
(c)  fairseq's reference: ``multiprocessing_bpe_encoder`` then ``fairseq-preprocess`` (mmap).

Every byte must be both decompressed and encoded, so on C cores no pipeline beats
C / (1/x_per_core + 1/bpe_per_core), where bpe_per_core is gigatoken on one thread; it is printed.
Targets: (bt) >= 0.75 x (a); (b) >= 2 x (a), >= 0.8 x the bound, >= 5 x (c); peak RSS < 1 GB. Run:
``.venv/bin/python benchmarks/bench_owt.py [--mb 50] [--workers 2] [--skip-fairseq]``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lzma
import random

from vlprep.pipeline.records.owt import iter_documents, list_chunks, subset_relpath
from vlprep.pipeline.samples.text import WORDS, Vocabulary, write_owt_subset
from vlprep.pipeline.sources.archives import read_member
from vlprep.pipeline.transforms.bpe import GigatokenBackend, get_backend, vocabulary_files
from vlprep.pipeline.transforms.text import clean_document

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"


class PeakRss:
    """Samples the summed RSS of a process and all its descendants (``peak``), and of the process
    alone (``own``), until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.own, self._stop = pid, 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(_rss(p) for p in _tree(self.pid)))
            self.own = max(self.own, _rss(self.pid))
            time.sleep(0.05)


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack += children.get(pid, [])
    return found


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def zipf_vocabulary(size: int = 60_000, seed: int = 0) -> Vocabulary:
    """English function words first, then made-up words, drawn with weights 1/rank (Zipf's law)."""
    rng = random.Random(seed)
    syllables = ("an er in th re on at en nd ti es or te of ed is it al ar st to nt ng se ha as ou io le ve co "
                 "me de hi ri ro ic ne ea ra ce li ch ll be ma si om ur ca el ta la ns ge ly ei os no pe do su "
                 "pa ec ac ot di ol tr sh ut ow ck qu ph x z y k w v 19 20 ä é ß").split()
    made_up = {"".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(size * 2)}
    words = list(dict.fromkeys(WORDS + sorted(made_up)))[:size]
    words = [w.capitalize() if rng.random() < 0.08 else w for w in words]
    words += [f"{rng.randint(0, 99999)}" for _ in range(size // 20)] + ["(a)", "e.g.", "—", "$5", "don't"]
    weights, total = [], 0.0
    for rank in range(len(words)):
        total += 1.0 / (rank + 1)
        weights.append(total)
    return Vocabulary(tuple(words), tuple(weights))


def make_input(target_mb: int) -> Path:
    """Generate (once, cached) subset 00 with >= target_mb of text and a tiny subset 05."""
    docs_per_chunk, paragraphs = 400, 30  # about 4.4 KB of text per document, near OpenWebText's mean
    chunks = max(2, int(target_mb * 1e6 / (docs_per_chunk * 4400)) + 1)
    mirror = WORK / f"mirror-zipf-{target_mb}mb-{chunks}x{docs_per_chunk}x{paragraphs}"
    marker = mirror / "done"
    if marker.exists():
        return mirror
    shutil.rmtree(mirror, ignore_errors=True)
    print(f"generating {chunks} xz members of {docs_per_chunk} documents (once; cached in {mirror})", flush=True)
    vocabulary = zipf_vocabulary()
    write_owt_subset(mirror / subset_relpath(0), 0, chunks, docs_per_chunk, seed=1, paragraphs=paragraphs,
                     vocabulary=vocabulary)
    write_owt_subset(mirror / subset_relpath(5), 5, 2, 50, seed=1, vocabulary=vocabulary)
    marker.write_text("ok")
    return mirror


def cleaned_lines(tar: Path) -> list[str]:
    lines: list[str] = []
    for chunk in list_chunks(tar):
        for _, raw in iter_documents(tar, chunk):
            lines += clean_document(raw).lines
    return lines


def bench_tiktoken(lines: list[str], threads: int) -> tuple[float, int]:
    encoding = get_backend("tiktoken").encoding
    chunks = [lines[i:i + 100] for i in range(0, len(lines), 100)]

    def encode(chunk: list[str]) -> int:
        return sum(len(encoding.encode_ordinary(line)) for line in chunk)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        tokens = sum(pool.map(encode, chunks))
    return time.perf_counter() - started, tokens


def bench_gigatoken_batch(lines: list[str]) -> tuple[float, int]:
    """(a'): gigatoken's own batch API on the in-memory lines, on its thread pool."""
    tokenizer = get_backend("gigatoken").tokenizer
    tokenizer.encode("warm up the pretoken cache of nothing in particular")
    started = time.perf_counter()
    encoded = tokenizer.encode_batch(lines)
    return time.perf_counter() - started, _count(encoded)


def _count(encoded) -> int:
    import awkward as ak

    return int(ak.sum(ak.num(encoded)))


def bench_bpe_one_core(lines: list[str]) -> float:
    """Seconds a fresh gigatoken (cold pretoken cache, as in each worker) needs on one thread,
    called as vlprep calls it (about 1 MB of joined lines at a time)."""
    backend = GigatokenBackend()
    started = time.perf_counter()
    for i in range(0, len(lines), 4000):
        backend.encode("\n".join(lines[i:i + 4000]))
    return time.perf_counter() - started


def bench_xz_one_core(tar: Path) -> float:
    """Seconds to decompress every ``.xz`` member of the subset on one core (read from the page cache)."""
    members = list_chunks(tar)
    started = time.perf_counter()
    for member in members:
        lzma.decompress(read_member(tar, member))
    return time.perf_counter() - started


def timed(command: list[str], **kwargs) -> tuple[float, int]:
    started = time.perf_counter()
    process = subprocess.Popen(command, **kwargs)
    with PeakRss(process.pid) as rss:
        code = process.wait()
    if code:
        raise SystemExit(f"{command[:4]}... failed with exit code {code}")
    return time.perf_counter() - started, rss.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=50, help="text size of the generated input (MB)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--skip-fairseq", action="store_true")
    args = parser.parse_args()

    mirror = make_input(args.mb)
    run = WORK / "run"
    shutil.rmtree(run, ignore_errors=True)
    vlprep = [sys.executable, "-m", "vlprep.cli"]
    subprocess.run(vlprep + ["fetch", "owt", "--data-dir", str(run), "--mirror", str(mirror), "--subsets", "0,5"],
                   check=True, stdout=subprocess.DEVNULL)
    tar = run / "raw" / "owt" / subset_relpath(0)
    lines = cleaned_lines(tar)
    text_mb = sum(len(line.encode("utf-8")) + 1 for line in lines) / 1e6
    print(f"input: {tar.stat().st_size / 1e6:.1f} MB of xz archives, {text_mb:.1f} MB cleaned text, "
          f"{len(lines):,} lines; workers/threads: {args.workers}")

    rows = []
    seconds, tokens = bench_tiktoken(lines, args.workers)
    rows.append(("(a)  tiktoken, 100-line chunks, in memory", seconds, tokens, _rss(os.getpid())))
    seconds, giga_tokens = bench_gigatoken_batch(lines)
    if giga_tokens != tokens:
        raise SystemExit(f"gigatoken gave {giga_tokens} tokens, tiktoken {tokens}")
    rows.append(("(a') gigatoken encode_batch, in memory", seconds, tokens, _rss(os.getpid())))
    x_core = text_mb / bench_xz_one_core(tar)
    bpe_core = text_mb / bench_bpe_one_core(lines)
    bound = args.workers / (1 / x_core + 1 / bpe_core)

    binarize = vlprep + ["binarize", "owt", "--data-dir", str(run), "--train-subsets", "0", "--valid-subsets", "5",
                         "--workers", str(args.workers)]
    seconds, peak = timed(binarize, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows.append(("(b)  vlprep binarize owt (gigatoken)", seconds, tokens, peak))
    reference_bin = (run / "out" / "owt" / "train.bin").read_bytes()
    shutil.rmtree(run / "work")
    shutil.rmtree(run / "out")
    seconds, peak = timed(binarize + ["--tokenizer", "tiktoken"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows.append(("(bt) vlprep binarize owt --tokenizer tiktoken", seconds, tokens, peak))
    print(f"(b) and (bt) train.bin byte-identical: {reference_bin == (run / 'out' / 'owt' / 'train.bin').read_bytes()}")

    if not args.skip_fairseq:
        lines_file = WORK / "lines.txt"
        lines_file.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        encoder_json, vocab_bpe = vocabulary_files()
        bpe_file, dest = WORK / "lines.bpe", WORK / "fairseq-bin"
        shutil.rmtree(dest, ignore_errors=True)
        s1, p1 = timed([sys.executable, "-m", "fairseq.examples.roberta.multiprocessing_bpe_encoder",
                        "--encoder-json", str(encoder_json), "--vocab-bpe", str(vocab_bpe),
                        "--inputs", str(lines_file), "--outputs", str(bpe_file), "--workers", str(args.workers)])
        s2, p2 = timed([sys.executable, "-m", "fairseq_cli.preprocess", "--only-source", "--srcdict",
                        str(run / "out" / "owt" / "dict.txt"), "--trainpref", str(bpe_file), "--destdir",
                        str(dest), "--dataset-impl", "mmap", "--workers", str(args.workers)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows.append(("(c)  fairseq bpe encoder + preprocess", s1 + s2, tokens, max(p1, p2)))
        same = (dest / "train.bin").read_bytes() == reference_bin and \
            (dest / "train.idx").read_bytes() == (run / "out" / "owt" / "train.idx").read_bytes()
        print(f"(b) and (c) train.bin/.idx byte-identical: {same}")

    print(f"\n{'':46} {'seconds':>8} {'MB/s':>7} {'Mtok/s':>7} {'peak RSS MB':>12}")
    rate, peaks = {}, {}
    for name, seconds, tokens, peak in rows:
        key = name.split()[0]
        rate[key], peaks[key] = text_mb / seconds, peak
        print(f"{name:46} {seconds:8.2f} {text_mb / seconds:7.2f} {tokens / seconds / 1e6:7.2f} {peak / 1e6:12.0f}")
    print(f"\none core: xz decompression x = {x_core:.1f} MB/s, gigatoken bpe = {bpe_core:.1f} MB/s")
    print(f"bound on {args.workers} cores: C / (1/x + 1/bpe) = {bound:.1f} MB/s")
    print(f"(b)/(a)     = {rate['(b)'] / rate['(a)']:.2f}   (target >= 2)")
    print(f"(b)/bound   = {rate['(b)'] / bound:.2f}   (target >= 0.8)")
    print(f"(bt)/(a)    = {rate['(bt)'] / rate['(a)']:.2f}   (target >= 0.75)")
    if "(c)" in rate:
        print(f"(b)/(c)     = {rate['(b)'] / rate['(c)']:.2f}   (target >= 5)")
        print(f"(bt)/(c)    = {rate['(bt)'] / rate['(c)']:.2f}   (target >= 5)")
    print(f"peak RSS (b) = {peaks['(b)'] / 1e6:.0f} MB, (bt) = {peaks['(bt)'] / 1e6:.0f} MB   (target < 1000)")

if __name__ == "__main__":
    main()
