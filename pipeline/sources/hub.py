"""Hugging Face hub files at a pinned revision, through ``huggingface_hub``.

``huggingface_hub`` honours ``HF_ENDPOINT`` (a mirror or a local test server) and ``HF_TOKEN``
(gated repositories such as ImageNet). The revision asked for is resolved to a commit first and
the file is then downloaded at that commit, so what is recorded is exactly what was fetched. The
LFS sha256 the hub reports is checked after the download.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import VlprepError
from ..fileio import ensure_dir, sha256_file
from ..redact import redact_url, scrub
from .checksums import check_digest

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class HubFile:
    """A hub file's identity: where it is and what it must hash to."""

    repo_id: str
    filename: str
    revision: str
    commit: str
    sha256: str | None
    size: int | None


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def resolve(repo_id: str, filename: str, revision: str, repo_type: str = "dataset") -> HubFile:
    """Ask the hub which commit ``revision`` is and what the file's sha256 and size are."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo_id, filename, repo_type=repo_type, revision=revision, endpoint=endpoint())
    try:
        meta = get_hf_file_metadata(url, token=_token(), retry_on_errors=True)
    except Exception as exc:  # noqa: BLE001 - translated to a message a person can act on
        raise explain_hub_error(exc, repo_id, filename, revision) from exc
    etag = (meta.etag or "").strip('"').lower()
    return HubFile(repo_id, filename, revision, meta.commit_hash or revision,
                   etag if _SHA256.match(etag) else None, meta.size)


def file_url(hub_file: HubFile, repo_type: str = "dataset") -> str:
    """Where ``hub_file`` is read at its resolved commit, as it may be recorded (credentials redacted)."""
    from huggingface_hub import hf_hub_url

    return redact_url(hf_hub_url(hub_file.repo_id, hub_file.filename, repo_type=repo_type,
                                 revision=hub_file.commit, endpoint=endpoint()))


def download(hub_file: HubFile, dest_dir: Path, repo_type: str = "dataset") -> tuple[Path, str]:
    """Download ``hub_file`` at its resolved commit into ``dest_dir``; return (path, sha256)."""
    from huggingface_hub import hf_hub_download

    ensure_dir(dest_dir)
    try:
        path = Path(hf_hub_download(
            hub_file.repo_id, hub_file.filename, repo_type=repo_type, revision=hub_file.commit,
            local_dir=dest_dir, token=_token(), endpoint=endpoint(),
        ))
    except Exception as exc:  # noqa: BLE001
        raise explain_hub_error(exc, hub_file.repo_id, hub_file.filename, hub_file.revision) from exc
    sha256 = sha256_file(path)
    try:
        check_digest(path, sha256, path.stat().st_size, hub_file.sha256, hub_file.size,
                     f"hub {hub_file.repo_id}@{hub_file.commit}")
    except VlprepError:
        path.unlink()
        raise
    return path, sha256


def _token() -> str | bool | None:
    return os.environ.get("HF_TOKEN") or None


def explain_hub_error(exc: Exception, repo_id: str, filename: str, revision: str) -> VlprepError:
    """Turn huggingface_hub's exceptions into what the user should do next."""
    from huggingface_hub import errors

    where = f"{repo_id}/{filename} at revision {revision} on {redact_url(endpoint())}"
    detail = scrub(str(exc), endpoint())
    if token := _token():
        detail = detail.replace(str(token), "REDACTED")
    if isinstance(exc, errors.GatedRepoError):
        return VlprepError(
            f"{repo_id} is a gated repository and this token has no access to it ({where})",
            fix=f"accept the terms at https://huggingface.co/datasets/{repo_id} while logged in, create a "
            "read token at https://huggingface.co/settings/tokens and export HF_TOKEN=<token>",
        )
    if isinstance(exc, errors.RepositoryNotFoundError):
        return VlprepError(
            f"repository {repo_id} was not found or needs a login ({where})",
            fix="check the name; if it is private or gated, export HF_TOKEN=<token> with access to it",
        )
    if isinstance(exc, errors.RevisionNotFoundError):
        return VlprepError(f"revision {revision} does not exist in {repo_id}",
                           fix="pass an existing branch, tag or commit with --revision")
    if isinstance(exc, (errors.EntryNotFoundError, errors.RemoteEntryNotFoundError)):
        return VlprepError(
            f"{filename} does not exist in {repo_id} at revision {revision}",
            fix="pass a --revision that still holds it, or use --mirror with a copy of the files",
        )
    if isinstance(exc, errors.HfHubHTTPError):
        return VlprepError(f"the hub answered an error for {where}: {detail}",
                           fix="retry later, or use --mirror with a copy of the files")
    return VlprepError(f"could not reach the hub for {where}: {detail}",
                       fix="check the network (or HF_ENDPOINT), or use --mirror with a copy of the files")
