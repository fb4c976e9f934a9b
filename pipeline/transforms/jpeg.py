"""A byte-level walk of a JPEG's marker structure: the cheap part of "does this image decode".

Decoding every entropy-coded byte costs about 1 ms for a 640×480 photo even at 1/8 scale, which
caps a shard writer that keeps the original bytes near 1,000 images/s per core. What makes real
files fail to decode is almost always structural: a download cut short (no end-of-image marker), a
header cut or overwritten, or something that is not a JPEG at all. Pillow itself refuses a JPEG
without its end-of-image marker ("image file is truncated") and accepts damaged entropy data with
a warning, so walking the segments and scanning each scan's entropy data for its closing marker
(a C-speed regex) accepts and refuses what a full decode does, at a few percent of its cost. A
file the walk does not understand is not refused here: callers hand it to a full decode, which
has the last word.
"""
from __future__ import annotations

import re
from typing import NamedTuple

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
# Start-of-frame markers: baseline, extended, progressive, lossless (Huffman and arithmetic).
SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and restart markers carry no length
# Inside entropy-coded data 0xFF is followed by 0x00 (a stuffed byte) or a restart marker; any
# other byte after 0xFF ends the scan.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")


class JpegStructureError(ValueError):
    """The marker structure is broken or not one this walk knows."""


class Frame(NamedTuple):
    """What the (first) frame header says: the image's size and its number of colour components."""

    width: int
    height: int
    components: int


def check_structure(data: bytes) -> Frame:
    """Walk SOI … SOF … SOS+entropy data … EOI; raise :class:`JpegStructureError` if it breaks.

    Bytes after the end-of-image marker are allowed (cameras and editors append data there).
    Returns the frame header's size and components, so a caller that only needs those need not
    parse the file again.
    """
    size = len(data)
    if data[:2] != b"\xff\xd8":
        raise JpegStructureError("no JPEG start-of-image marker")
    pos, frame, scans = 2, None, 0
    while True:
        if pos >= size:
            raise JpegStructureError(f"ends after {size:,} bytes without an end-of-image marker")
        if data[pos] != 0xFF:
            raise JpegStructureError(f"no marker at byte {pos:,}")
        while pos < size and data[pos] == 0xFF:  # fill bytes may precede any marker
            pos += 1
        if pos >= size:
            raise JpegStructureError(f"ends after {size:,} bytes inside a marker")
        marker = data[pos]
        pos += 1
        if marker == EOI:
            if not scans:
                raise JpegStructureError("end-of-image marker before any scan")
            return frame
        if marker in STANDALONE:
            continue
        if marker in (SOI, 0x00):
            raise JpegStructureError(f"unexpected marker 0xFF{marker:02X} at byte {pos - 2:,}")
        if pos + 2 > size:
            raise JpegStructureError(f"ends after {size:,} bytes inside a segment header")
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2:
            raise JpegStructureError(f"segment 0xFF{marker:02X} at byte {pos - 2:,} has length {length}")
        if pos + length > size:
            raise JpegStructureError(f"ends after {size:,} bytes inside segment 0xFF{marker:02X}")
        if marker in SOF:
            header = _check_frame(data[pos + 2:pos + length])
            frame = frame or header
        pos += length
        if marker == SOS:
            if not frame:
                raise JpegStructureError("scan before any frame header")
            scans += 1
            end = _SCAN_END.search(data, pos)
            if end is None:
                raise JpegStructureError(f"ends after {size:,} bytes inside scan {scans}")
            pos = end.start()


def _check_frame(header: bytes) -> Frame:
    """8-bit samples, a non-empty size and 1, 3 or 4 components: what 8-bit decoders accept."""
    if len(header) < 6:
        raise JpegStructureError("frame header too short")
    precision, height, width, components = header[0], int.from_bytes(header[1:3], "big"), \
        int.from_bytes(header[3:5], "big"), header[5]
    if precision != 8 or width == 0 or components not in (1, 3, 4):
        raise JpegStructureError(f"frame {width}x{height}, {precision}-bit, {components} components is not "
                                 "an 8-bit JPEG this pipeline decodes")
    return Frame(width, height, components)
