"""The ``vlprep`` command line: parse options, call a dataset stage, print the summary."""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from .pipeline import __version__
from .pipeline.caps import DEFAULT_CAPS
from .pipeline.errors import VlprepError
from .pipeline.fileio import explain_os_error, read_json
from .pipeline.layout import DEFAULT_DATA_DIR, Layout

DATASETS = ("owt", "coco", "vg", "cc3m", "imagenet", "glue")
TEXT_DATASETS = ("owt", "glue")
IMAGE_DATASETS = ("coco", "vg", "imagenet")
"""Datasets that ``vlprep shard`` writes; CC3M's shards come out of ``vlprep fetch cc3m`` itself."""
PAIR_DATASETS = ("coco", "vg", "cc3m")
SHARD_DATASETS = ("coco", "vg", "cc3m", "imagenet")
"""Datasets stored as WebDataset shards (verified by decoding every image)."""


def _fail(message: str, code: int = 1) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print known failures as one message with the fix, and exit non-zero, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except VlprepError as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(str(explain_os_error(exc, "I/O error")))
        except KeyboardInterrupt:
            _fail("interrupted; run the same command again to resume (finished work is kept)", 130)

    return wrapper


def parse_subsets(value: str) -> tuple[int, ...]:
    """``"0-4"``, ``"0,2,5"`` or ``"0-2,7"`` → subset numbers (0–20)."""
    numbers: list[int] = []
    for part in value.split(","):
        part = part.strip()
        try:
            if "-" in part:
                low, high = (int(x) for x in part.split("-", 1))
                numbers += range(low, high + 1)
            elif part:
                numbers.append(int(part))
        except ValueError:
            raise click.BadParameter(f"{value!r}: use numbers and ranges like 0-4 or 0,2,5") from None
    if not numbers or any(not 0 <= n <= 20 for n in numbers):
        raise click.BadParameter(f"{value!r}: OpenWebText subsets are numbered 0 to 20")
    return tuple(dict.fromkeys(numbers))


def _subsets_option(name: str, default: str, help_text: str) -> Callable:
    return click.option(name, default=default, show_default=True, help=help_text,
                        callback=lambda ctx, param, value: parse_subsets(value))


data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="VLPREP_DATA",
    default=DEFAULT_DATA_DIR, show_default=True, show_envvar=True,
    help="Root of raw/, work/ and out/.")
mirror_option = click.option(
    "--mirror", metavar="DIR_OR_URL",
    help="Local folder or http(s) base URL holding the dataset's files at their published paths "
    "(optionally with a SHA256SUMS at its root).")
workers_option = click.option(
    "--workers", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default=True,
    help="Worker processes. The output is identical for every value.")
WAIT_LOCK = "vlprep.wait_lock"


def _remember_wait_lock(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """Kept in the context, not passed as an argument: every command takes it, :func:`_lock` reads it."""
    ctx.meta[WAIT_LOCK] = value


wait_lock_option = click.option(
    "--wait-lock", is_flag=True, envvar="VLPREP_WAIT_LOCK", show_envvar=True, expose_value=False,
    callback=_remember_wait_lock,
    help="If another vlprep process is using the same data, wait for it instead of exiting at once.")
limit_option = click.option(
    "--limit", type=click.IntRange(min=1), default=None,
    help="Only the first N documents of each subset (for trials; written to its own work folder).")


def _tokenizer_option(prefix: str = "") -> Callable:
    return click.option(
        "--tokenizer", type=click.Choice(["gigatoken", "tiktoken"]), default=None,
        help=f"{prefix}GPT-2 BPE implementation; the ids are identical for both. Default: gigatoken (several "
        "times faster) when installed, else tiktoken (the reference).")


def _resize_option(prefix: str = "") -> Callable:
    return click.option(
        "--resize", type=click.IntRange(min=16), default=None, metavar="PIXELS",
        help=f"{prefix}Scale the shorter side down to PIXELS (never up) and store JPEG q95. "
        "Default: the original bytes.")


dataset_argument = click.argument("dataset", type=click.Choice(DATASETS + ("all",)))


def _lock(layout: Layout, stage: str, *datasets: str) -> None:
    """Hold the locks of ``stage`` on ``datasets`` until the command ends (see pipeline/locking.py)."""
    from .pipeline.locking import stage_lock

    ctx = click.get_current_context()
    ctx.with_resource(stage_lock(layout, stage, datasets, wait=ctx.meta.get(WAIT_LOCK, False),
                                 say=lambda line: click.echo(line, err=True)))


def _datasets(name: str) -> tuple[str, ...]:
    return DATASETS if name == "all" else (name,)


def _built(layout: Layout, names: tuple[str, ...], message: str, fix: str) -> tuple[str, ...]:
    """What ``all`` means: of ``names``, those with an ``out/<name>/stats.json``; an error if none."""
    built = tuple(name for name in names if (layout.out(name) / "stats.json").exists())
    if not built:
        raise VlprepError(f"{message} in {layout.out_root()}", fix=fix)
    return built


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="vlprep")
def main() -> None:
    """Prepare the datasets of vision-language distillation for a GPU trainer.

    Stages run as `vlprep STAGE DATASET`; each can be run again: it skips finished work, resumes
    interrupted work and never leaves a half-written file under a final name.

    \b
    Start here (offline, under a minute):
      vlprep demo
    Then, for real data:
      vlprep fetch owt
      vlprep binarize owt --workers 8
      vlprep verify owt
    """


@main.command()
@dataset_argument
@data_dir_option
@wait_lock_option
@mirror_option
@_subsets_option("--subsets", "0-5", "OpenWebText subsets to fetch (0-4 are train, 5 is valid).")
@click.option("--revision", default=None, help="Hub revision (branch, tag or commit). "
              "Default: the pinned commit that still holds subsets/.")
@click.option("--tsv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CC3M: Train_GCC-training.tsv (default: fetched from --mirror or its published URL).")
@click.option("--count", type=click.IntRange(min=1), default=500_000, show_default=True,
              help="CC3M: keep the first COUNT rows, in index order, whose image downloads and decodes.")
@click.option("--from-manifest", "from_manifest", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="CC3M: rebuild exactly the rows of this cc3m-train-<N>.tsv.gz, checking sha256.")
@_resize_option("CC3M: ")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="CC3M: seconds for a whole image answer (not per read).")
@click.option("--retries", type=click.IntRange(min=0), default=1, show_default=True,
              help="CC3M: extra tries after 5xx, timeouts and dropped connections (never after 4xx).")
@click.option("--retry-failed", type=click.Choice(["transient", "all", "none"]), default="transient",
              show_default=True, help="CC3M: rows an earlier run failed that this run tries again first "
              "(transient: 5xx, 429, timeout, DNS, connection).")
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True,
              help="CC3M: most runs that try one row (--retry-failed stops there).")
@click.option("--processes", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default=True,
              help="CC3M: img2dataset processes.")
@click.option("--threads", type=click.IntRange(min=1), default=64, show_default=True,
              help="CC3M: download threads per process.")
@click.option("--distributor", type=click.Choice(["multiprocessing", "pyspark", "ray"]),
              default="multiprocessing", show_default=True,
              help="CC3M: img2dataset distributor (pyspark and ray must be installed).")
@click.option("--max-window", type=click.IntRange(min=1), default=50_000, show_default=True,
              help="CC3M: most rows tried in one window (the unit of planning).")
@click.option("--window-timeout", type=click.FloatRange(min=1), default=None,
              help="CC3M: seconds before a stalled window is killed and run again (default: from its size).")
@click.option("--shard-samples", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="CC3M: samples per output shard.")
@_tokenizer_option("CC3M captions: ")
@click.option("--with-test", is_flag=True, help="ImageNet: also fetch data/test_images.tar.gz (no labels).")
@click.option("--task", "tasks", multiple=True, metavar="TASK", help="GLUE: only these tasks (repeatable).")
@click.option("--retry-budget", type=click.FloatRange(min=0), default=300.0, show_default=True, metavar="SECONDS",
              envvar="VLPREP_RETRY_BUDGET", help="Most seconds spent retrying one file (waits and failed tries).")
@click.option("--idle-timeout", type=click.FloatRange(min=1), default=60.0, show_default=True, metavar="SECONDS",
              envvar="VLPREP_IDLE_TIMEOUT", help="Cut a download silent, or slower than 1 KiB/s, for this long.")
@click.option("--allow-unpublished", is_flag=True, help="Accept --mirror files whose sha256 differs from the "
              "published one (a sample or a repacked copy): checked only against the mirror's SHA256SUMS, "
              "recorded and printed as NOT the published file.")
@friendly_errors
def fetch(dataset: str, data_dir: Path, mirror: str | None, subsets: tuple[int, ...], revision: str | None,
          tsv: Path | None, count: int, from_manifest: Path | None, resize: int | None, timeout: float,
          retries: int, processes: int, threads: int, distributor: str, max_window: int,
          window_timeout: float | None, shard_samples: int, tokenizer: str | None, with_test: bool,
          tasks: tuple[str, ...], retry_budget: float, idle_timeout: float, allow_unpublished: bool,
          retry_failed: str = "transient", max_attempts: int = 3) -> None:
    """Download and check a dataset's raw files into DATA_DIR/raw/DATASET.

    Files come from their official source (OpenWebText: the Hugging Face hub, honouring HF_ENDPOINT
    and HF_TOKEN; COCO and Visual Genome: their published URLs) or from --mirror. Each file is checked
    against the strongest hash known for it: COCO's published size and sha256 (from
    tensorflow/datasets), the hub's LFS sha256, or the mirror's SHA256SUMS. No public source states
    checksums for Visual Genome's zips or the CC3M TSV: for those (and mirror files without a
    SHA256SUMS entry) the sha256 is only recorded, and fetch says so. How each file was checked is
    kept in raw/DATASET/.verified.json. A file on disk as recorded is not downloaded again (a copy
    with other mtimes is re-hashed); an interrupted download resumes.

    \b
    Examples:
      vlprep fetch owt
      vlprep fetch owt --subsets 0,5 --mirror /datasets/owt-mirror
      vlprep fetch coco --mirror https://my-mirror.example.org/coco
      vlprep fetch vg
      vlprep fetch cc3m --tsv Train_GCC-training.tsv --count 500000 --processes 16
      vlprep fetch cc3m --tsv Train_GCC-training.tsv --from-manifest manifests/cc3m-train-500000.tsv.gz

    \b
    CC3M: rows are tried in index order, in windows sized from the success rate so far, with
    img2dataset, until the first COUNT rows whose image downloaded and decoded are held; they are
    written as out/cc3m/train-*.tar in index order with train.index.json, stats.json (rows tried,
    failures by cause) and DATA_DIR/manifests/cc3m-train-COUNT.tsv.gz. Interrupted runs (even
    kill -9) continue where they stood and end with the same rows. A rerun first retries rows that
    failed for a transient cause (--retry-failed, --max-attempts) and recomputes the first COUNT.
    """
    from .pipeline.datasets import coco, vg
    from .pipeline.engines import bucketing as imagenet, sentencebin as glue, textbin as owt

    from .pipeline.redact import redact_url

    os.environ["VLPREP_RETRY_BUDGET"], os.environ["VLPREP_IDLE_TIMEOUT"] = str(retry_budget), str(idle_timeout)
    shown_mirror = redact_url(mirror) if mirror else None
    layout = Layout.from_env(data_dir)
    _lock(layout, "fetch", *_datasets(dataset))
    for name in _datasets(dataset):
        if name == "cc3m":
            _fetch_cc3m(layout, tsv, mirror, count, from_manifest, tokenizer, dict(
                resize=resize, timeout=timeout, retries=retries, processes=processes, threads=threads,
                distributor=distributor, max_window=max_window, window_timeout=window_timeout,
                shard_samples=shard_samples, retry_failed=retry_failed, max_attempts=max_attempts))
            continue
        if name == "owt":
            report = owt.fetch(layout, subsets, revision or owt.DEFAULT_REVISION, mirror)
            origin = f"mirror {shown_mirror}" if mirror else f"{owt.HUB_REPO}@{report.commit}"
        elif name == "glue":
            report = glue.fetch(layout, mirror, _glue_tasks(tasks), revision or glue.DEFAULT_REVISION)
            origin = f"mirror {shown_mirror}" if mirror else f"hub {glue.records.REPO}@{report.commit}"
        elif name == "imagenet":
            report = imagenet.fetch(layout, mirror, with_test, revision or imagenet.DEFAULT_REVISION)
            origin = f"mirror {shown_mirror}" if mirror else f"hub {imagenet.records.REPO}@{report.commit}"
        elif name == "coco":
            report = coco.fetch(layout, mirror, allow_unpublished)
            origin = f"mirror {shown_mirror}" if mirror else "the official URLs"
        else:
            report = vg.fetch(layout, mirror)
            origin = f"mirror {shown_mirror}" if mirror else "the official URLs"
        click.echo(f"{name}: {len(report.fetched)} fetched, {len(report.skipped)} already on disk, from {origin}")
        click.echo(f"  {report.tally()}")
        for line in report.lines():
            click.echo(line)
        click.echo(f"  {layout.raw(name)}/SHA256SUMS")


def _glue_tasks(tasks: tuple[str, ...]) -> tuple[str, ...]:
    from .pipeline.records import glue as glue_records

    for task in tasks:
        try:
            glue_records.task_named(task)
        except KeyError:
            raise click.BadParameter(f"unknown GLUE task {task!r}; one of "
                                     f"{', '.join(glue_records.TASKS)}", param_hint="--task") from None
    return tasks


def _fetch_cc3m(layout: Layout, tsv: Path | None, mirror: str | None, count: int, from_manifest: Path | None,
                tokenizer: str | None, options: dict) -> None:
    from .pipeline.engines import webcrawl as cc3m

    config = cc3m.DownloadConfig(**options)
    cc3m.check_distributor(config.distributor)
    tsv_path = cc3m.fetch_tsv(layout, tsv, mirror)
    if tsv is None:
        from .pipeline.engines.fetch import check_line

        click.echo(check_line(layout.raw("cc3m"), tsv_path.name))
    if from_manifest is not None:
        stats = cc3m.rebuild(layout, tsv_path, from_manifest, config, tokenizer)
    else:
        stats = cc3m.fetch_first(layout, tsv_path, count, config, tokenizer)
    for line in cc3m.summary_lines(stats):
        click.echo(line)
    click.echo(f"written: {layout.out('cc3m')}/")


@main.command()
@click.argument("dataset", type=click.Choice(TEXT_DATASETS))
@data_dir_option
@wait_lock_option
@workers_option
@limit_option
@click.option("--dict", "dict_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Your own fairseq dict.txt. Default: fairseq's GPT-2 dict.txt shipped with vlprep.")
@click.option("--doc-separator/--no-doc-separator", default=False, show_default=True,
              help="Write one [</s>] item between consecutive documents (fairseq's blank-line convention "
              "for complete_doc training).")
@click.option("--max-document-mb", type=click.IntRange(min=1), default=DEFAULT_CAPS.document_bytes >> 20,
              show_default=True, help="OpenWebText: a document over this many MiB is skipped unread and listed "
              "in stats.json (skipped_documents) and provenance.json.")
@_subsets_option("--train-subsets", "0-4", "Subsets that form the train split.")
@_subsets_option("--valid-subsets", "5", "Subsets that form the valid split.")
@_tokenizer_option()
@click.option("--task", "tasks", multiple=True, metavar="TASK",
              help="GLUE: only these tasks (CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI; repeatable). "
              "Default: all.")
@click.option("--max-text-kb", type=click.IntRange(min=1), default=DEFAULT_CAPS.text_bytes >> 10, show_default=True,
              help="GLUE: a sentence over this many KB stops the task with an error naming its file and row.")
@friendly_errors
def binarize(dataset: str, data_dir: Path, workers: int, limit: int | None, dict_path: str | None,
             doc_separator: bool, train_subsets: tuple[int, ...], valid_subsets: tuple[int, ...],
             tokenizer: str | None, tasks: tuple[str, ...], max_text_kb: int, max_document_mb: int) -> None:
    """Clean, GPT-2 BPE-encode and write text as fairseq binaries in DATA_DIR/out/DATASET.

    Each document is cleaned (UTF-8 with replacement, CR/CRLF to LF, NULs deleted, lines stripped,
    empty lines dropped); each line is encoded as ordinary text, mapped through dict.txt and ended
    with </s>. The result is byte-identical to fairseq-preprocess --only-source --srcdict dict.txt
    --dataset-impl mmap on the same lines, for every --workers value.

    \b
    Examples:
      vlprep binarize owt --workers 8
      vlprep binarize owt --limit 1000            # a quick trial
      vlprep binarize owt --dict my/dict.txt --doc-separator
      vlprep binarize owt --tokenizer tiktoken    # the reference BPE, same bytes out
      vlprep binarize glue --task RTE --task MNLI

    \b
    GLUE: the layout of fairseq's RoBERTa GLUE recipe, out/glue/<TASK>-bin/{input0,input1,label}/
    (MNLI: valid/valid1 and test/test1 for matched/mismatched; STS-B: label/{train,valid}.label
    with score / 5), byte-identical to the recipe's multiprocessing_bpe_encoder --keep-empty +
    fairseq-preprocess on the same sentences. Split sizes are checked unless --limit is set.
    """
    if dataset == "glue":
        from .pipeline.engines import sentencebin as glue

        layout = Layout.from_env(data_dir)
        _lock(layout, "binarize", dataset)
        stats = glue.binarize(layout, _glue_tasks(tasks), limit, tokenizer, max_text_kb << 10)
        for line in glue.summary_lines(stats):
            click.echo(line)
        click.echo(f"written: {layout.out(dataset)}/<TASK>-bin/")
        return
    from .pipeline.engines import textbin as owt
    from .pipeline.transforms.bpe import default_backend

    overlap = set(train_subsets) & set(valid_subsets)
    if overlap:
        raise click.BadParameter(f"subsets {sorted(overlap)} are in both train and valid")
    layout = Layout.from_env(data_dir)
    _lock(layout, "binarize", dataset)
    config = owt.BinarizeConfig(splits={"train": train_subsets, "valid": valid_subsets},
                                doc_separator=doc_separator, limit=limit, dict_path=dict_path,
                                tokenizer=tokenizer or default_backend(), max_document_bytes=max_document_mb << 20)
    stats = owt.binarize(layout, config, workers)
    for line in owt.summary_lines(stats):
        click.echo(line)
    click.echo(f"written: {layout.out(dataset)}/{{dict.txt,train.bin,train.idx,valid.bin,valid.idx,stats.json}}")


@main.command()
@click.argument("dataset", type=click.Choice(IMAGE_DATASETS))
@data_dir_option
@wait_lock_option
@workers_option
@click.option("--split", default=None, help="COCO: karpathy-train (default; train + restval), karpathy-val, "
              "karpathy-test, train2014 or val2014. VG has one split, train. ImageNet: train (default) or val.")
@click.option("--variant", type=click.Choice(["regions", "concat"]), default="regions", show_default=True,
              help="VG only: every region description a pair, or descriptions packed into <=64-token captions.")
@click.option("--leak-guard/--no-leak-guard", default=True, show_default=True,
              help="VG only: leave out images whose coco_id is in COCO Karpathy val or test.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the train-split shuffle.")
@_resize_option()
@click.option("--shard-samples", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="At most this many samples per shard.")
@click.option("--shard-mb", type=click.IntRange(min=1), default=1000, show_default=True,
              help="About this many MB per shard.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N images (for trials).")
@click.option("--force", is_flag=True, help="Let a --limit trial replace a split built with no limit or a larger "
              "one (refused by default, so a trial never throws away a full split).")
@_tokenizer_option()
@click.option("--max-member-mb", type=click.IntRange(min=1), default=DEFAULT_CAPS.member_bytes >> 20,
              show_default=True, help="An image member over this many MiB is skipped unread and listed "
              "in <split>.errors.jsonl.")
@click.option("--max-text-kb", type=click.IntRange(min=1), default=DEFAULT_CAPS.text_bytes >> 10, show_default=True,
              help="COCO/VG: a caption or region description over this many KiB is dropped and listed in "
              "<split>.errors.jsonl (the image keeps its other texts).")
@click.option("--max-json-depth", type=click.IntRange(min=1), default=DEFAULT_CAPS.json_depth, show_default=True,
              help="COCO/VG: annotation JSON nested deeper than this stops the stage with an error.")
@friendly_errors
def shard(dataset: str, data_dir: Path, workers: int, split: str | None, variant: str, leak_guard: bool, seed: int,
          resize: int | None, shard_samples: int, shard_mb: int, limit: int | None, force: bool,
          tokenizer: str | None, max_member_mb: int, max_text_kb: int, max_json_depth: int) -> None:
    """Write WebDataset shards in DATA_DIR/out/DATASET, one sample per image.

    ImageNet: <key>.jpg, <key>.cls (class index 0-999 in classes.py order, torchvision's) and
    <key>.json (synset, class name, file name), streamed from the tarballs; train shuffled with
    --seed, val in file order; the published counts are checked unless --limit is set.
    COCO and VG:

    Each sample is <key>.jpg (original bytes unless --resize) and <key>.json (ids, cleaned texts,
    token ids <s> + <=62 BPE + </s>, untruncated lengths). Train splits are shuffled with --seed;
    the same input gives byte-identical shards. Beside them: <split>.index.json (wids format),
    <split>.errors.jsonl (images skipped and why), stats.json, and a manifest of the image ids used
    in DATA_DIR/manifests/. An interrupted run resumes at shard granularity.

    \b
    Examples:
      vlprep shard coco                          # karpathy-train: 113,287 images
      vlprep shard coco --split train2014 --resize 256
      vlprep shard vg --variant concat --workers 8
      vlprep shard imagenet --split val
    """
    layout = Layout.from_env(data_dir)
    _lock(layout, "shard", dataset)
    common = dict(workers=workers, seed=seed, resize=resize, limit=limit, max_count=shard_samples,
                  max_bytes=shard_mb * 1_000_000, tokenizer=tokenizer, force=force)
    if dataset == "imagenet":
        from .pipeline.engines import bucketing as imagenet

        stats = imagenet.shard(layout, split or "train", workers=workers, seed=seed, resize=resize, limit=limit,
                               shard_samples=shard_samples, force=force, max_member=max_member_mb << 20)
        for line in imagenet.summary_lines(stats):
            click.echo(line)
        click.echo(f"written: {layout.out(dataset)}/")
        return
    from .pipeline.caps import Caps
    from .pipeline.datasets import coco, vg
    from .pipeline.engines import imagetext

    common["caps"] = Caps(text_bytes=max_text_kb << 10, member_bytes=max_member_mb << 20, json_depth=max_json_depth)
    if dataset == "coco":
        stats = coco.shard(layout, split or coco.DEFAULT_SPLIT, **common)
    else:
        if split not in (None, vg.SPLIT):
            raise click.BadParameter(f"Visual Genome has one split, {vg.SPLIT}", param_hint="--split")
        stats = vg.shard(layout, variant, leak_guard=leak_guard, **common)
    for line in imagetext.summary_lines(stats):
        click.echo(line)
    click.echo(f"written: {layout.out(dataset)}/")


@main.command()
@dataset_argument
@data_dir_option
@wait_lock_option
@click.option("--tokenizer-check", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Also re-encode N random lines from the raw archives with the reference BPE (tiktoken) "
              "and compare them id for id with what is on disk.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed that draws the --tokenizer-check lines.")
@friendly_errors
def verify(dataset: str, data_dir: Path, tokenizer_check: int, seed: int) -> None:
    """Re-read a dataset's outputs and check them; exit non-zero on the first fault.

    For fairseq binaries: magic, version, dtype, sizes against pointers and .bin length, every item
    ending in </s>, no id outside the dictionary, counts and sha256 equal to stats.json.

    \b
    Examples:
      vlprep verify owt
      vlprep verify owt --tokenizer-check 1000    # and hold 1000 random lines against tiktoken
      vlprep verify coco                         # decode every image of every shard
    """
    from .pipeline.engines import imagetext, textbin as owt

    layout = Layout.from_env(data_dir)
    names = _datasets(dataset)
    if dataset == "all":
        names = _built(layout, names, "nothing has been built", fix="run a binarize or shard stage")
    _lock(layout, "verify", *names)
    for name in names:
        if name in SHARD_DATASETS:
            for split, found in imagetext.verify(layout, name).items():
                click.echo(f"{name} {split}: ok ({found['shards']} shards, {found['images']:,} images decoded"
                           + (f", {found['texts']:,} texts)" if name in PAIR_DATASETS else ", labels in 0..999)"))
            continue
        if name == "glue":
            from .pipeline.engines import sentencebin as glue

            for task, found in glue.verify(layout).items():
                click.echo(f"glue {task}: ok ({found['files']} files, {found['items']:,} items)")
            continue
        for split, found in owt.verify(layout).items():
            click.echo(f"owt {split}: ok ({found['items']:,} items, {found['ids']:,} ids)")
        if tokenizer_check:
            report = owt.tokenizer_check(layout, tokenizer_check, seed)
            click.echo(f"owt tokenizer check: ok ({report['checked']:,} random items from "
                       f"{report.get('members', 0):,} archive members equal their {report['reference']} "
                       f"encoding; seed {seed})")


@main.command()
@click.argument("datasets", nargs=-1, required=True, type=click.Choice(DATASETS + ("all",)))
@data_dir_option
@wait_lock_option
@click.option("--json", "as_json", is_flag=True, help="Print the stats.json files instead of tables.")
@friendly_errors
def stats(datasets: tuple[str, ...], data_dir: Path, as_json: bool) -> None:
    """Print the statistics of finished datasets; for image-text ones, the method's Table 1.

    Text datasets print their own table (from DATA_DIR/out/DATASET/stats.json). Image-text
    datasets (coco, vg) together give Table 1: images, average texts per image, average text
    length in GPT-2 tokens and pairs for every built split, a total row (each dataset's
    pretraining split once) and the method's published rows beneath. It is written to
    DATA_DIR/out/stats.json and stats.md, with text-lengths.png, a histogram of text lengths.

    \b
    Examples:
      vlprep stats coco vg
      vlprep stats owt --json
    """
    from .pipeline.engines import textbin as owt
    from .pipeline.reports import table

    layout = Layout.from_env(data_dir)
    chosen = tuple(dict.fromkeys(d for name in datasets for d in _datasets(name)))
    if "all" in datasets:
        chosen = _built(layout, chosen, "no dataset has been built",
                        fix="run vlprep binarize owt or vlprep shard coco first")
    _lock(layout, "stats", *chosen)
    for dataset in chosen:
        path = layout.out(dataset) / "stats.json"
        if not path.exists():
            stage = "binarize" if dataset in TEXT_DATASETS else "shard"
            raise VlprepError(f"{path} is missing", fix=f"run: vlprep {stage} {dataset}")
        if as_json:
            click.echo(path.read_text().rstrip())
        elif dataset == "owt":
            for line in owt.summary_lines(read_json(path)):
                click.echo(line)
        elif dataset == "imagenet":
            from .pipeline.engines import bucketing as imagenet

            for line in imagenet.summary_lines(read_json(path)):
                click.echo(line)
        elif dataset == "glue":
            from .pipeline.engines import sentencebin as glue

            for line in glue.summary_lines(read_json(path)):
                click.echo(line)
    image_sets = tuple(d for d in chosen if d in PAIR_DATASETS)
    if image_sets:
        report = table.build_table(layout, image_sets)
        if not as_json:
            for line in table.summary_lines(report):
                click.echo(line)
            click.echo("written: " + ", ".join(str(p) for p in report.written))


@main.command()
@click.argument("dataset", type=click.Choice(("coco", "vg", "cc3m", "imagenet")))
@data_dir_option
@wait_lock_option
@click.option("--split", default=None, help="Split to show (default: coco karpathy-train, vg train, cc3m train, "
              "imagenet train; vg train-concat for the concat variant).")
@click.option("--n", "count", type=click.IntRange(min=1, max=256), default=16, show_default=True,
              help="How many samples, the first ones in index order.")
@click.option("--augmented", is_flag=True, help="Add the training view of epoch 0 beside each image (crop, "
              "flip and chosen caption exactly as pair_dataset / image_dataset draw them; needs vlprep[loader]).")
@click.option("--seed", type=int, default=0, show_default=True, help="Loader seed of the --augmented views.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG to write [default: DATA_DIR/out/DATASET/preview-SPLIT[-augmented].png].")
@friendly_errors
def preview(dataset: str, data_dir: Path, split: str | None, count: int, augmented: bool, seed: int,
            out_path: Path | None) -> None:
    """Write a PNG contact sheet of a built split and print its path.

    Each cell shows a stored image with its captions decoded back from the stored token ids
    (a caption cut at the 64-token cap is marked in red with its full length) or, for
    ImageNet, its class index and name. With --augmented, the view the trainer will see is
    drawn beside it.

    \b
    Examples:
      vlprep preview coco
      vlprep preview vg --split train-concat --n 8 --augmented
    """
    from .pipeline.reports import preview as preview_stage

    _lock(Layout.from_env(data_dir), "preview", dataset)
    result = preview_stage.preview(Layout.from_env(data_dir), dataset, split, count, augmented, seed, out_path)
    click.echo(f"{dataset} {result.split}: {result.samples} samples")
    click.echo(str(result.path))


@main.group()
def manifest() -> None:
    """Build and publish the used-ID manifests that let others rebuild the same subsets."""


manifest_dir_option = click.option(
    "--manifest-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where the manifests go (default: DATA_DIR/manifests). The repository's own manifests/ folder "
    "holds the method's published subsets.")


@manifest.command("build")
@click.argument("dataset", type=click.Choice(DATASETS + ("all",)), default="all")
@data_dir_option
@wait_lock_option
@manifest_dir_option
@friendly_errors
def manifest_build(dataset: str, data_dir: Path, manifest_dir: Path | None) -> None:
    """Write the manifests of every built dataset (or DATASET) and a README.md index.

    COCO/VG: the image ids of each split or variant and what became of them; CC3M: the rows kept,
    their URL, sha256 of the bytes and of the caption; OpenWebText: the subset files with sha256,
    source and document counts. Gzipped sorted TSVs with deterministic bytes.

    \b
    Examples:
      vlprep manifest build
      vlprep manifest build cc3m --manifest-dir ./manifests
    """
    from .pipeline.reports import manifests

    layout = Layout.from_env(data_dir)
    names = _datasets(dataset)
    if dataset == "all":
        names = _built(layout, names, "nothing has been built", fix="run a fetch/shard/binarize stage")
    _lock(layout, "manifest", *names)
    files = manifests.build(layout, names, manifest_dir)
    for line in manifests.summary(files):
        click.echo(line)
    click.echo(f"written: {(manifest_dir or layout.manifests()) / 'README.md'}")


@manifest.command("publish")
@click.option("--repo", required=True, metavar="URL_OR_PATH",
              help="Target git repository: https://github.com/OWNER/NAME(.git) (token from GITHUB_TOKEN), "
              "an ssh URL, or a local path.")
@click.option("--branch", default="main", show_default=True, help="Branch to commit to (created if absent).")
@click.option("--message", default=None, help="Commit message (default: lists the manifests and their rows).")
@click.option("--path", "subdir", default="manifests", show_default=True, help="Folder inside the repository.")
@data_dir_option
@manifest_dir_option
@friendly_errors
def manifest_publish(repo: str, branch: str, message: str | None, subdir: str, data_dir: Path,
                     manifest_dir: Path | None) -> None:
    """Commit the built manifests into a git repository and push (never forced).

    The manifests are checked first (readable, expected columns, sorted, README index current);
    an unchanged set is refused, and on any error the target repository is left untouched.

    \b
    Examples:
      vlprep manifest publish --repo https://github.com/me/my-vlprep-manifests
      vlprep manifest publish --repo git@github.com:me/manifests.git --branch subsets
      vlprep manifest publish --repo /srv/git/manifests.git
    """
    from .pipeline.reports import manifests

    folder = manifest_dir or Layout.from_env(data_dir).manifests()
    result = manifests.publish(folder, repo, branch, message, subdir)
    from .pipeline.redact import redact_url

    click.echo(f"published {len(result.files)} files to {redact_url(repo)} ({branch}) in commit {result.commit[:12]}")
    for name in result.files:
        click.echo(f"  {name}")


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default="./vlprep-demo",
              show_default=True, help="Where the demo writes (kept apart from your real data).")
@wait_lock_option
@workers_option
@friendly_errors
def demo(data_dir: Path, workers: int) -> None:
    """Run the whole chain offline on a small built-in sample, in well under a minute.

    Builds a few hundred OpenWebText-format documents (with real-world dirt), serves them on
    127.0.0.1 as a mirror, then runs fetch -> binarize -> verify -> stats and shows what was written.

    \b
    Example:
      vlprep demo
    """
    from .pipeline.samples.demo import run_demo

    _lock(Layout(data_dir), "demo", "all")
    result = run_demo(data_dir, workers, say=click.echo)
    click.echo(f"done in {result.seconds:.1f} s; written:")
    for path in result.outputs:
        click.echo(f"  {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
