"""Used-ID manifests: sorted TSV, gzip with no name and mtime 0, so equal content gives equal bytes.

Small enough to publish in git, readable with ``zcat``, and compared byte for byte to tell whether
anything changed before a publish.
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Iterable, Sequence

from ..fileio import atomic_path

IMAGE_IDS = ("key", "status")
"""Every image id a split considered and what became of it (``ok`` or why it was skipped)."""
LABELLED_FILES = ("file", "label", "status")
"""Every file of a labelled split with its class index, or why it was skipped."""
URL_ROWS = ("row", "url", "sha256", "caption_hash")
"""The rows of a URL list kept: 0-based line, URL (redacted), sha256 of the bytes, caption hash."""


def write_tsv_gz(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    """Write ``header`` and ``rows`` (already in their final order) as a deterministic ``.tsv.gz``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as handle:
            handle.write(("\t".join(header) + "\n").encode("utf-8"))
            for row in rows:
                line = "\t".join(str(value) for value in row)
                if "\n" in line or line.count("\t") != len(header) - 1:
                    raise ValueError(f"{path.name}: a value holds a tab or newline: {line[:200]!r}")
                handle.write((line + "\n").encode("utf-8"))
    return path


def read_tsv_gz(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a manifest written by :func:`write_tsv_gz`."""
    with gzip.open(path, "rt", encoding="utf-8", newline="\n") as handle:
        lines = handle.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise ValueError(f"{path}: empty manifest")
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]
