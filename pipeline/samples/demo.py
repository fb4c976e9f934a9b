"""``vlprep demo``: every dataset's chain, offline, on small samples built here.

One step per dataset (:data:`STEPS`, in the order the demo runs them): each builds its sample
(:mod:`.text`, :mod:`.images`, :mod:`.web`), serves it on 127.0.0.1 (:mod:`.serve`) so that fetch
runs the very code paths of a real download, then binarizes or shards, verifies, prints its summary
and returns the files it wrote. The steps across datasets come after them: Table 1 of the sample
(over those of coco, vg and cc3m that ran), ``vlprep manifest build`` (over every dataset that ran)
and the trainer side (when owt, coco and imagenet ran).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..fileio import ensure_dir
from ..layout import Layout
from .serve import serve_directory

Say = Callable[[str], None]
Step = Callable[[Layout, int, Say], list[Path]]

MIRROR = "demo-mirror"
"""The folder under the data dir that holds the samples, served as mirrors."""
TRIAL = 1_000_000
"""A ``limit`` no sample reaches: sample data skips the checks against the published counts and sizes."""


def owt(layout: Layout, workers: int, say: Say) -> list[Path]:
    """OpenWebText: 300 dirty documents in 6 subset tars, served as a mirror → fetch → binarize → verify."""
    from ..engines import textbin
    from .text import build_owt_mirror

    mirror_dir = ensure_dir(layout.root / MIRROR)
    documents = build_owt_mirror(mirror_dir)
    say(f"sample: {documents} OpenWebText-format documents in 6 subsets under {mirror_dir}")
    with serve_directory(mirror_dir) as url:
        say(f"serving it as a mirror at {url}")
        report = textbin.fetch(layout, subsets=(0, 1, 2, 3, 4, 5), mirror=url)
    say(f"fetch owt: {len(report.fetched)} fetched, {len(report.skipped)} already on disk ({report.tally()})")
    stats = textbin.binarize(layout, textbin.BinarizeConfig(), workers=workers)
    textbin.verify(layout)
    say("binarize owt + verify owt: ok")
    for line in textbin.summary_lines(stats):
        say("  " + line)
    out = layout.out(textbin.NAME)
    return [out / name for name in sorted(stats["files"])] + [out / "stats.json"]


def cc3m(layout: Layout, workers: int, say: Say) -> list[Path]:
    """Conceptual Captions: a TSV of a small web on 127.0.0.1 that fails as the real one does."""
    from ..engines import imagetext, webcrawl
    from .web import serve_web, write_tsv

    kinds = ["good", "404", "png", "redirect", "html", "good", "noai", "webp", "truncated", "bomb", "flaky",
             "403", "empty-url", "crlf", "good", "empty-caption", "good", "png", "good", "redirect"] * 2
    tsv = layout.raw(webcrawl.NAME) / "demo" / "Train_GCC-training.tsv"
    tsv.parent.mkdir(parents=True, exist_ok=True)
    config = webcrawl.DownloadConfig(timeout=3.0, retries=1, processes=max(1, workers), threads=8, max_window=24,
                                     shard_samples=8)
    with serve_web() as web:
        write_tsv(tsv, web, kinds)
        stats = webcrawl.fetch_first(layout, tsv, 16, config)
    imagetext.verify(layout, webcrawl.NAME)
    say("fetch cc3m + verify cc3m: ok (the first 16 reachable rows of a 40-row TSV, web served on 127.0.0.1)")
    for line in webcrawl.summary_lines(stats):
        say("  " + line)
    out = layout.out(webcrawl.NAME)
    return [out / "train.index.json", out / "stats.json", layout.manifests() / "cc3m-train-16.tsv.gz"]


def coco(layout: Layout, workers: int, say: Say) -> list[Path]:
    """COCO captions: sample zips of real JPEGs and the Karpathy split → fetch → shard → verify."""
    from ..datasets import coco as dataset
    from .images import build_coco_mirror

    root = layout.root / MIRROR
    build_coco_mirror(root / "coco")
    with serve_directory(root) as url:
        dataset.fetch(layout, mirror=f"{url}/coco", allow_unpublished=True)
    say("fetch coco: ok (sample zips of real JPEGs served on 127.0.0.1)")
    say("  the sample COCO zips are not the published files: accepted as with --allow-unpublished, "
        "checked against the sample's SHA256SUMS and recorded as checked: mirror-sums, never as verified")
    dataset.shard(layout, workers=workers, limit=TRIAL)
    stats = dataset.shard(layout, "karpathy-test", workers=workers, limit=TRIAL)
    return _verify_image_text(layout, "coco", stats, say)


def vg(layout: Layout, workers: int, say: Say) -> list[Path]:
    """Visual Genome: sample zips, some images carrying COCO ids → fetch → shard regions and concat → verify.

    The sample's COCO ids are those of the coco step's sample; the leak guard reads COCO's Karpathy
    split from what the coco step fetched, so this step runs after it (:func:`run_demo` sees to that).
    """
    from ..datasets import vg as dataset
    from .images import build_vg_mirror, coco_split_ids

    root = layout.root / MIRROR
    build_vg_mirror(root / "vg", coco_split_ids())
    with serve_directory(root) as url:
        dataset.fetch(layout, mirror=f"{url}/vg")
    say("fetch vg: ok (sample zips of real JPEGs served on 127.0.0.1)")
    dataset.shard(layout, "regions", workers=workers, limit=TRIAL)
    stats = dataset.shard(layout, "concat", workers=workers, limit=TRIAL)
    return _verify_image_text(layout, "vg", stats, say)


def _verify_image_text(layout: Layout, name: str, stats: dict, say: Say) -> list[Path]:
    from ..engines import imagetext

    imagetext.verify(layout, name)
    say(f"shard {name} + verify {name}: ok")
    for line in imagetext.summary_lines(stats):
        say("  " + line)
    return sorted(layout.out(name).glob("*.index.json")) + [layout.out(name) / "stats.json"]


def imagenet(layout: Layout, workers: int, say: Say) -> list[Path]:
    """ImageNet: tiny hub-layout tarballs (with a CMYK, a PNG-named-JPEG and a truncated image)."""
    from ..engines import bucketing, imagetext
    from .images import build_imagenet_mirror

    root = layout.root / MIRROR / "imagenet"
    build_imagenet_mirror(root)
    with serve_directory(root) as url:
        bucketing.fetch(layout, mirror=url)
    bucketing.shard(layout, "train", workers=workers, limit=TRIAL, shard_samples=10)
    stats = bucketing.shard(layout, "val", workers=workers, limit=TRIAL, shard_samples=10)
    imagetext.verify(layout, bucketing.NAME)
    say("fetch imagenet + shard imagenet + verify imagenet: ok (classes.py and 6 tarballs served on 127.0.0.1)")
    for line in bucketing.summary_lines(stats):
        say("  " + line)
    out = layout.out(bucketing.NAME)
    return [out / "train.index.json", out / "val.index.json", out / "stats.json"]


def glue(layout: Layout, workers: int, say: Say) -> list[Path]:
    """GLUE: tiny parquet files of all nine tasks, binarized in the RoBERTa GLUE layout (``workers`` unused)."""
    from ..engines import sentencebin
    from .text import build_glue_mirror

    root = layout.root / MIRROR / "glue"
    build_glue_mirror(root)
    sentencebin.fetch(layout, mirror=str(root))
    sentencebin.binarize(layout, limit=TRIAL)
    found = sentencebin.verify(layout)
    say(f"fetch glue + binarize glue + verify glue: ok ({len(found)} tasks, "
        f"{sum(f['items'] for f in found.values()):,} items in the RoBERTa GLUE layout)")
    return [layout.out(sentencebin.NAME) / "MNLI-bin", layout.out(sentencebin.NAME) / "stats.json"]


STEPS: dict[str, Step] = {"owt": owt, "cc3m": cc3m, "coco": coco, "vg": vg, "imagenet": imagenet, "glue": glue}
"""One step per dataset, in the order the demo runs them."""
NEEDS = {"vg": ("coco",)}
"""Steps that need another's output: VG's leak guard reads the Karpathy split the coco step fetched."""
TABLE_1 = ("coco", "vg", "cc3m")
MANIFESTS = ("owt", "coco", "vg", "cc3m", "imagenet", "glue")
TRAINER = ("owt", "coco", "imagenet")


def table_1(layout: Layout, names: tuple[str, ...], say: Say) -> list[Path]:
    """Table 1 of the sample over ``names`` (image-text datasets already sharded)."""
    from ..reports import table

    report = table.build_table(layout, names)
    say(f"stats {' '.join(names)} (Table 1 of the sample):")
    for line in table.summary_lines(report):
        say("  " + line)
    return report.written


def manifest_build(layout: Layout, names: tuple[str, ...], say: Say) -> list[Path]:
    """``vlprep manifest build`` over ``names``."""
    from ..reports import manifests

    files = manifests.build(layout, names)
    say(f"manifest build: {len(files)} manifests and their README.md index in {layout.manifests()}")
    return [layout.manifests() / "README.md"]


def trainer(layout: Layout, say: Say) -> list[Path]:
    """The trainer side: a preview sheet, and one batch of each loader when torch is installed."""
    from ..reports import preview

    try:
        from ..loader import image_dataset, pair_dataset, text_dataset
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


@dataclass
class DemoResult:
    data_dir: Path
    steps: tuple[str, ...]
    seconds: float
    outputs: list[Path]


def plan(steps: Iterable[str] | None = None) -> tuple[str, ...]:
    """The dataset steps to run for ``steps`` (default: all): with those they need, in the order of STEPS."""
    wanted = set(STEPS if steps is None else steps)
    unknown = sorted(wanted - set(STEPS))
    if unknown:
        raise ValueError(f"unknown demo step(s): {', '.join(unknown)}; the steps are {', '.join(STEPS)}")
    for name in list(wanted):
        wanted.update(NEEDS.get(name, ()))
    return tuple(name for name in STEPS if name in wanted)


def run_demo(data_dir: Path, workers: int = 2, say: Say = print, steps: Iterable[str] | None = None) -> DemoResult:
    """Build the samples, serve them, and run fetch → binarize/shard → verify → stats on them.

    ``steps`` names dataset steps of :data:`STEPS` (default: all of them); they run in the order of
    STEPS, with the steps they need, then the steps across the datasets that ran.
    """
    started = time.monotonic()
    layout = Layout(Path(data_dir))
    names = plan(steps)
    outputs: list[Path] = []
    for name in names:
        outputs += STEPS[name](layout, workers, say)
    table_names = tuple(name for name in TABLE_1 if name in names)
    if table_names:
        outputs += table_1(layout, table_names, say)
    manifest_names = tuple(name for name in MANIFESTS if name in names)
    if manifest_names:
        outputs += manifest_build(layout, manifest_names, say)
    if all(name in names for name in TRAINER):
        outputs += trainer(layout, say)
    return DemoResult(layout.root, names, time.monotonic() - started, outputs)
