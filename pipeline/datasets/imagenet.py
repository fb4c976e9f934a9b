"""ImageNet-1k (ILSVRC 2012) → WebDataset shards of image + class index.

The recipe: the gated hub repository, its tarballs, the published counts and the class order
(``classes.py``, torchvision's sorted-synset order), handed to the two-phase tarball bucketing of
``engines/bucketing.py`` as a :class:`~vlprep.pipeline.engines.bucketing.TarballSource`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..caps import DEFAULT_CAPS
from ..layout import Layout
from ..records import imagenet as records
from . import shards
from ..sinks import manifests as manifest_sink
from ..sinks.features import IMAGE_FIELDS, INT64, STRING, Field, SampleSchema
from ..sinks.folder import About
from .recipe import FETCH_COMMON, Manifest, Recipe, Run, Stage, option

if TYPE_CHECKING:
    from ..engines.bucketing import TarballSource
    from ..engines.fetch import FetchReport

NAME = "imagenet"
SPLITS = ("train", "val")
DEFAULT_REVISION = "main"
EXPECTED = {"train": {"images": 1_281_167, "classes": 1000, "max_per_class": 1300, "min_per_class": 732},
            "val": {"images": 50_000, "classes": 1000, "max_per_class": 50, "min_per_class": 50}}
"""The published counts of each split, checked unless ``--limit`` is set."""
WORK_VERSION = "imagenet-3"
"""Hashed into every work key: changed when the shard bytes for the same tarballs change."""


def source() -> TarballSource:
    """ImageNet as the bucketing engine reads it (built when a stage runs: the engine is heavy to import)."""
    from ..engines.bucketing import TarballSource

    return TarballSource(name=NAME, title="ImageNet", work_version=WORK_VERSION, classes_file=records.CLASSES_FILE,
                         read_classes=records.read_classes, tarballs=dict(records.TARBALLS), expected=EXPECTED,
                         iter_images=records.iter_images, class_of=records.synset_of, key_of=records.key_of,
                         class_word="synset")


def fetch(layout: Layout, mirror: str | None = None, with_test: bool = False,
          revision: str = DEFAULT_REVISION) -> FetchReport:
    """classes.py and the train/val tarballs (test on request), from the gated hub (HF_TOKEN) or a mirror."""
    from ..engines.fetch import fetch_from_hub, fetch_from_mirror
    from ..sources.mirror import Mirror

    relpaths = [records.CLASSES_FILE, *records.TARBALLS["train"], *records.TARBALLS["val"]]
    if with_test:
        relpaths += list(records.TARBALLS["test"])
    if mirror:
        return fetch_from_mirror(layout.raw(NAME), relpaths, Mirror(mirror))
    return fetch_from_hub(layout.raw(NAME), relpaths, records.REPO, revision)


def shard(layout: Layout, split: str = "train", workers: int = 1, seed: int = 0, resize: int | None = None,
          limit: int | None = None, shard_samples: int = 10_000, force: bool = False,
          max_member: int = DEFAULT_CAPS.member_bytes) -> dict:
    """One split as WebDataset shards in ``out/imagenet``; return its stats.json."""
    from ..engines import bucketing

    return bucketing.shard(layout, source(), split, workers=workers, seed=seed, resize=resize, limit=limit,
                           shard_samples=shard_samples, force=force, max_member=max_member)


# ------------------------------------------------------------------------------------------ recipe


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


def fetch_stage(run: Run, options: FetchOptions) -> None:
    run.say_fetch(fetch(run.layout, run.common.mirror, options.with_test, options.revision or DEFAULT_REVISION),
                  f"hub {records.REPO}@{{commit}}")


def shard_stage(run: Run, options: ShardOptions) -> None:
    from ..engines import bucketing

    stats = shard(run.layout, options.split, workers=run.common.workers, seed=options.seed, resize=options.resize,
                  limit=run.common.limit, shard_samples=options.shard_samples, force=options.force,
                  max_member=options.max_member_mb << 20)
    run.say_built(bucketing.summary_lines(stats))


HUB_FILES = "https://huggingface.co/datasets/" + records.REPO + "/resolve/main/"

SAMPLE = SampleSchema(
    fields=(
        Field("file_name", STRING, "The image's file name in its tarball (<id>_<synset>.JPEG, or "
              "ILSVRC2012_val_<8 digits>_<synset>.JPEG)."),
        Field("synset", STRING, "WordNet synset id of the class (n01440764)."),
        Field("label", INT64, "Class index 0-999: the synset's position in classes.py (torchvision's order); "
              "the same as the .cls member."),
        Field("class_name", STRING, "The class's names, as classes.py gives them."),
        *IMAGE_FIELDS,
    ),
    image="the ImageNet image, JPEG",
    label="class index 0-999, decimal text (torchvision's order)",
    label_name="class_name",
)
"""One image with its class."""

ABOUT = About(
    pretty_name="ImageNet-1k (ILSVRC 2012)",
    summary="The ILSVRC 2012 classification images, 1,000 classes: 1,281,167 train and 50,000 validation "
            "images, each with its class index in torchvision's (sorted synset) order.",
    homepage="https://www.image-net.org",
    version="2012",
    license="other",
    license_name="imagenet-terms-of-access",
    license_url="https://www.image-net.org/download.php",
    license_note="ImageNet is distributed for non-commercial research and educational use under the ImageNet "
                 "terms of access (accepted on the image-net.org download page and on the gated Hugging Face "
                 "repository ILSVRC/imagenet-1k). The images belong to their owners; do not redistribute them.",
    citation="""@article{russakovsky2015imagenet,
  title={{ImageNet} Large Scale Visual Recognition Challenge},
  author={Russakovsky, Olga and Deng, Jia and Su, Hao and Krause, Jonathan and Satheesh, Sanjeev and Ma, Sean and
          Huang, Zhiheng and Karpathy, Andrej and Khosla, Aditya and Bernstein, Michael and Berg, Alexander C. and
          Fei-Fei, Li},
  journal={International Journal of Computer Vision (IJCV)},
  volume={115},
  number={3},
  pages={211--252},
  year={2015}
}""",
    task_categories=("image-classification",),
    sources={f"{NAME}/{relpath}": HUB_FILES + relpath
             for relpath in (records.CLASSES_FILE, *records.TARBALLS["train"], *records.TARBALLS["val"])},
    published={split: (expected["images"], "images") for split, expected in EXPECTED.items()},
    roles={"train": "train", "val": "val"},
)


def summary(stats: dict) -> list[str]:
    from ..engines import bucketing

    return bucketing.summary_lines(stats)


RECIPE = Recipe(
    name=NAME,
    title="ImageNet-1k 2012, image + class index in torchvision's order (labels)",
    kind="labels",
    builder="shard",
    stages={
        "fetch": Stage(fetch_stage, FetchOptions, "Download and check ImageNet's classes.py and tarballs into "
                       "DATA_DIR/raw/imagenet.",
                       ("vlprep fetch imagenet", "vlprep fetch imagenet --mirror /datasets/imagenet-1k"),
                       common=FETCH_COMMON,
                       details="From the gated hub repository ILSVRC/imagenet-1k (accept its terms on the dataset "
                       "page and export HF_TOKEN), checked against the hub's LFS sha256, or from --mirror. "
                       "classes.py is parsed, never executed."),
        "shard": Stage(shard_stage, ShardOptions, "Write ImageNet as WebDataset shards in DATA_DIR/out/imagenet.",
                       ("vlprep shard imagenet --workers 8", "vlprep shard imagenet --split val --resize 256"),
                       common=("workers", "limit"), limit=shards.SHARD_LIMIT,
                       details="<key>.jpg, <key>.cls (class index 0-999 in classes.py order, torchvision's) and "
                       "<key>.json (synset, class name, file name), streamed from the tarballs in two resumable "
                       "phases; train shuffled with --seed, val in file order; the published counts are checked "
                       "unless --limit is set." + shards.READERS_NOTE),
        "verify": shards.verify_stage(NAME, "class indices in 0..999 and equal to their json"),
        "preview": shards.preview_stage(NAME, PreviewOptions, ("vlprep preview imagenet --split val",)),
    },
    manifest=Manifest("imagenet-*.tsv.gz", manifest_sink.LABELLED_FILES,
                      "ImageNet file names of the split with their class index (0-999, classes.py order), or "
                      "skipped and why"),
    demo="vlprep.pipeline.samples.demo:imagenet",
    summary=summary,
    splits=SPLITS,
    default_split="train",
    pretraining_split="train",
    sample=SAMPLE,
    about=ABOUT,
)
