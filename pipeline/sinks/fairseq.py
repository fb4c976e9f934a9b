"""fairseq ``mmap`` indexed datasets (``.bin`` + ``.idx``), written and read without fairseq.

The layout is fairseq's ``MMapIndexedDataset`` (version 1), byte for byte what
``fairseq-preprocess --dataset-impl mmap`` writes:

``.idx``: ``b"MMIDIDX\\x00\\x00"``, ``<Q`` version 1, ``<B`` dtype code, ``<Q`` item count, then
item sizes (int32) and byte pointers into ``.bin`` (int64). ``.bin``: the items' ids back to back,
in the dtype fairseq's ``best_fitting_int_dtype`` picks for the dictionary size (fairseq 0.12's
index has no ``doc_idx``; that is a Megatron extension).

Writing is streamed: items go to disk as they come and the index is written from the sizes, so
memory holds one chunk at a time however large the corpus is.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable

import numpy as np

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
HEADER_SIZE = len(MAGIC) + 8 + 1 + 8
DTYPE_CODES: dict[int, type] = {
    1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64,
    6: np.float64, 7: np.double, 8: np.uint16, 9: np.uint32, 10: np.uint64,
}


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """fairseq's ``best_fitting_int_dtype(len(dictionary))``, as fairseq-preprocess calls it."""
    if vocab_size < 65500:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32 if vocab_size < 4294967295 else np.int64)


def dtype_code(dtype: np.dtype) -> int:
    for code, candidate in DTYPE_CODES.items():
        if np.dtype(candidate) == np.dtype(dtype):
            return code
    raise ValueError(f"no fairseq dtype code for {dtype}")


def index_header(dtype: np.dtype, n_items: int) -> bytes:
    return MAGIC + struct.pack("<QBQ", VERSION, dtype_code(dtype), n_items)


def write_index(handle: BinaryIO, dtype: np.dtype, size_chunks: Iterable[np.ndarray], n_items: int) -> None:
    """Write a complete ``.idx`` from item sizes given in chunks (iterated twice: sizes, then pointers).

    ``size_chunks`` must be re-iterable (a list, or an object whose ``__iter__`` restarts).
    """
    handle.write(index_header(dtype, n_items))
    written = 0
    for sizes in size_chunks:
        handle.write(np.asarray(sizes, dtype=np.int32).tobytes())
        written += len(sizes)
    if written != n_items:
        raise ValueError(f"index promised {n_items} items but got {written}")
    itemsize = np.dtype(dtype).itemsize
    offset = 0
    for sizes in size_chunks:
        ends = np.cumsum(np.asarray(sizes, dtype=np.int64)) * itemsize + offset
        pointers = np.empty_like(ends)
        pointers[:1] = offset
        pointers[1:] = ends[:-1]
        handle.write(pointers.tobytes())
        if ends.size:
            offset = int(ends[-1])


@dataclass(frozen=True)
class IndexInfo:
    """A parsed ``.idx`` (arrays are memory-mapped views; nothing large is copied)."""

    dtype: np.dtype
    sizes: np.ndarray
    pointers: np.ndarray


class IndexFormatError(ValueError):
    """An ``.idx`` that is not a fairseq mmap index, with the reason."""


def read_index(path: Path) -> IndexInfo:
    path = Path(path)
    total = path.stat().st_size
    if total < HEADER_SIZE:
        raise IndexFormatError(f"{path}: {total} bytes, shorter than the {HEADER_SIZE}-byte header")
    with open(path, "rb") as handle:
        header = handle.read(HEADER_SIZE)
    if header[: len(MAGIC)] != MAGIC:
        raise IndexFormatError(f"{path}: bad magic {header[:len(MAGIC)]!r}, not a fairseq mmap index")
    (version,) = struct.unpack("<Q", header[9:17])
    if version != VERSION:
        raise IndexFormatError(f"{path}: index version {version}, expected {VERSION}")
    code = header[17]
    if code not in DTYPE_CODES:
        raise IndexFormatError(f"{path}: unknown dtype code {code}")
    (n_items,) = struct.unpack("<Q", header[18:26])
    expected = HEADER_SIZE + n_items * (4 + 8)
    if total != expected:
        raise IndexFormatError(f"{path}: {total} bytes but the header promises {expected} ({n_items} items)")
    if n_items == 0:
        return IndexInfo(np.dtype(DTYPE_CODES[code]), np.empty(0, np.int32), np.empty(0, np.int64))
    mm = np.memmap(path, mode="r", dtype=np.uint8)
    sizes = mm[HEADER_SIZE: HEADER_SIZE + 4 * n_items].view(np.int32)
    pointers = mm[HEADER_SIZE + 4 * n_items: expected].view(np.int64)
    return IndexInfo(np.dtype(DTYPE_CODES[code]), sizes, pointers)


def read_tokens(bin_path: Path, dtype: np.dtype) -> np.ndarray:
    """The whole ``.bin`` as a memory-mapped array (empty files give an empty array)."""
    if Path(bin_path).stat().st_size == 0:
        return np.empty(0, dtype=dtype)
    return np.memmap(bin_path, mode="r", dtype=dtype)


def write_dataset(bin_path: Path, idx_path: Path, tokens: np.ndarray, sizes: np.ndarray, vocab_size: int) -> None:
    """Write a ``.bin`` / ``.idx`` pair for items held in memory (one work chunk at a time)."""
    dtype = dtype_for_vocab(vocab_size)
    Path(bin_path).write_bytes(np.asarray(tokens).astype(dtype, copy=False).tobytes())
    with open(idx_path, "wb") as handle:
        write_index(handle, dtype, [sizes], len(sizes))


class DatasetWriter:
    """A ``.bin`` / ``.idx`` pair written piece by piece, for items too many to hold at once.

    Ids go to ``.bin`` as they come; sizes go straight into ``.idx`` after a placeholder header,
    and :meth:`close` fills in the item count and appends the pointers, read back from the sizes
    on disk in blocks. The bytes equal :func:`write_dataset`'s for the same items, and memory holds
    one piece, however many items a hostile archive expands to.
    """

    def __init__(self, bin_path: Path, idx_path: Path, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.items = self.ids = 0
        self._bin = open(bin_path, "wb")
        self._idx = open(idx_path, "w+b")
        self._idx.write(index_header(self.dtype, 0))

    def add(self, tokens: np.ndarray, sizes: np.ndarray) -> None:
        self._bin.write(np.asarray(tokens).astype(self.dtype, copy=False).tobytes())
        self._idx.write(np.asarray(sizes, dtype=np.int32).tobytes())
        self.items += len(sizes)
        self.ids += len(tokens)

    def close(self) -> None:
        """Complete the index (count and pointers) and close both files."""
        self._bin.close()
        handle, itemsize, offset = self._idx, self.dtype.itemsize, 0
        for start in range(0, self.items, CHECK_BLOCK):
            handle.seek(HEADER_SIZE + 4 * start)
            sizes = np.frombuffer(handle.read(4 * min(CHECK_BLOCK, self.items - start)), dtype=np.int32)
            ends = np.cumsum(sizes, dtype=np.int64) * itemsize + offset
            pointers = np.empty_like(ends)
            pointers[:1] = offset
            pointers[1:] = ends[:-1]
            handle.seek(0, 2)
            handle.write(pointers.tobytes())
            offset = int(ends[-1])
        handle.seek(0)
        handle.write(index_header(self.dtype, self.items))
        handle.close()

    def abandon(self) -> None:
        """Close both files after a failure (the caller removes them)."""
        self._bin.close()
        self._idx.close()


CHECK_BLOCK = 1 << 22


def check_dataset(prefix: Path, vocab_size: int, eos: int) -> dict:
    """Re-read ``prefix.{idx,bin}`` and check everything a trainer relies on.

    Magic, version and dtype; pointers equal to the running sum of sizes; ``.bin`` length equal to
    the last pointer plus the last size; every item non-empty and ending in ``eos``; no id outside the
    dictionary. Works in blocks, so memory stays small for corpora of billions of ids. Returns
    ``{"items", "ids"}``; raises :class:`IndexFormatError` naming the first fault.
    """
    prefix = Path(prefix)
    index = read_index(Path(f"{prefix}.idx"))
    expected_dtype = dtype_for_vocab(vocab_size)
    if index.dtype != expected_dtype:
        raise IndexFormatError(f"{prefix}.idx: dtype {index.dtype}, expected {expected_dtype} for "
                               f"{vocab_size} symbols")
    itemsize = index.dtype.itemsize
    bin_bytes = Path(f"{prefix}.bin").stat().st_size
    n_items = index.sizes.size
    total_ids = int(np.sum(index.sizes, dtype=np.int64))
    if bin_bytes != total_ids * itemsize:
        raise IndexFormatError(f"{prefix}.bin: {bin_bytes} bytes, but the index sizes add up to "
                               f"{total_ids * itemsize}")
    tokens = read_tokens(Path(f"{prefix}.bin"), index.dtype)
    offset = 0
    for start in range(0, n_items, CHECK_BLOCK):
        sizes = np.asarray(index.sizes[start:start + CHECK_BLOCK], dtype=np.int64)
        if (sizes < 1).any():
            bad = start + int(np.flatnonzero(sizes < 1)[0])
            raise IndexFormatError(f"{prefix}.idx: item {bad} has size {index.sizes[bad]}")
        ends = np.cumsum(sizes) + offset
        starts = ends - sizes
        pointers = np.asarray(index.pointers[start:start + CHECK_BLOCK])
        if not np.array_equal(pointers, starts * itemsize):
            bad = start + int(np.flatnonzero(pointers != starts * itemsize)[0])
            raise IndexFormatError(f"{prefix}.idx: pointer of item {bad} is {index.pointers[bad]}, "
                                   f"expected {int(starts[bad - start]) * itemsize}")
        last = np.asarray(tokens[ends - 1])
        if (last != eos).any():
            bad = start + int(np.flatnonzero(last != eos)[0])
            raise IndexFormatError(f"{prefix}.bin: item {bad} does not end in </s> (id {eos})")
        offset = int(ends[-1]) if ends.size else offset
    for start in range(0, total_ids, CHECK_BLOCK * 8):
        block = np.asarray(tokens[start:start + CHECK_BLOCK * 8])
        if block.size and int(block.max()) >= vocab_size:
            bad = start + int(np.flatnonzero(block >= vocab_size)[0])
            raise IndexFormatError(f"{prefix}.bin: id {int(tokens[bad])} at position {bad} is outside the "
                                   f"dictionary ({vocab_size} symbols)")
    return {"items": int(n_items), "ids": total_ids}
