"""The fetch stage every dataset shares: files from the hub or a mirror into ``raw/<dataset>``.

A file already on disk exactly as it was verified (same size and mtime as recorded) is not fetched
or hashed again; anything else is fetched to a temporary name, checked against every hash known
for it (vlprep's table of official files, the mirror's ``SHA256SUMS``, the hub's LFS sha256) and
only then renamed into place and recorded in ``raw/<dataset>/SHA256SUMS``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import VlprepError
from ..sources import hub
from ..sources.checksums import VerifiedRecord
from ..sources.mirror import Mirror


@dataclass
class FetchReport:
    """What one fetch did, for the printed summary and the dataset's source record."""

    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    sha256: dict[str, str] = field(default_factory=dict)
    commit: str | None = None


def fetch_from_mirror(raw: Path, relpaths: list[str], mirror: Mirror,
                      known: dict[str, str] | None = None) -> FetchReport:
    """Fetch ``relpaths`` from ``mirror`` into ``raw`` (same relative paths)."""
    known = known or {}
    record = VerifiedRecord(raw)
    report = FetchReport()
    for relpath in relpaths:
        expected = known.get(relpath) or mirror.sums().get(relpath)
        if record.is_current(relpath, expected):
            report.skipped.append(relpath)
        else:
            sha = mirror.fetch(relpath, raw / relpath, expected_sha256=known.get(relpath))
            record.add(relpath, sha, f"mirror {mirror}")
            report.fetched.append(relpath)
        report.sha256[relpath] = record.entries[relpath].sha256
    return report


def fetch_from_hub(raw: Path, relpaths: list[str], repo_id: str, revision: str,
                   known: dict[str, str] | None = None) -> FetchReport:
    """Fetch ``relpaths`` of hub dataset ``repo_id`` at ``revision`` into ``raw``."""
    known = known or {}
    record = VerifiedRecord(raw)
    report = FetchReport()
    for relpath in relpaths:
        remote = hub.resolve(repo_id, relpath, revision)
        if report.commit and remote.commit != report.commit:
            raise VlprepError(f"{repo_id}: revision {revision} moved while fetching ({report.commit} → "
                              f"{remote.commit})", fix="pass a commit hash with --revision")
        report.commit = remote.commit
        expected = known.get(relpath)
        if expected and remote.sha256 and expected != remote.sha256:
            raise VlprepError(
                f"{repo_id}@{remote.commit}: {relpath} has sha256 {remote.sha256}, not the published {expected}",
                fix="pass the --revision that holds the published file",
            )
        if record.is_current(relpath, expected or remote.sha256):
            report.skipped.append(relpath)
        else:
            _, sha = hub.download(remote, raw)
            if expected and sha != expected:
                raise VlprepError(f"{raw / relpath}: sha256 {sha} is not the published {expected}")
            record.add(relpath, sha, f"hub {repo_id}@{remote.commit}")
            report.fetched.append(relpath)
        report.sha256[relpath] = record.entries[relpath].sha256
    return report


def fetch_from_urls(raw: Path, urls: dict[str, str], known: dict[str, str] | None = None) -> FetchReport:
    """Fetch each ``relpath: url`` into ``raw/relpath`` (resumable, retried, checked where known)."""
    from ..sources.http import download

    known = known or {}
    record = VerifiedRecord(raw)
    report = FetchReport()
    for relpath, url in urls.items():
        if record.is_current(relpath, known.get(relpath)):
            report.skipped.append(relpath)
        else:
            sha = download(url, raw / relpath, expected_sha256=known.get(relpath))
            record.add(relpath, sha, url)
            report.fetched.append(relpath)
        report.sha256[relpath] = record.entries[relpath].sha256
    return report


def fetch_files(raw: Path, urls: dict[str, str], mirror: str | None,
                known: dict[str, str] | None = None) -> FetchReport:
    """From ``--mirror`` when given (same relative paths), else from the official URLs."""
    if mirror:
        return fetch_from_mirror(raw, list(urls), Mirror(mirror), known)
    return fetch_from_urls(raw, urls, known)
