"""Mirrors: a local folder or an http(s) base URL holding a dataset's files at their published paths.

A mirror may carry ``SHA256SUMS`` at its root (sha256sum format, paths relative to the root);
every file fetched from it is checked against that list and against the hashes vlprep knows for
the official files, and a mismatch is refused. A mirror URL may hold credentials (user info, a
signed query); they are used to download and redacted everywhere the mirror is named.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import quote, urlparse
from urllib.request import url2pathname

from tqdm import tqdm

from ..errors import VlprepError
from ..fileio import ensure_dir
from ..redact import parses, redact_url
from .checksums import SUMS_NAME, check_digest, parse_sha256sums, remove_quietly
from .http import CHUNK, HTTPStatusError, RetryPolicy, download, make_session


MAX_SUMS_BYTES = 64 << 20
"""A ``SHA256SUMS`` is read whole: 64 MiB is ~700,000 lines, far more than any dataset's files, and
keeps a broken or hostile mirror's endless answer from filling memory and disk."""


class Mirror:
    """Where a dataset's files come from when ``--mirror`` is given."""

    def __init__(self, location: str, policy: RetryPolicy | None = None) -> None:
        self.location = location
        self.policy = policy or RetryPolicy()
        if location.lower().startswith(("http://", "https://")) and not parses(location):
            raise VlprepError(
                f"mirror {redact_url(location)}: its host or port does not parse",
                fix="percent-encode '/', '?', '#' and '@' inside a user name or password (%2F, %3F, %23, "
                "%40), then run the command again",
            )
        parsed = urlparse(location)
        if parsed.scheme in ("http", "https"):
            self.base_url: str | None = _base_url(location)
            self.root: Path | None = None
            self.session = make_session(self.policy)
        else:
            self.base_url = None
            self.root = Path(url2pathname(parsed.path) if parsed.scheme == "file" else location)
            if not self.root.is_dir():
                raise VlprepError(
                    f"mirror {redact_url(location)} is not a folder or an http(s) URL",
                    fix="pass --mirror a local folder or a base URL holding the dataset's files",
                )
        self._sums: dict[str, str] | None = None

    def __str__(self) -> str:
        """The mirror as it may be recorded and printed: credentials redacted."""
        return redact_url(self.location)

    def url(self, relpath: str) -> str:
        """Where ``relpath`` is read from, credentials included (for the download only, never shown)."""
        if self.base_url is not None:
            parsed = urlparse(self.base_url)
            joined = parsed._replace(path=parsed.path + quote(relpath))
            return joined.geturl()
        return str(self.root / relpath)

    def sums(self) -> dict[str, str]:
        """The mirror's ``SHA256SUMS`` (empty if it has none)."""
        if self._sums is None:
            self._sums = self._read_sums()
        return self._sums

    def _read_sums(self) -> dict[str, str]:
        if self.root is not None:
            path = self.root / SUMS_NAME
            if path.exists() and path.stat().st_size > MAX_SUMS_BYTES:
                raise VlprepError(f"{path} is over {MAX_SUMS_BYTES >> 20} MiB, more than a list of a dataset's "
                                  "files can be", fix="check that --mirror points at the mirror's root")
            return parse_sha256sums(path.read_text(), str(path)) if path.exists() else {}
        import tempfile

        shown = redact_url(self.url(SUMS_NAME))
        with tempfile.TemporaryDirectory(prefix="vlprep-sums-") as tmp:
            try:
                download(self.url(SUMS_NAME), Path(tmp) / SUMS_NAME, session=self.session, policy=self.policy,
                         max_size=MAX_SUMS_BYTES)
            except HTTPStatusError as exc:
                if exc.status == 404:
                    return {}
                raise VlprepError(f"{shown} answered HTTP {exc.status}",
                                  fix="check that --mirror points at the mirror's root") from None
            return parse_sha256sums((Path(tmp) / SUMS_NAME).read_text(), shown)

    def fetch(self, relpath: str, dest: Path, *, expected_sha256: str | None = None,
              expected_size: int | None = None) -> str:
        """Copy ``relpath`` to ``dest``, checked against the mirror's list and the known hash."""
        listed = self.sums().get(relpath)
        if listed and expected_sha256 and listed != expected_sha256.lower():
            raise VlprepError(
                f"mirror {self}: SHA256SUMS lists {relpath} as {listed}, but the published "
                f"file is {expected_sha256}",
                fix="the mirror holds a different file; replace it with the published one (a sample or "
                "repacked copy can be fetched with --allow-unpublished, recorded as not the published file)",
            )
        want = expected_sha256 or listed
        if self.base_url is not None:
            return download(self.url(relpath), dest, expected_sha256=want, expected_size=expected_size,
                            session=self.session, policy=self.policy)
        return _copy_verified(self.root / relpath, dest, want, expected_size, str(self))


def _copy_verified(src: Path, dest: Path, expected_sha256: str | None, expected_size: int | None,
                   mirror: str) -> str:
    if not src.is_file():
        raise VlprepError(
            f"mirror {mirror} has no file {src}",
            fix="lay the mirror out as docs/design.md 'Mirror layout' says for this dataset, or fetch without --mirror",
        )
    ensure_dir(dest.parent)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with open(src, "rb") as reader, open(part, "wb") as writer, tqdm(
            desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024, total=src.stat().st_size,
            disable=None, leave=False,
        ) as bar:
            while block := reader.read(CHUNK * 64):
                writer.write(block)
                digest.update(block)
                bar.update(len(block))
        check_digest(dest, digest.hexdigest(), part.stat().st_size, expected_sha256, expected_size, str(src))
    except BaseException:
        remove_quietly(part)
        raise
    os.replace(part, dest)
    return digest.hexdigest()


def _base_url(location: str) -> str:
    """The mirror URL as a folder (its path ends in ``/``), keeping any query for signed mirrors."""
    parsed = urlparse(location)
    return parsed._replace(path=parsed.path.rstrip("/") + "/").geturl()
