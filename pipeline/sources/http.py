"""HTTP downloads that survive real networks: resume with Range, retries with backoff, verification.

urllib3's ``Retry`` handles connection errors and 5xx/429 answers (honouring ``Retry-After``);
a body that breaks off mid-stream is resumed from the bytes already on disk with a ``Range``
request. 4xx answers (404, 403, 401) are final and are not retried. The partial file keeps a
stable ``.part`` name so the next run resumes it; only a complete, verified file is renamed into place.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from ..errors import VlprepError
from ..fileio import ensure_dir
from .checksums import check_digest, remove_quietly

CHUNK = 1 << 16
"""Small enough that a connection cut mid-read loses little: what arrived before it is kept."""
RETRY_STATUS = (429, 500, 502, 503, 504)
USER_AGENT = "vlprep (https://pypi.org/project/vlprep/)"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    backoff: float = float(os.environ.get("VLPREP_HTTP_BACKOFF", "0.5"))
    timeout: tuple[float, float] = (15.0, 60.0)


def make_session(policy: RetryPolicy = RetryPolicy()) -> requests.Session:
    """A session whose adapter retries connects and 5xx/429 with exponential backoff."""
    retry = Retry(
        total=policy.attempts, connect=policy.attempts, read=policy.attempts, status=policy.attempts,
        backoff_factor=policy.backoff, status_forcelist=RETRY_STATUS, allowed_methods=None,
        raise_on_status=False, respect_retry_after_header=True,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def download(url: str, dest: Path, *, expected_sha256: str | None = None, expected_size: int | None = None,
             session: requests.Session | None = None, policy: RetryPolicy = RetryPolicy()) -> str:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify it, return its sha256."""
    dest = Path(dest)
    ensure_dir(dest.parent)
    part = dest.with_name(dest.name + ".part")
    session = session or make_session(policy)
    partial = _Partial(part)
    failures = 0
    with tqdm(desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024, initial=_size(part),
              total=expected_size, disable=None, leave=False) as bar:
        while True:
            try:
                complete = _stream_once(session, url, partial, bar, policy)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                complete, error = False, exc
            else:
                error = None
            if complete:
                break
            failures += 1
            if failures >= policy.attempts:
                raise VlprepError(
                    f"download of {url} failed {failures} times; last error: {error or 'body ended early'}",
                    fix="check the network or the mirror, then run the same command again: it resumes "
                    f"from the {_size(part):,} bytes already in {part}",
                )
            time.sleep(policy.backoff * 2 ** (failures - 1))
    sha256 = partial.digest.hexdigest()
    try:
        check_digest(dest, sha256, _size(part), expected_sha256, expected_size, url)
    except VlprepError:
        remove_quietly(part)
        raise
    os.replace(part, dest)
    return sha256


class _Partial:
    """The ``.part`` file and the running sha256 of the bytes already in it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digest = hashlib.sha256()
        if path.exists():
            with open(path, "rb") as handle:
                while block := handle.read(CHUNK * 64):
                    self.digest.update(block)

    def restart(self) -> None:
        self.digest = hashlib.sha256()
        remove_quietly(self.path)


def _stream_once(session: requests.Session, url: str, partial: _Partial, bar: tqdm,
                 policy: RetryPolicy) -> bool:
    """One request; append what arrives to the part file. True once the whole body is on disk."""
    part = partial.path
    have = _size(part)
    headers = {"Range": f"bytes={have}-"} if have else {}
    with session.get(url, headers=headers, stream=True, timeout=policy.timeout) as response:
        if response.status_code == 416 and have:
            return _range_not_satisfiable(response, have)
        if response.status_code in RETRY_STATUS:
            return False
        if response.status_code >= 400:
            raise VlprepError(
                f"{url} answered HTTP {response.status_code} {response.reason}",
                fix="check the URL, the mirror's layout (see README 'Mirrors') or your access rights",
            )
        if have and response.status_code != 206:
            have = 0  # the server ignored Range: start over
            partial.restart()
            bar.reset(total=bar.total)
        expected_total = _expected_total(response, have)
        mode = "ab" if have else "wb"
        received = have
        with open(part, mode) as handle:
            for block in response.iter_content(CHUNK):
                handle.write(block)
                partial.digest.update(block)
                received += len(block)
                bar.update(len(block))
        return expected_total is None or received >= expected_total


def _range_not_satisfiable(response: requests.Response, have: int) -> bool:
    """A 416 on resume means the part is already whole if the server's size equals it."""
    content_range = response.headers.get("Content-Range", "")
    if content_range.startswith("bytes */") and content_range[8:].isdigit():
        return int(content_range[8:]) == have
    return True


def _expected_total(response: requests.Response, have: int) -> int | None:
    content_range = response.headers.get("Content-Range")
    if response.status_code == 206 and content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        if total.isdigit():
            return int(total)
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and "Content-Encoding" not in response.headers:
        return have + int(length)
    return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
