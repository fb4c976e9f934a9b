"""The fetch stage every dataset shares: files from the hub or a mirror into ``raw/<dataset>``.

A file already on disk exactly as it was recorded (same size and mtime) is not fetched or hashed
again; one whose size matches but whose mtime does not (a ``cp -r`` copy) is re-hashed and kept if
unchanged. Anything else is fetched to a temporary name, checked against every hash known for it
(the published checksums of the official files, the mirror's ``SHA256SUMS``, the hub's LFS sha256)
and only then renamed into place and recorded in ``raw/<dataset>/SHA256SUMS`` and ``.verified.json``
with how it was checked. A file no hash is known for is only recorded, and the report says so:
"verified" is kept for files that matched a published checksum.

Every fetch, whatever its origin, also keeps ``raw/<dataset>/SOURCE.json`` (see
:mod:`..sources.provenance`): each origin describes where a file it fetched came from, and the loop
writes that beside how the file was checked, so every dataset has the same provenance record and
no recipe writes its own. The loop runs under the fetch's exclusive lock on ``raw/<dataset>``, and
every record is written atomically.
"""
from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import VlprepError
from ..fileio import atomic_path, sha256_file
from ..redact import redact_url
from ..sources import hub, provenance
from ..sources.checksums import CHECKS, PUBLISHED, PublishedFile, VerifiedRecord, check_digest
from ..sources.mirror import Mirror

Known = dict[str, "str | PublishedFile"]
"""Published checksums by relative path: a bare sha256, or size + sha256 + source."""


@dataclass
class FetchReport:
    """What one fetch did, for the printed summary and the dataset's source record."""

    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    sha256: dict[str, str] = field(default_factory=dict)
    commit: str | None = None
    checked: dict[str, str] = field(default_factory=dict)
    """relpath → how its bytes were checked (a key of ``CHECKS``)."""
    notes: list[str] = field(default_factory=list)
    """Lines the user must read: re-hashed copies, files with no published checksum, unpublished files."""

    def lines(self) -> list[str]:
        """How each file was checked, one line per file that is not verified against a published sha256."""
        lines = list(self.notes)
        for relpath, how in self.checked.items():
            if how == "recorded":
                lines.append(f"  {relpath}: no published checksum: recorded sha256 {self.sha256[relpath]}")
        return lines

    def summary(self, dataset: str, origin: str, raw: Path) -> list[str]:
        """What ``vlprep fetch DATASET`` prints: counts, how the files were checked, where the sums are."""
        return [f"{dataset}: {len(self.fetched)} fetched, {len(self.skipped)} already on disk, from {origin}",
                f"  {self.tally()}", *self.lines(), f"  {raw}/SHA256SUMS"]

    def tally(self) -> str:
        counts = {how: sum(1 for h in self.checked.values() if h == how) for how in CHECKS}
        return "; ".join(f"{n} {CHECKS[how].split(':')[0]}" for how, n in counts.items() if n)


def check_line(raw: Path, relpath: str) -> str:
    """One line saying how ``raw/relpath`` was checked, for stages that fetch a single file."""
    entry = VerifiedRecord(raw).entries.get(relpath)
    if entry is None:
        return f"  {relpath}: not fetched"
    return f"  {relpath}: {CHECKS[entry.checked]} {entry.sha256}"


def _published(value: str | PublishedFile | None) -> PublishedFile | None:
    if value is None or isinstance(value, PublishedFile):
        return value
    return PublishedFile(size=None, sha256=value, source="vlprep's table")  # type: ignore[arg-type]


def _note_rehashed(record: VerifiedRecord, report: FetchReport, raw: Path) -> None:
    for relpath in record.rehashed:
        report.notes.append(f"  re-hashed {raw / relpath}: unchanged (its mtime differed from the record)")
    record.rehashed.clear()


def _record(report: FetchReport, record: VerifiedRecord, relpath: str) -> None:
    entry = record.entries[relpath]
    report.sha256[relpath] = entry.sha256
    report.checked[relpath] = entry.checked


class Origin(Protocol):
    """Where a dataset's files come from: a mirror, a hub repository, published URLs or files a user
    has. The fetch loop (:func:`fetch_all`) asks it what a file on disk must hash to, to fetch one that
    does not, and to describe where that one came from (for ``SOURCE.json``)."""

    def expected(self, relpath: str, published: PublishedFile | None, report: FetchReport) -> str | None:
        """The sha256 a file already on disk must have to be kept (None: whatever was recorded)."""

    def fetch(self, relpath: str, raw: Path, published: PublishedFile | None,
              report: FetchReport) -> tuple[str, str, str]:
        """Fetch one file to ``raw/relpath`` checked against the strongest hash known: (sha256, how it was
        checked, where it came from as recorded)."""

    def describe(self, relpath: str, report: FetchReport) -> dict[str, Any]:
        """Where the file just fetched came from, for ``SOURCE.json``: a ``kind`` and its keys
        (:data:`~vlprep.pipeline.sources.provenance.ORIGIN_KEYS`), URLs redacted."""


@dataclass
class MirrorOrigin:
    """A ``--mirror`` folder or URL with the files at their published relative paths.

    ``allow_unpublished`` accepts a mirror file whose sha256 differs from the published one (a
    sample or a repacked copy): it is checked against the mirror's ``SHA256SUMS`` only, recorded so,
    and named in the report as not the published file."""

    mirror: Mirror
    allow_unpublished: bool = False
    official: dict[str, str] = field(default_factory=dict)
    """The official URL of each file the mirror stands in for, recorded beside the mirror's."""

    def expected(self, relpath: str, published: PublishedFile | None, report: FetchReport) -> str | None:
        return published.sha256 if published and not self.allow_unpublished else self.mirror.sums().get(relpath)

    def fetch(self, relpath: str, raw: Path, published: PublishedFile | None,
              report: FetchReport) -> tuple[str, str, str]:
        dest = raw / relpath
        if published and not self.allow_unpublished:
            sha = self.mirror.fetch(relpath, dest, expected_sha256=published.sha256, expected_size=published.size)
            return sha, "published", f"mirror {self.mirror}"
        sha = self.mirror.fetch(relpath, dest)
        if published and sha == published.sha256:
            return sha, "published", f"mirror {self.mirror}"
        if published:
            report.notes.append(f"  {relpath}: NOT the published file (sha256 {sha}, published "
                                f"{published.sha256} per {published.source}); accepted because of "
                                "--allow-unpublished")
        return sha, "mirror-sums" if self.mirror.sums().get(relpath) else "recorded", f"mirror {self.mirror}"

    def describe(self, relpath: str, report: FetchReport) -> dict[str, Any]:
        if self.mirror.root is not None:  # a folder: recorded absolute, as a relative one means nothing later
            where = {"mirror": str(self.mirror.root.resolve()), "path": str((self.mirror.root / relpath).resolve())}
        else:
            where = {"mirror": str(self.mirror), "url": redact_url(self.mirror.url(relpath))}
        official = {"official_url": self.official[relpath]} if relpath in self.official else {}
        return {"kind": "mirror", **where, **official}


@dataclass
class HubOrigin:
    """A Hugging Face hub dataset repository at a revision, resolved to one commit for the whole fetch."""

    repo_id: str
    revision: str
    remotes: dict = field(default_factory=dict)

    def expected(self, relpath: str, published: PublishedFile | None, report: FetchReport) -> str | None:
        remote = hub.resolve(self.repo_id, relpath, self.revision)
        if report.commit and remote.commit != report.commit:
            raise VlprepError(f"{self.repo_id}: revision {self.revision} moved while fetching ({report.commit} → "
                              f"{remote.commit})", fix="pass a commit hash with --revision")
        report.commit = remote.commit
        self.remotes[relpath] = remote
        if published and remote.sha256 and published.sha256 != remote.sha256:
            raise VlprepError(
                f"{self.repo_id}@{remote.commit}: {relpath} has sha256 {remote.sha256}, not the published "
                f"{published.sha256}", fix="pass the --revision that holds the published file")
        return published.sha256 if published else remote.sha256

    def fetch(self, relpath: str, raw: Path, published: PublishedFile | None,
              report: FetchReport) -> tuple[str, str, str]:
        remote = self.remotes[relpath]
        _, sha = hub.download(remote, raw)
        if published and sha != published.sha256:
            raise VlprepError(f"{raw / relpath}: sha256 {sha} is not the published {published.sha256}")
        checked = "published" if published else "hub-lfs" if remote.sha256 else "recorded"
        return sha, checked, f"hub {self.repo_id}@{remote.commit}"

    def describe(self, relpath: str, report: FetchReport) -> dict[str, Any]:
        remote = self.remotes[relpath]
        return {"kind": "hub", "hub_repo": self.repo_id, "revision": self.revision, "commit": remote.commit,
                "url": hub.file_url(remote)}


@dataclass
class UrlOrigin:
    """Each file's published URL (resumable, retried, checked where a checksum is published)."""

    urls: dict[str, str]

    def expected(self, relpath: str, published: PublishedFile | None, report: FetchReport) -> str | None:
        return published.sha256 if published else None

    def fetch(self, relpath: str, raw: Path, published: PublishedFile | None,
              report: FetchReport) -> tuple[str, str, str]:
        from ..sources.http import download

        url = self.urls[relpath]
        sha = download(url, raw / relpath, expected_sha256=published.sha256 if published else None,
                       expected_size=published.size if published else None)
        return sha, "published" if published else "recorded", redact_url(url)

    def describe(self, relpath: str, report: FetchReport) -> dict[str, Any]:
        return {"kind": "url", "url": redact_url(self.urls[relpath])}


@dataclass
class LocalOrigin:
    """Files a user already has (a URL list passed with ``--tsv``), brought into ``raw/<dataset>`` so that the raw
    folder holds every input with its sums and source like any fetched one. A hard link when the
    file system allows it (no second copy of a large list), else a copy."""

    files: dict[str, Path]
    raw: Path
    _sha256: dict[str, str] = field(default_factory=dict)

    def expected(self, relpath: str, published: PublishedFile | None, report: FetchReport) -> str | None:
        """The given file's sha256; None (the record decides) when it is the very file in raw/ already,
        so a rerun does not hash a 500 MB list it linked before."""
        dest = self.raw / relpath
        if dest.exists() and os.path.samefile(self.files[relpath], dest):
            return None
        return self._hash(relpath)

    def fetch(self, relpath: str, raw: Path, published: PublishedFile | None,
              report: FetchReport) -> tuple[str, str, str]:
        src, dest = Path(self.files[relpath]), raw / relpath
        if not (dest.exists() and os.path.samefile(src, dest)):
            _link_or_copy(src, dest)
        sha = self._hash(relpath)
        if published:
            check_digest(dest, sha, dest.stat().st_size, published.sha256, published.size, published.source)
        return sha, "published" if published else "recorded", f"local file {src.resolve()}"

    def describe(self, relpath: str, report: FetchReport) -> dict[str, Any]:
        return {"kind": "local", "path": str(Path(self.files[relpath]).resolve())}

    def _hash(self, relpath: str) -> str:
        """The given file's sha256, read once per fetch (a 500 MB list is not hashed twice)."""
        if relpath not in self._sha256:
            self._sha256[relpath] = sha256_file(Path(self.files[relpath]))
        return self._sha256[relpath]


def _link_or_copy(src: Path, dest: Path) -> None:
    """``src`` at ``dest``, atomically: a hard link, or a copy where links cannot be made."""
    with atomic_path(dest) as tmp:
        try:
            os.link(src, tmp)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP):
                raise
            shutil.copyfile(src, tmp)


def fetch_all(raw: Path, relpaths: list[str], origin: Origin, known: Known | None = None) -> FetchReport:
    """The fetch loop every dataset shares: keep each file still as recorded, fetch the others from
    ``origin``, record how each was checked in ``raw/.verified.json`` and ``SHA256SUMS``, and where
    it came from in ``SOURCE.json``."""
    known = known or {}
    record = VerifiedRecord(raw)
    sources = provenance.read_sources(raw / provenance.SOURCE_NAME, raw.name)
    written = dict(sources)
    report = FetchReport()
    for relpath in relpaths:
        published = _published(known.get(relpath))
        if record.is_current(relpath, origin.expected(relpath, published, report)):
            report.skipped.append(relpath)
        else:
            sha, checked, source = origin.fetch(relpath, raw, published, report)
            record.add(relpath, sha, source, checked)
            report.fetched.append(relpath)
            sources[relpath] = origin.describe(relpath, report)
        _note_rehashed(record, report, raw)
        _record(report, record, relpath)
        written = _keep_sources(raw, record, sources, known, written)
    _keep_sources(raw, record, sources, known, written)
    return report


def _keep_sources(raw: Path, record: VerifiedRecord, sources: dict[str, dict], known: Known,
                  written: dict[str, dict]) -> dict[str, dict]:
    """Write ``SOURCE.json``: one entry per file the record holds (as ``SHA256SUMS`` lists them), with
    how it was checked now. A file whose origin was never described (fetched before SOURCE.json was
    kept) takes the origin line of its record. Written only when it changed; returns what is on disk."""
    entries = {}
    for relpath, verified in record.entries.items():
        origin = sources.get(relpath) or provenance.from_record_line(verified.origin)
        published = _published(known.get(relpath))
        entries[relpath] = provenance.entry(origin, verified, published.source if published else None)
    if entries != written:
        provenance.write_sources(raw, entries)
    return entries


def fetch_from_mirror(raw: Path, relpaths: list[str], mirror: Mirror, known: Known | None = None,
                      allow_unpublished: bool = False) -> FetchReport:
    """Fetch ``relpaths`` from ``mirror`` into ``raw`` (same relative paths); see :class:`MirrorOrigin`."""
    return fetch_all(raw, relpaths, MirrorOrigin(mirror, allow_unpublished), known)


def fetch_from_hub(raw: Path, relpaths: list[str], repo_id: str, revision: str,
                   known: Known | None = None) -> FetchReport:
    """Fetch ``relpaths`` of hub dataset ``repo_id`` at ``revision`` into ``raw``."""
    return fetch_all(raw, relpaths, HubOrigin(repo_id, revision), known)


def fetch_from_urls(raw: Path, urls: dict[str, str], known: Known | None = None) -> FetchReport:
    """Fetch each ``relpath: url`` into ``raw/relpath`` (resumable, retried, checked where known)."""
    return fetch_all(raw, list(urls), UrlOrigin(urls), known)


def fetch_files(raw: Path, urls: dict[str, str], mirror: str | None, known: Known | None = None,
                allow_unpublished: bool = False) -> FetchReport:
    """From ``--mirror`` when given (same relative paths), else from the official URLs.

    The published checksums of the official URLs (:data:`PUBLISHED`) apply to both."""
    known = {**{rel: PUBLISHED[url] for rel, url in urls.items() if url in PUBLISHED}, **(known or {})}
    if mirror:
        return fetch_all(raw, list(urls), MirrorOrigin(Mirror(mirror), allow_unpublished,
                                                       {rel: redact_url(url) for rel, url in urls.items()}), known)
    return fetch_from_urls(raw, urls, known)


def fetch_local(raw: Path, files: dict[str, Path], known: Known | None = None) -> FetchReport:
    """Bring each ``relpath: file`` a user has into ``raw/relpath`` (linked or copied, then recorded)."""
    return fetch_all(raw, list(files), LocalOrigin(files, raw), known)
