"""ImageNet-1k (ILSVRC 2012) → WebDataset shards of image + class index.

The recipe: the gated hub repository, its tarballs, the published counts and the class order
(``classes.py``, torchvision's sorted-synset order). The two-phase tarball bucketing and shard
writing is done by ``engines/bucketing.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..records import imagenet as records
from . import shards
from .recipe import FETCH_COMMON, Manifest, Recipe, Run, Stage, option

NAME = "imagenet"
SPLITS = ("train", "val")


@dataclass(frozen=True)
class FetchOptions:
    with_test: bool = option(False, "Also fetch data/test_images.tar.gz (no labels).", type=bool)
    revision: str | None = option(None, "Hub revision (branch, tag or commit) of ILSVRC/imagenet-1k. Default: main.")


@dataclass(frozen=True)
class ShardOptions(shards.ShardOptions):
    split: str = option("train", "train (shuffled with --seed) or val (file order).", choices=SPLITS)


@dataclass(frozen=True)
class PreviewOptions(shards.PreviewOptions):
    split: str | None = option(None, "Split to show (default: train).", choices=SPLITS)


def fetch(run: Run, options: FetchOptions) -> None:
    from ..engines import bucketing
    from ..redact import redact_url

    mirror = run.common.mirror
    report = bucketing.fetch(run.layout, mirror, options.with_test, options.revision or bucketing.DEFAULT_REVISION)
    origin = f"mirror {redact_url(mirror)}" if mirror else f"hub {records.REPO}@{report.commit}"
    for line in report.summary(NAME, origin, run.layout.raw(NAME)):
        run.say(line)


def shard(run: Run, options: ShardOptions) -> None:
    from ..engines import bucketing

    stats = bucketing.shard(run.layout, options.split, workers=run.common.workers, seed=options.seed,
                            resize=options.resize, limit=run.common.limit, shard_samples=options.shard_samples,
                            force=options.force, max_member=options.max_member_mb << 20)
    for line in bucketing.summary_lines(stats):
        run.say(line)
    run.say(f"written: {run.layout.out(NAME)}/")


def summary(stats: dict) -> list[str]:
    from ..engines import bucketing

    return bucketing.summary_lines(stats)


RECIPE = Recipe(
    name=NAME,
    title="ImageNet-1k 2012, image + class index in torchvision's order (labels)",
    kind="labels",
    builder="shard",
    stages={
        "fetch": Stage(fetch, FetchOptions, "Download and check ImageNet's classes.py and tarballs into "
                       "DATA_DIR/raw/imagenet.",
                       ("vlprep fetch imagenet", "vlprep fetch imagenet --mirror /datasets/imagenet-1k"),
                       common=FETCH_COMMON,
                       details="From the gated hub repository ILSVRC/imagenet-1k (accept its terms on the dataset "
                       "page and export HF_TOKEN), checked against the hub's LFS sha256, or from --mirror. "
                       "classes.py is parsed, never executed."),
        "shard": Stage(shard, ShardOptions, "Write ImageNet as WebDataset shards in DATA_DIR/out/imagenet.",
                       ("vlprep shard imagenet --workers 8", "vlprep shard imagenet --split val --resize 256"),
                       common=("workers", "limit"), limit=shards.SHARD_LIMIT,
                       details="<key>.jpg, <key>.cls (class index 0-999 in classes.py order, torchvision's) and "
                       "<key>.json (synset, class name, file name), streamed from the tarballs in two resumable "
                       "phases; train shuffled with --seed, val in file order; the published counts are checked "
                       "unless --limit is set."),
        "verify": shards.verify_stage(NAME, "class indices in 0..999 and equal to their json"),
        "preview": shards.preview_stage(NAME, PreviewOptions, ("vlprep preview imagenet --split val",)),
    },
    manifest=Manifest("imagenet-*.tsv.gz", ("file", "label", "status"),
                      "ImageNet file names of the split with their class index (0-999, classes.py order), or "
                      "skipped and why"),
    demo="vlprep.pipeline.samples.demo:imagenet",
    summary=summary,
    splits=SPLITS,
    default_split="train",
    pretraining_split="train",
)
