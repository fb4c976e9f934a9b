"""Text cleaning shared by every text path (OpenWebText lines, captions, GLUE sentences).

The rules are those of the method's preprocessing, fixed so that anyone gets the same lines:
decode UTF-8 with replacement characters, turn ``\\r\\n`` and lone ``\\r`` into ``\\n``, delete
U+0000, split on ``\\n`` only (never on U+2028, U+0085 or other Unicode separators, which stay inside
a line), ``str.strip()`` each line and drop the lines left empty.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CleanDocument:
    """The kept lines of one document and what cleaning removed from it."""

    lines: list[str]
    nul_removed: int
    empty_dropped: int


def clean_document(raw: bytes) -> CleanDocument:
    """Clean one raw document into the lines that get encoded.

    A final newline ends the last line rather than starting an empty one, so it is not counted
    as a dropped empty line; every other empty or whitespace-only line is.
    """
    text = raw.decode("utf-8", errors="replace")
    if "\r" in text:  # a membership test is a fast scan; most documents need no rewriting
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    nul_removed = text.count("\x00") if "\x00" in text else 0
    if nul_removed:
        text = text.replace("\x00", "")
    pieces = text.split("\n") if text else []
    if len(pieces) > 1 and pieces[-1] == "":
        pieces.pop()
    lines = [stripped for piece in pieces if (stripped := piece.strip())]
    return CleanDocument(lines, nul_removed, len(pieces) - len(lines))


def clean_caption(text: str) -> str:
    """Clean a caption or sentence: NULs removed, stripped, inner whitespace runs made one space."""
    return " ".join(text.replace("\x00", "").split())
