"""``raw/<dataset>/SOURCE.json``: where each fetched file came from and how far it can be trusted.

``SHA256SUMS`` says what the bytes are and ``.verified.json`` is fetch's own bookkeeping (sizes and
mtimes, to skip files on a rerun); ``SOURCE.json`` is the record a person or a later stage reads to
tell where a file came from: the official URL, a hub repository at a revision and the commit it
resolved to, or a mirror (folder or base URL), or a local file a user passed. It also says whether
the file was *verified* against a checksum a public source states or its sha256 only recorded. URLs
are redacted of credentials. One entry per file that fetch recorded, keyed by its path relative to
``raw/<dataset>/``::

    {"subsets/urlsf_subset00.tar": {"kind": "hub", "hub_repo": "Skylion007/openwebtext",
      "revision": "main", "commit": "8cfd…", "url": "https://huggingface.co/datasets/…",
      "sha256": "…", "size": 624062412, "checked": "hub-lfs", "verified": false,
      "check": "checked against the hub's LFS sha256"}}

Each ``kind`` carries its own keys (:data:`ORIGIN_KEYS`). Files written before ``kind`` existed
(OpenWebText's ``{"hub_repo", "revision", "commit", "sha256"}`` or ``{"mirror", "sha256"}``) read
as the same origins.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..errors import VlprepError
from ..fileio import read_json, write_json
from ..redact import redact_text
from .checksums import CHECKS, Verified

SOURCE_NAME = "SOURCE.json"
ORIGIN_KEYS: dict[str, tuple[str, ...]] = {
    "hub": ("hub_repo", "revision", "commit"),
    "mirror": ("mirror",),
    "url": ("url",),
    "local": ("path",),
    "recorded": ("origin",),
}
"""The keys that say where a file of each ``kind`` came from (what a stage copies into its outputs'
provenance). ``recorded``: a file fetched before SOURCE.json was kept for it; its origin is the
line ``.verified.json`` holds."""


def read_sources(path: Path, dataset: str) -> dict[str, dict[str, Any]]:
    """``SOURCE.json`` at ``path`` (empty if absent). A damaged one is one error naming it, not a
    traceback: it is only provenance, and fetch writes it again."""
    if not path.exists():
        return {}
    try:
        sources = read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        sources = str(exc)
    if not isinstance(sources, dict) or not all(isinstance(v, dict) for v in sources.values()):
        raise VlprepError(f"{path}: not a valid source record ({str(sources)[:80]})",
                          fix=f"delete it and run: vlprep fetch {dataset}  (it is written again from the fetch)")
    return sources


def kind_of(entry: Mapping[str, Any]) -> str:
    """An entry's ``kind``, inferred for entries written before it was recorded."""
    if "kind" in entry:
        return str(entry["kind"])
    if "hub_repo" in entry or "repo" in entry:
        return "hub"
    if "mirror" in entry:
        return "mirror"
    return "url" if "url" in entry else "recorded"


def origin_of(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Where a file came from, by the keys of its kind only (hub: repo, revision, commit; mirror: its
    base), credentials redacted: what ``binarize owt`` copies into ``stats.json``."""
    keys = ORIGIN_KEYS.get(kind_of(entry), ())
    return {k: redact_text(v) if isinstance(v, str) else v for k, v in entry.items() if k in keys}


def from_record_line(origin: str) -> dict[str, Any]:
    """An origin from the one line ``.verified.json`` keeps (``hub repo@commit``, ``mirror X``, a URL),
    for a file fetched before SOURCE.json recorded it."""
    if origin.startswith("hub ") and "@" in origin:
        repo, _, commit = origin[4:].rpartition("@")
        return {"kind": "hub", "hub_repo": repo, "commit": commit}
    if origin.startswith("mirror "):
        return {"kind": "mirror", "mirror": origin[7:]}
    if origin.startswith("local file "):
        return {"kind": "local", "path": origin[11:]}
    if "://" in origin:
        return {"kind": "url", "url": origin}
    return {"kind": "recorded", "origin": origin}


def entry(origin: Mapping[str, Any], verified: Verified, published_by: str | None) -> dict[str, Any]:
    """One file's SOURCE.json entry: its origin, its bytes and how they were checked."""
    found: dict[str, Any] = {k: redact_text(v) if isinstance(v, str) else v for k, v in origin.items()
                             if k not in ("sha256", "size", "checked", "verified", "check", "published_by")}
    found.setdefault("kind", kind_of(origin))
    found.update(sha256=verified.sha256, size=verified.size, checked=verified.checked,
                 verified=verified.checked == "published", check=CHECKS[verified.checked])
    if verified.checked == "published" and published_by:
        found["published_by"] = published_by
    return found


def write_sources(raw: Path, entries: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ``raw/SOURCE.json`` atomically, sorted, so equal provenance gives equal bytes."""
    path = Path(raw) / SOURCE_NAME
    write_json(path, {relpath: dict(entries[relpath]) for relpath in sorted(entries)})
    return path
