"""The uncompressed sizes a parquet column chunk's page headers state, read without decoding a page.

The footer's ``total_uncompressed_size`` is only what the writer says; pyarrow decompresses each
page to the size its own header states, so an 8 KB file whose footer claims 1,000 bytes can still
inflate one page to 256 MB (and pyarrow then copies it several times). The page headers are what
the reader obeys, so a cap on memory has to be checked against them. Each header is a Thrift
compact-protocol struct; only its fields 2 (``uncompressed_page_size``) and 3
(``compressed_page_size``) are used, the rest is stepped over.
"""
from __future__ import annotations

from typing import BinaryIO

HEADER_BYTES = 1 << 20
"""Most bytes of one page header read: real ones take tens of bytes (statistics are capped by writers)."""


FIRST_READ = 4096
"""Bytes read for a header first; a page header with long statistics may need up to :data:`HEADER_BYTES`."""


class PageHeaderError(ValueError):
    """A page header that cannot be parsed, or a chunk whose pages do not fit the bytes it spans."""


class _Compact:
    """Just enough of Thrift's compact protocol to walk any struct, keeping top-level i32 fields."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise PageHeaderError("page header runs past the bytes read")
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 70:
                raise PageHeaderError("varint too long")

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def skip(self, kind: int) -> None:
        if kind in (1, 2):  # booleans live in the field header
            return
        if kind == 3:
            self.byte()
        elif kind in (4, 5, 6):
            self.varint()
        elif kind == 7:
            self.pos += 8
        elif kind == 8:
            length = self.varint()  # read before ``pos`` is: ``pos += varint()`` would lose the varint's bytes
            self.pos += length
        elif kind in (9, 10):
            header = self.byte()
            size = header >> 4 if header >> 4 != 15 else self.varint()
            for _ in range(size):
                self.skip_element(header & 0x0F)
        elif kind == 11:
            size = self.varint()
            types = self.byte() if size else 0
            for _ in range(size):
                self.skip_element(types >> 4)
                self.skip_element(types & 0x0F)
        elif kind == 12:
            self.struct()
        else:
            raise PageHeaderError(f"unknown thrift type {kind}")

    def skip_element(self, kind: int) -> None:
        """A list, set or map element: a boolean takes a byte of its own there."""
        if kind in (1, 2):
            self.byte()
        else:
            self.skip(kind)

    def struct(self) -> dict[int, int]:
        """Read a struct to its end; its integer fields by number (nested structs are stepped over)."""
        fields: dict[int, int] = {}
        field = 0
        while (header := self.byte()) != 0:
            kind, delta = header & 0x0F, header >> 4
            field = field + delta if delta else self.zigzag()
            if kind in (4, 5, 6):
                fields[field] = self.zigzag()
            else:
                self.skip(kind)
        return fields


def _read_header(handle: BinaryIO, position: int, end: int) -> tuple[_Compact, dict[int, int]]:
    """The page header at ``position``: a few KB are read first (headers take tens of bytes), all of
    :data:`HEADER_BYTES` only when that is not enough."""
    handle.seek(position)
    reader = _Compact(handle.read(min(FIRST_READ, end - position)))
    try:
        return reader, reader.struct()
    except PageHeaderError:
        if len(reader.data) < FIRST_READ:  # the chunk ends within these bytes: reading more cannot help
            raise
    handle.seek(position)
    reader = _Compact(handle.read(min(HEADER_BYTES, end - position)))
    return reader, reader.struct()


def page_sizes(handle: BinaryIO, start: int, length: int) -> list[int]:
    """The uncompressed size of every page of the column chunk at ``start`` spanning ``length`` bytes."""
    sizes: list[int] = []
    position, end = start, start + length
    while position < end:
        reader, fields = _read_header(handle, position, end)
        if 2 not in fields or 3 not in fields or fields[2] < 0 or fields[3] < 0:
            raise PageHeaderError(f"page header at byte {position:,} states no sizes")
        sizes.append(fields[2])
        position += reader.pos + fields[3]
    if position != end:
        raise PageHeaderError(f"the pages end at byte {position:,}, not at {end:,} where the footer ends the chunk")
    return sizes
