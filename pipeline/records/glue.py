"""GLUE as the hub dataset ``nyu-mll/glue`` publishes it (one parquet file per task and split), mapped to
the task names, splits, input columns and label symbols of fairseq's RoBERTa GLUE recipe
(``examples/roberta/preprocess_GLUE_tasks.sh``).

The hub stores class labels as integers; the recipe binarizes the label *strings* of the original
TSVs (``entailment``/``neutral``/``contradiction`` for MNLI, ``entailment``/``not_entailment`` for
QNLI and RTE, ``0``/``1`` elsewhere), so each task carries its integer → symbol table. STS-B's
similarity scores are floats.

A parquet file is read in batches with every value checked before it becomes a Python object:
sentences are text and at most ``--max-text-kb`` each, labels are class numbers (or, for STS-B,
scores in 0..5). A row can never be dropped (the recipe aligns ``input0``, ``input1`` and
``label`` by position, and a GLUE test split is scored row by row), so a value that breaks a rule
stops the task with an error naming the file, the row, the column and the fix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..caps import OPTION_OF
from ..errors import VlprepError

if TYPE_CHECKING:
    import pyarrow as pa

REPO = "nyu-mll/glue"
DEFAULT_REVISION = "main"
BATCH_ROWS = 4096
ROW_GROUP_BYTES = 128 << 20
"""Most uncompressed bytes of the columns read from one parquet row group (or twice ``--max-text-kb``
if more): a row group is decoded at once. The largest published GLUE file holds ~75 MB of text."""
SPLIT_TEXT_BYTES = 256 << 20
"""Most bytes of text of one split (or twice ``--max-text-kb`` if more); MNLI train, the largest, holds
~75 MB. Dictionary-encoded pages can repeat one long value on every row, so the size on disk and the
row-group sizes do not bound it; the decoded lengths, counted before decoding, do."""
SCORE_RANGE = (0.0, 5.0)
"""STS-B similarity scores, as published."""


@dataclass(frozen=True)
class Task:
    name: str
    """fairseq's directory name: ``<name>-bin``."""
    config: str
    inputs: tuple[str, ...]
    splits: tuple[tuple[str, str, int], ...]
    """``(hub split, fairseq split, published rows)`` in fairseq's order."""
    labels: tuple[str, ...] | None
    """Label symbol of each integer class, or None for STS-B's float scores."""

    def relpath(self, hub_split: str) -> str:
        return f"{self.config}/{hub_split}-00000-of-00001.parquet"

    def labelled(self, hub_split: str) -> bool:
        return not hub_split.startswith("test")


BINARY = ("0", "1")
TASKS = {task.name: task for task in (
    Task("CoLA", "cola", ("sentence",), (("train", "train", 8_551), ("validation", "valid", 1_043),
                                         ("test", "test", 1_063)), BINARY),
    Task("SST-2", "sst2", ("sentence",), (("train", "train", 67_349), ("validation", "valid", 872),
                                          ("test", "test", 1_821)), BINARY),
    Task("MRPC", "mrpc", ("sentence1", "sentence2"), (("train", "train", 3_668), ("validation", "valid", 408),
                                                      ("test", "test", 1_725)), BINARY),
    Task("STS-B", "stsb", ("sentence1", "sentence2"), (("train", "train", 5_749), ("validation", "valid", 1_500),
                                                       ("test", "test", 1_379)), None),
    Task("QQP", "qqp", ("question1", "question2"), (("train", "train", 363_846), ("validation", "valid", 40_430),
                                                    ("test", "test", 390_965)), BINARY),
    Task("MNLI", "mnli", ("premise", "hypothesis"),
         (("train", "train", 392_702), ("validation_matched", "valid", 9_815),
          ("validation_mismatched", "valid1", 9_832), ("test_matched", "test", 9_796),
          ("test_mismatched", "test1", 9_847)), ("entailment", "neutral", "contradiction")),
    Task("QNLI", "qnli", ("question", "sentence"), (("train", "train", 104_743), ("validation", "valid", 5_463),
                                                    ("test", "test", 5_463)), ("entailment", "not_entailment")),
    Task("RTE", "rte", ("sentence1", "sentence2"), (("train", "train", 2_490), ("validation", "valid", 277),
                                                    ("test", "test", 3_000)), ("entailment", "not_entailment")),
    Task("WNLI", "wnli", ("sentence1", "sentence2"), (("train", "train", 635), ("validation", "valid", 71),
                                                      ("test", "test", 146)), BINARY),
)}
ALIASES = {**{t.name.lower(): t.name for t in TASKS.values()}, **{t.config: t.name for t in TASKS.values()}}


def task_named(name: str) -> Task:
    key = ALIASES.get(name.lower())
    if key is None:
        raise KeyError(name)
    return TASKS[key]


def all_relpaths() -> list[str]:
    return [task.relpath(hub) for task in TASKS.values() for hub, _, _ in task.splits]


def split_rows(path: Path, fix: str) -> int:
    """Rows of a split from the parquet footer, before any data is read."""
    return _open(path, fix).metadata.num_rows


def read_split(path: Path, task: Task, hub_split: str, limit: int | None, max_text: int, fix: str) -> dict[str, list]:
    """The first ``limit`` rows (all if None) of the input columns, and the labels of a labelled split.

    Sentences come back as ``str``; labels as ``int`` class numbers, or ``float`` STS-B scores.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(task.inputs) + (["label"] if task.labelled(hub_split) else [])
    parquet = _open(path, fix)
    _check_columns(parquet.schema_arrow, task, columns, path, fix)
    _check_row_groups(parquet.metadata, columns, path, max_text, fix)
    wanted = parquet.metadata.num_rows if limit is None else min(limit, parquet.metadata.num_rows)
    data: dict[str, list] = {column: [] for column in columns}
    start, text_bytes = 0, 0
    try:
        batches = pq.ParquetFile(path, read_dictionary=list(task.inputs)).iter_batches(BATCH_ROWS, columns=columns)
        for batch in batches:
            batch = batch.slice(0, wanted - start)
            text_bytes += _take_batch(batch, task, data, start, text_bytes, path, max_text, fix)
            start += batch.num_rows
            if start >= wanted:
                break
    except (OSError, pa.ArrowException) as exc:  # pyarrow's errors for damaged pages
        raise VlprepError(f"{path}: cannot read the rows from {start:,} on: {exc}", fix=fix) from exc
    return data


def _take_batch(batch: pa.RecordBatch, task: Task, data: dict[str, list], start: int, before: int, path: Path,
                max_text: int, fix: str) -> int:
    """Check one batch (its text lengths before decoding), append its rows to ``data``; its bytes of text."""
    text_bytes = sum(_checked_text_bytes(batch.column(column), column, start, path, max_text, fix)
                     for column in task.inputs)
    budget = max(SPLIT_TEXT_BYTES, 2 * max_text)
    if before + text_bytes > budget:
        raise VlprepError(f"{path}: the rows up to {start + batch.num_rows:,} hold {before + text_bytes:,} bytes of "
                          f"text, more than any GLUE split ({budget:,} at most; {OPTION_OF['text_bytes']} raises it)",
                          fix=fix)
    for column in task.inputs:
        data[column] += batch.column(column).to_pylist()
    if "label" in data:
        data["label"] += _checked_labels(task, batch.column("label").to_pylist(), start, path, fix)
    return text_bytes


def _open(path: Path, fix: str):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file, named with its fix
        raise VlprepError(f"{path}: not a parquet file ({exc})", fix=fix) from exc


def _is_text(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def _check_columns(schema: pa.Schema, task: Task, columns: list[str], path: Path, fix: str) -> None:
    """Every column present, sentences text, labels numbers (a wrong type fails here, before any row)."""
    import pyarrow as pa

    for column in columns:
        if column not in schema.names:
            raise VlprepError(f"{path}: no column {column!r} (a GLUE {task.config} file has {columns})", fix=fix)
        kind = schema.field(column).type
        if pa.types.is_dictionary(kind):  # a file written from dictionary arrays stores that type
            kind = kind.value_type
        if column != "label" and not _is_text(kind):
            raise VlprepError(f"{path}: column {column!r} holds {kind} values, not text (GLUE sentences are strings)",
                              fix=fix)
        if column == "label" and not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            wanted = "similarity scores" if task.labels is None else "class numbers 0.." + str(len(task.labels) - 1)
            raise VlprepError(f"{path}: column 'label' holds {kind} values; the hub's GLUE files hold {wanted}",
                              fix=fix)


def _check_row_groups(metadata, columns: list[str], path: Path, max_text: int, fix: str) -> None:
    """No row group whose columns would decode to more than :data:`ROW_GROUP_BYTES` (read from the footer
    and from the page headers, which pyarrow obeys whatever the footer says)."""
    cap = max(ROW_GROUP_BYTES, 2 * max_text)
    with open(path, "rb") as handle:
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            chunks = [row_group.column(i) for i in range(row_group.num_columns)
                      if row_group.column(i).path_in_schema in columns]
            size = sum(max(chunk.total_uncompressed_size, _paged_bytes(handle, chunk, path, group, fix))
                       for chunk in chunks)
            _check_row_group_size(size, cap, group, columns, path, fix)


def _paged_bytes(handle, chunk, path: Path, group: int, fix: str) -> int:
    """The bytes a column chunk decompresses to, by its page headers."""
    from ..sources.parquet_pages import PageHeaderError, page_sizes

    offsets = [chunk.data_page_offset, chunk.dictionary_page_offset if chunk.has_dictionary_page else 0]
    if not any(offsets):
        return 0
    start = min(offset for offset in offsets if offset)  # an empty chunk has its dictionary page only
    try:
        return sum(page_sizes(handle, start, chunk.total_compressed_size))
    except PageHeaderError as exc:
        raise VlprepError(f"{path}: row group {group} column {chunk.path_in_schema!r}: {exc}", fix=fix) from exc


def _check_row_group_size(size: int, cap: int, group: int, columns: list[str], path: Path, fix: str) -> None:
    """A row group is decoded at once: one over the cap stops the task before it is read."""
    if size > cap:
        raise VlprepError(f"{path}: row group {group} holds {size:,} bytes of {', '.join(columns)}, more than "
                          f"the {cap:,} read at once (no GLUE file comes close; {OPTION_OF['text_bytes']} raises "
                          "it)", fix=fix)


def _checked_text_bytes(array, column: str, start: int, path: Path, max_text: int, fix: str) -> int:
    """Bytes of the sentences of one batch, computed from the lengths before decoding; no null, none over the cap."""
    import pyarrow.compute as pc

    if array.null_count:
        row = start + array.is_null().to_pylist().index(True)
        raise VlprepError(f"{path}: row {row:,} has no {column} (null); every GLUE row needs its sentence",
                          fix=fix)
    lengths = pc.take(pc.binary_length(array.dictionary), array.indices) if hasattr(array, "dictionary") \
        else pc.binary_length(array)
    if len(lengths) and pc.max(lengths).as_py() > max_text:
        row = start + pc.index(pc.greater(lengths, max_text), True).as_py()
        size = lengths[row - start].as_py()
        raise VlprepError(f"{path}: row {row:,} column {column!r} is a sentence of {size:,} bytes, over the cap of "
                          f"{max_text:,} (GLUE's longest is a few KB; {OPTION_OF['text_bytes']} raises it)", fix=fix)
    return int(pc.sum(lengths).as_py() or 0)


def _checked_labels(task: Task, values: list, start: int, path: Path, fix: str) -> list:
    """Class numbers (an integral float such as ``1.0`` is that class; ``1.7`` is an error, never
    truncated), or STS-B scores (finite, within :data:`SCORE_RANGE`)."""
    out = []
    for row, value in enumerate(values, start):
        if task.labels is None:
            if value is None or not math.isfinite(value) or not SCORE_RANGE[0] <= value <= SCORE_RANGE[1]:
                raise VlprepError(f"{path}: row {row:,} has STS-B score {value!r}; scores are numbers from "
                                  f"{SCORE_RANGE[0]:g} to {SCORE_RANGE[1]:g}", fix=fix)
            out.append(float(value))
            continue
        number = int(value) if value is not None and (isinstance(value, int) or
                                                      (math.isfinite(value) and value == int(value))) else None
        if number is None or not 0 <= number < len(task.labels):
            raise VlprepError(f"{path}: row {row:,} has label {value!r}, not one of the class numbers "
                              f"0..{len(task.labels) - 1}", fix=fix)
        out.append(number)
    return out
