"""Sentence tables with labels → fairseq binaries in the layout of fairseq's RoBERTa fine-tuning
recipe (``examples/roberta``), byte for byte.

A dataset gives tasks (:class:`SentenceTask`): each a name, one or two sentence columns, and its
splits (:class:`TableSplit`: fairseq's split name, the raw file under ``raw/<dataset>``, and a reader
that returns the split as a :class:`Table` of sentences and label symbols). For every task
``out/<dataset>/<TASK>-bin/`` holds ``input0/`` (and ``input1/`` for sentence pairs) with
``<split>.{bin,idx}`` and the GPT-2 ``dict.txt``, and ``label/``: the labels binarized with their own
dictionary, or, for a task of scores, ``<split>.label`` text files of the label strings given. What
the recipe does and vlprep repeats:

- every sentence is one item: ``line.strip()``, GPT-2 BPE, dictionary indices, ``</s>`` appended;
  an empty sentence is an item of just ``</s>`` (``--keep-empty``). A line break inside a sentence
  (which a TSV line cannot hold) becomes a space, and is counted, so items stay aligned;
- the label dictionary is what ``fairseq-preprocess`` builds from the train labels: symbols by
  descending count, ties in symbol order, padded with ``madeupword0000``… to a multiple of 8;
- a split without labels (a test split) has inputs only.
"""
from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from tqdm import tqdm

from .. import __version__
from ..caps import DEFAULT_CAPS
from ..errors import VlprepError
from ..fileio import ensure_dir, read_json, sha256_file, temp_sibling, write_json
from ..layout import Layout
from ..sinks.fairseq import write_dataset
from ..sinks.splits import TRIAL_FIX, built_with, smaller_trial
from ..transforms.bpe import LineEncoder, get_backend
from ..transforms.dictionary import EOS, SPECIALS, UNK, Dictionary, load_dictionary
from .inputs import check_inputs, raw_inputs

PADDING_FACTOR = 8


@dataclass(frozen=True)
class Table:
    """One split of a task as read: the sentences of each input column (one or two columns, as many
    rows each) and, for a labelled split, each row's label as the symbol written (None: no labels)."""

    sentences: tuple[list[str], ...]
    labels: list[str] | None = None


TableReader = Callable[[Path, int | None, int], Table]
"""``(raw file, limit, max_text)`` → its first ``limit`` rows (all when None), no sentence over
``max_text`` bytes; a fault is a :class:`VlprepError` naming the file, the row and the fix."""


@dataclass(frozen=True)
class TableSplit:
    split: str
    """fairseq's name of the split (``train``, ``valid``, ``test``, ``valid1``…)."""
    relpath: str
    """The raw file under ``raw/<dataset>``, recorded in the task's ``inputs``."""
    read: TableReader


@dataclass(frozen=True)
class SentenceTask:
    name: str
    """Written to ``out/<dataset>/<name>-bin``."""
    columns: int
    """Sentences per row: 1 (``input0``) or 2 (``input0``, ``input1``)."""
    splits: tuple[TableSplit, ...]
    """In fairseq's order; the label dictionary is built from the ``train`` split's labels."""
    scores: bool = False
    """Labels are scores, written as ``label/<split>.label`` text, not binarized with a dictionary."""


@dataclass(frozen=True)
class SentenceCorpus:
    """The dataset the tasks belong to, and the command that rebuilds them (named in verify's fixes)."""

    dataset: str
    binarize_command: str
    task_option: str = "--task"
    """How :attr:`binarize_command` is given one task."""

    def rebuild(self, task: str | None = None, again: bool = False) -> str:
        """``run: <binarize_command>`` (``run again: …`` when ``again``), for one task when given."""
        return (f"run{' again' if again else ''}: {self.binarize_command}"
                + (f" {self.task_option} {task}" if task else ""))


def one_line(text: str | None) -> tuple[str, bool]:
    """The sentence as one stripped line (line breaks become spaces); whether it had any."""
    text = text or ""
    if "\n" in text or "\r" in text:
        return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ").strip(), True
    return text.strip(), False


def encode_items(encoder: LineEncoder, lines: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Items of stripped lines: BPE + ``</s>``, an empty line giving ``[</s>]``; (tokens, sizes, unk)."""
    filled = [i for i, line in enumerate(lines) if line]
    encoded = encoder.encode_batches([lines[i] for i in filled])
    sizes = np.ones(len(lines), dtype=np.int64)
    sizes[filled] = encoded.sizes
    tokens = np.full(int(sizes.sum()), EOS, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    source_starts = np.concatenate([[0], np.cumsum(encoded.sizes)[:-1]]) if len(filled) else np.empty(0, np.int64)
    for target, source, size in zip(starts[filled], source_starts, encoded.sizes):
        tokens[target:target + size] = encoded.tokens[source:source + size]
    return tokens, sizes, encoded.unk


def label_dictionary(train_labels: list[str]) -> Dictionary:
    """fairseq-preprocess's dictionary of the train labels (count order, ties by symbol, padded to 8)."""
    counts = Counter(train_labels)
    ordered = sorted(sorted(counts.items()), key=lambda kv: kv[1], reverse=True)
    dictionary = Dictionary()
    for symbol, count in ordered:
        dictionary.add(symbol, count, overwrite=False)
    pad = 0
    while len(dictionary) % PADDING_FACTOR:
        dictionary.add(f"madeupword{pad:04d}", 0, overwrite=False)
        pad += 1
    return dictionary


def binarize_task(layout: Layout, dataset: str, task: SentenceTask, encoder: LineEncoder, dictionary: Dictionary,
                  limit: int | None, max_text: int = DEFAULT_CAPS.text_bytes) -> dict:
    """Write ``out/<dataset>/<TASK>-bin`` (built in a temporary folder, renamed when complete)."""
    raw = layout.raw(dataset)
    final = layout.out(dataset) / f"{task.name}-bin"
    tmp = temp_sibling(ensure_dir(layout.out(dataset)) / f".{task.name}-bin")  # per process: never shared
    shutil.rmtree(tmp, ignore_errors=True)
    report: dict = {"splits": {}, "files": {}}
    label_texts: dict[str, list[str]] = {}
    for part in task.splits:
        table = part.read(raw / part.relpath, limit, max_text)
        rows = len(table.sentences[0])
        entry = {"rows": rows, "tokens": 0, "unk": 0, "line_breaks": 0}
        for column_index, sentences in enumerate(table.sentences):
            lines, breaks = zip(*(one_line(v) for v in sentences)) if rows else ((), ())
            tokens, sizes, unk = encode_items(encoder, list(lines))
            folder = ensure_dir(tmp / f"input{column_index}")
            write_dataset(folder / f"{part.split}.bin", folder / f"{part.split}.idx", tokens, sizes, len(dictionary))
            entry["tokens"] += int(tokens.size)
            entry["unk"] += unk
            entry["line_breaks"] += sum(breaks)
        if table.labels is not None:
            label_texts[part.split] = table.labels
        report["splits"][part.split] = entry
    for column_index in range(task.columns):
        (tmp / f"input{column_index}" / "dict.txt").write_text(dictionary.to_text(), encoding="utf-8")
    labels_dir = ensure_dir(tmp / "label")
    if task.scores:
        for split, values in label_texts.items():
            (labels_dir / f"{split}.label").write_text("".join(v + "\n" for v in values), encoding="utf-8")
    else:
        label_dict = label_dictionary(label_texts["train"])
        (labels_dir / "dict.txt").write_text(label_dict.to_text(), encoding="utf-8")
        for split, values in label_texts.items():
            ids = np.array([label_dict.indices.get(v, UNK) for v in values], dtype=np.int64)
            tokens = np.stack([ids, np.full_like(ids, EOS)], axis=1).reshape(-1)
            write_dataset(labels_dir / f"{split}.bin", labels_dir / f"{split}.idx", tokens,
                          np.full(len(ids), 2, dtype=np.int64), len(label_dict))
        report["labels"] = label_dict.symbols[len(SPECIALS):]
    report["files"] = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    report["inputs"] = raw_inputs(layout, dataset, [part.relpath for part in task.splits])
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return report


def check_not_worse(out: Path, corpus: SentenceCorpus, stats: dict, names: Iterable[str], limit: int | None,
                    force: bool) -> None:
    """Refuse, before any task is written, a ``--limit`` trial that would replace a task folder built
    with no limit or a larger one, unless ``force``; the error names every such task."""
    if force or limit is None:
        return
    built = stats.get("tasks", {})
    worse = [name for name in names if name in built and (out / f"{name}-bin").is_dir()
             and smaller_trial(built[name].get("limit"), limit)]
    if not worse:
        return
    listed = ", ".join(f"{name}-bin built {built_with(built[name].get('limit'))} "
                       f"({sum(s.get('rows', 0) for s in built[name].get('splits', {}).values()):,} rows)"
                       for name in worse)
    raise VlprepError(f"{out}: {listed}; {corpus.binarize_command} --limit {limit} would replace "
                      f"{'it' if len(worse) == 1 else 'them'} with fewer", fix=TRIAL_FIX)


def binarize(layout: Layout, corpus: SentenceCorpus, tasks: Iterable[SentenceTask], limit: int | None = None,
             tokenizer: str | None = None, max_text: int = DEFAULT_CAPS.text_bytes, force: bool = False) -> dict:
    """Write every task; stats.json keeps the tasks written before and records these. A ``limit``
    trial that would replace a task built with no limit or a larger one is refused unless ``force``."""
    tasks = list(tasks)
    stats_path = layout.out(corpus.dataset) / "stats.json"
    stats = read_json(stats_path) if stats_path.exists() else {"dataset": corpus.dataset, "tasks": {}}
    check_not_worse(layout.out(corpus.dataset), corpus, stats, [task.name for task in tasks], limit, force)
    dictionary = load_dictionary()
    encoder = LineEncoder(dictionary, get_backend(tokenizer))
    for task in tqdm(tasks, desc=corpus.dataset, unit="task", disable=None):
        stats["tasks"][task.name] = {**binarize_task(layout, corpus.dataset, task, encoder, dictionary, limit,
                                                     max_text), "limit": limit}
    stats["vlprep_version"] = __version__
    stats["splits"] = {name: {"rows": sum(s["rows"] for s in t["splits"].values())}
                       for name, t in stats["tasks"].items()}
    write_json(stats_path, stats)
    return stats


SPLIT_ORDER = ("train", "valid", "valid1", "test", "test1")
"""fairseq's split names in the order a table shows them (stats.json keeps its keys sorted)."""


def summary_lines(stats: dict) -> list[str]:
    rows = [f"{'task':6} {'split':7} {'rows':>9} {'tokens':>11} {'unk':>5} {'line breaks':>11}"]
    for name, task in stats["tasks"].items():
        ordered = sorted(task["splits"].items(), key=lambda item: (
            SPLIT_ORDER.index(item[0]) if item[0] in SPLIT_ORDER else len(SPLIT_ORDER), item[0]))
        for split, s in ordered:
            rows.append(f"{name:6} {split:7} {s['rows']:>9,} {s['tokens']:>11,} {s['unk']:>5,} {s['line_breaks']:>11,}")
    return rows


def verify(layout: Layout, corpus: SentenceCorpus) -> dict:
    """Every task's binaries well formed (fairseq's index rules, ids inside the dictionary, items
    ending in ``</s>``) and every file's sha256 equal to ``stats.json``; raise on the first fault."""
    from ..sinks.fairseq import check_dataset
    from ..transforms.dictionary import parse_dictionary

    stats_path = layout.out(corpus.dataset) / "stats.json"
    if not stats_path.exists():
        raise VlprepError(f"{stats_path} is missing", fix=corpus.rebuild())
    report = {}
    for name, task in read_json(stats_path)["tasks"].items():
        folder = layout.out(corpus.dataset) / f"{name}-bin"
        check_inputs(layout, task.get("inputs"), corpus.rebuild(name, again=True), f"{corpus.dataset} {name}")
        items = 0
        for relpath, sha in task["files"].items():
            path = folder / relpath
            if not path.exists() or sha256_file(path) != sha:
                raise VlprepError(f"{path}: missing, or its sha256 differs from stats.json",
                                  fix=corpus.rebuild(name))
            if path.suffix == ".idx":
                symbols = len(parse_dictionary((path.parent / "dict.txt").read_bytes(), str(path.parent)))
                items += check_dataset(path.with_suffix(""), symbols, EOS)["items"]
        report[name] = {"files": len(task["files"]), "items": items}
    return report
