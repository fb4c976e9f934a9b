"""A list of image URLs with captions, one row per line: what a web crawl reads (a caption/URL TSV).

The 0-based line number is a row's identity. Lines are split on ``\\n`` only, so a stray ``\\r``
inside a caption does not shift every later row; a line without a tab or without a URL keeps its
row and fails as an invalid URL when it is tried, so nothing is silently dropped.

:class:`TsvList` reads such a list with the caption first (caption⇥url) or the URL first
(url⇥caption); any other reader with the same three methods (``iter_rows``, ``select_rows``,
``count_rows``) yielding :class:`Row` serves the crawl as well.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator


@dataclass(frozen=True)
class Row:
    row: int
    caption: str
    url: str

    @property
    def caption_hash(self) -> str:
        return caption_hash(self.caption)


def caption_hash(caption: str) -> str:
    """The first 16 hex digits of the sha256 of the caption as published (UTF-8).

    64 bits tell whether a row is the one a manifest was made from; the full 256 would add 12 MB to
    a 500,000-row manifest that must stay small enough for git.
    """
    return hashlib.sha256(caption.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class TsvList:
    """A list with one row per line, its two fields split at the first tab (no header line).

    ``url_first``: url⇥caption; otherwise caption⇥url. The second field keeps any further tab.
    """

    url_first: bool = False

    def parse_line(self, row: int, line: bytes) -> Row:
        text = line.rstrip(b"\n").decode("utf-8", errors="replace")
        if text.endswith("\r"):
            text = text[:-1]
        first, _, second = text.partition("\t")
        caption, url = (second, first) if self.url_first else (first, second)
        return Row(row, caption, url.strip())

    def iter_rows(self, path: Path, start: int = 0, stop: int | None = None) -> Iterator[Row]:
        """Rows ``start <= row < stop`` in order."""
        with open(path, "rb") as handle:
            for row, line in enumerate(handle):
                if stop is not None and row >= stop:
                    return
                if row >= start:
                    yield self.parse_line(row, line)

    def select_rows(self, path: Path, wanted: Iterable[int]) -> Iterator[Row]:
        """The rows whose numbers are in ``wanted``, in order."""
        targets = iter(sorted(wanted))
        target = next(targets, None)
        if target is None:
            return
        with open(path, "rb") as handle:
            for row, line in enumerate(handle):
                if row == target:
                    yield self.parse_line(row, line)
                    target = next(targets, None)
                    if target is None:
                        return

    @staticmethod
    def count_rows(path: Path) -> int:
        """Lines, counting a last line without its newline."""
        rows, last = 0, b"\n"
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                rows += chunk.count(b"\n")
                last = chunk[-1:]
        return rows + (last != b"\n")
