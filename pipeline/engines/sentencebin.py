"""GLUE → fairseq binaries in the layout of fairseq's RoBERTa GLUE recipe, byte for byte.

For every task ``out/glue/<TASK>-bin/`` holds ``input0/`` (and ``input1/`` for sentence pairs) with
``{train,valid,test}.{bin,idx}`` (MNLI adds ``valid1``/``test1`` for the mismatched sets) and the
GPT-2 ``dict.txt``, and ``label/``: the labels binarized with their own dictionary, or, for STS-B,
``train.label``/``valid.label`` with the score divided by 5. What the recipe does and vlprep
repeats:

- every sentence is one item: ``line.strip()``, GPT-2 BPE, dictionary indices, ``</s>`` appended;
  an empty sentence is an item of just ``</s>`` (``--keep-empty``). A line break inside a sentence
  (which a TSV line cannot hold) becomes a space, and is counted, so items stay aligned;
- the label dictionary is what ``fairseq-preprocess`` builds from the train labels: symbols by
  descending count, ties in symbol order, padded with ``madeupword0000``… to a multiple of 8;
- STS-B scores are printed as awk prints ``$1 / 5.0`` (``%.6g``);
- test splits have inputs only.
"""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import __version__
from ..caps import DEFAULT_CAPS
from ..errors import VlprepError
from ..fileio import ensure_dir, read_json, sha256_file, temp_sibling, write_json
from ..layout import Layout
from ..records import glue as records
from ..sinks.fairseq import write_dataset
from ..transforms.bpe import LineEncoder, get_backend
from ..transforms.dictionary import EOS, SPECIALS, UNK, Dictionary, load_dictionary
from .fetch import FetchReport, fetch_from_hub, fetch_from_mirror
from .inputs import check_inputs, raw_inputs

NAME = "glue"
DEFAULT_REVISION = "main"
PADDING_FACTOR = 8


def fetch(layout: Layout, mirror: str | None = None, tasks: tuple[str, ...] = (),
          revision: str = DEFAULT_REVISION) -> FetchReport:
    from ..sources.mirror import Mirror

    chosen = [records.task_named(t) for t in tasks] if tasks else list(records.TASKS.values())
    relpaths = [task.relpath(hub) for task in chosen for hub, _, _ in task.splits]
    if mirror:
        return fetch_from_mirror(layout.raw(NAME), relpaths, Mirror(mirror))
    return fetch_from_hub(layout.raw(NAME), relpaths, records.REPO, revision)


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


def awk_score(score: float) -> str:
    """``awk '{print $1 / 5.0}'``: awk's OFMT is ``%.6g``."""
    return format(float(score) / 5.0, ".6g")


def _read_split(path: Path, task: records.Task, hub_split: str, published: int, limit: int | None,
                max_text: int) -> dict[str, list]:
    """The split's columns, read in checked batches; the row count (from the footer) is checked first."""
    fix = f"run: vlprep fetch glue --task {task.name}"
    if not path.exists():
        raise VlprepError(f"{path} is missing", fix=fix)
    rows = records.split_rows(path, fix)
    if limit is None and rows != published:
        raise VlprepError(f"GLUE {task.name} {hub_split}: {rows:,} rows, the published split has {published:,}",
                          fix=f"fetch the published files again: vlprep fetch glue --task {task.name} "
                              "(or pass --limit for a partial trial)")
    return records.read_split(path, task, hub_split, limit, max_text, fix)


def _labels(task: records.Task, values: list) -> list[str]:
    """Label symbols of checked class numbers, or STS-B scores as the recipe's awk prints them."""
    if task.labels is None:
        return [awk_score(v) for v in values]
    return [task.labels[v] for v in values]


def binarize_task(layout: Layout, task: records.Task, encoder: LineEncoder, dictionary: Dictionary,
                  limit: int | None, max_text: int = DEFAULT_CAPS.text_bytes) -> dict:
    """Write ``out/glue/<TASK>-bin`` (built in a temporary folder, renamed when complete)."""
    raw = layout.raw(NAME)
    final = layout.out(NAME) / f"{task.name}-bin"
    tmp = temp_sibling(ensure_dir(layout.out(NAME)) / f".{task.name}-bin")  # per process: never shared
    shutil.rmtree(tmp, ignore_errors=True)
    report: dict = {"splits": {}, "files": {}}
    label_texts: dict[str, list[str]] = {}
    for hub_split, split, published in task.splits:
        data = _read_split(raw / task.relpath(hub_split), task, hub_split, published, limit, max_text)
        rows = len(data[task.inputs[0]])
        entry = {"rows": rows, "tokens": 0, "unk": 0, "line_breaks": 0}
        for column_index, column in enumerate(task.inputs):
            lines, breaks = zip(*(one_line(v) for v in data[column])) if rows else ((), ())
            tokens, sizes, unk = encode_items(encoder, list(lines))
            folder = ensure_dir(tmp / f"input{column_index}")
            write_dataset(folder / f"{split}.bin", folder / f"{split}.idx", tokens, sizes, len(dictionary))
            entry["tokens"] += int(tokens.size)
            entry["unk"] += unk
            entry["line_breaks"] += sum(breaks)
        if task.labelled(hub_split):
            label_texts[split] = _labels(task, data["label"])
        report["splits"][split] = entry
    for column_index in range(len(task.inputs)):
        (tmp / f"input{column_index}" / "dict.txt").write_text(dictionary.to_text(), encoding="utf-8")
    labels_dir = ensure_dir(tmp / "label")
    if task.labels is None:
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
    report["inputs"] = raw_inputs(layout, NAME, [task.relpath(hub_split) for hub_split, _, _ in task.splits])
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return report


def binarize(layout: Layout, tasks: tuple[str, ...] = (), limit: int | None = None,
             tokenizer: str | None = None, max_text: int = DEFAULT_CAPS.text_bytes) -> dict:
    chosen = [records.task_named(t) for t in tasks] if tasks else list(records.TASKS.values())
    dictionary = load_dictionary()
    encoder = LineEncoder(dictionary, get_backend(tokenizer))
    stats_path = layout.out(NAME) / "stats.json"
    stats = read_json(stats_path) if stats_path.exists() else {"dataset": NAME, "tasks": {}}
    for task in tqdm(chosen, desc="glue", unit="task", disable=None):
        stats["tasks"][task.name] = {**binarize_task(layout, task, encoder, dictionary, limit, max_text),
                                     "limit": limit}
    stats["vlprep_version"] = __version__
    stats["splits"] = {name: {"rows": sum(s["rows"] for s in t["splits"].values())}
                       for name, t in stats["tasks"].items()}
    write_json(stats_path, stats)
    return stats


def summary_lines(stats: dict) -> list[str]:
    rows = [f"{'task':6} {'split':7} {'rows':>9} {'tokens':>11} {'unk':>5} {'line breaks':>11}"]
    for name, task in stats["tasks"].items():
        for split, s in task["splits"].items():
            rows.append(f"{name:6} {split:7} {s['rows']:>9,} {s['tokens']:>11,} {s['unk']:>5,} {s['line_breaks']:>11,}")
    return rows


def verify(layout: Layout) -> dict:
    """Every task's binaries well formed (fairseq's index rules, ids inside the dictionary, items
    ending in ``</s>``) and every file's sha256 equal to ``stats.json``; raise on the first fault."""
    from ..sinks.fairseq import check_dataset
    from ..transforms.dictionary import parse_dictionary

    stats_path = layout.out(NAME) / "stats.json"
    if not stats_path.exists():
        raise VlprepError(f"{stats_path} is missing", fix="run: vlprep binarize glue")
    report = {}
    for name, task in read_json(stats_path)["tasks"].items():
        folder = layout.out(NAME) / f"{name}-bin"
        check_inputs(layout, task.get("inputs"), f"run: vlprep binarize glue --task {name} again", f"glue {name}")
        items = 0
        for relpath, sha in task["files"].items():
            path = folder / relpath
            if not path.exists() or sha256_file(path) != sha:
                raise VlprepError(f"{path}: missing, or its sha256 differs from stats.json",
                                  fix=f"run: vlprep binarize glue --task {name}")
            if path.suffix == ".idx":
                symbols = len(parse_dictionary((path.parent / "dict.txt").read_bytes(), str(path.parent)))
                items += check_dataset(path.with_suffix(""), symbols, EOS)["items"]
        report[name] = {"files": len(task["files"]), "items": items}
    return report
