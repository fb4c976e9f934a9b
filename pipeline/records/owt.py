"""OpenWebText's raw layout: subset tar → ``.xz`` members → xz-compressed tar → ``.txt`` documents.

An ``.xz`` member (a few hundred documents) is the unit of parallel work: the subset tar is
uncompressed, so a worker reads its member's bytes straight from their offset.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..sources.archives import ARCHIVE_ERRORS, TarMember, corrupt_archive, iter_xz_tar, list_tar, read_member


def subset_filename(subset: int) -> str:
    return f"urlsf_subset{subset:02d}.tar"


def subset_relpath(subset: int) -> str:
    return f"subsets/{subset_filename(subset)}"


def list_chunks(subset_tar: Path) -> list[TarMember]:
    """The ``.xz`` members of one subset tar, in archive order."""
    return [m for m in list_tar(subset_tar) if m.name.endswith(".xz")]


def iter_documents(subset_tar: Path, chunk: TarMember) -> Iterator[tuple[str, bytes]]:
    """``(name, raw bytes)`` of each ``.txt`` document of one chunk, in archive order."""
    data = read_member(subset_tar, chunk)
    label = f"{subset_tar}:{chunk.name}"
    try:
        for name, raw in iter_xz_tar(data, label):
            if name.endswith(".txt"):
                yield name, raw
    except ARCHIVE_ERRORS as exc:
        raise corrupt_archive(subset_tar, chunk.name, exc) from exc
