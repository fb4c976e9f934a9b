"""OpenWebText under hostile input: a tiny verified ``.xz`` that expands to 1 GiB, run through the
real CLI in a subprocess limited to 2 GiB of address space."""
from __future__ import annotations

import hashlib
import json
import lzma
import tarfile
from pathlib import Path

import pytest

from vlprep.pipeline.records.owt import subset_relpath
from vlprep.pipeline.samples.text import build_owt_mirror
from vlprep.pipeline.sources.checksums import SUMS_NAME, format_sha256sums

from ..helpers import add_member, run_capped, run_cli

BIG = 1 << 30


def xz_chunk_with_a_huge_document(size: int) -> bytes:
    """An ``.xz`` member holding a small document, one of ``size`` bytes of text, and another small
    one; compressed a piece at a time (a few hundred KB for 1 GiB)."""
    compressor = lzma.LZMACompressor(preset=0)
    parts = []

    def member(name: str, length: int, pieces) -> None:
        info = tarfile.TarInfo(name)
        info.size = length
        parts.append(compressor.compress(info.tobuf(format=tarfile.USTAR_FORMAT)))
        for piece in pieces:
            parts.append(compressor.compress(piece))
        parts.append(compressor.compress(b"\0" * (-length % 512)))

    line = b"all work and no play makes a dull document " * 20 + b"\n"
    block = line * ((1 << 20) // len(line) + 1)

    def huge():
        left = size
        while left:
            piece = block[:min(left, len(block))]
            left -= len(piece)
            yield piece

    member("openwebtext/0001-before.txt", 12, [b"first words\n"])
    member("openwebtext/0002-huge.txt", size, huge())
    member("openwebtext/0003-after.txt", 11, [b"last words\n"])
    parts.append(compressor.compress(b"\0" * 1024))
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def hostile_mirror(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("owt-hostile")
    build_owt_mirror(root, (0, 5), chunks=2, docs_per_chunk=10, seed=5)
    add_member(root / subset_relpath(0), "openwebtext/urlsf_subset00-3_data.xz", xz_chunk_with_a_huge_document(BIG))
    sums = {subset_relpath(s): hashlib.sha256((root / subset_relpath(s)).read_bytes()).hexdigest() for s in (0, 5)}
    (root / SUMS_NAME).write_text(format_sha256sums(sums))
    return root


def test_a_document_expanding_to_1_gib_is_skipped_and_listed_in_bounded_memory(tmp_path, hostile_mirror):
    assert (hostile_mirror / subset_relpath(0)).stat().st_size < 2 << 20  # the whole subset: under 2 MB
    data = tmp_path / "data"
    run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", str(hostile_mirror), "--subsets", "0,5")
    result, peak = run_capped("binarize", "owt", "--data-dir", str(data), "--train-subsets", "0",
                              "--valid-subsets", "5", "--workers", "2", "--doc-separator")
    print(f"binarize owt, 1 GiB document: peak RSS {peak / 1e6:.0f} MB")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    assert peak < 1e9
    out = data / "out" / "owt"
    stats = json.loads((out / "stats.json").read_text())
    assert stats["splits"]["train"]["documents_skipped"] == 1
    assert stats["splits"]["train"]["documents"] == 2 * 10 + 3
    [skipped] = stats["skipped_documents"]
    assert skipped["document"] == "openwebtext/0002-huge.txt" and skipped["bytes"] == BIG
    assert skipped["member"] == "openwebtext/urlsf_subset00-3_data.xz"
    assert "--max-document-mb" in skipped["cause"]
    rows = json.loads((out / "provenance.json").read_text())["splits"]["train"]
    assert [row["skipped"][0]["document"] for row in rows if "skipped" in row] == ["openwebtext/0002-huge.txt"]
    last = rows[-1]
    assert last["documents"] == 3 and last["items"] == 3  # first words, separator, last words
    run_cli("verify", "owt", "--data-dir", str(data), "--tokenizer-check", "200")


def test_max_document_mb_raises_the_cap(tmp_path):
    """A document of 2 MiB is skipped under --max-document-mb 1 and kept under the default."""
    root = tmp_path / "mirror"
    build_owt_mirror(root, (0, 5), chunks=1, docs_per_chunk=3, seed=2)
    add_member(root / subset_relpath(0), "openwebtext/urlsf_subset00-2_data.xz", xz_chunk_with_a_huge_document(2 << 20))
    sums = {subset_relpath(s): hashlib.sha256((root / subset_relpath(s)).read_bytes()).hexdigest() for s in (0, 5)}
    (root / SUMS_NAME).write_text(format_sha256sums(sums))
    data = tmp_path / "data"
    run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", str(root), "--subsets", "0,5")
    common = ("binarize", "owt", "--data-dir", str(data), "--train-subsets", "0", "--valid-subsets", "5")
    run_cli(*common, "--max-document-mb", "1")
    capped = json.loads((data / "out" / "owt" / "stats.json").read_text())
    assert capped["splits"]["train"]["documents_skipped"] == 1
    assert "1 MB (--max-document-mb)" in capped["skipped_documents"][0]["cause"]
    run_cli(*common)
    default = json.loads((data / "out" / "owt" / "stats.json").read_text())
    assert default["splits"]["train"]["documents_skipped"] == 0 and default["skipped_documents"] == []
    assert default["splits"]["train"]["lines"] > capped["splits"]["train"]["lines"] + 2_000


def test_a_tokenizer_check_past_the_items_stored_checks_each_once_in_bounded_memory(fetched):
    run_cli("binarize", "owt", "--data-dir", str(fetched), "--limit", "4", "--doc-separator")
    provenance = json.loads((fetched / "out" / "owt" / "provenance.json").read_text())
    traced = sum(row["items"] for rows in provenance["splits"].values() for row in rows)
    for asked in (99_999_999_999, traced + 1):
        result, peak = run_capped("verify", "owt", "--data-dir", str(fetched), "--tokenizer-check", str(asked))
        assert result.returncode == 0, result.stderr
        assert peak < 1e9
        assert f"tokenizer check: ok (all {traced:,} items from " in result.stdout
        assert f"--tokenizer-check {asked:,} capped at the {traced:,} items traced in provenance.json" in result.stdout
    exact = run_cli("verify", "owt", "--data-dir", str(fetched), "--tokenizer-check", str(traced)).stdout
    assert f"tokenizer check: ok ({traced:,} random items from " in exact and "capped" not in exact
