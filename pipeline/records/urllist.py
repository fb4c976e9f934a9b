"""A list of image URLs with captions: what a web crawl reads (a caption/URL TSV, or any list).

A row's 0-based index among the list's data rows (a header line excluded) is its identity. Lines
are split on ``\\n`` only, so a stray ``\\r`` inside a caption does not shift every later row; a
line without a tab or without a URL keeps its row and fails as an invalid URL when it is tried, so
nothing is silently dropped. A line longer than the cap (``--max-line-kb``) stops the read with an
error naming the file and the line: a list with a gigabyte "line" is damaged, and reading it whole
would take the machine's memory first.

:class:`TsvList` reads such a list with the caption first (caption⇥url) or the URL first
(url⇥caption); :mod:`.listreaders` reads CSV, TSV with a header, parquet and JSONL lists. Any reader
with the same three methods (``iter_rows``, ``select_rows``, ``count_rows``) yielding :class:`Row`
serves the crawl as well.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import VlprepError

LINE_BYTES = 1 << 20
"""The default cap on one line of a list (``--max-line-kb`` 1024): CC3M's longest line is under 2 KB."""
LINE_OPTION = "--max-line-kb"


@dataclass(frozen=True)
class Row:
    row: int
    caption: str
    url: str
    extra: tuple[tuple[str, str], ...] = ()
    """Further columns a dataset keeps in every sample's json (SBU's ``user_id``), in a fixed order."""

    @property
    def caption_hash(self) -> str:
        return caption_hash(self.caption)


def caption_hash(caption: str) -> str:
    """The first 16 hex digits of the sha256 of the caption as published (UTF-8).

    64 bits tell whether a row is the one a manifest was made from; the full 256 would add 12 MB to
    a 500,000-row manifest that must stay small enough for git.
    """
    return hashlib.sha256(caption.encode("utf-8")).hexdigest()[:16]


def line_too_long(path: Path, line: int, cap: int) -> VlprepError:
    """The error for a line over the cap: the file, the 1-based line, the cap and the option."""
    return VlprepError(f"{path}, line {line:,}: longer than {cap >> 10:,} KiB ({LINE_OPTION} {cap >> 10}); "
                       "a list this long in one line is damaged or not a list of this format",
                       fix=f"check the file (and --format); if its lines really are this long, raise {LINE_OPTION}")


BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte-order mark spreadsheet programs write first: dropped, so a header's first column
is named as it reads."""


def iter_lines(path: Path, max_line: int = LINE_BYTES) -> Iterator[bytes]:
    """The file's lines as bytes (``\\n`` kept), none longer than ``max_line`` bytes: a longer one is an error."""
    with open(path, "rb") as handle:
        number = 0
        while line := handle.readline(max_line + 1):
            number += 1
            if len(line) > max_line and not (len(line) == max_line + 1 and line.endswith(b"\n")):
                raise line_too_long(Path(path), number, max_line)
            yield line.removeprefix(BOM) if number == 1 else line  # a spreadsheet's byte-order mark


def count_lines(path: Path) -> int:
    """Lines, counting a last line without its newline."""
    rows, last = 0, b"\n"
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            rows += chunk.count(b"\n")
            last = chunk[-1:]
    return rows + (last != b"\n")


def decode_line(line: bytes) -> str:
    """A line as text: invalid UTF-8 replaced, its ``\\n`` (or ``\\r\\n``) removed."""
    text = line.rstrip(b"\n").decode("utf-8", errors="replace")
    return text[:-1] if text.endswith("\r") else text


def pick(rows: Iterable[tuple[int, bytes]], wanted: Iterable[int]) -> Iterator[tuple[int, bytes]]:
    """The ``(index, item)`` of ``rows`` whose index is in ``wanted``, in order, stopping after the last."""
    targets = iter(sorted(set(wanted)))
    target = next(targets, None)
    if target is None:
        return
    for index, item in rows:
        if index == target:
            yield index, item
            target = next(targets, None)
            if target is None:
                return


@dataclass(frozen=True)
class TsvList:
    """A list with one row per line, its two fields split at the first tab (no header line).

    ``url_first``: url⇥caption; otherwise caption⇥url. The second field keeps any further tab.
    """

    url_first: bool = False
    max_line: int = LINE_BYTES

    def parse_line(self, row: int, line: bytes) -> Row:
        first, _, second = decode_line(line).partition("\t")
        caption, url = (second, first) if self.url_first else (first, second)
        return Row(row, caption, url.strip())

    def iter_rows(self, path: Path, start: int = 0, stop: int | None = None) -> Iterator[Row]:
        """Rows ``start <= row < stop`` in order."""
        for row, line in enumerate(iter_lines(path, self.max_line)):
            if stop is not None and row >= stop:
                return
            if row >= start:
                yield self.parse_line(row, line)

    def select_rows(self, path: Path, wanted: Iterable[int]) -> Iterator[Row]:
        """The rows whose numbers are in ``wanted``, in order."""
        for row, line in pick(enumerate(iter_lines(path, self.max_line)), wanted):
            yield self.parse_line(row, line)

    @staticmethod
    def count_rows(path: Path) -> int:
        """Lines, counting a last line without its newline."""
        return count_lines(path)
