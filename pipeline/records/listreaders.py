"""Readers of caption/URL lists in the formats lists are published in: TSV, CSV, parquet and JSONL.

Every reader yields :class:`~.urllist.Row` in index order and has the three methods the web crawl
reads a list with (``iter_rows``, ``select_rows``, ``count_rows``); each streams its file, so memory
stays bounded whatever the list's length (a 12 M-row list is read a line, a CSV record or a parquet
batch at a time).

The URL and caption are found by column name (the header line, the parquet schema, the keys of a
JSON object) or, in a TSV or CSV without a header, by 0-based position. A row's identity is its
0-based index among the data rows: the header is not a row, and a CSV record that spans several
lines (a newline inside a quoted field) is one row, so in a CSV the row index is the record index,
not the line number. A malformed row (too few columns, a line that is not a JSON object, a null)
keeps its index and gets an empty URL or caption, so it fails as ``invalid_url`` or
``empty_caption`` when tried and nothing after it shifts. A missing column, by contrast, is an
error naming the file and the columns it has: it is a mistake in the command, not in one row.
"""
from __future__ import annotations

import bisect
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..errors import VlprepError
from .urllist import LINE_BYTES, LINE_OPTION, Row, count_lines, decode_line, iter_lines, line_too_long, pick

FORMATS = ("tsv", "csv", "parquet", "jsonl")
SUFFIXES = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl",
            ".ndjson": "jsonl"}
MAX_RECORD_LINES = 100
"""Lines one CSV record may span: captions hold a few line breaks at most, and a stray quote would
otherwise join every later line into one caption until the next quote."""
PARQUET_BATCH = 8192
"""Rows per parquet batch: a few MB of URLs and captions, whatever a row group holds."""


@dataclass(frozen=True)
class Columns:
    """Which columns hold the URL and the caption (and any kept beside them), by name or 0-based position."""

    url: str = "url"
    caption: str = "caption"
    extra: tuple[str, ...] = ()
    """Columns kept in each sample's json under their own names (SBU's ``user_id``)."""

    @property
    def wanted(self) -> tuple[str, ...]:
        return (self.url, self.caption, *self.extra)

    def positions(self, path: Path, names: Sequence[str] | None) -> tuple[int, ...]:
        """The 0-based position of each wanted column: from ``names`` (a header), else the column given as a number."""
        if names is None:
            bad = [c for c in self.wanted if not (c.isascii() and c.isdigit())]
            if bad:
                raise VlprepError(f"{path}: no header line, so columns are 0-based positions, not names "
                                  f"({', '.join(bad)})", fix="give positions (--url-col 0 --caption-col 1) or "
                                                            "--header if the first line names the columns")
            return tuple(int(c) for c in self.wanted)
        missing = [c for c in self.wanted if c not in names and not (c.isdigit() and int(c) < len(names))]
        if missing:
            raise VlprepError(f"{path}: no column {', '.join(map(repr, missing))}; its columns are "
                              f"{', '.join(map(repr, list(names)[:40]))}",
                              fix="name the URL and caption columns with --url-col and --caption-col")
        return tuple(names.index(c) if c in names else int(c) for c in self.wanted)

    def row(self, index: int, values: Sequence[Any], positions: Sequence[int]) -> Row:
        """The row from its values; a value that is missing or not text becomes empty."""
        texts = [_text(values[p]) if p < len(values) else "" for p in positions]
        return Row(index, texts[1], texts[0].strip(), tuple(zip(self.extra, texts[2:])))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


def infer_format(path: Path) -> str:
    """The list's format from its suffix (``.tsv``, ``.csv``, ``.parquet``, ``.jsonl``)."""
    found = SUFFIXES.get(Path(path).suffix.lower())
    if found is None:
        raise VlprepError(f"{path}: cannot tell the list's format from its suffix {Path(path).suffix!r}",
                          fix=f"pass --format ({', '.join(FORMATS)})")
    return found


def reader_for(fmt: str, columns: Columns, header: bool = True, delimiter: str = ",",
               max_line: int = LINE_BYTES):
    """The reader of a list in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "tsv":
        return DelimitedList(columns, header, max_line)
    if fmt == "csv":
        return CsvList(columns, header, delimiter, max_line)
    if fmt == "parquet":
        return ParquetList(columns)
    if fmt == "jsonl":
        return JsonlList(columns, max_line)
    raise VlprepError(f"unknown list format {fmt!r}", fix=f"use one of: {', '.join(FORMATS)}")


class _Indexed:
    """``iter_rows`` and ``select_rows`` from one ``_rows(path)`` stream of ``(index, Row)``."""

    def _rows(self, path: Path) -> Iterator[tuple[int, Row]]:
        raise NotImplementedError

    def iter_rows(self, path: Path, start: int = 0, stop: int | None = None) -> Iterator[Row]:
        """Rows ``start <= row < stop`` in order."""
        for index, row in self._rows(path):
            if stop is not None and index >= stop:
                return
            if index >= start:
                yield row

    def select_rows(self, path: Path, wanted: Iterable[int]) -> Iterator[Row]:
        """The rows whose indexes are in ``wanted``, in order."""
        for _, row in pick(self._rows(path), wanted):
            yield row

    def count_rows(self, path: Path) -> int:
        return sum(1 for _ in self._rows(path))


@dataclass(frozen=True)
class DelimitedList(_Indexed):
    """A TSV: one row per line, fields split at tabs, with or without a header line.

    Lines are split on ``\\n`` only (no quoting), so a caption can hold any character but a tab and
    a newline; the last column a row needs keeps any further tab (``url⇥caption⇥with a tab`` gives
    the caption ``caption⇥with a tab``), so a two-column list reads as :class:`~.urllist.TsvList` does.
    """

    columns: Columns = Columns()
    header: bool = True
    max_line: int = LINE_BYTES

    def _rows(self, path: Path) -> Iterator[tuple[int, Row]]:
        lines = iter_lines(path, self.max_line)
        names = None
        if self.header:
            first = next(lines, None)
            names = decode_line(first).split("\t") if first is not None else []
        positions = self.columns.positions(path, names)
        width = len(names) if names is not None else max(positions) + 1
        for index, line in enumerate(lines):
            yield index, self.columns.row(index, decode_line(line).split("\t", width - 1), positions)

    def count_rows(self, path: Path) -> int:
        """Lines (a last one without its newline counted), less the header."""
        return max(0, count_lines(path) - self.header)


@dataclass(frozen=True)
class CsvList(_Indexed):
    """A CSV read by the csv module (quoted fields, doubled quotes, newlines inside quotes).

    A row is a record: one whose quoted field spans three lines is one row, and the rows after it
    keep their record indexes. No physical line and no field may pass ``max_line`` bytes.
    """

    columns: Columns = Columns()
    header: bool = True
    delimiter: str = ","
    max_line: int = LINE_BYTES

    def _rows(self, path: Path) -> Iterator[tuple[int, Row]]:
        text = (decode_line(line) + "\n" for line in iter_lines(path, self.max_line))
        # strict: a quote left open at the end of the file is an error, never the rest of the file as one field
        reader = csv.reader(text, delimiter=self.delimiter, strict=True)
        previous = csv.field_size_limit(self.max_line)
        try:
            names = None
            if self.header:
                names = self._record(path, reader)
                if names is None:
                    raise VlprepError(f"{path}: the list is empty (no header line)", fix="pass the list's file")
            positions = self.columns.positions(path, names)
            index = 0
            while (values := self._record(path, reader)) is not None:
                yield index, self.columns.row(index, values, positions)
                index += 1
        finally:
            csv.field_size_limit(previous)

    def _record(self, path: Path, reader) -> list[str] | None:
        """The next record (None at the end). A record malformed after a closing quote is an empty one
        (it keeps its row and fails as ``invalid_url``); one that spans more than
        :data:`MAX_RECORD_LINES` lines, or a quote still open at the end of the file, is an error."""
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise line_too_long(Path(path), reader.line_num, self.max_line) from None
            if "unexpected end of data" in str(exc):
                raise VlprepError(f"{path}, line {start:,}: a quoted field opened here is never closed (the rest "
                                  "of the file would be one caption)", fix="close the quote; a quote inside a "
                                  'quoted field is written twice ("")') from None
            values = []
        if reader.line_num - start >= MAX_RECORD_LINES:
            raise VlprepError(f"{path}, line {start:,}: one record spans {reader.line_num - start + 1:,} lines (a "
                              f"quoted field may hold at most {MAX_RECORD_LINES - 1} line breaks): an unclosed quote?",
                              fix='close the quote; a quote inside a quoted field is written twice ("")')
        return values


@dataclass(frozen=True)
class JsonlList(_Indexed):
    """JSON Lines: one object per line, the columns its keys.

    The first line that holds an object must have the URL and caption keys (else the command names
    the wrong columns: an error naming the keys it has); a later line that is not an object, or
    lacks a key, is a row with an empty URL or caption.
    """

    columns: Columns = Columns()
    max_line: int = LINE_BYTES

    def _rows(self, path: Path) -> Iterator[tuple[int, Row]]:
        checked = False
        wanted = self.columns.wanted
        for index, line in enumerate(iter_lines(path, self.max_line)):
            item = _object(line)
            if item is not None and not checked:
                self.columns.positions(path, [*item, *(c for c in wanted if c.isdigit())])
                checked = True
            values = [item.get(c) for c in wanted] if item is not None else []
            yield index, self.columns.row(index, values, range(len(wanted)))

    def count_rows(self, path: Path) -> int:
        return count_lines(path)


def _object(line: bytes) -> dict | None:
    try:
        item = json.loads(line.decode("utf-8", errors="replace"), strict=False)  # a raw NUL or tab in a caption
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python's parser goes
        return None
    return item if isinstance(item, dict) else None


@dataclass(frozen=True)
class ParquetList:
    """A parquet file read in batches of its wanted columns; row groups before a window are skipped unread."""

    columns: Columns = Columns()
    batch: int = PARQUET_BATCH

    def _open(self, path: Path):
        import pyarrow.parquet as pq

        try:
            handle = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a file that is not parquet
            raise VlprepError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})",
                              fix="check the file and --format") from None
        names = handle.schema_arrow.names
        positions = self.columns.positions(path, names)
        return handle, [names[p] for p in positions]

    def _rows_in(self, path: Path, wanted_group: Callable[[int, int], bool]) -> Iterator[tuple[int, Row]]:
        """``(index, row)`` of the row groups ``wanted_group(first index, rows)`` picks, a batch at a time."""
        handle, names = self._open(path)
        read = list(dict.fromkeys(names))
        offset = 0
        for group in range(handle.metadata.num_row_groups):
            rows = handle.metadata.row_group(group).num_rows
            if wanted_group(offset, rows):
                for batch in handle.iter_batches(batch_size=self.batch, row_groups=[group], columns=read):
                    columns = [batch.column(name).to_pylist() for name in names]
                    for i, values in enumerate(zip(*columns)):
                        yield offset + i, self.columns.row(offset + i, values, range(len(names)))
                    offset += batch.num_rows
            else:
                offset += rows

    def iter_rows(self, path: Path, start: int = 0, stop: int | None = None) -> Iterator[Row]:
        """Rows ``start <= row < stop`` in order; row groups outside the range are not read."""
        def overlaps(first: int, rows: int) -> bool:
            return first + rows > start and (stop is None or first < stop)

        for index, row in self._rows_in(path, overlaps):
            if stop is not None and index >= stop:
                return
            if index >= start:
                yield row

    def select_rows(self, path: Path, wanted: Iterable[int]) -> Iterator[Row]:
        """The rows whose indexes are in ``wanted``, in order; only the row groups holding one are read."""
        wanted = sorted(set(wanted))

        def holds(first: int, rows: int) -> bool:
            at = bisect.bisect_left(wanted, first)
            return at < len(wanted) and wanted[at] < first + rows

        if wanted:
            for _, row in pick(self._rows_in(path, holds), wanted):
                yield row

    def count_rows(self, path: Path) -> int:
        handle, _ = self._open(path)
        return handle.metadata.num_rows


__all__ = ["FORMATS", "Columns", "CsvList", "DelimitedList", "JsonlList", "LINE_OPTION", "ParquetList",
           "infer_format", "reader_for"]
