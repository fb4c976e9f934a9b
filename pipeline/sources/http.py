"""HTTP downloads that survive real networks without ever splicing wrong bytes or waiting forever.

One retry layer, ours: the session's adapter does not retry, so waits do not multiply (urllib3's
``Retry`` inside a retry loop used to add up to ~42 minutes per file). Each file has a retry budget
in seconds (``--retry-budget``); every retry prints its cause and its wait, and a file that exhausts
the budget fails with the bytes already held kept for the next run. A host name that does not resolve
fails at once: DNS answers do not change in a few seconds of backoff.

Resume is only trusted when the server proves it is sending the rest of the same file: the request
carries ``If-Range`` with the ``ETag`` (or ``Last-Modified``) remembered beside the ``.part`` file in
``.part.json``, a ``206`` must start exactly at the bytes held, and a ``416`` is "complete" only when
its ``Content-Range`` names exactly that size. Anything else restarts from zero.

A body shorter than its ``Content-Length``, a compressed (``Content-Encoding``) stream that is cut,
an HTML page where a data file was expected, a server that stays silent for ``idle`` seconds or
sends slower than ``min_rate`` bytes/s over that window: each is an error (retried where a retry can
help). Only a complete, verified file is renamed into place.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tqdm import tqdm

from ..errors import VlprepError
from ..fileio import ensure_dir, read_json, write_json
from ..redact import redact_url, scrub
from .checksums import check_digest, remove_quietly

CHUNK = 1 << 16
"""Small enough that a connection cut mid-read loses little: what arrived before it is kept."""
RETRY_STATUS = (408, 429, 500, 502, 503, 504)
USER_AGENT = "vlprep (https://pypi.org/project/vlprep/)"
PROGRESS_BYTES = 1 << 20
"""An attempt that brought at least this many new bytes made progress: only its silent tail counts
against the retry budget, so a long download cut now and then is not failed for being long."""
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^\"')]+)")
_HTML_STARTS = (b"<!doctype html", b"<html")
_DECODERS = {"gzip": 31, "x-gzip": 31, "deflate": 15}
"""zlib ``wbits`` per Content-Encoding vlprep decodes (deflate as its zlib-wrapped form)."""


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass(frozen=True)
class RetryPolicy:
    """How long one file may take to fail. ``timeout`` is (connect, idle) seconds."""

    attempts: int = 12
    backoff: float = field(default_factory=lambda: _env_float("VLPREP_HTTP_BACKOFF", 0.5))
    timeout: tuple[float, float] = field(
        default_factory=lambda: (15.0, _env_float("VLPREP_IDLE_TIMEOUT", 60.0)))
    budget: float = field(default_factory=lambda: _env_float("VLPREP_RETRY_BUDGET", 300.0))
    min_rate: float = field(default_factory=lambda: _env_float("VLPREP_MIN_RATE", 1024.0))
    max_wait: float = 60.0

    @property
    def idle(self) -> float:
        return self.timeout[1]


class HTTPStatusError(VlprepError):
    """A final (4xx) answer; ``status`` lets a caller treat 404 as "not there"."""

    def __init__(self, message: str, status: int, *, fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.status = status


class _Transient(Exception):
    """One attempt failed in a way a later attempt may not: the cause, and a server-asked wait."""

    def __init__(self, cause: str, retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.retry_after = retry_after


def make_session(policy: RetryPolicy | None = None) -> requests.Session:
    """A session that does not retry by itself: :func:`download` is the only retry layer."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept-Encoding"] = "identity"
    return session


def download(url: str, dest: Path, *, expected_sha256: str | None = None, expected_size: int | None = None,
             session: requests.Session | None = None, policy: RetryPolicy | None = None,
             max_size: int | None = None) -> str:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify it, return its sha256.

    ``max_size`` cuts a body that grows past it (a file read whole afterwards, such as a mirror's
    ``SHA256SUMS``, whose size no one states in advance).

    Example::

        sha = download("https://host/a.zip", Path("raw/a.zip"), expected_sha256="…", expected_size=123)
    """
    dest = Path(dest)
    policy = policy or RetryPolicy()
    ensure_dir(dest.parent)
    part = dest.with_name(dest.name + ".part")
    session = session or make_session(policy)
    partial = _Partial(part)
    partial.checked_at_end = expected_sha256 is not None
    partial.max_size = max_size
    partial.expected_size = expected_size
    shown = redact_url(url)
    with tqdm(desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024, initial=_size(part),
              total=expected_size, disable=None, leave=False) as bar:
        try:
            _fetch_with_retries(session, url, partial, bar, policy, dest.name)
        except VlprepError:
            if not _size(part) or (expected_size is not None and _size(part) > expected_size):
                partial.restart()  # nothing worth resuming, or more bytes than the file has
            raise
    sha256 = partial.digest.hexdigest()
    try:
        check_digest(dest, sha256, _size(part), expected_sha256, expected_size, shown)
    except VlprepError:
        partial.restart()
        raise
    os.replace(part, dest)
    remove_quietly(partial.meta_path)
    return sha256


def _fetch_with_retries(session: requests.Session, url: str, partial: _Partial, bar: tqdm,
                        policy: RetryPolicy, name: str) -> None:
    """Attempt until the body is whole; spend at most ``policy.budget`` seconds on failed tries."""
    spent = 0.0
    attempts = 0
    while True:
        attempts += 1
        started, had = time.monotonic(), _size(partial.path)
        try:
            _stream_once(session, url, partial, bar, policy)
            return
        except _Transient as exc:
            cause, asked = str(exc), exc.retry_after
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema, requests.exceptions.TooManyRedirects) as exc:
            raise VlprepError(f"cannot fetch {redact_url(url)}: {_describe(exc, url)}",
                              fix="check the URL or --mirror (an http(s) URL or a local folder)") from None
        except requests.ConnectionError as exc:
            if _is_name_resolution_failure(exc):
                raise _dns_error(url) from None
            cause, asked = _describe(exc, url), None
        except (requests.Timeout, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError, urllib3.exceptions.HTTPError, OSError) as exc:
            cause, asked = _describe(exc, url), None
        now = time.monotonic()
        gained = _size(partial.path) - had
        spent += (now - started) if gained < PROGRESS_BYTES else min(now - started, partial.idle_tail(now))
        wait = min(asked if asked is not None else policy.backoff * 2 ** min(attempts - 1, 16), policy.max_wait)
        if attempts >= policy.attempts or spent + wait > policy.budget:
            raise VlprepError(
                f"download of {redact_url(url)} gave up after {attempts} attempts and {spent:.0f} s of "
                f"retrying (budget {policy.budget:g} s); last error: {cause}",
                fix="check the network or the mirror (or raise --retry-budget), then run the same command "
                "again" + (f": it resumes from the {_size(partial.path):,} bytes already in {partial.path}"
                           if _size(partial.path) else ""),
            )
        tqdm.write(f"{name}: {cause}; retry {attempts} in {wait:.1f} s "
                   f"({spent:.0f} s of the {policy.budget:g} s retry budget used)", file=sys.stderr)
        _wait(wait, bar)
        spent += wait


def _wait(seconds: float, bar: tqdm) -> None:
    """Sleep, showing the countdown on the progress bar so a long wait is visibly a wait."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        bar.set_postfix_str(f"retry in {left:.0f} s", refresh=True)
        time.sleep(min(left, 1.0))
    bar.set_postfix_str("", refresh=False)


class _Partial:
    """The ``.part`` file, the running sha256 of its bytes and the validators of the response behind it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta_path = path.with_name(path.name + ".json")
        self.digest = hashlib.sha256()
        self.last_byte_at = time.monotonic()
        self.meta: dict = {}
        self.checked_at_end = False
        """True when the whole file's sha256 is known: a wrongly resumed file is caught at the end."""
        self.max_size: int | None = None
        self.expected_size: int | None = None
        """The published size: a body that grows past it is another file, cut before it fills the disk."""
        if path.exists():
            with open(path, "rb") as handle:
                while block := handle.read(CHUNK * 64):
                    self.digest.update(block)
            try:
                self.meta = read_json(self.meta_path) if self.meta_path.exists() else {}
            except ValueError:
                self.meta = {}
            if self.meta.get("encoded"):  # decoded bytes: their offsets are not the server's
                self.restart()

    def restart(self) -> None:
        self.digest = hashlib.sha256()
        self.meta = {}
        remove_quietly(self.path)
        remove_quietly(self.meta_path)

    def remember(self, url: str, response: requests.Response) -> None:
        """Keep what identifies this version of the file, for ``If-Range`` on the next resume."""
        self.meta = {"url": redact_url(url), "etag": response.headers.get("ETag"),
                     "last_modified": response.headers.get("Last-Modified"), "total": _total_of(response, 0),
                     "encoded": bool(_encoding(response))}
        write_json(self.meta_path, self.meta, durable=False)

    def if_range(self) -> str | None:
        etag = self.meta.get("etag")
        if etag and not etag.startswith("W/"):
            return etag
        return self.meta.get("last_modified")

    def resumable(self) -> bool:
        """Resume only where a splice would show: the server named the version the bytes held came from
        (ETag or Last-Modified, compared on resume), or the sha256 is checked at the end. With neither,
        a file changed on the server would be appended to unnoticed."""
        return bool(self.meta.get("etag") or self.meta.get("last_modified")) or self.checked_at_end

    def idle_tail(self, now: float) -> float:
        return max(0.0, now - self.last_byte_at)


def _stream_once(session: requests.Session, url: str, partial: _Partial, bar: tqdm, policy: RetryPolicy) -> None:
    """One request; append what arrives to the part file. Returns once the whole body is on disk."""
    have = _size(partial.path)
    if have and not partial.resumable():
        partial.restart()
        bar.reset(total=bar.total)
        have = 0
    headers = {}
    if have:
        headers["Range"] = f"bytes={have}-"
        if validator := partial.if_range():
            headers["If-Range"] = validator
    with session.get(url, headers=headers, stream=True, timeout=policy.timeout) as response:
        status = response.status_code
        if status == 416 and have:
            _range_not_satisfiable(response, have, partial, bar)
            return
        if status in RETRY_STATUS:
            raise _Transient(f"HTTP {status} {response.reason}", _retry_after(response))
        if status >= 400:
            raise HTTPStatusError(
                f"{redact_url(url)} answered HTTP {status} {response.reason}", status,
                fix="check the URL, the mirror's layout (docs/design.md 'Mirror layout') or your access rights",
            )
        if have and not _continues(response, have, partial):
            partial.restart()
            bar.reset(total=bar.total)
            if status == 206:  # the wrong piece of the file (or of another version): ask for all of it
                raise _Transient(f"HTTP 206 with Content-Range {response.headers.get('Content-Range')!r} "
                                 f"for a {have:,}-byte partial file; restarting from zero")
            have = 0  # a whole new body (the server ignored Range, or If-Range saw a changed file)
        elif not have and status == 206 and _content_range(response.headers.get("Content-Range", ""))[0] != 0:
            raise _Transient(f"HTTP 206 with Content-Range {response.headers.get('Content-Range')!r} "
                             "to a request for the whole file")
        _refuse_html(response, url)
        if not have:
            partial.remember(url, response)
        _receive(response, partial, bar, policy, have, url)


def _continues(response: requests.Response, have: int, partial: _Partial) -> bool:
    """True if this answer is the rest of the file already held (else the part must be dropped)."""
    if response.status_code != 206 or _encoding(response):
        return False
    start, total = _content_range(response.headers.get("Content-Range", ""))
    if start != have:
        return False
    if partial.meta.get("total") is not None and total is not None and total != partial.meta["total"]:
        return False
    for header, key in (("ETag", "etag"), ("Last-Modified", "last_modified")):
        known, now = partial.meta.get(key), response.headers.get(header)
        if known and now and known != now:
            return False
    return True


def _receive(response: requests.Response, partial: _Partial, bar: tqdm, policy: RetryPolicy, have: int,
             url: str) -> None:
    """Copy the body into the part file; refuse a short or cut body. Bytes decoded from a compressed
    answer cannot be resumed with Range, so any failure there starts the next attempt from zero."""
    encoding = _encoding(response)
    decoder = _decoder(encoding, url)
    try:
        received = _copy_body(response, partial, bar, policy, have, url, decoder)
        expected = _content_length(response)
        if expected is not None and received < expected:
            raise _Transient(f"the body ended after {received:,} of {expected:,} bytes")
        if decoder is not None:
            _finish_decoding(decoder, encoding, partial)
    except BaseException:
        if encoding:
            partial.restart()
        raise


def _copy_body(response: requests.Response, partial: _Partial, bar: tqdm, policy: RetryPolicy, have: int,
               url: str, decoder) -> int:
    """Append the body to the part file as it arrives; return the bytes received on the wire.

    ``read1`` returns whatever one socket read gave, so a trickle is noticed: over each window of
    ``policy.idle`` seconds the server must send ``policy.min_rate`` bytes/s (silence longer than
    that is the socket's read timeout)."""
    received = 0
    window_start, window_bytes = time.monotonic(), 0
    first = not have
    with open(partial.path, "ab" if have else "wb") as handle:
        while raw := response.raw.read1(CHUNK, decode_content=False):
            received += len(raw)
            block = _decode(decoder, raw) if decoder else raw
            if first and block:
                _refuse_html_bytes(block, url)
                first = False
            handle.write(block)
            partial.digest.update(block)
            bar.update(len(block))
            if partial.expected_size is not None and handle.tell() > partial.expected_size:
                raise VlprepError(f"{redact_url(url)} sent more than the {partial.expected_size:,} bytes published "
                                  "for this file; stopped before it fills the disk",
                                  fix="the server holds another file: check the URL or the mirror")
            if partial.max_size is not None and handle.tell() > partial.max_size:
                raise VlprepError(f"{redact_url(url)} is over {partial.max_size >> 20} MiB, more than such a file "
                                  "can be", fix="check that --mirror points at the mirror's root and serves this file")
            now = partial.last_byte_at = time.monotonic()
            window_bytes += len(raw)
            if now - window_start >= policy.idle:
                if window_bytes < policy.min_rate * (now - window_start):
                    raise _Transient(f"the server sent {window_bytes:,} bytes in {now - window_start:.0f} s, "
                                     f"under the floor of {policy.min_rate:,.0f} bytes/s")
                window_start, window_bytes = now, 0
    return received


def _finish_decoding(decoder, encoding: str | None, partial: _Partial) -> None:
    """A compressed stream must reach its own end: one that stops early is a cut body."""
    tail = decoder.flush()
    if not decoder.eof:
        raise _Transient(f"the {encoding} (Content-Encoding) stream was cut before its end")
    with open(partial.path, "ab") as handle:
        handle.write(tail)
    partial.digest.update(tail)


def _decoder(encoding: str | None, url: str):
    if encoding is None:
        return None
    if encoding not in _DECODERS:
        raise VlprepError(f"{redact_url(url)} answered with Content-Encoding {encoding}, which vlprep does "
                          "not decode", fix="serve the file as-is (no Content-Encoding) from the mirror")
    return zlib.decompressobj(_DECODERS[encoding])


def _decode(decoder, raw: bytes) -> bytes:
    try:
        return decoder.decompress(raw)
    except zlib.error as exc:
        raise _Transient(f"the Content-Encoding stream is corrupt ({exc})") from None


def _refuse_html(response: requests.Response, url: str) -> None:
    kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind in ("text/html", "application/xhtml+xml") and not _is_html_name(url):
        raise _html_error(url, f"Content-Type {kind}")


def _refuse_html_bytes(block: bytes, url: str) -> None:
    head = block[:64].lstrip().lower()
    if head.startswith(_HTML_STARTS) and not _is_html_name(url):
        raise _html_error(url, "a body that starts like an HTML page")


def _is_html_name(url: str) -> bool:
    return url.split("?", 1)[0].lower().endswith((".html", ".htm"))


def _html_error(url: str, what: str) -> VlprepError:
    return VlprepError(
        f"{redact_url(url)} answered an HTML page ({what}) where a data file was expected: a login, error "
        "or captive-portal page, or a mirror that lists folders instead of serving files",
        fix="open the URL in a browser to see what it serves; fix the mirror's layout or your access, "
        "then run the same command again",
    )


def _range_not_satisfiable(response: requests.Response, have: int, partial: _Partial, bar: tqdm) -> None:
    """A 416 on resume means the part is whole only if the server names exactly that size."""
    _, total = _content_range(response.headers.get("Content-Range", ""))
    if total == have:
        return
    partial.restart()
    bar.reset(total=bar.total)
    said = response.headers.get("Content-Range")
    raise _Transient(f"HTTP 416 with {'Content-Range ' + said if said else 'no Content-Range'} for a "
                     f"{have:,}-byte partial file; restarting from zero")


def _content_range(value: str) -> tuple[int | None, int | None]:
    """``bytes 100-199/1000`` → (100, 1000); ``bytes */1000`` → (None, 1000); junk → (None, None)."""
    value = value.strip()
    if not value.startswith("bytes "):
        return None, None
    span, _, total_text = value[6:].partition("/")
    total = int(total_text) if total_text.isdigit() else None
    first = span.split("-", 1)[0]
    return (int(first) if first.isdigit() else None), total


def _total_of(response: requests.Response, have: int) -> int | None:
    if response.status_code == 206:
        return _content_range(response.headers.get("Content-Range", ""))[1]
    length = _content_length(response)
    return None if length is None or _encoding(response) else have + length


def _content_length(response: requests.Response) -> int | None:
    length = response.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def _encoding(response: requests.Response) -> str | None:
    value = response.headers.get("Content-Encoding", "").strip().lower()
    return None if value in ("", "identity") else value


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def _is_name_resolution_failure(exc: BaseException) -> bool:
    """Walk the exception chain (requests → urllib3 → socket) for a DNS failure."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (socket.gaierror, urllib3.exceptions.NameResolutionError)):
            return True
        todo += [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        todo += [x for x in (current.__cause__, current.__context__, getattr(current, "reason", None))
                 if isinstance(x, BaseException)]
    return False


def _dns_error(url: str) -> VlprepError:
    host = requests.utils.urlparse(url).hostname or "?"
    return VlprepError(
        f"host name {host} does not resolve (DNS lookup failed) for {redact_url(url)}",
        fix="check the spelling of the URL or --mirror, your network and DNS settings, then run the command again",
    )


def _describe(exc: BaseException, url: str) -> str:
    """A short cause for a retry line, with the URL's credentials removed."""
    if isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError, socket.timeout)):
        return f"no answer or no data for too long ({type(exc).__name__})"
    text = str(exc) or type(exc).__name__
    errno_text = _ERRNO.search(text)
    if isinstance(exc, requests.ConnectionError) and errno_text:
        return f"cannot connect to {requests.utils.urlparse(url).netloc.rsplit('@', 1)[-1]}: {errno_text.group(1)}"
    return scrub(text, url)[:300]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
