"""Reading archives as streams, never unpacking them to disk, and never trusting member names.

Every member name goes through :func:`safe_member_name`: absolute paths, ``..`` components and
Windows drive letters are refused, because a later stage (or a user's ``tar -x``) would write them
outside their folder. Corrupt or truncated archives raise :class:`VlprepError` naming the archive,
the member and the fix.
"""
from __future__ import annotations

import contextlib
import io
import lzma
import posixpath
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from ..errors import VlprepError

try:  # the stdlib reader gzip, bz2 and lzma build their files on (moved in Python 3.14)
    from compression._common import _streams as _compression
except ImportError:
    import _compression

BLOCK = 512
ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, lzma.LZMAError, EOFError, zlib.error, OSError)


def safe_member_name(name: str, archive: str) -> str:
    """The normalised member name, or an error if it would escape its folder."""
    cleaned = name.replace("\\", "/")
    normal = posixpath.normpath(cleaned)
    if (cleaned.startswith("/") or normal == ".." or normal.startswith("../")
            or (len(cleaned) > 1 and cleaned[1] == ":")):
        raise VlprepError(
            f"{archive}: member {name!r} points outside the archive's folder; refusing to read it",
            fix="the archive is not the published one; fetch it again from the official source",
        )
    return normal


@dataclass(frozen=True)
class TarMember:
    """Where one member's bytes lie inside an uncompressed tar, so a worker can read just them."""

    name: str
    offset: int
    size: int


class _CappedTarInfo(tarfile.TarInfo):
    """A header as ``tarfile`` reads it, except that a GNU long name or pax header larger than
    :data:`EXTENDED_HEADER_BYTES` is an error: ``tarfile`` reads one whole into memory before the
    member it describes, and a verified tar may hold one of any size."""

    def _proc_member(self, tarfile_):  # type: ignore[override]
        if self.type in _EXTENDED_TYPES and self.size > EXTENDED_HEADER_BYTES:
            raise tarfile.ReadError(f"the extended header at byte {self.offset:,} holds {self.size:,} bytes, more "
                                    f"than the {EXTENDED_HEADER_BYTES:,} a real name or pax record needs")
        return super()._proc_member(tarfile_)


_EXTENDED_TYPES = frozenset((tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                             tarfile.SOLARIS_XHDTYPE))


def list_tar(path: Path) -> list[TarMember]:
    """Regular-file members of an uncompressed tar with their data offsets (reads headers only)."""
    path = Path(path)
    total = path.stat().st_size
    members: list[TarMember] = []
    try:
        with tarfile.open(path, mode="r:", tarinfo=_CappedTarInfo) as archive:
            for info in archive:
                name = safe_member_name(info.name, str(path))
                if not info.isreg():
                    continue
                if info.offset_data + info.size > total:
                    raise tarfile.ReadError(f"member {info.name} runs past the end of the file")
                members.append(TarMember(name, info.offset_data, info.size))
    except ARCHIVE_ERRORS as exc:
        raise corrupt_archive(path, None, exc) from exc
    return members


def read_member(path: Path, member: TarMember) -> bytes:
    """The raw bytes of one tar member (small members only: stages stream with :func:`open_member`)."""
    with open(path, "rb") as handle:
        handle.seek(member.offset)
        data = handle.read(member.size)
    if len(data) != member.size:
        raise corrupt_archive(Path(path), member.name, EOFError("file ends inside this member"))
    return data


class _Window(io.RawIOBase):
    """The next ``size`` bytes of an open file, as a stream of their own (one member read in place)."""

    def __init__(self, handle: BinaryIO, size: int) -> None:
        super().__init__()
        self._handle, self._left = handle, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self._left)
        if wanted <= 0:
            return 0
        got = self._handle.readinto(memoryview(buffer)[:wanted])
        self._left -= got
        return got


@contextlib.contextmanager
def open_member(path: Path, member: TarMember) -> Iterator[BinaryIO]:
    """One member of an uncompressed tar as a stream, read from its offset without holding it.

    A subset tar's ``.xz`` member is ~30 MB; a verified archive may hold one of any size, so it is
    never read whole. A file that ends inside the member reads short, which the reader of the
    stream reports (an xz stream then ends before its end marker).
    """
    with open(path, "rb") as handle:
        handle.seek(member.offset)
        yield _Window(handle, member.size)


XZ_MEMORY_LIMIT = 256 << 20
"""Most memory the xz decoder may ask for. An xz header states its dictionary size (up to 4 GiB) and
liblzma allocates it up front, which Python reports as ``MemoryError``; past this limit it is an
``LZMAError`` instead. ``xz -9`` needs 65 MiB to decode."""
XZ_READ_BUFFER = 1 << 20
"""Decompressed bytes fetched per call into the xz decoder: a document is a few KB, and one decoder
call per header and per document cost ~10 % of ``binarize owt``'s CPU; 1 MiB calls cost nothing."""


def iter_xz_tar(compressed: BinaryIO, label: str,
                max_size: int | None = None) -> Iterator[tuple[str, bytes | None, int]]:
    """``(name, data, size)`` of the regular files of an xz-compressed tar (an OpenWebText ``.xz``
    chunk), decompressed as a stream, in order.

    A few hundred kilobytes of xz can expand to gigabytes, so nothing holds the whole chunk: the
    stream is decompressed as the tar is walked, and a member over ``max_size`` bytes is read
    through in :data:`SKIP_CHUNK` pieces and yielded with ``data`` None, so the caller can
    count it. Memory holds one member within the cap and the decompressor's buffers.
    """
    raw = _compression.DecompressReader(compressed, lzma.LZMADecompressor, trailing_error=lzma.LZMAError,
                                        memlimit=XZ_MEMORY_LIMIT)
    with io.BufferedReader(raw, XZ_READ_BUFFER) as stream:  # LZMAFile's own reader takes no memlimit
        yield from _iter_capped_tar(stream, label, max_size)


def _iter_capped_tar(stream: BinaryIO, label: str, max_size: int | None) -> Iterator[tuple[str, bytes | None, int]]:
    """Walk a tar strictly forward; as :func:`list_tar_bytes` does, the first empty header ends it."""
    for entry in _walk_tar(stream, label, strict=False):
        if entry.regular and (max_size is None or entry.size <= max_size):
            data = _read_exact(stream, entry.size, f"member {entry.name}")
            _skip(stream, entry.padded - entry.size, f"the padding of member {entry.name}")
            yield entry.name, data, entry.size
        else:  # over the cap, or an unknown type that carries data (tarfile's rule)
            _skip(stream, entry.padded, f"member {entry.name}")
            if entry.regular:
                yield entry.name, None, entry.size


def _pax_size(value: str, where: str) -> int:
    """A pax ``size`` record as a byte count; a negative one would make ``read(size)`` read the
    whole rest of the stream (a gzip or xz bomb) into memory."""
    try:
        size = int(value)
    except ValueError as exc:
        raise tarfile.ReadError(f"bad pax size at {where}") from exc
    if size < 0:
        raise tarfile.ReadError(f"negative pax size {size:,} at {where}")
    return size


_PLAIN_TYPES = frozenset(b"0\x001234567")
"""Header types the in-memory fast path reads itself; long names, pax and sparse members go to tarfile."""
_REGULAR_TYPES = frozenset(b"0\x007")
_NO_DATA_TYPES = frozenset(b"123456")
"""Links, devices, directories and fifos: whatever their size field says, no data follows (as in tarfile)."""


def _parse_header(header: bytes, where: str) -> tuple[str, int, int]:
    """``(name, type, size)`` of one 512-byte header, checksum verified (tarfile's field decoders).

    As ``tarfile.TarInfo.frombuf`` does: an old-style directory (type NUL, name ending in ``/``) is
    given the directory type, a directory's trailing slashes are dropped, then the USTAR prefix is
    joined. Sizes over 8 GiB in GNU base-256 are read by ``tarfile.nti`` too.
    """
    stored = tarfile.nti(header[148:156])
    if stored != sum(header) - sum(header[148:156]) + 256 and stored not in tarfile.calc_chksums(header):
        raise tarfile.ReadError(f"bad header checksum at {where}")
    kind = header[156]
    size = tarfile.nti(header[124:136])
    if size < 0:  # GNU base-256 can say -1: read(-1) would read the whole rest of the stream
        raise tarfile.ReadError(f"negative member size {size:,} in the header at {where}")
    name = tarfile.nts(header[0:100], "utf-8", "surrogateescape")
    if kind == 0 and name.endswith("/"):
        kind = ord("5")
    if kind == ord("5"):
        name = name.rstrip("/")
    prefix = tarfile.nts(header[345:500], "utf-8", "surrogateescape")
    if prefix and kind not in b"LKS":
        name = prefix + "/" + name
    return name, kind, size


def list_tar_bytes(raw: bytes, label: str) -> list[tuple[str, int, int]]:
    """``(name, data offset, size)`` of the regular files of a tar held in memory, in order.

    Parses the 512-byte headers directly (with tarfile's own field decoders and checksum rule),
    about 10x faster than ``tarfile`` for archives of many small files; archives using GNU long
    names, pax headers or sparse files are handed to ``tarfile`` unchanged. Unlike ``tarfile``,
    which silently stops at a damaged header in mid-archive, a bad header here is an error.
    """
    members: list[tuple[str, int, int]] = []
    pos, end = 0, len(raw)
    while pos + BLOCK <= end:
        header = raw[pos:pos + BLOCK]
        if header.count(0) == BLOCK:
            return members
        if header[156] not in _PLAIN_TYPES or header[124] & 0x80:
            return _list_tar_bytes_with_tarfile(raw, label)
        name, kind, size = _parse_header(header, f"byte {pos}")
        regular = kind in _REGULAR_TYPES
        name = safe_member_name(name, label)
        data = pos + BLOCK
        if regular:
            if data + size > end:
                raise tarfile.ReadError(f"member {name} runs past the end of the archive")
            members.append((name, data, size))
        pos = data + -(-size // BLOCK) * BLOCK if regular else data
    if pos != end and raw[pos:].count(0) != end - pos:
        raise tarfile.ReadError(f"archive ends inside a header at byte {pos}")
    return members


def _read_exact(stream: BinaryIO, size: int, what: str) -> bytes:
    data = stream.read(size)
    while len(data) < size:  # a raw stream may return less; a buffered one only at the end
        more = stream.read(size - len(data))
        if not more:
            raise tarfile.ReadError(f"the archive ends inside {what}")
        data += more
    return data


def _pax_records(data: bytes, where: str) -> dict[str, str]:
    """The ``"<length> <key>=<value>\\n"`` records of a pax extended header (POSIX.1-2001)."""
    records: dict[str, str] = {}
    pos = 0
    try:
        while pos < len(data) and data[pos]:
            space = data.index(b" ", pos)
            length = int(data[pos:space])
            key, _, value = data[space + 1:pos + length - 1].partition(b"=")
            records[key.decode("utf-8")] = value.decode("utf-8", "surrogateescape")
            if length <= 0:
                raise ValueError(length)
            pos += length
    except ValueError as exc:
        raise tarfile.ReadError(f"bad pax header at {where}") from exc
    return records


EXTENDED_HEADER_BYTES = 1 << 20
"""Most bytes of one GNU long-name or pax header: real ones hold a path of a few hundred bytes, and
the whole header is read into memory before the member it describes."""
SKIP_CHUNK = 1 << 20
"""Skipped member data is read (through the decompressor) and dropped in pieces of this size."""


@dataclass(frozen=True)
class Oversized:
    """Stands in for the data of a member larger than the cap: its size, the data skipped unread."""

    size: int


def iter_tar_members(stream: BinaryIO, label: str, wanted: Callable[[str], bool] | None = None,
                     max_size: int | None = None) -> Iterator[tuple[str, bytes | Oversized]]:
    """``(name, bytes)`` of the regular files of an uncompressed tar read strictly forward from ``stream``.

    The streaming counterpart of :func:`list_tar_bytes`, for archives far larger than memory (an
    ImageNet tarball is 30 GB): each member is read with one ``read`` and no intermediate copies,
    where ``tarfile``'s stream mode passes every byte through 10 KiB buffers and several joins and
    keeps every header it has seen. USTAR, GNU (long names) and pax (``path``, ``size``) headers
    are read; a sparse member is an error. Unlike ``tarfile``, a damaged header is an error, and
    so is anything but zeros after the end-of-archive blocks (a zeroed header in mid-archive would
    otherwise end the listing there without a word). An archive that ends cleanly after a member,
    without end-of-archive blocks, is accepted as ``tarfile`` accepts it.

    Memory stays bounded whatever the archive holds, since the size field is read before the data:
    a member whose name ``wanted`` refuses is skipped in :data:`SKIP_CHUNK` pieces and not yielded;
    a member over ``max_size`` bytes is skipped the same way and yielded as ``(name, Oversized(size))``
    so the caller can list it; an extended header over :data:`EXTENDED_HEADER_BYTES` and a name that
    is not UTF-8 are errors.
    """
    for entry in _walk_tar(stream, label, strict=True):
        if not entry.regular or (wanted is not None and not wanted(entry.name)):
            _skip(stream, entry.padded, f"member {entry.name}")  # an unknown type carries data (tarfile's rule)
        elif max_size is not None and entry.size > max_size:
            _skip(stream, entry.padded, f"member {entry.name}")
            yield entry.name, Oversized(entry.size)
        else:
            data = _read_exact(stream, entry.size, f"member {entry.name}")
            _read_exact(stream, entry.padded - entry.size, f"the padding of member {entry.name}")
            yield entry.name, data


@dataclass(frozen=True)
class _Entry:
    """One member that carries data, its extended headers already applied."""

    name: str
    regular: bool
    size: int
    padded: int


def _walk_tar(stream: BinaryIO, label: str, strict: bool) -> Iterator[_Entry]:
    """The headers of a tar read strictly forward, for the two streaming readers above.

    The caller reads or skips exactly ``entry.padded`` bytes before asking for the next entry.
    GNU long names and pax ``path``/``size`` records are applied and never yielded; an extended
    header over :data:`EXTENDED_HEADER_BYTES` and a sparse member are errors; members without data
    (links, devices, folders) are passed over. ``strict`` (tarballs that feed shards) also refuses
    a name that is not UTF-8 and data after the end-of-archive blocks; without it the first empty
    header ends the archive, as ``tarfile`` does.
    """
    offset = 0
    long_name: str | None = None
    pax: dict[str, str] = {}
    while True:
        header = stream.read(BLOCK)
        if not header or (not strict and header.count(0) == BLOCK):
            return
        if len(header) < BLOCK:
            raise tarfile.ReadError(f"the archive ends inside the header at byte {offset:,}")
        if header.count(0) == BLOCK:
            _check_trailer(stream, offset)
            return
        where = f"byte {offset:,}"
        name, kind, size = _parse_header(header, where)
        if "size" in pax:
            size = _pax_size(pax["size"], where)
        offset += BLOCK
        padded = -(-size // BLOCK) * BLOCK
        if kind in b"LKxg":  # extended headers describe the next member
            if size > EXTENDED_HEADER_BYTES:
                raise tarfile.ReadError(f"the extended header at {where} holds {size:,} bytes, more than the "
                                        f"{EXTENDED_HEADER_BYTES:,} a real name or pax record needs")
            data = _read_exact(stream, padded, f"the extended header at {where}")[:size]
            if kind == ord("L"):
                long_name = tarfile.nts(data, "utf-8", "surrogateescape")
            elif kind == ord("x"):
                pax = _pax_records(data, where)
            offset += padded
            continue
        if kind == ord("S"):
            raise tarfile.ReadError(f"member {name} at {where} is a sparse file, which this reader does not expand")
        name = safe_member_name(pax.get("path") or long_name or name, label)
        if strict:
            name = _utf8_name(name, where)
        long_name, pax = None, {}
        if kind in _NO_DATA_TYPES:
            continue
        yield _Entry(name, kind in _REGULAR_TYPES, size, padded)
        offset += padded


def _utf8_name(name: str, where: str) -> str:
    """The name, if its bytes were UTF-8 (they are decoded with ``surrogateescape``, so they were if
    no lone surrogate is left); names end up in shard headers and JSON, which need UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "surrogateescape")
        raise tarfile.ReadError(f"the member name at {where} is not UTF-8: {raw[:120]!r}") from None
    return name


def _skip(stream: BinaryIO, size: int, what: str) -> None:
    """Read past ``size`` bytes in bounded pieces (a gzip stream cannot seek without inflating)."""
    while size > 0:
        piece = stream.read(min(size, SKIP_CHUNK))
        if not piece:
            raise tarfile.ReadError(f"the archive ends inside {what}")
        size -= len(piece)


def _check_trailer(stream: BinaryIO, offset: int) -> None:
    """What follows the first end-of-archive block must be zeros: the second block and the padding.

    Anything else means a header in mid-archive was zeroed and every member after it would be lost.
    """
    while chunk := stream.read(1 << 20):
        if chunk.count(0) != len(chunk):
            raise tarfile.ReadError(f"the tar stops at an empty header at byte {offset:,} but data follows")
        offset += len(chunk)


def _list_tar_bytes_with_tarfile(raw: bytes, label: str) -> list[tuple[str, int, int]]:
    members = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
        for info in archive:
            name = safe_member_name(info.name, label)
            if info.isreg():
                if info.offset_data + info.size > len(raw):
                    raise tarfile.ReadError(f"member {info.name} runs past the end of the archive")
                members.append((name, info.offset_data, info.size))
    return members


def corrupt_archive(path: Path, member: str | None, exc: BaseException) -> VlprepError:
    where = f"{path}" + (f" (member {member})" if member else "")
    return VlprepError(
        f"{where} is truncated or corrupt: {exc}",
        fix=f"delete {path} and run the fetch command again to download a verified copy",
    )


def open_zip_info(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> BinaryIO:
    """``archive.open(info)``, where a member zipfile cannot read raises ``BadZipFile`` as a damaged
    one does: for an encrypted member zipfile raises ``RuntimeError``, and for a compression method
    or feature it lacks (Deflate64, strong encryption) ``NotImplementedError``, which no caller
    expects from an archive."""
    try:
        stream = archive.open(info)
    except (RuntimeError, NotImplementedError) as exc:
        reason = "it is encrypted" if info.flag_bits & 0x1 else str(exc)
        raise zipfile.BadZipFile(f"member {info.filename} cannot be read: {reason}") from exc
    if info.compress_type == zipfile.ZIP_LZMA and (size := _lzma_dictionary(archive, info)) > XZ_MEMORY_LIMIT:
        stream.close()
        raise zipfile.BadZipFile(f"member {info.filename} states an LZMA dictionary of {size:,} bytes, more than "
                                 f"the {XZ_MEMORY_LIMIT:,} allowed")
    return stream


def _lzma_dictionary(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """The dictionary size an LZMA member's properties state: the decoder allocates it before the
    first byte (Python reports a failure as ``MemoryError``), and zipfile sets no limit."""
    archive.fp.seek(info.header_offset)
    local = archive.fp.read(30)
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    archive.fp.seek(info.header_offset + 30 + name_length + extra_length)
    properties = archive.fp.read(9)  # version (2), properties size (2), LZMA properties (5)
    if len(properties) < 9:
        raise zipfile.BadZipFile(f"member {info.filename} ends inside its LZMA properties")
    return struct.unpack("<I", properties[5:9])[0]


def iter_zip(path: Path) -> Iterator[tuple[str, BinaryIO]]:
    """Yield ``(name, open member stream)`` of a zip's regular files, in central-directory order.

    Members are read as streams (``ZipFile.open``), never extracted; names are checked first.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = safe_member_name(info.filename, str(path))
                if info.is_dir():
                    continue
                with open_zip_info(archive, info) as stream:
                    yield name, stream
    except ARCHIVE_ERRORS as exc:
        raise corrupt_archive(path, None, exc) from exc


@contextlib.contextmanager
def open_zip_member(path: Path, suffix: str) -> Iterator[BinaryIO]:
    """The first member of a zip whose name ends with ``suffix``, as a stream (e.g. a JSON file
    inside a published annotation zip); a corrupt zip or a missing member names the file and the fix."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except ARCHIVE_ERRORS as exc:
        raise corrupt_archive(path, None, exc) from exc
    with archive:
        names = [n for n in archive.namelist() if n.endswith(suffix)]
        if not names:
            raise VlprepError(f"{path} holds no {suffix}", fix="fetch the published file again")
        with open_zip_info(archive, archive.getinfo(names[0])) as handle:
            yield handle
