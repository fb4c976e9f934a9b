"""OpenWebText's raw layout: subset tar → ``.xz`` members → xz-compressed tar → ``.txt`` documents.

An ``.xz`` member (a few hundred documents) is the unit of parallel work: the subset tar is
uncompressed, so a worker reads its member's bytes straight from their offset, decompressing them
as a stream: a verified ``.xz`` of a few hundred kilobytes may expand to gigabytes, so neither the
member nor its decompressed tar is ever held whole, and one document over the cap is skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..caps import DEFAULT_CAPS
from ..sources.archives import ARCHIVE_ERRORS, TarMember, corrupt_archive, iter_xz_tar, list_tar, open_member

HUB_REPO = "Skylion007/openwebtext"
DEFAULT_REVISION = "8cfd553694d06979cfec29248b200468786f0294"
"""The pinned commit of :data:`HUB_REPO` that still holds ``subsets/``."""
KNOWN_SHA256: dict[str, str] = {}
"""sha256 of official files where published; the hub's LFS sha256 is checked for every hub fetch."""


def subset_filename(subset: int) -> str:
    return f"urlsf_subset{subset:02d}.tar"


def subset_relpath(subset: int) -> str:
    return f"subsets/{subset_filename(subset)}"


def list_chunks(subset_tar: Path) -> list[TarMember]:
    """The ``.xz`` members of one subset tar, in archive order."""
    return [m for m in list_tar(subset_tar) if m.name.endswith(".xz")]


@dataclass(frozen=True)
class Document:
    """One ``.txt`` member of a chunk: its bytes, or None when ``size`` is over the cap (not read)."""

    name: str
    raw: bytes | None
    size: int


def read_documents(subset_tar: Path, chunk: TarMember, max_bytes: int | None) -> Iterator[Document]:
    """Each ``.txt`` document of one chunk, in archive order; those over ``max_bytes`` come unread."""
    label = f"{subset_tar}:{chunk.name}"
    try:
        with open_member(subset_tar, chunk) as compressed:
            for name, raw, size in iter_xz_tar(compressed, label, max_bytes):
                if name.endswith(".txt"):
                    yield Document(name, raw, size)
    except ARCHIVE_ERRORS as exc:
        raise corrupt_archive(subset_tar, chunk.name, exc) from exc


def iter_documents(subset_tar: Path, chunk: TarMember) -> Iterator[tuple[str, bytes]]:
    """``(name, raw bytes)`` of each ``.txt`` document of one chunk within the default cap, in order
    (the documents ``binarize owt`` encodes with its default ``--max-document-mb``)."""
    for document in read_documents(subset_tar, chunk, DEFAULT_CAPS.document_bytes):
        if document.raw is not None:
            yield document.name, document.raw
