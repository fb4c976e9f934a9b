"""GLUE → fairseq binaries in the layout of fairseq's RoBERTa GLUE recipe (``out/glue/<TASK>-bin/``).

The recipe: the nine tasks and which to run. The work (parquet read under caps, one line per
sentence, BPE, the label dictionary, fairseq binaries) is done by ``engines/sentencebin.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..caps import DEFAULT_CAPS
from ..layout import Layout
from ..records import glue as records
from .recipe import FETCH_COMMON, Limit, Manifest, Recipe, Run, Stage, option

NAME = "glue"


def parse_task(value: str) -> str:
    """A task as the user may write it (``RTE``, ``rte``, ``sst2``) → its canonical name."""
    try:
        return records.task_named(value).name
    except KeyError:
        raise ValueError(f"unknown GLUE task {value!r}; one of {', '.join(records.TASKS)}") from None


TASK_HELP = f"Only these tasks ({', '.join(records.TASKS)}; repeatable). Default: all."


@dataclass(frozen=True)
class FetchOptions:
    tasks: tuple[str, ...] = option((), TASK_HELP, repeat=True, parse=parse_task, flag_name="task", metavar="TASK")
    revision: str | None = option(None, "Hub revision (branch, tag or commit) of nyu-mll/glue. Default: main.")


@dataclass(frozen=True)
class BinarizeOptions:
    tasks: tuple[str, ...] = option((), TASK_HELP, repeat=True, parse=parse_task, flag_name="task", metavar="TASK")
    max_text_kb: int = option(DEFAULT_CAPS.text_bytes >> 10, "A sentence over this many KiB stops the task with "
                              "an error naming its file and row.", type=int, low=1)


@dataclass(frozen=True)
class VerifyOptions:
    pass


def fetch(run: Run, options: FetchOptions) -> None:
    from ..engines import sentencebin
    from ..redact import redact_url

    mirror = run.common.mirror
    report = sentencebin.fetch(run.layout, mirror, options.tasks, options.revision or sentencebin.DEFAULT_REVISION)
    origin = f"mirror {redact_url(mirror)}" if mirror else f"hub {records.REPO}@{report.commit}"
    for line in report.summary(NAME, origin, run.layout.raw(NAME)):
        run.say(line)


def binarize(run: Run, options: BinarizeOptions) -> None:
    from ..engines import sentencebin

    stats = sentencebin.binarize(run.layout, options.tasks, run.common.limit, run.common.tokenizer,
                                 options.max_text_kb << 10)
    for line in sentencebin.summary_lines(stats):
        run.say(line)
    run.say(f"written: {run.layout.out(NAME)}/<TASK>-bin/")


def verify(run: Run, options: VerifyOptions) -> None:
    from ..engines import sentencebin

    for task, found in sentencebin.verify(run.layout).items():
        run.say(f"glue {task}: ok ({found['files']} files, {found['items']:,} items)")


def summary(stats: dict) -> list[str]:
    from ..engines import sentencebin

    return sentencebin.summary_lines(stats)


def write_manifest(layout: Layout) -> Path:
    """``glue-files.tsv.gz``: each parquet file binarized, its task, fairseq split, rows and sha256."""
    import hashlib

    from ..fileio import read_json
    from ..sinks import manifests as manifest_sink

    stats = read_json(layout.out(NAME) / "stats.json")
    rows = []
    for name, task_stats in stats["tasks"].items():
        task = records.TASKS[name]
        for hub_split, split, _ in task.splits:
            path = layout.raw(NAME) / task.relpath(hub_split)
            rows.append((task.relpath(hub_split), name, split, task_stats["splits"][split]["rows"],
                         hashlib.sha256(path.read_bytes()).hexdigest()))
    return manifest_sink.write_tsv_gz(layout.manifests() / MANIFEST.pattern, MANIFEST.header, sorted(rows))


MANIFEST = Manifest("glue-files.tsv.gz", ("file", "task", "split", "rows", "sha256"),
                    "GLUE parquet files binarized: task, fairseq split, rows, sha256", build=write_manifest)

RECIPE = Recipe(
    name=NAME,
    title="GLUE's nine tasks in fairseq's RoBERTa GLUE layout (fine-tuning)",
    kind="text",
    builder="binarize",
    stages={
        "fetch": Stage(fetch, FetchOptions, "Download and check GLUE's parquet files into DATA_DIR/raw/glue.",
                       ("vlprep fetch glue", "vlprep fetch glue --task RTE --task MNLI"), common=FETCH_COMMON,
                       details="From the Hugging Face hub nyu-mll/glue (honouring HF_ENDPOINT and HF_TOKEN), "
                       "checked against the hub's LFS sha256, or from --mirror."),
        "binarize": Stage(binarize, BinarizeOptions,
                          "Write GLUE as fairseq binaries in the RoBERTa GLUE layout, DATA_DIR/out/glue/<TASK>-bin.",
                          ("vlprep binarize glue", "vlprep binarize glue --task RTE --task MNLI"),
                          common=("limit", "tokenizer"),
                          limit=Limit("Only the first N rows of each split (a trial: the published split sizes "
                                      "are not checked)."),
                          details="out/glue/<TASK>-bin/{input0,input1,label} (MNLI: valid/valid1 and test/test1 "
                          "for matched/mismatched; STS-B: label/{train,valid}.label with score / 5), "
                          "byte-identical to the recipe's multiprocessing_bpe_encoder --keep-empty + "
                          "fairseq-preprocess on the same sentences. Split sizes are checked unless --limit is set."),
        "verify": Stage(verify, VerifyOptions, "Re-read out/glue and check it; exit non-zero on the first fault.",
                        ("vlprep verify glue",),
                        details="Every task's binaries well formed (fairseq's index rules, ids inside the "
                        "dictionary, items ending in </s>) and every file's sha256 equal to stats.json."),
    },
    manifest=MANIFEST,
    demo="vlprep.pipeline.samples.demo:glue",
    summary=summary,
)
