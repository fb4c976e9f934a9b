"""The fetch stage every dataset shares: files from the hub or a mirror into ``raw/<dataset>``.

A file already on disk exactly as it was recorded (same size and mtime) is not fetched or hashed
again; one whose size matches but whose mtime does not (a ``cp -r`` copy) is re-hashed and kept if
unchanged. Anything else is fetched to a temporary name, checked against every hash known for it
(the published checksums of the official files, the mirror's ``SHA256SUMS``, the hub's LFS sha256)
and only then renamed into place and recorded in ``raw/<dataset>/SHA256SUMS`` and ``.verified.json``
with how it was checked. A file no hash is known for is only recorded, and the report says so:
"verified" is kept for files that matched a published checksum.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..errors import VlprepError
from ..redact import redact_url
from ..sources import hub
from ..sources.checksums import CHECKS, PUBLISHED, PublishedFile, VerifiedRecord
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
    """Where a dataset's files come from: a mirror, a hub repository or published URLs. The fetch loop
    (:func:`fetch_all`) asks it what a file on disk must hash to, and to fetch one that does not."""

    def expected(self, relpath: str, published: PublishedFile | None, report: FetchReport) -> str | None:
        """The sha256 a file already on disk must have to be kept (None: whatever was recorded)."""

    def fetch(self, relpath: str, raw: Path, published: PublishedFile | None,
              report: FetchReport) -> tuple[str, str, str]:
        """Fetch one file to ``raw/relpath`` checked against the strongest hash known: (sha256, how it was
        checked, where it came from as recorded)."""


@dataclass
class MirrorOrigin:
    """A ``--mirror`` folder or URL with the files at their published relative paths.

    ``allow_unpublished`` accepts a mirror file whose sha256 differs from the published one (a
    sample or a repacked copy): it is checked against the mirror's ``SHA256SUMS`` only, recorded so,
    and named in the report as not the published file."""

    mirror: Mirror
    allow_unpublished: bool = False

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


def fetch_all(raw: Path, relpaths: list[str], origin: Origin, known: Known | None = None) -> FetchReport:
    """The fetch loop every dataset shares: keep each file still as recorded, fetch the others from
    ``origin``, record how each was checked in ``raw/.verified.json``."""
    known = known or {}
    record = VerifiedRecord(raw)
    report = FetchReport()
    for relpath in relpaths:
        published = _published(known.get(relpath))
        if record.is_current(relpath, origin.expected(relpath, published, report)):
            report.skipped.append(relpath)
        else:
            sha, checked, source = origin.fetch(relpath, raw, published, report)
            record.add(relpath, sha, source, checked)
            report.fetched.append(relpath)
        _note_rehashed(record, report, raw)
        _record(report, record, relpath)
    return report


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
        return fetch_from_mirror(raw, list(urls), Mirror(mirror), known, allow_unpublished)
    return fetch_from_urls(raw, urls, known)
