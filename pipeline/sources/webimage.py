"""One image from the open web, with the bounds a crawl of millions of URLs needs.

img2dataset's own fetch (``urllib`` with a per-read socket timeout and no size limit) lets a server
that trickles a byte a second hold a worker for as long as it likes, and reads a 4 GB body into
memory. This fetch keeps img2dataset's ``X-Robots-Tag`` opt-out rule, says who is asking (the
crawl's own User-Agent, :mod:`.politeness`, never a browser's) and adds a deadline for the whole answer, a byte cap checked against ``Content-Length`` and while
reading, and a check that the body is as long as announced. Only ``http`` and ``https`` URLs with
a host and no credentials are fetched, and redirects are followed only to such URLs: urllib's
default opener would read ``file://``, ``data:`` and ``ftp://`` URLs (and follow a redirect to
``ftp://``), pulling local files into shards meant for publishing. Failures carry a cause from
:data:`CAUSES`, so the run can report them by kind, and :data:`TRANSIENT` says which of them a
later run may see pass.
"""
from __future__ import annotations

import http.client
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

from .politeness import Politeness, retry_after_seconds

CAUSES = ("http_4xx", "http_429", "http_5xx", "http_other", "timeout", "dns", "connection", "invalid_url",
          "opted_out", "robots_txt", "too_large", "not_an_image", "changed", "empty_caption", "other")
"""Failure causes reported in ``stats.json`` (``changed``: the bytes differ from a manifest's sha256;
``empty_caption``: a row whose caption is empty once cleaned, never kept; ``robots_txt``: the host's
robots.txt disallows the URL, with ``--robots-txt``)."""
RETRYABLE = frozenset({"http_5xx", "timeout", "connection"})
"""Causes retried at once inside one attempt (``--retries``)."""
TRANSIENT = frozenset({"http_5xx", "http_429", "timeout", "dns", "connection", "other"})
"""Causes a later run retries (``--retry-failed transient``): a host that is down, overloaded
(429) or unresolvable for a while answers later. Every other cause is permanent: 4xx, not an
image, opted out, too large, an invalid URL, an empty caption; ``other`` (a failure no cause
names) counts as transient so that it is looked at again rather than trusted."""
FETCHED_SCHEMES = ("http", "https")
CHUNK = 1 << 16
DEFAULT_AGENT = Politeness().user_agent


class WebImageError(Exception):
    """A fetch that failed, with its cause (one of :data:`CAUSES`)."""

    def __init__(self, cause: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{cause}: {message}")
        self.cause = cause
        self.retry_after = retry_after
        """Seconds the host asked to wait before asking again (a 429 or 503 with ``Retry-After``)."""


def url_problem(url: str) -> str | None:
    """Why ``url`` is not fetched (an ``invalid_url``), or None for an http(s) URL with a host.

    URLs with credentials (``user:pass@``) are refused too: no public image needs them, and they
    would end up in a manifest meant for publishing.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        return f"malformed URL ({exc})"
    if not url:
        return "empty URL"
    if parts.scheme.lower() not in FETCHED_SCHEMES:
        return f"scheme {parts.scheme or '(none)'!r} is not fetched (only http and https)"
    if not parts.hostname:
        return "no host"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL"
    return None


class _WebRedirect(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to an http(s) URL with a host (urllib's own also follows ``ftp://``)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
        problem = url_problem(newurl)
        if problem is not None:
            raise WebImageError("invalid_url", f"redirect to a URL that is not fetched: {problem}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener() -> urllib.request.OpenerDirector:
    """An opener with the HTTP(S) handlers only: no ``file``, ``data`` or ``ftp`` handler at all."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.HTTPHandler(), urllib.request.HTTPSHandler(),
                    _WebRedirect(), urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def fetch(url: str, timeout: float, max_bytes: int, user_agent: str | None = None,
          disallowed: Callable[[object], bool] | None = None, prefix: bool = False) -> bytes:
    """The body of ``url``, or :class:`WebImageError`; the whole answer must arrive within ``timeout``
    (``user_agent``: the crawl's, by default vlprep's with its default contact). ``prefix``: a body
    longer than ``max_bytes`` gives its first ``max_bytes`` instead of ``too_large`` (robots.txt)."""
    deadline = time.monotonic() + timeout
    problem = url_problem(url)
    if problem is not None:
        raise WebImageError("invalid_url", problem)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": user_agent or DEFAULT_AGENT})
    except ValueError as exc:
        raise WebImageError("invalid_url", str(exc)) from exc
    try:
        with _opener().open(request, timeout=timeout) as response:
            if disallowed is not None and disallowed(response.headers):
                raise WebImageError("opted_out", "Use of image disallowed by X-Robots-Tag directive")
            announced = response.headers.get("Content-Length")
            if announced and announced.isdigit() and int(announced) > max_bytes and not prefix:
                raise WebImageError("too_large", f"Content-Length {int(announced):,} bytes > {max_bytes:,}")
            body = _read_until(response, deadline, max_bytes, timeout, prefix)
            if prefix:
                return body
    except WebImageError:
        raise
    except urllib.error.HTTPError as exc:
        kind = ("http_429" if exc.code == 429 else "http_4xx" if 400 <= exc.code < 500
                else "http_5xx" if exc.code >= 500 else "http_other")
        raise WebImageError(kind, f"HTTP Error {exc.code}: {exc.reason}",
                            retry_after_seconds(exc.headers.get("Retry-After") if exc.headers else None)) from None
    except urllib.error.URLError as exc:
        raise WebImageError(_reason_cause(exc.reason), str(exc.reason)) from None
    except (TimeoutError, socket.timeout) as exc:
        raise WebImageError("timeout", str(exc) or "timed out") from None
    except (http.client.HTTPException, ConnectionError, OSError) as exc:
        raise WebImageError("connection", f"{type(exc).__name__}: {exc}") from None
    if announced and announced.isdigit() and len(body) != int(announced):
        raise WebImageError("connection", f"truncated body: {len(body):,} of {int(announced):,} bytes")
    return body


def _read_until(response, deadline: float, max_bytes: int, timeout: float, prefix: bool = False) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise WebImageError("timeout", f"body not complete after {timeout:g} s")
        chunk = response.read1(CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            if prefix:
                chunks.append(chunk)
                return b"".join(chunks)[:max_bytes]
            raise WebImageError("too_large", f"body larger than {max_bytes:,} bytes")
        chunks.append(chunk)


def _reason_cause(reason: object) -> str:
    """The cause of a ``URLError``: the kinds its reason names, else a failed connection."""
    if isinstance(reason, socket.gaierror):
        return "dns"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "timeout"
    cause = classify(str(reason))
    return cause if cause in ("timeout", "invalid_url", "dns") else "connection"


def classify(message: str | None) -> str:
    """The cause of a failure from its message (``"<cause>: ..."`` from :func:`fetch`, or img2dataset's)."""
    if not message:
        return "other"
    head = message.split(":", 1)[0]
    if head in CAUSES:
        return head
    text = message.lower()
    if "x-robots-tag" in text:
        return "opted_out"
    if "hash mismatch" in text:
        return "changed"
    if "decoding error" in text or "cannot identify" in text or "decode" in text:
        return "not_an_image"
    if "too large" in text:
        return "too_large"
    if "timed out" in text:
        return "timeout"
    if "name or service not known" in text or "name resolution" in text or "nodename" in text:
        return "dns"
    if text.startswith("http error 429"):
        return "http_429"
    if text.startswith("http error 4"):
        return "http_4xx"
    if text.startswith("http error 5"):
        return "http_5xx"
    if "unknown url type" in text or "no host given" in text:
        return "invalid_url"
    return "other"
