"""``vlprep demo``: every dataset's chain, offline, on small samples built here.

One step per recipe (its ``demo`` field names it; the registry's order is the order they run): each
builds its sample
(:mod:`.text`, :mod:`.images`, :mod:`.web`), serves it on 127.0.0.1 (:mod:`.serve`) so that fetch
runs the very code paths of a real download, then binarizes or shards, verifies, prints its summary
and returns the files it wrote. Each stage runs through the registry, exactly as the command line
runs it. The steps across datasets come after them: Table 1 of the sample (over the image-text
datasets that ran), ``vlprep manifest build`` (over every dataset that ran)
and the trainer side (when owt, coco and imagenet ran).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from ..fileio import ensure_dir
from ..layout import Layout
from .serve import serve_directory

Say = Callable[[str], None]
Step = Callable[[Layout, int, Say], list[Path]]

MIRROR = "demo-mirror"
"""The folder under the data dir that holds the samples, served as mirrors."""
TRIAL = 1_000_000
"""A ``limit`` no sample reaches: sample data skips the checks against the published counts and sizes."""


def _stage(layout: Layout, dataset: str, stage: str, say: Say, **options: Any) -> None:
    """Run ``vlprep STAGE DATASET`` with ``options`` through the registry, as the CLI does."""
    from ..datasets.registry import run_stage

    say(f"{stage} {dataset}:")
    run_stage(dataset, stage, layout.root, say=lambda line: say("  " + line), **options)


def _files(folder: Path) -> list[Path]:
    """Every file and folder the stages wrote in ``folder`` (the readers' ``.nv-meta/`` included)."""
    return sorted(p for p in folder.iterdir() if ".preview" not in p.name)


def owt(layout: Layout, workers: int, say: Say) -> list[Path]:
    """OpenWebText: 300 dirty documents in 6 subset tars, served as a mirror → fetch → binarize → verify."""
    from .text import build_owt_mirror

    mirror_dir = ensure_dir(layout.root / MIRROR)
    documents = build_owt_mirror(mirror_dir)
    with serve_directory(mirror_dir) as url:
        say(f"sample: {documents} OpenWebText-format documents in 6 subsets under {mirror_dir}, served at {url}")
        _stage(layout, "owt", "fetch", say, mirror=url)
    _stage(layout, "owt", "binarize", say, workers=workers)
    _stage(layout, "owt", "verify", say)
    return _files(layout.out("owt"))


def cc3m(layout: Layout, workers: int, say: Say) -> list[Path]:
    """Conceptual Captions: a TSV of a small web on 127.0.0.1 that fails as the real one does."""
    from .web import serve_web, write_tsv

    kinds = ["good", "404", "png", "redirect", "html", "good", "noai", "webp", "truncated", "bomb", "flaky",
             "403", "empty-url", "crlf", "good", "empty-caption", "good", "png", "good", "redirect"] * 2
    tsv = layout.root / MIRROR / "cc3m" / "Train_GCC-training.tsv"  # as a user's own copy: fetch brings it into raw/
    tsv.parent.mkdir(parents=True, exist_ok=True)
    with serve_web() as web:
        write_tsv(tsv, web, kinds)
        say(f"sample: a {len(kinds)}-row TSV of a web on 127.0.0.1 that fails as the real one does")
        _stage(layout, "cc3m", "fetch", say, tsv=tsv, limit=16, timeout=3.0, retries=1, workers=max(1, workers),
               threads=8, max_window=24, shard_samples=8)
    _stage(layout, "cc3m", "verify", say)
    return _files(layout.out("cc3m"))


LIST_KINDS = ["good", "404", "png", "invalid", "good", "html", "redirect", "empty-caption", "webp", "good", "quoted",
              "good"]
"""The rows of the CC12M, SBU and weblist samples: good images and failures of the web and of the list."""
CRAWL = {"limit": 5, "timeout": 3.0, "retries": 1, "threads": 8, "max_window": 12, "shard_samples": 4}


def cc12m(layout: Layout, workers: int, say: Say) -> list[Path]:
    """Conceptual 12M: a url-first TSV of the sample web."""
    from .lists import list_rows, write_url_first_tsv
    from .web import serve_web

    with serve_web() as web:
        tsv = write_url_first_tsv(layout.root / MIRROR / "cc12m" / "cc12m.tsv", list_rows(web, LIST_KINDS))
        say(f"sample: a {len(LIST_KINDS)}-row cc12m.tsv (url first) of a web on 127.0.0.1")
        _stage(layout, "cc12m", "fetch", say, tsv=tsv, workers=max(1, workers), **CRAWL)
    _stage(layout, "cc12m", "verify", say)
    return _files(layout.out("cc12m"))


def sbu(layout: Layout, workers: int, say: Say) -> list[Path]:
    """SBU Captions: the archive of parallel lists, served as a mirror."""
    from .lists import list_rows, write_sbu_archive
    from .web import serve_web

    root = ensure_dir(layout.root / MIRROR / "sbu")
    with serve_web() as web, serve_directory(root) as url:
        write_sbu_archive(root / "sbu-captions-all.tar.gz", list_rows(web, LIST_KINDS))
        say(f"sample: sbu-captions-all.tar.gz ({len(LIST_KINDS)} rows of parallel lists) served on 127.0.0.1")
        _stage(layout, "sbu", "fetch", say, mirror=url, workers=max(1, workers), **CRAWL)
    _stage(layout, "sbu", "verify", say)
    return _files(layout.out("sbu"))


def weblist(layout: Layout, workers: int, say: Say) -> list[Path]:
    """A list of the user's own: the same rows as a CSV with quoted fields (split train, the default)."""
    from .lists import list_rows, write_list
    from .web import serve_web

    with serve_web() as web:
        path = write_list(layout.root / MIRROR / "weblist" / "pairs.csv", "csv", list_rows(web, LIST_KINDS))
        say(f"sample: a {len(LIST_KINDS)}-row CSV (header id,caption,url; quoted fields) of a web on 127.0.0.1")
        _stage(layout, "weblist", "fetch", say, list_path=path, workers=max(1, workers), **CRAWL)
    _stage(layout, "weblist", "verify", say)
    return _files(layout.out("weblist"))


def coco(layout: Layout, workers: int, say: Say) -> list[Path]:
    """COCO captions: sample zips of real JPEGs and the Karpathy split → fetch → shard → verify."""
    from .images import build_coco_mirror

    root = layout.root / MIRROR
    build_coco_mirror(root / "coco")
    with serve_directory(root) as url:
        say("sample: COCO-format zips of real JPEGs served on 127.0.0.1; they are not the published files, so "
            "they are fetched with --allow-unpublished: checked against the sample's SHA256SUMS and recorded "
            "as checked: mirror-sums, never as verified")
        _stage(layout, "coco", "fetch", say, mirror=f"{url}/coco", allow_unpublished=True)
    _stage(layout, "coco", "shard", say, workers=workers, limit=TRIAL)
    _stage(layout, "coco", "shard", say, workers=workers, limit=TRIAL, split="karpathy-test")
    _stage(layout, "coco", "verify", say)
    return _files(layout.out("coco"))


def vg(layout: Layout, workers: int, say: Say) -> list[Path]:
    """Visual Genome: sample zips, some images carrying COCO ids → fetch → shard regions and concat → verify.

    The sample's COCO ids are those of the coco step's sample; the leak guard reads COCO's Karpathy
    split from what the coco step fetched, so this step runs after it (:func:`run_demo` sees to that).
    """
    from .images import build_vg_mirror, coco_split_ids

    root = layout.root / MIRROR
    build_vg_mirror(root / "vg", coco_split_ids())
    with serve_directory(root) as url:
        say("sample: Visual Genome-format zips of real JPEGs served on 127.0.0.1")
        _stage(layout, "vg", "fetch", say, mirror=f"{url}/vg")
    _stage(layout, "vg", "shard", say, workers=workers, limit=TRIAL)
    _stage(layout, "vg", "shard", say, workers=workers, limit=TRIAL, variant="concat")
    _stage(layout, "vg", "verify", say)
    return _files(layout.out("vg")) + _files(layout.out("vg-concat"))


def imagenet(layout: Layout, workers: int, say: Say) -> list[Path]:
    """ImageNet: tiny hub-layout tarballs (with a CMYK, a PNG-named-JPEG and a truncated image)."""
    from .images import build_imagenet_mirror

    root = layout.root / MIRROR / "imagenet"
    build_imagenet_mirror(root)
    with serve_directory(root) as url:
        say("sample: classes.py and 6 hub-layout tarballs served on 127.0.0.1")
        _stage(layout, "imagenet", "fetch", say, mirror=url)
    _stage(layout, "imagenet", "shard", say, workers=workers, limit=TRIAL, shard_samples=10)
    _stage(layout, "imagenet", "shard", say, workers=workers, limit=TRIAL, shard_samples=10, split="val")
    _stage(layout, "imagenet", "verify", say)
    return _files(layout.out("imagenet"))


def glue(layout: Layout, workers: int, say: Say) -> list[Path]:
    """GLUE: tiny parquet files of all nine tasks, binarized in the RoBERTa GLUE layout (``workers`` unused)."""
    from .text import build_glue_mirror

    root = layout.root / MIRROR / "glue"
    build_glue_mirror(root)
    say("sample: parquet files of GLUE's nine tasks")
    _stage(layout, "glue", "fetch", say, mirror=str(root))
    _stage(layout, "glue", "binarize", say, limit=TRIAL)
    _stage(layout, "glue", "verify", say)
    return _files(layout.out("glue"))  # the <TASK>-bin folders and stats.json


def flickr30k(layout: Layout, workers: int, say: Say) -> list[Path]:
    """Flickr30K: a Karpathy split file and an images tarball of real JPEGs → fetch → shard test → verify."""
    from .images import build_flickr30k_mirror

    root = layout.root / MIRROR
    build_flickr30k_mirror(root / "flickr30k")
    with serve_directory(root) as url:
        say("sample: Flickr30K's Karpathy split file and a flickr30k-images.tar.gz of real JPEGs served on 127.0.0.1 "
            "(the images archive has no published checksum: recorded, or checked against the mirror's sums)")
        _stage(layout, "flickr30k", "fetch", say, mirror=f"{url}/flickr30k", allow_unpublished=True)
    _stage(layout, "flickr30k", "shard", say, workers=workers, limit=TRIAL)
    _stage(layout, "flickr30k", "shard", say, workers=workers, limit=TRIAL, split="train")
    _stage(layout, "flickr30k", "verify", say)
    return _files(layout.out("flickr30k"))


def imagenet_prompts(layout: Layout, workers: int, say: Say) -> list[Path]:
    """ImageNet zero-shot prompts: the shipped 1,000 classes × 80 templates → binarize → verify."""
    _stage(layout, "imagenet-prompts", "binarize", say)
    _stage(layout, "imagenet-prompts", "verify", say)
    return _files(layout.out("imagenet-prompts"))


def dataset_steps() -> dict[str, Step]:
    """One step per recipe of the registry (its ``demo`` field), in registry order."""
    from ..datasets.recipe import load
    from ..datasets.registry import RECIPES

    return {recipe.name: load(recipe.demo) for recipe in RECIPES}


NEEDS = {"vg": ("coco",)}
"""Steps that need another's output: VG's leak guard reads the Karpathy split the coco step fetched."""
TRAINER = ("owt", "coco", "imagenet")


def table_1(layout: Layout, names: tuple[str, ...], say: Say) -> list[Path]:
    """Table 1 of the sample over the image-text datasets among ``names``."""
    from ..datasets.registry import recipe
    from ..reports import table

    names = tuple(name for name in names if recipe(name).kind == "pairs")
    if not names:
        return []
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
    return [p for f in files for p in f.paths] + [layout.manifests() / "README.md"]


def trainer(layout: Layout, say: Say) -> list[Path]:
    """The trainer side: a preview sheet, and one batch of each loader when torch is installed."""
    try:
        from ..loader import image_dataset, pair_dataset, text_dataset
    except ModuleNotFoundError:
        _stage(layout, "coco", "preview", say, limit=8)
        say("  (install vlprep[loader] for the trainer-side datasets and --augmented)")
        return [layout.out("coco") / "coco-karpathy-train.preview.png"]
    _stage(layout, "coco", "preview", say, limit=12, augmented=True)
    image, tokens, mask = next(iter(pair_dataset(layout.out("coco") / "coco-karpathy-train")))
    say(f"loader: pair_dataset coco -> image {tuple(image.shape)} {image.dtype}, tokens {tuple(tokens.shape)} "
        f"({int((~mask).sum())} real), image_dataset imagenet -> class "
        f"{next(iter(image_dataset(layout.out('imagenet') / 'imagenet-train')))[1]}, text_dataset owt -> "
        f"{len(text_dataset(layout.out('owt'), 'train'))} blocks of 512")
    evaluation(layout, say)
    return [layout.out("coco") / "coco-karpathy-train.preview-augmented.png"]


def evaluation(layout: Layout, say: Say) -> None:
    """The evaluation loaders, on what the steps built: retrieval maps of Flickr30K test, prompt tokens."""
    from ..loader import prompt_tokens, retrieval_dataset

    if (layout.out("flickr30k") / "flickr30k-test.index.json").exists():
        test = retrieval_dataset(layout.out("flickr30k") / "flickr30k-test")
        say(f"loader: retrieval_dataset flickr30k test -> {len(test)} images {tuple(test[0][0].shape)}, "
            f"{len(test.text_to_image)} captions {tuple(test.tokens.shape)}")
    if (layout.out("imagenet-prompts") / "stats.json").exists():
        tokens, mask = prompt_tokens(layout.out("imagenet-prompts"))
        say(f"loader: prompt_tokens imagenet-prompts -> tokens {tuple(tokens.shape)} ({int((~mask).sum())} real)")


@dataclass
class DemoResult:
    data_dir: Path
    steps: tuple[str, ...]
    seconds: float
    outputs: list[Path]


def plan(chosen: Iterable[str] | None = None) -> tuple[str, ...]:
    """The dataset steps to run for ``chosen`` (default: all): with those they need, in registry order."""
    every = dataset_steps()
    wanted = set(every if chosen is None else chosen)
    unknown = sorted(wanted - set(every))
    if unknown:
        raise ValueError(f"unknown demo step(s): {', '.join(unknown)}; the steps are {', '.join(every)}")
    for name in list(wanted):
        wanted.update(NEEDS.get(name, ()))
    return tuple(name for name in every if name in wanted)


def run_demo(data_dir: Path, workers: int = 2, say: Say = print, steps: Iterable[str] | None = None) -> DemoResult:
    """Build the samples, serve them, and run fetch → binarize/shard → verify → stats on them.

    ``steps`` names dataset steps (default: every recipe's); they run in registry order, with the
    steps they need, then the steps across the datasets that ran.
    """
    started = time.monotonic()
    layout = Layout(Path(data_dir))
    names = plan(steps)
    every = dataset_steps()
    outputs: list[Path] = []
    for name in names:
        outputs += every[name](layout, workers, say)
    outputs += table_1(layout, names, say)
    if names:
        outputs += manifest_build(layout, names, say)
    if all(name in names for name in TRAINER):
        outputs += trainer(layout, say)
    return DemoResult(layout.root, names, time.monotonic() - started, outputs)
