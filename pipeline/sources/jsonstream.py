"""JSON read as a stream whose nesting depth and string lengths are capped before any parser sees them.

ijson streams a document item by item, but it still builds every string whole (re-copying its
buffer per read, so a 256 MB caption costs minutes and GBs) and keeps a prefix per nesting level
(a 200,000-level JSON grew to 23 GB). :class:`CappedJson` sits between the archive member and
ijson: it follows string boundaries with two C-speed regular expressions over 1 MiB pieces,
replaces a string longer than ``max_string`` raw bytes by a short placeholder (the consumer drops
and counts it, :meth:`CappedJson.oversized` gives its length), and stops with an error naming the
file, the cap and the option when the nesting goes deeper than ``max_depth``.
"""
from __future__ import annotations

import functools
import io
import json
import os
import re
from typing import TYPE_CHECKING, BinaryIO, Iterator

if TYPE_CHECKING:
    import numpy as np

from ..caps import OPTION_OF
from ..errors import VlprepError

PIECE = 1 << 20
_PLAIN = re.compile(rb'(?:[^"]++|"[^"\\\[\]{}]*+(?:\\[^\[\]{}][^"\\\[\]{}]*+)*+")*+', re.S)
"""The longest prefix made of whole strings holding no bracket and what lies between them: its
brackets are all structure, so they can be counted without removing the strings first."""
_BODY = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+', re.S)
"""The inside of a string up to its closing quote (or a lone backslash at the end of the data)."""
_STRINGS = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_NUMBER_CHARS = b"0123456789+-.eE"


@functools.cache
def _opening() -> "np.ndarray":
    """+1 for each opening bracket byte, -1 for each closing one (numpy is imported on first use, so
    the record modules that import this one stay light for ``vlprep --help``)."""
    import numpy as np

    table = np.zeros(256, dtype=np.int64)
    table[[ord("["), ord("{")]] = 1
    table[[ord("]"), ord("}")]] = -1
    return table


class CappedJson(io.RawIOBase):
    """A readable stream of ``source``'s JSON with long strings replaced and depth checked.

    ``max_string`` counts raw (escaped) bytes; a caller whose cap is on decoded text passes six
    times it (``\\u0001`` is six raw bytes for one decoded byte), so no string within the cap is
    ever replaced, and checks decoded lengths itself. A longer string is replaced once it runs past
    the piece it starts in (pieces of :data:`PIECE` bytes read from ``source``), so none longer than
    ``max_string + PIECE`` raw bytes ever reaches the parser.
    """

    def __init__(self, source: BinaryIO, max_string: int, max_depth: int, where: str) -> None:
        super().__init__()
        self.source, self.max_string, self.max_depth, self.where = source, max_string, max_depth, where
        self.marker = "\x00vlprep-over-cap-" + os.urandom(8).hex() + "-"
        """Placeholders start with this; the random part means no input can forge one."""
        self._lengths: list[int] = []
        self._pieces = self._filtered()
        self._pending = b""
        self._number = 0
        """Length of the run of number characters the data passed on so far ends with."""

    def oversized(self, value: object) -> int | None:
        """The raw length of the string a placeholder stands for, or None for a real value."""
        if isinstance(value, str) and value.startswith(self.marker):
            return self._lengths[int(value[len(self.marker):])]
        return None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        while not self._pending:
            piece = next(self._pieces, None)
            if piece is None:
                return b""
            self._check_number(piece)
            self._pending = piece
        if size is None or size < 0:
            size = len(self._pending)
        out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def _filtered(self) -> Iterator[bytes]:
        carry, depth = b"", 0
        skipping, skipped, escaped = False, 0, False
        while piece := self.source.read(PIECE):
            if skipping:
                end = _BODY.match(piece, 1 if escaped else 0).end()
                if end == len(piece) or piece[end] == 0x5C:  # the string goes on into the next piece
                    skipped += len(piece)
                    escaped = end < len(piece)
                    continue
                skipped += end
                yield self._placeholder(skipped)
                skipping, piece = False, piece[end + 1:]
            data = carry + piece
            end, depth = self._complete(data, depth)
            yield data[:end]
            carry = data[end:]
            if len(carry) > self.max_string:
                body = _BODY.match(carry, 1).end()
                skipping, skipped, escaped, carry = True, len(carry) - 1, body < len(carry), b""
        if skipping or carry:
            yield carry  # an unfinished string: the parser reports the truncated document

    def _check_number(self, piece: bytes) -> None:
        """Stop at a number longer than a string may be: the parser builds a number whole, re-copying
        it per read, so a 500 MB one costs it its size in memory and tens of minutes. A piece is at
        most ``max_string + PIECE`` bytes, so only a run going on from earlier pieces can be longer."""
        leading = len(piece) - len(piece.lstrip(_NUMBER_CHARS))
        longest = self._number + leading
        self._number = longest if leading == len(piece) else len(piece) - len(piece.rstrip(_NUMBER_CHARS))
        if longest > self.max_string + PIECE:
            raise VlprepError(
                f"{self.where}: a JSON number longer than {self.max_string + PIECE:,} bytes (the published "
                f"files' are a few digits); stopped before reading further",
                fix=f"fetch the published file again; numbers are capped with texts, by {OPTION_OF['text_bytes']}")

    def _placeholder(self, length: int) -> bytes:
        self._lengths.append(length)
        return json.dumps(f"{self.marker}{len(self._lengths) - 1}").encode()

    def _complete(self, data: bytes, depth: int) -> tuple[int, int]:
        """Where the whole strings of ``data`` end (an unfinished one starts there) and the nesting
        depth at that point; strings holding brackets are rare and stepped over one by one."""
        position = 0
        while True:
            end = _PLAIN.match(data, position).end()
            depth = self._check_depth(data[position:end], depth)
            string = _STRINGS.match(data, end)
            if string is None:
                return end, depth
            position = string.end()

    def _check_depth(self, outside: bytes, depth: int) -> int:
        """The nesting depth after ``outside`` (no bracket of it inside a string), or an error past the cap."""
        brackets = outside.translate(None, _NOT_BRACKETS)
        if not brackets:
            return depth
        import numpy as np

        steps = _opening()[np.frombuffer(brackets, dtype=np.uint8)]
        if depth + int(np.count_nonzero(steps > 0)) > self.max_depth:
            levels = depth + np.cumsum(steps)
            if int(levels.max()) > self.max_depth:
                raise VlprepError(
                    f"{self.where}: JSON nested deeper than {self.max_depth} levels (the published files nest "
                    f"at most 5); stopped before reading further",
                    fix=f"fetch the published file again; if it really is this deep, raise {OPTION_OF['json_depth']}")
            return int(levels[-1])
        return depth + int(steps.sum())


RAW_PER_DECODED = 6
"""Most raw JSON bytes one decoded byte can take (``\\u0001``): the raw cap that keeps every text
within a decoded cap intact."""


def iter_zip_json(path, suffix: str, prefix: str, max_text: int, max_depth: int) -> Iterator[tuple[object, CappedJson]]:
    """``(item, stream)`` for each item at ijson ``prefix`` of the zip member ending in ``suffix``.

    Strings over ``RAW_PER_DECODED * max_text`` raw bytes arrive as placeholders
    (``stream.oversized(value)`` gives their length); JSON deeper than ``max_depth`` stops with an
    error; a corrupt zip or malformed JSON stops with an error naming the archive and member.
    """
    import ijson

    from .archives import ARCHIVE_ERRORS, corrupt_archive, open_zip_member

    try:
        with open_zip_member(path, suffix) as handle:
            stream = CappedJson(handle, RAW_PER_DECODED * max_text, max_depth, f"{path} (member {suffix})")
            for item in ijson.items(stream, prefix, use_float=True, buf_size=PIECE):
                yield item, stream
    except (ijson.JSONError, ValueError, *ARCHIVE_ERRORS) as exc:
        if isinstance(exc, VlprepError):
            raise
        raise corrupt_archive(path, suffix, exc) from exc


def text_problem(value: object, stream: CappedJson, max_text: int) -> tuple[str, int] | None:
    """Why a caption or description cannot be used, with its size, or None if it is a usable string
    (empty ones included: cleaning drops and counts them)."""
    length = stream.oversized(value)
    if length is None and isinstance(value, str):
        length = len(value.encode("utf-8", "surrogatepass"))
        if length <= max_text:
            return None
    if length is None:
        return f"text is not a string ({'null' if value is None else type(value).__name__})", 0
    return f"text over the cap: {length:,} bytes > {max_text >> 10:,} KB ({OPTION_OF['text_bytes']})", length
