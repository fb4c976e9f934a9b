"""GLUE → fairseq binaries in the layout of fairseq's RoBERTa GLUE recipe (``out/glue/<TASK>-bin/``).

The recipe: the nine tasks and which to run, each split read from its parquet file under caps
(``records/glue.py``) with the checks the recipe implies: the published row count (unless
``--limit``), class numbers mapped to the recipe's label symbols, STS-B scores printed as the
recipe's ``awk '{print $1 / 5.0}'`` prints them. The work (one line per sentence, BPE, the label
dictionary, fairseq binaries) is done by ``engines/sentencebin.py``.

From Python::

    from vlprep.pipeline.datasets import glue
    glue.fetch_tasks(layout, tasks=("RTE",))
    glue.binarize_tasks(layout, tasks=("RTE",))
    glue.verify_tasks(layout)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..caps import DEFAULT_CAPS
from ..errors import VlprepError
from ..layout import Layout
from ..records import glue as records
from ..sinks import manifests as manifest_sink
from .recipe import FETCH_COMMON, Limit, Manifest, Recipe, Run, Stage, option

if TYPE_CHECKING:
    from ..engines.fetch import FetchReport
    from ..engines.sentencebin import SentenceCorpus, SentenceTask, Table

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
    force: bool = option(False, "Let a --limit trial replace a task built with no limit or a larger one "
                         "(refused by default, so a trial never throws away a full task).", type=bool)


@dataclass(frozen=True)
class VerifyOptions:
    pass


def chosen_tasks(tasks: tuple[str, ...] = ()) -> list[records.Task]:
    """The tasks named (any spelling ``task_named`` takes; each once, in the order first named), or all
    nine in fairseq's order."""
    if not tasks:
        return list(records.TASKS.values())
    named = (records.task_named(t) for t in tasks)
    return list({task.name: task for task in named}.values())


def missing_tasks(layout: Layout, tasks: list[records.Task]) -> None:
    """Every chosen task with a file not fetched, named in one error with one fix."""
    raw = layout.raw(NAME)
    missing = {task.name: [raw / task.relpath(hub) for hub, _, _ in task.splits
                           if not (raw / task.relpath(hub)).exists()] for task in tasks}
    missing = {name: paths for name, paths in missing.items() if paths}
    if not missing:
        return
    paths = [path for found in missing.values() for path in found]
    more = f" and {len(paths) - 1:,} more" if len(paths) > 1 else ""
    fetch = f"vlprep fetch {NAME}" if len(missing) == len(records.TASKS) else \
        f"vlprep fetch {NAME} " + " ".join(f"--task {name}" for name in missing)
    raise VlprepError(f"{len(paths):,} file{'s are' if len(paths) > 1 else ' is'} missing, of GLUE "
                      f"task{'s' if len(missing) > 1 else ''} {', '.join(missing)}: {paths[0]}{more}",
                      fix=f"run: {fetch}")


def fetch_tasks(layout: Layout, mirror: str | None = None, tasks: tuple[str, ...] = (),
                revision: str | None = None) -> FetchReport:
    """Download and check the parquet files of ``tasks`` (all when empty) into ``raw/glue``."""
    from ..engines.fetch import fetch_from_hub, fetch_from_mirror
    from ..sources.mirror import Mirror

    relpaths = [task.relpath(hub) for task in chosen_tasks(tasks) for hub, _, _ in task.splits]
    if mirror:
        return fetch_from_mirror(layout.raw(NAME), relpaths, Mirror(mirror))
    return fetch_from_hub(layout.raw(NAME), relpaths, records.REPO, revision or records.DEFAULT_REVISION)


def corpus() -> SentenceCorpus:
    """GLUE as ``engines/sentencebin.py`` names it: ``out/glue``, rebuilt by ``vlprep binarize glue --task T``."""
    from ..engines.sentencebin import SentenceCorpus

    return SentenceCorpus(NAME, f"vlprep binarize {NAME}", "--task")


def sentence_task(task: records.Task) -> SentenceTask:
    """A GLUE task as ``engines/sentencebin.py`` writes it: its input columns, splits and their readers."""
    from functools import partial

    from ..engines.sentencebin import SentenceTask, TableSplit

    splits = tuple(TableSplit(split, task.relpath(hub_split), partial(read_table, task, hub_split, published))
                   for hub_split, split, published in task.splits)
    return SentenceTask(task.name, len(task.inputs), splits, scores=task.labels is None)


def read_table(task: records.Task, hub_split: str, published: int, path: Path, limit: int | None,
               max_text: int) -> Table:
    """One split's sentences and label symbols, read in checked batches; the row count (from the
    footer) is checked against the published split first, unless ``limit`` is set."""
    from ..engines.sentencebin import Table

    fix = f"run: vlprep fetch glue --task {task.name}"
    if not path.exists():
        raise VlprepError(f"{path} is missing", fix=fix)
    rows = records.split_rows(path, fix)
    if limit is None and rows != published:
        raise VlprepError(f"GLUE {task.name} {hub_split}: {rows:,} rows, the published split has {published:,}",
                          fix=f"fetch the published files again: vlprep fetch glue --task {task.name} "
                              "(or pass --limit for a partial trial)")
    data = records.read_split(path, task, hub_split, limit, max_text, fix)
    labels = label_symbols(task, data["label"]) if task.labelled(hub_split) else None
    return Table(tuple(data[column] for column in task.inputs), labels)


def label_symbols(task: records.Task, values: list) -> list[str]:
    """Label symbols of checked class numbers, or STS-B scores as the recipe's awk prints them."""
    if task.labels is None:
        return [awk_score(v) for v in values]
    return [task.labels[v] for v in values]


def awk_score(score: float) -> str:
    """``awk '{print $1 / 5.0}'``: awk's OFMT is ``%.6g``."""
    return format(float(score) / 5.0, ".6g")


def binarize_tasks(layout: Layout, tasks: tuple[str, ...] = (), limit: int | None = None,
                   tokenizer: str | None = None, max_text: int = DEFAULT_CAPS.text_bytes, force: bool = False) -> dict:
    """Write ``out/glue/<TASK>-bin`` for ``tasks`` (all when empty); return stats.json. Every task's
    files must be fetched; a ``limit`` trial does not replace a fuller task unless ``force``."""
    from ..engines import sentencebin

    chosen = chosen_tasks(tasks)
    missing_tasks(layout, chosen)
    return sentencebin.binarize(layout, corpus(), [sentence_task(task) for task in chosen], limit, tokenizer,
                                max_text, force)


def verify_tasks(layout: Layout) -> dict:
    """Check every task in ``out/glue/stats.json``; raise on the first fault."""
    from ..engines import sentencebin

    return sentencebin.verify(layout, corpus())


def fetch(run: Run, options: FetchOptions) -> None:
    run.say_fetch(fetch_tasks(run.layout, run.common.mirror, options.tasks, options.revision),
                  f"hub {records.REPO}@{{commit}}")


def binarize(run: Run, options: BinarizeOptions) -> None:
    from ..engines import sentencebin

    stats = binarize_tasks(run.layout, options.tasks, run.common.limit, run.common.tokenizer,
                           options.max_text_kb << 10, options.force)
    run.say_built(sentencebin.summary_lines(stats), "<TASK>-bin/")


def verify(run: Run, options: VerifyOptions) -> None:
    for task, found in verify_tasks(run.layout).items():
        run.say(f"glue {task}: ok ({found['files']} files, {found['items']:,} items)")


def summary(stats: dict) -> list[str]:
    from ..engines import sentencebin

    return sentencebin.summary_lines(stats)


def write_manifest(layout: Layout) -> Path:
    """``glue-files.tsv.gz``: each parquet file binarized, its task, fairseq split, rows and sha256."""
    import hashlib

    from ..fileio import read_json

    stats = read_json(layout.out(NAME) / "stats.json")
    rows = []
    for name, task_stats in stats["tasks"].items():
        task = records.TASKS[name]
        for hub_split, split, _ in task.splits:
            path = layout.raw(NAME) / task.relpath(hub_split)
            rows.append((task.relpath(hub_split), name, split, task_stats["splits"][split]["rows"],
                         hashlib.sha256(path.read_bytes()).hexdigest()))
    return manifest_sink.write_tsv_gz(layout.manifests() / MANIFEST.pattern, MANIFEST.header, sorted(rows))


MANIFEST = Manifest("glue-files.tsv.gz", manifest_sink.TASK_FILES,
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
                                      "are not checked, and a trial never replaces a task built with no limit or "
                                      "a larger one unless --force)."),
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
