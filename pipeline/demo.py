"""``vlprep demo``: the whole chain, offline, on a small sample built here.

The sample has the real layout (subset tar → ``.xz`` members → tar of ``.txt``), including the
dirt real OpenWebText throws at a pipeline (CRLF and lone CR, NUL bytes, blank and
whitespace-only lines, invalid UTF-8, a literal ``<|endoftext|>``, U+2028, CJK, emoji). It is
served over HTTP on 127.0.0.1 as a mirror, so fetch → binarize → verify run the very code paths of
a real download.
"""
from __future__ import annotations

import hashlib
import io
import lzma
import random
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .engines import textbin as owt
from .fileio import atomic_path, ensure_dir
from .layout import Layout
from .localserve import serve_directory
from .records.owt import subset_relpath
from .sources.checksums import SUMS_NAME, format_sha256sums

WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but "
    "have an they you were her she there one all we their been has would when more will who if no out so "
    "said what up its about than into them can only other new some could time these two may then do first "
    "any my now such like our over man me even most made after also did many before must through back "
    "years where much your way well down should because each just those people how too little state good "
    "very make world still own see men work long get here between both life being under never day same "
    "another know while last might us great old year off come since against go came right used take three "
    "data model training vision language image caption token research network learning distillation"
).split()
DIRT = (
    "Windows line\r\nends here\r\n",
    "old Mac\rline ends\r",
    "a NUL\x00 inside and \x00\x00 more",
    "\n\n   \n\t\n",
    "literal <|endoftext|> is only text",
    "line\u2028separator and next\u0085line stay inside",
    "CJK 漢字とかな and emoji 🙂🚀 and accents café naïve",
    "tabs\tand  double  spaces   inside",
)
INVALID_UTF8 = b"broken \xff\xfe bytes \xc3 here\n"


@dataclass(frozen=True)
class Vocabulary:
    """Words to draw from, uniformly or with cumulative weights (e.g. Zipf's law, as real text)."""

    words: tuple[str, ...] = tuple(WORDS)
    cum_weights: tuple[float, ...] | None = None

    def draw(self, rng: random.Random, k: int) -> list[str]:
        if self.cum_weights is None:
            return [rng.choice(self.words) for _ in range(k)]
        return rng.choices(self.words, cum_weights=self.cum_weights, k=k)


def sample_document(rng: random.Random, dirty: bool, paragraphs: int = 6,
                    vocabulary: Vocabulary = Vocabulary()) -> bytes:
    """One English-like document; ``dirty`` mixes in the edge cases above."""
    parts: list[str] = []
    for _ in range(rng.randint(1, paragraphs)):
        words = vocabulary.draw(rng, rng.randint(5, 120))
        sentence = " ".join(words).capitalize() + rng.choice(".!?")
        parts.append(sentence)
        if dirty and rng.random() < 0.25:
            parts.append(rng.choice(DIRT))
        if rng.random() < 0.3:
            parts.append("")
    raw = ("\n".join(parts) + "\n").encode("utf-8")
    if dirty and rng.random() < 0.05:
        raw += INVALID_UTF8
    return raw


def _tar_bytes(files: list[tuple[str, bytes]], compress: Callable[[bytes], bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_500_000_000, 0o644
            archive.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    return compress(data) if compress else data


def write_owt_subset(path: Path, subset: int, chunks: int, docs_per_chunk: int, seed: int = 0,
                     dirty: bool = True, empty_docs: bool = True, preset: int = 6, paragraphs: int = 6,
                     vocabulary: Vocabulary = Vocabulary()) -> int:
    """Write an OpenWebText-format subset tar; return the number of documents in it."""
    rng = random.Random(f"{seed}-{subset}")
    members: list[tuple[str, bytes]] = []
    n_docs = 0
    for chunk in range(chunks):
        docs = []
        for doc in range(docs_per_chunk):
            body = sample_document(rng, dirty, paragraphs, vocabulary)
            if empty_docs and rng.random() < 0.02:
                body = rng.choice([b"", b"\n\n  \r\n", b"\x00\n"])
            docs.append((f"{subset:02d}{chunk:04d}{doc:04d}-{hashlib.md5(body).hexdigest()}.txt", body))
        n_docs += len(docs)
        inner = _tar_bytes(docs, lambda data: lzma.compress(data, preset=preset))
        members.append((f"openwebtext/urlsf_subset{subset:02d}-{chunk + 1}_data.xz", inner))
    with atomic_path(path) as tmp:
        tmp.write_bytes(_tar_bytes(members))
    return n_docs


def build_owt_mirror(root: Path, subsets: tuple[int, ...] = (0, 1, 2, 3, 4, 5), chunks: int = 2,
                     docs_per_chunk: int = 25, seed: int = 0) -> int:
    """A mirror folder holding sample subsets and a ``SHA256SUMS``; return the document count."""
    total = 0
    sums = {}
    for subset in subsets:
        relpath = subset_relpath(subset)
        total += write_owt_subset(root / relpath, subset, chunks, docs_per_chunk, seed)
        sums[relpath] = hashlib.sha256((root / relpath).read_bytes()).hexdigest()
    (root / SUMS_NAME).write_text(format_sha256sums(sums))
    return total


@dataclass
class DemoResult:
    data_dir: Path
    documents: int
    stats: dict
    seconds: float
    outputs: list[Path]


def _image_text_demo(layout: Layout, workers: int, say: Callable[[str], None]) -> list[Path]:
    """COCO and Visual Genome samples: fetch over HTTP → shard → verify → stats."""
    from .datasets import coco, vg
    from .engines import imagetext
    from .reports import table
    from .sampledata import build_coco_mirror, build_vg_mirror

    root = layout.root / "demo-mirror"
    splits = build_coco_mirror(root / "coco")
    build_vg_mirror(root / "vg", splits)
    with serve_directory(root) as url:
        coco.fetch(layout, mirror=f"{url}/coco", allow_unpublished=True)
        vg.fetch(layout, mirror=f"{url}/vg")
    say("fetch coco + fetch vg: ok (sample zips of real JPEGs served on 127.0.0.1)")
    say("  the sample COCO zips are not the published files: accepted as with --allow-unpublished, "
        "checked against the sample's SHA256SUMS and recorded as checked: mirror-sums, never as verified")
    trial = 1_000_000  # sample data: skip the check against the published image counts
    coco.shard(layout, workers=workers, limit=trial)
    vg.shard(layout, "regions", workers=workers, limit=trial)
    stats = {}
    stats["coco"] = coco.shard(layout, "karpathy-test", workers=workers, limit=trial)
    stats["vg"] = vg.shard(layout, "concat", workers=workers, limit=trial)
    outputs = []
    for name in ("coco", "vg"):
        imagetext.verify(layout, name)
        say(f"shard {name} + verify {name}: ok")
        for line in imagetext.summary_lines(stats[name]):
            say("  " + line)
        outputs += sorted(layout.out(name).glob("*.index.json")) + [layout.out(name) / "stats.json"]
    report = table.build_table(layout, ("coco", "vg", "cc3m"))
    say("stats coco vg cc3m (Table 1 of the sample):")
    for line in table.summary_lines(report):
        say("  " + line)
    return outputs + report.written


def _cc3m_demo(layout: Layout, workers: int, say: Callable[[str], None]) -> list[Path]:
    """Conceptual Captions: a TSV of a small web on 127.0.0.1 that fails as the real one does."""
    from .datasets import cc3m
    from .engines import imagetext, webcrawl
    from .sampleweb import serve_web, write_tsv

    kinds = ["good", "404", "png", "redirect", "html", "good", "noai", "webp", "truncated", "bomb", "flaky",
             "403", "empty-url", "crlf", "good", "empty-caption", "good", "png", "good", "redirect"] * 2
    tsv = layout.raw(cc3m.NAME) / "demo" / "Train_GCC-training.tsv"
    tsv.parent.mkdir(parents=True, exist_ok=True)
    config = webcrawl.DownloadConfig(timeout=3.0, retries=1, processes=max(1, workers), threads=8, max_window=24,
                                     shard_samples=8)
    with serve_web() as web:
        write_tsv(tsv, web, kinds)
        stats = webcrawl.fetch_first(layout, cc3m.url_list(tsv), 16, config)
    imagetext.verify(layout, cc3m.NAME)
    say("fetch cc3m + verify cc3m: ok (the first 16 reachable rows of a 40-row TSV, web served on 127.0.0.1)")
    for line in webcrawl.summary_lines(stats):
        say("  " + line)
    out = layout.out(cc3m.NAME)
    return [out / "train.index.json", out / "stats.json", layout.manifests() / "cc3m-train-16.tsv.gz"]


def _imagenet_demo(layout: Layout, workers: int, say: Callable[[str], None]) -> list[Path]:
    """ImageNet: tiny hub-layout tarballs (with a CMYK, a PNG-named-JPEG and a truncated image)."""
    from .engines import bucketing as imagenet, imagetext
    from .sampledata import build_imagenet_mirror

    root = layout.root / "demo-mirror" / "imagenet"
    build_imagenet_mirror(root)
    with serve_directory(root) as url:
        imagenet.fetch(layout, mirror=url)
    trial = 1_000_000  # sample data: skip the check against the published counts
    imagenet.shard(layout, "train", workers=workers, limit=trial, shard_samples=10)
    stats = imagenet.shard(layout, "val", workers=workers, limit=trial, shard_samples=10)
    imagetext.verify(layout, imagenet.NAME)
    say("fetch imagenet + shard imagenet + verify imagenet: ok (classes.py and 6 tarballs served on 127.0.0.1)")
    for line in imagenet.summary_lines(stats):
        say("  " + line)
    out = layout.out(imagenet.NAME)
    return [out / "train.index.json", out / "val.index.json", out / "stats.json"]


def _glue_demo(layout: Layout, say: Callable[[str], None]) -> list[Path]:
    """GLUE: tiny parquet files of all nine tasks, binarized in the RoBERTa GLUE layout."""
    from .engines import sentencebin as glue
    from .sampledata import build_glue_mirror

    root = layout.root / "demo-mirror" / "glue"
    build_glue_mirror(root)
    glue.fetch(layout, mirror=str(root))
    glue.binarize(layout, limit=1_000_000)  # sample data: skip the check against the published sizes
    found = glue.verify(layout)
    say(f"fetch glue + binarize glue + verify glue: ok ({len(found)} tasks, "
        f"{sum(f['items'] for f in found.values()):,} items in the RoBERTa GLUE layout)")
    return [layout.out(glue.NAME) / "MNLI-bin", layout.out(glue.NAME) / "stats.json"]


def _trainer_demo(layout: Layout, say: Callable[[str], None]) -> list[Path]:
    """The trainer side: a preview sheet, and one batch of each loader when torch is installed."""
    from .reports import preview

    try:
        from .loader import image_dataset, pair_dataset, text_dataset
    except ModuleNotFoundError:
        sheet = preview.preview(layout, "coco", None, 8, augmented=False)
        say(f"preview coco: {sheet.path} (install vlprep[loader] for the trainer-side datasets)")
        return [sheet.path]
    sheet = preview.preview(layout, "coco", None, 12, augmented=True)
    say(f"preview coco --augmented: {sheet.path}")
    image, tokens, mask = next(iter(pair_dataset(layout.out("coco") / "karpathy-train")))
    say(f"loader: pair_dataset coco -> image {tuple(image.shape)} {image.dtype}, tokens {tuple(tokens.shape)} "
        f"({int((~mask).sum())} real), image_dataset imagenet -> class "
        f"{next(iter(image_dataset(layout.out('imagenet') / 'train')))[1]}, text_dataset owt -> "
        f"{len(text_dataset(layout.out('owt'), 'train'))} blocks of 512")
    return [sheet.path]


def run_demo(data_dir: Path, workers: int = 2, say: Callable[[str], None] = print) -> DemoResult:
    """Build the sample, serve it, and run fetch → binarize → verify → stats on it."""
    started = time.monotonic()
    layout = Layout(Path(data_dir))
    mirror_dir = ensure_dir(layout.root / "demo-mirror")
    documents = build_owt_mirror(mirror_dir)
    say(f"sample: {documents} OpenWebText-format documents in 6 subsets under {mirror_dir}")
    with serve_directory(mirror_dir) as url:
        say(f"serving it as a mirror at {url}")
        report = owt.fetch(layout, subsets=(0, 1, 2, 3, 4, 5), mirror=url)
    say(f"fetch owt: {len(report.fetched)} fetched, {len(report.skipped)} already on disk ({report.tally()})")
    stats = owt.binarize(layout, owt.BinarizeConfig(), workers=workers)
    owt.verify(layout)
    say("binarize owt + verify owt: ok")
    for line in owt.summary_lines(stats):
        say("  " + line)
    out = layout.out(owt.NAME)
    outputs = [out / name for name in sorted(stats["files"])] + [out / "stats.json"]
    outputs += _cc3m_demo(layout, workers, say)
    outputs += _image_text_demo(layout, workers, say)
    outputs += _imagenet_demo(layout, workers, say)
    outputs += _glue_demo(layout, say)
    from .reports import manifests

    files = manifests.build(layout, ("owt", "coco", "vg", "cc3m", "imagenet", "glue"))
    say(f"manifest build: {len(files)} manifests and their README.md index in {layout.manifests()}")
    outputs.append(layout.manifests() / "README.md")
    outputs += _trainer_demo(layout, say)
    return DemoResult(layout.root, documents, stats, time.monotonic() - started, outputs)
