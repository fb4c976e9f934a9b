"""Zip members Python's zipfile cannot read, and other hostile archive contents, through the real CLI.

A verified zip may hold an encrypted member, one compressed with a method zipfile lacks (Deflate64),
a corrupt deflate stream, or a central directory that overstates a member's size. zipfile answers
those with ``RuntimeError``, ``NotImplementedError``, ``zlib.error`` or ``EOFError`` rather than
``BadZipFile``; none may end in a traceback (or click's bare ``Aborted!``).
"""
from __future__ import annotations

import gzip
import json
import lzma
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from ..helpers import COCO_FILES, copy_mirror, one_line_error, run_cli, shard, write_sums

ENCRYPTED = 0x1
DEFLATE64 = 9


def patch_central(path: Path, name: str, fields: dict[int, tuple[str, int]]) -> None:
    """Overwrite fields (offset → struct format, value) of ``name``'s central-directory entry, and
    the same flag/method fields of its local header (offsets 6 and 8 there, 8 and 10 here)."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        local = archive.getinfo(name).header_offset
    pos = raw.find(b"PK\x01\x02")
    while pos != -1:
        length = struct.unpack_from("<H", raw, pos + 28)[0]
        if raw[pos + 46:pos + 46 + length] == name.encode():
            for offset, (form, value) in fields.items():
                struct.pack_into(form, raw, pos + offset, value)
                if offset in (8, 10):
                    struct.pack_into(form, raw, local + offset - 2, value)
        pos = raw.find(b"PK\x01\x02", pos + 4)
    path.write_bytes(bytes(raw))


def restored(path: Path, method: int) -> list[str]:
    """Rewrite a zip with every member compressed by ``method``; its file names, in order."""
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            info.compress_type = method
            archive.writestr(info, data)
    return [info.filename for info, _ in members if not info.is_dir()]


def test_unreadable_image_members_are_listed_and_the_split_still_verifies(tmp_path, base):
    mirror = copy_mirror(base, tmp_path, "coco")
    images = mirror / "zips/train2014.zip"
    names = restored(images, zipfile.ZIP_DEFLATED)
    encrypted, deflate64, corrupt = names[:3]
    patch_central(images, encrypted, {8: ("<H", ENCRYPTED)})
    patch_central(images, deflate64, {10: ("<H", DEFLATE64)})
    with zipfile.ZipFile(images) as archive:
        info = archive.getinfo(corrupt)
    raw = bytearray(images.read_bytes())
    start = info.header_offset + 30 + len(corrupt.encode())
    raw[start:start + 16] = b"\xff" * 16  # an invalid deflate block type
    images.write_bytes(bytes(raw))
    write_sums(mirror, COCO_FILES)
    result, data = shard("coco", mirror, tmp_path, capped=True)
    assert result.returncode == 0, result.stderr
    out = data / "out" / "coco"
    errors = {e["file"].split(":", 1)[1]: e["error"]
              for path in out.glob("*.errors.jsonl") for e in map(json.loads, path.read_text().splitlines())}
    assert "it is encrypted" in errors[encrypted]
    assert "compression method is not supported" in errors[deflate64]
    assert "truncated or corrupt" in errors[corrupt]
    run_cli("verify", "coco", "--data-dir", str(data))


def test_a_central_directory_overstating_the_last_image_lists_it_instead_of_aborting(tmp_path, base):
    mirror = copy_mirror(base, tmp_path, "coco")
    images = mirror / "zips/train2014.zip"
    last = restored(images, zipfile.ZIP_STORED)[-1]
    patch_central(images, last, {20: ("<I", 10 << 20), 24: ("<I", 10 << 20)})  # sizes: 10 MB, past the file's end
    write_sums(mirror, COCO_FILES)
    result, data = shard("coco", mirror, tmp_path)
    assert result.returncode == 0 and "Aborted" not in result.stderr, result.stderr
    errors = "".join(path.read_text() for path in (data / "out" / "coco").glob("*.errors.jsonl"))
    assert last in errors and "EOFError" in errors
    run_cli("verify", "coco", "--data-dir", str(data))


def test_an_encrypted_or_deflate64_annotation_json_is_one_line(tmp_path, base):
    for offset, field, words in ((8, ENCRYPTED, "it is encrypted"), (10, DEFLATE64, "not supported")):
        mirror = copy_mirror(base, tmp_path / str(field), "coco")
        patch_central(mirror / "caption_datasets.zip", "dataset_coco.json", {offset: ("<H", field)})
        write_sums(mirror, COCO_FILES)
        result, _ = shard("coco", mirror, tmp_path / str(field))
        one_line_error(result, "caption_datasets.zip", "dataset_coco.json", words, "fetch")


# ------------------------------------------------------------------ tar headers with a negative size

def negative_size_headers(name: str) -> list[bytes]:
    """Two ways a tar header can give a member of size -1: a pax ``size`` record, and a GNU
    base-256 size field of all ones (checksum fixed). Each is a whole header block sequence."""
    pax = tarfile.TarInfo(name)
    pax.pax_headers = {"size": "-1"}
    gnu = bytearray(tarfile.TarInfo(name).tobuf(tarfile.GNU_FORMAT))
    gnu[124:136] = b"\xff" * 12
    gnu[148:156] = b" " * 8
    gnu[148:156] = b"%06o\0 " % sum(gnu)
    return [pax.tobuf(tarfile.PAX_FORMAT), bytes(gnu)]


def binarize_owt_mirror(root: Path, data: Path):
    """List subsets 0 and 5 of the OWT mirror ``root`` in its SHA256SUMS (hashed as a stream: a test
    subset may hold a 1.1 GB hole), fetch them into ``data``, and binarize under the memory cap."""
    from vlprep.pipeline.fileio import sha256_file
    from vlprep.pipeline.records.owt import subset_relpath
    from vlprep.pipeline.sources.checksums import SUMS_NAME, format_sha256sums

    from ..helpers import run_capped

    sums = {subset_relpath(s): sha256_file(root / subset_relpath(s)) for s in (0, 5)}
    (root / SUMS_NAME).write_text(format_sha256sums(sums))
    run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", str(root), "--subsets", "0,5")
    return run_capped("binarize", "owt", "--data-dir", str(data), "--train-subsets", "0",
                      "--valid-subsets", "5", "--workers", "1")


@pytest.mark.parametrize("form", [0, 1], ids=["pax", "gnu-base-256"])
def test_an_imagenet_member_of_negative_size_before_a_gzip_bomb_is_one_line(tmp_path, form):
    from ..helpers import assert_clean_failure, fetched_imagenet, imagenet_mirror, zeros_gz
    from ..helpers import run_capped_printing_peak as run_capped

    header = negative_size_headers("n01440764_9999_n01440764.JPEG")[form]
    mirror = imagenet_mirror(tmp_path, {0: [gzip.compress(header), zeros_gz(3 << 30)]})
    data = fetched_imagenet(tmp_path, mirror)
    result, peak = run_capped("shard", "imagenet", "--data-dir", str(data), "--workers", "1", "--limit", "100000")
    assert_clean_failure(result, "train_images_0.tar.gz", "negative", "fix:")
    assert peak < 1e9


def xz_zeros(size: int) -> bytes:
    """``size`` zero bytes as concatenated xz streams (LZMAFile reads them as one): cheap to build."""
    piece = lzma.compress(b"\0" * (1 << 20), preset=0)
    return piece * (size >> 20)


@pytest.mark.parametrize("form", [0, 1], ids=["pax", "gnu-base-256"])
def test_an_owt_document_of_negative_size_before_an_xz_bomb_is_one_line(tmp_path, form):
    from vlprep.pipeline.records.owt import subset_relpath
    from vlprep.pipeline.samples.text import build_owt_mirror

    from ..helpers import add_member

    root = tmp_path / "mirror"
    build_owt_mirror(root, (0, 5), chunks=1, docs_per_chunk=3, seed=5)
    header = negative_size_headers("openwebtext/0001-negative.txt")[form]
    add_member(root / subset_relpath(0), "openwebtext/urlsf_subset00-9_data.xz",
               lzma.compress(header, preset=0) + xz_zeros(3 << 30))
    result, peak = binarize_owt_mirror(root, tmp_path / "data")
    one_line_error(result, "urlsf_subset00-9_data.xz", "negative", "fetch")
    assert peak < 1e9


# ------------------------------------------------------------------------------ a huge JSON number

def test_a_64_mb_number_in_an_ignored_field_stops_with_one_line(tmp_path, base):
    """The parser builds a number whole and in quadratic time (64 MB: ~25 s; 500 MB: ~25 min)."""
    from ..helpers import rewrite_member

    mirror = copy_mirror(base, tmp_path, "coco")
    with zipfile.ZipFile(mirror / "caption_datasets.zip") as archive:
        document = archive.read("dataset_coco.json")
    assert document.startswith(b"{")
    rewrite_member(mirror / "caption_datasets.zip", "dataset_coco.json",
                   [b'{"ignored": 1.', *[b"1" * (1 << 20)] * 64, b", " + document[1:]])
    write_sums(mirror, COCO_FILES)
    result, _ = shard("coco", mirror, tmp_path, capped=True)
    one_line_error(result, "caption_datasets.zip", "dataset_coco.json", "JSON number longer than", "--max-text-kb")


# ------------------------------------------------------------------------ a parquet footer that lies

def zigzag_varint(value: int, width: int = 0) -> bytes:
    """``value`` as a Thrift compact zigzag varint, padded with empty continuation bytes to ``width``
    (a legal encoding readers accept)."""
    out = bytearray()
    value *= 2
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    if len(out) < width:
        out[-1] |= 0x80
        out += b"\x80" * (width - len(out) - 1) + b"\x00"
    return bytes(out)


def test_a_glue_footer_understating_a_256_mb_sentence_is_refused_in_bounded_memory(tmp_path):
    import pyarrow.parquet as pq

    from vlprep.pipeline.records.glue import task_named

    from ..helpers import assert_clean_failure, glue_data, rte, write_all_sums
    from ..helpers import run_capped_printing_peak as run_capped

    glue_data(tmp_path, "RTE", "train", rte(["short"] * 3 + ["x" * (256 << 20)] + ["short"] * 8), compression="zstd")
    mirror = tmp_path / "mirror"
    path = mirror / task_named("RTE").relpath("train")
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(0)
    group = pq.ParquetFile(path).metadata.row_group(0)
    raw = path.read_bytes()
    footer_start = len(raw) - 8 - int.from_bytes(raw[-8:-4], "little")
    footer = raw[footer_start:-8]
    for stated in (chunk.total_uncompressed_size, group.total_byte_size):
        honest = zigzag_varint(stated)
        assert footer.count(honest) == 1
        footer = footer.replace(honest, zigzag_varint(1000, len(honest)))
    path.write_bytes(raw[:footer_start] + footer + raw[-8:])
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).total_uncompressed_size == 1000
    write_all_sums(mirror)
    data = tmp_path / "data2"
    run_cli("fetch", "glue", "--data-dir", str(data), "--mirror", str(mirror), "--task", "RTE")
    result, peak = run_capped("binarize", "glue", "--data-dir", str(data), "--task", "RTE", "--limit", "100000")
    assert_clean_failure(result, "rte/train-00000-of-00001.parquet", "row group 0 holds", "--max-text-kb")
    assert peak < 1e9, f"peak RSS {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("options", [{}, {"compression": "zstd"}, {"use_dictionary": False},
                                     {"data_page_version": "2.0"}, {"write_page_index": True},
                                     {"data_page_size": 1024}])
def test_page_headers_are_walked_to_the_end_of_every_chunk_whatever_the_writer_options(tmp_path, options):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vlprep.pipeline.sources.parquet_pages import page_sizes

    path = tmp_path / "t.parquet"
    table = pa.table({"s": [f"sentence {i}" for i in range(5000)], "n": list(range(5000)),
                      "e": pa.array([None] * 5000, pa.string())})
    pq.write_table(table, path, **options)
    group = pq.ParquetFile(path).metadata.row_group(0)
    with open(path, "rb") as handle:
        for chunk in (group.column(i) for i in range(group.num_columns)):
            start = min(o for o in (chunk.data_page_offset, chunk.dictionary_page_offset) if o)
            sizes = page_sizes(handle, start, chunk.total_compressed_size)
            assert 0 < sum(sizes) <= chunk.total_uncompressed_size


def test_a_glue_split_of_zero_rows_is_read(tmp_path):
    import pyarrow as pa

    from ..helpers import glue_data

    empty = pa.table({"sentence1": pa.array([], pa.string()), "sentence2": pa.array([], pa.string()),
                      "label": pa.array([], pa.int64()), "idx": pa.array([], pa.int32())})
    data = glue_data(tmp_path, "RTE", "train", empty)
    run_cli("binarize", "glue", "--data-dir", str(data), "--task", "RTE", "--limit", "100000")
    run_cli("verify", "glue", "--data-dir", str(data))


# ------------------------------------------------------------------------------ ImageNet classes.py

@pytest.mark.parametrize("source, words", [
    (b"IMAGENET2012_CLASSES = 5\n", "not a mapping of synset strings"),
    (b"IMAGENET2012_CLASSES = OrderedDict([('n01', 'a', 'b')])\n", "not a mapping of synset strings"),
    (b"IMAGENET2012_CLASSES = OrderedDict([('n01', 'a'), (2, 'b')])\n", "not a mapping of synset strings"),
    (b"IMAGENET2012_CLASSES = " + b"-" * 200_000 + b"1\n", "nested too deeply"),
    (b"IMAGENET2012_CLASSES = {'n01': 'caf\xe9'}\n", "can't decode byte 0xe9"),
    (b"IMAGENET2012_CLASSES = {" + b",".join(b"'n%08d': 'x'" % i for i in range(1_000_000)) + b"}\n",
     "more than 1,048,576 bytes"),
], ids=["int", "triples", "int-synset", "deep", "latin-1", "20-mb"])
def test_a_hostile_classes_py_is_one_line_in_bounded_memory(tmp_path, source, words):
    from vlprep.pipeline.samples.images import build_imagenet_mirror

    from ..helpers import assert_clean_failure, fetched_imagenet, write_all_sums
    from ..helpers import run_capped_printing_peak as run_capped

    mirror = tmp_path / "mirror"
    build_imagenet_mirror(mirror)
    (mirror / "classes.py").write_bytes(source)
    write_all_sums(mirror)
    data = fetched_imagenet(tmp_path, mirror)
    result, peak = run_capped("shard", "imagenet", "--data-dir", str(data), "--limit", "100000")
    assert_clean_failure(result, "classes.py", words, "fetch classes.py again")
    assert peak < 1e9


# ------------------------------------------------------------------ an xz chunk asking for 4 GiB

def xz_with_dictionary(data: bytes, props: int) -> bytes:
    """``data`` as xz whose LZMA2 block header states the dictionary size ``props`` encodes (40: 4 GiB),
    header CRC fixed: liblzma allocates that much before decoding a byte."""
    import zlib

    packed = bytearray(lzma.compress(data, preset=0))
    size = (packed[12] + 1) * 4
    header = packed[12:12 + size]
    header[header.find(b"\x21\x01") + 2] = props
    struct.pack_into("<I", header, size - 4, zlib.crc32(bytes(header[:size - 4])))
    packed[12:12 + size] = header
    return bytes(packed)


def test_an_owt_chunk_stating_a_4_gib_dictionary_is_one_line_not_a_memory_error(tmp_path):
    import io

    from vlprep.pipeline.records.owt import subset_relpath
    from vlprep.pipeline.samples.text import build_owt_mirror

    from ..helpers import add_member

    root = tmp_path / "mirror"
    build_owt_mirror(root, (0, 5), chunks=1, docs_per_chunk=3, seed=5)
    chunk = io.BytesIO()
    with tarfile.open(fileobj=chunk, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        info = tarfile.TarInfo("openwebtext/0001.txt")
        info.size = 6
        archive.addfile(info, io.BytesIO(b"hello\n"))
    add_member(root / subset_relpath(0), "openwebtext/urlsf_subset00-9_data.xz",
               xz_with_dictionary(chunk.getvalue(), 40))
    result, peak = binarize_owt_mirror(root, tmp_path / "data")
    one_line_error(result, "urlsf_subset00-9_data.xz", "Memory usage limit", "fetch")
    assert peak < 1e9


def lzma_dictionary_of(path: Path, name: str, size: int) -> None:
    """Set the dictionary size an LZMA member's properties state (they follow the local header)."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo(name).header_offset
    name_length, extra_length = struct.unpack_from("<HH", raw, offset + 26)
    struct.pack_into("<I", raw, offset + 30 + name_length + extra_length + 5, size)
    path.write_bytes(bytes(raw))


def test_an_lzma_image_member_stating_a_4_gib_dictionary_is_listed_and_others_are_read(tmp_path, base):
    mirror = copy_mirror(base, tmp_path, "coco")
    images = mirror / "zips/train2014.zip"
    names = restored(images, zipfile.ZIP_LZMA)
    lzma_dictionary_of(images, names[0], 0xFFFFFFFF)
    write_sums(mirror, COCO_FILES)
    result, data = shard("coco", mirror, tmp_path, capped=True)
    assert result.returncode == 0, result.stderr
    out = data / "out" / "coco"
    errors = {e["file"].split(":", 1)[1]: e["error"]
              for path in out.glob("*.errors.jsonl") for e in map(json.loads, path.read_text().splitlines())}
    assert "LZMA dictionary of 4,294,967,295 bytes" in errors[names[0]]
    assert json.loads((out / "stats.json").read_text())["splits"]["karpathy-train"]["images"] > 0
    run_cli("verify", "coco", "--data-dir", str(data))


def test_an_lzma_annotation_json_stating_a_4_gib_dictionary_is_one_line(tmp_path, base):
    mirror = copy_mirror(base, tmp_path, "coco")
    restored(mirror / "caption_datasets.zip", zipfile.ZIP_LZMA)
    lzma_dictionary_of(mirror / "caption_datasets.zip", "dataset_coco.json", 0xFFFFFFFF)
    write_sums(mirror, COCO_FILES)
    result, _ = shard("coco", mirror, tmp_path, capped=True)
    one_line_error(result, "caption_datasets.zip", "dataset_coco.json", "LZMA dictionary", "fetch")


# ---------------------------------------- an OWT subset tar with a 1.1 GB pax header (sparse on disk)

def test_a_subset_tar_whose_pax_header_holds_1_gb_is_refused_before_it_is_read(tmp_path):
    from vlprep.pipeline.records.owt import subset_relpath
    from vlprep.pipeline.samples.text import build_owt_mirror

    root = tmp_path / "mirror"
    build_owt_mirror(root, (0, 5), chunks=1, docs_per_chunk=3, seed=5)
    subset = root / subset_relpath(0)
    with tarfile.open(subset) as archive:
        end = max(m.offset_data + -(-m.size // 512) * 512 for m in archive.getmembers())
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, 1100 << 20
    after = tarfile.TarInfo("openwebtext/urlsf_subset00-9_data.xz")
    with open(subset, "r+b") as handle:
        handle.truncate(end)
        handle.seek(end)
        handle.write(header.tobuf(tarfile.USTAR_FORMAT))
        handle.seek(end + 512 + header.size)  # the header's data: a hole of zeros
        handle.write(after.tobuf(tarfile.USTAR_FORMAT) + b"\0" * 1024)
    result, peak = binarize_owt_mirror(root, tmp_path / "data")
    one_line_error(result, "urlsf_subset00.tar", "extended header", "1,153,433,600 bytes", "fetch")
    assert peak < 1e9, f"peak RSS {peak / 1e6:.0f} MB"
