"""sha256 bookkeeping: ``SHA256SUMS`` files and the record of what a fetch has verified.

``raw/<dataset>/SHA256SUMS`` (sha256sum format) lists the sha256 of every file fetch wrote, so anyone
can re-check the raw folder with ``sha256sum -c``. Beside it ``.verified.json`` keeps each file's size,
mtime, origin and ``checked``: how its bytes were checked, one of :data:`CHECKS`. Only ``published``
means verified against a checksum a public source states; ``recorded`` means none was known and the
sha256 was only written down. A later fetch recognises a file by size and mtime without hashing
gigabytes again; a file whose size matches but whose mtime does not (a ``cp -r`` copy) is re-hashed.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import VlprepError
from ..fileio import atomic_path, read_json, sha256_file, write_json
from ..redact import redact_text

SUMS_NAME = "SHA256SUMS"
RECORD_NAME = ".verified.json"
_SUM_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")

CHECKS = {
    "published": "verified against the published sha256",
    "mirror-sums": "checked against the mirror's SHA256SUMS",
    "hub-lfs": "checked against the hub's LFS sha256",
    "recorded": "no published checksum: recorded sha256",
}
"""How a file's bytes were checked, strongest first, and how each is said in output."""


@dataclass(frozen=True)
class PublishedFile:
    """Size and sha256 of an official file as a public source states them."""

    size: int | None
    sha256: str
    source: str


_TFDS_COCO = "tensorflow/datasets tensorflow_datasets/url_checksums/coco_captions.txt"
PUBLISHED: dict[str, PublishedFile] = {
    # From tensorflow/datasets, file tensorflow_datasets/url_checksums/coco_captions.txt
    # (format: url size sha256), copied verbatim.
    "http://images.cocodataset.org/annotations/annotations_trainval2014.zip": PublishedFile(
        252872794, "031296bbc80c45a1d1f76bf9a90ead27e94e99ec629208449507a4917a3bf009", _TFDS_COCO),
    "http://images.cocodataset.org/zips/train2014.zip": PublishedFile(
        13510573713, "ede4087e640bddba550e090eae701092534b554b42b05ac33f0300b984b31775", _TFDS_COCO),
    "http://images.cocodataset.org/zips/val2014.zip": PublishedFile(
        6645013297, "fe9be816052049c34717e077d9e34aa60814a55679f804cd043e3cbee3b9fde0", _TFDS_COCO),
    "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip": PublishedFile(
        36745453, "4cfd70132527b80933105e5829dc9034eaab9573482e2e680abbab6130244817", _TFDS_COCO),
}
"""Published checksums by official URL. No public source states any for Visual Genome's zips or the
CC3M TSV: those are fetched with their sha256 recorded, never called verified."""


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
        path, sha = match.group(2).removeprefix("./"), match.group(1).lower()
        if sums.get(path, sha) != sha:  # which one to trust would depend on line order
            raise VlprepError(
                f"{source} line {number}: {path} is listed twice with different sha256 ({sums[path]}, {sha})",
                fix="keep one line per file: regenerate it with sha256sum <files> > SHA256SUMS",
            )
        sums[path] = sha
    return sums


def format_sha256sums(sums: dict[str, str]) -> str:
    return "".join(f"{sha}  {path}\n" for path, sha in sorted(sums.items()))


@dataclass(frozen=True)
class Verified:
    sha256: str
    size: int
    mtime_ns: int
    origin: str
    checked: str = "recorded"
    """One of :data:`CHECKS`; records written before it existed claim nothing."""


class VerifiedRecord:
    """What fetch has verified in one raw folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / RECORD_NAME
        self.entries = _read_entries(self.path)
        self.rehashed: list[str] = []

    def is_current(self, relpath: str, expected_sha256: str | None = None) -> bool:
        """True if ``relpath`` is on disk as recorded (and matches ``expected_sha256``).

        Same size, other mtime (a copy made without ``cp -p``): the file is re-hashed, and accepted
        if its sha256 is the recorded one; the record takes the new mtime and the file is listed in
        :attr:`rehashed` so the caller can say so."""
        entry = self.entries.get(relpath)
        file = self.root / relpath
        if entry is None or not file.exists():
            return False
        stat = file.stat()
        if stat.st_size != entry.size:
            return False
        if stat.st_mtime_ns != entry.mtime_ns:
            if sha256_file(file) != entry.sha256:
                return False
            self._accept_copy(relpath, entry, stat)
        return expected_sha256 is None or expected_sha256 == entry.sha256

    def current_sha256(self, relpath: str) -> str:
        """The sha256 of ``relpath`` as it is now, its bytes read at most once: the recorded value
        while size and mtime match; otherwise the file is hashed (a copy whose hash matches takes
        the new mtime, as in :meth:`is_current`). A changed 30 GB tarball is hashed once, not twice."""
        entry = self.entries.get(relpath)
        file = self.root / relpath
        stat = file.stat()
        if entry is not None and stat.st_size == entry.size and stat.st_mtime_ns == entry.mtime_ns:
            return entry.sha256
        sha256 = sha256_file(file)
        if entry is not None and stat.st_size == entry.size and sha256 == entry.sha256:
            self._accept_copy(relpath, entry, stat)
        return sha256

    def _accept_copy(self, relpath: str, entry: Verified, stat: os.stat_result) -> None:
        """A file re-hashed to its recorded sha256 under another mtime: record the new mtime."""
        self.entries[relpath] = Verified(entry.sha256, entry.size, stat.st_mtime_ns, entry.origin, entry.checked)
        self._save_if_writable()
        self.rehashed.append(relpath)

    def add(self, relpath: str, sha256: str, origin: str, checked: str = "recorded") -> None:
        if checked not in CHECKS:
            raise ValueError(f"unknown check {checked!r}")
        stat = (self.root / relpath).stat()
        self.entries[relpath] = Verified(sha256, stat.st_size, stat.st_mtime_ns, redact_text(origin), checked)
        self.save()

    def _save_if_writable(self) -> None:
        """Keep a re-hash's new mtime when the folder can be written; a read-only data dir (``verify``
        of a shared copy) stays as it is, and its files are re-hashed again next time."""
        try:
            self.save()
        except (VlprepError, OSError):
            pass

    def save(self) -> None:
        write_json(self.path, {rel: vars(entry) for rel, entry in self.entries.items()})
        with atomic_path(self.root / SUMS_NAME) as tmp:
            tmp.write_text(format_sha256sums({r: e.sha256 for r, e in self.entries.items()}))


def _read_entries(path: Path) -> dict[str, Verified]:
    """The record in ``path`` (none if absent). A damaged one (emptied, hand-edited) is one error naming
    it: guessing what it meant could call a file checked that never was."""
    if not path.exists():
        return {}
    try:
        return {rel: Verified(**entry) for rel, entry in read_json(path).items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise VlprepError(
            f"{path}: not a valid fetch record ({str(exc)[:120]})",
            fix=f"delete it and run: vlprep fetch {path.parent.name}  (files not recorded are fetched and checked again)",
        ) from None


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
