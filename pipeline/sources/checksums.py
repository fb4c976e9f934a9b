"""sha256 bookkeeping: ``SHA256SUMS`` files and the record of what a fetch has verified.

``raw/<dataset>/SHA256SUMS`` (sha256sum format) lists every file that fetch verified, so anyone can
re-check the raw folder with ``sha256sum -c``. Beside it ``.verified.json`` keeps each file's size
and mtime, so a later fetch recognises a verified file without hashing gigabytes again.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import VlprepError
from ..fileio import atomic_path, read_json, write_json

SUMS_NAME = "SHA256SUMS"
RECORD_NAME = ".verified.json"
_SUM_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


def parse_sha256sums(text: str, source: str) -> dict[str, str]:
    """Parse sha256sum output (``<hex>  <path>`` or ``<hex> *<path>``) into ``{path: hex}``."""
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _SUM_LINE.match(line)
        if not match:
            raise VlprepError(
                f"{source} line {number}: not a sha256sum line: {line[:80]!r}",
                fix="regenerate it with: sha256sum <files> > SHA256SUMS (paths relative to the mirror root)",
            )
        path = match.group(2).removeprefix("./")
        sums[path] = match.group(1).lower()
    return sums


def format_sha256sums(sums: dict[str, str]) -> str:
    return "".join(f"{sha}  {path}\n" for path, sha in sorted(sums.items()))


@dataclass(frozen=True)
class Verified:
    sha256: str
    size: int
    mtime_ns: int
    origin: str


class VerifiedRecord:
    """What fetch has verified in one raw folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / RECORD_NAME
        data = read_json(self.path) if self.path.exists() else {}
        self.entries = {rel: Verified(**entry) for rel, entry in data.items()}

    def is_current(self, relpath: str, expected_sha256: str | None = None) -> bool:
        """True if ``relpath`` is on disk exactly as verified (and matches ``expected_sha256``)."""
        entry = self.entries.get(relpath)
        file = self.root / relpath
        if entry is None or not file.exists():
            return False
        stat = file.stat()
        if (stat.st_size, stat.st_mtime_ns) != (entry.size, entry.mtime_ns):
            return False
        return expected_sha256 is None or expected_sha256 == entry.sha256

    def add(self, relpath: str, sha256: str, origin: str) -> None:
        stat = (self.root / relpath).stat()
        self.entries[relpath] = Verified(sha256, stat.st_size, stat.st_mtime_ns, origin)
        self.save()

    def save(self) -> None:
        write_json(self.path, {rel: vars(entry) for rel, entry in self.entries.items()})
        with atomic_path(self.root / SUMS_NAME) as tmp:
            tmp.write_text(format_sha256sums({r: e.sha256 for r, e in self.entries.items()}))


def check_digest(path: Path, actual_sha256: str, actual_size: int, expected_sha256: str | None,
                 expected_size: int | None, source: str) -> None:
    """Refuse a file whose size or sha256 differs from what is known; name both values and the fix."""
    if expected_size is not None and actual_size != expected_size:
        raise VlprepError(
            f"{path}: size {actual_size:,} bytes, expected {expected_size:,} ({source})",
            fix="the download was cut or the mirror holds another file; run fetch again or fix the mirror",
        )
    if expected_sha256 is not None and actual_sha256 != expected_sha256.lower():
        raise VlprepError(
            f"{path}: sha256 {actual_sha256} does not match {expected_sha256} ({source})",
            fix="the file is corrupt or not the published one; remove it from the mirror/cache and fetch again",
        )


def remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
