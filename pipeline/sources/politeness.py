"""How a crawl behaves towards the hosts it fetches from: who it says it is, how hard it presses one
host, how it answers "slow down", and whether it reads robots.txt.

Web hosts and the people who run them see a crawl of millions of URLs as a burst of requests from
one address. What makes such a crawl acceptable is what img2dataset's users ask for most: an honest
User-Agent that names the tool and a contact (``vlprep/<version> (+<contact>)``, never a browser's),
a cap on the requests one worker process has open to one host at a time, a pause for the time a
``429`` or ``503`` answer asks for (``Retry-After``, seconds or an HTTP date) shared by every thread of
the process that talks to that host, and, when asked, the host's ``robots.txt`` (RFC 9309: a 4xx
answer allows everything, a 5xx or no answer disallows everything for now, a transient cause).

All of it lives in one worker process: :class:`Politeness` is the setting (it travels to the
workers inside the pickled downloader, as arguments, never as environment variables), and
:class:`HostGates` / :class:`RobotsRules` are its per-process state.
"""
from __future__ import annotations

import contextlib
import email.utils
import threading
import time
import urllib.parse
import urllib.robotparser
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

from .. import __version__

DEFAULT_CONTACT = "https://pypi.org/project/vlprep/"
AGENT_TOKEN = "vlprep"
"""The product token robots.txt groups and ``X-Robots-Tag: <token>: ...`` directives address."""
ROBOTS_MAX_BYTES = 512 * 1024
"""RFC 9309 asks crawlers to parse at least the first 500 KiB of a robots.txt."""
ROBOTS_RETRY_SECONDS = 60.0
"""A robots.txt that could not be read (5xx, timeout, no connection) is not asked for again for this
long by one process: its URLs fail with that transient cause meanwhile, for a later run to retry."""


def check_contact(contact: str) -> str:
    """``contact`` if it can go into a User-Agent header: printable ASCII, no credentials, not too long.

    A line break would inject headers into every request; ``user:pass@`` would send a secret to
    every host of the list.
    """
    if not contact or len(contact) > 200 or not contact.isascii() or not contact.isprintable():
        raise ValueError("the contact must be 1-200 printable ASCII characters (a URL or mailto: address; "
                         "a non-ASCII host in its punycode form)")
    if any(c in contact for c in ' ()"\\<>'):
        raise ValueError("the contact holds a space, a parenthesis, a quote, a backslash or <>, which would end the "
                         "User-Agent's comment")
    parts = urllib.parse.urlsplit(contact)
    if parts.scheme not in ("http", "https", "mailto"):
        raise ValueError("the contact must be an http(s) URL or a mailto: address")
    if parts.username or parts.password:
        raise ValueError("the contact URL holds credentials; every host of the list would receive them")
    if parts.query:
        raise ValueError("the contact has a query string; give it without one (it may hold a token)")
    return contact


@dataclass(frozen=True)
class Politeness:
    """The crawl's manners; every field is recorded in ``stats.json``."""

    contact: str = DEFAULT_CONTACT
    """A URL (or ``mailto:``) where a site owner learns what the crawl is and how to reach its runner."""
    per_host: int = 8
    """Requests one worker process has open to one host at a time."""
    retry_after_max: float = 60.0
    """Longest pause a ``Retry-After`` may ask for; a longer one fails the row as ``http_429`` (a
    transient cause, so a later run tries it again) instead of holding a worker."""
    robots_txt: bool = False
    """Read each host's robots.txt and skip the URLs it disallows for ``vlprep`` (cause ``robots_txt``)."""

    def __post_init__(self) -> None:
        check_contact(self.contact)
        if self.per_host < 1:
            raise ValueError(f"per_host {self.per_host} is below 1")
        if self.retry_after_max < 0:
            raise ValueError(f"retry_after_max {self.retry_after_max} is negative")

    @property
    def user_agent(self) -> str:
        return f"{AGENT_TOKEN}/{__version__} (+{self.contact})"

    def record(self) -> dict:
        """What ``stats.json`` says of the crawl's manners."""
        return {**asdict(self), "user_agent": self.user_agent}


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """The pause a ``Retry-After`` header asks for (delay-seconds or an HTTP date), or None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def host_of(url: str) -> str:
    """The host a URL's requests go to (``host:port``, lower case): the unit of the per-host limits."""
    parts = urllib.parse.urlsplit(url)
    return f"{(parts.hostname or '').lower()}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


class HostGates:
    """Per-host request slots and pauses, shared by the threads of one process."""

    def __init__(self, per_host: int) -> None:
        self.per_host = per_host
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._paused_until: dict[str, float] = {}

    @contextlib.contextmanager
    def slot(self, host: str) -> Iterator[None]:
        """Hold one of the host's slots, after any pause a ``Retry-After`` asked for has passed."""
        with self._lock:
            gate = self._slots.setdefault(host, threading.BoundedSemaphore(self.per_host))
        with gate:
            self.wait(host)
            yield

    def wait(self, host: str) -> None:
        while (left := self._paused_until.get(host, 0.0) - time.monotonic()) > 0:
            time.sleep(min(left, 1.0))

    def pause(self, host: str, seconds: float) -> None:
        """Hold every request to ``host`` from this process for ``seconds`` (the longest pause asked wins)."""
        with self._lock:
            until = time.monotonic() + seconds
            self._paused_until[host] = max(self._paused_until.get(host, 0.0), until)


class RobotsRules:
    """Each host's robots.txt, read once per process (one reader per host at a time), as RFC 9309 says."""

    def __init__(self, fetch_text: Callable[[str], bytes]) -> None:
        self._fetch_text = fetch_text
        self._lock = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}
        self._rules: dict[str, urllib.robotparser.RobotFileParser | bool] = {}
        self._failed: dict[str, tuple[float, Exception]] = {}

    def allowed(self, url: str) -> bool:
        """Whether ``url`` may be fetched by ``vlprep``; raises what reading robots.txt raised when
        that failed for a cause that passes (5xx, timeout, connection: "disallow for now")."""
        parts = urllib.parse.urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self._lock:
            host_lock = self._host_locks.setdefault(origin, threading.Lock())
        with host_lock:
            if origin not in self._rules:
                when, error = self._failed.get(origin, (0.0, None))
                if error is not None and time.monotonic() - when < ROBOTS_RETRY_SECONDS:
                    raise error
                try:
                    self._rules[origin] = self._read(origin)
                except Exception as exc:
                    self._failed[origin] = (time.monotonic(), exc)
                    raise
        rules = self._rules[origin]
        return rules if isinstance(rules, bool) else rules.can_fetch(AGENT_TOKEN, url)

    def _read(self, origin: str) -> urllib.robotparser.RobotFileParser | bool:
        from .webimage import WebImageError

        try:
            body = self._fetch_text(f"{origin}/robots.txt")
        except WebImageError as exc:
            if exc.cause in ("http_4xx", "http_other", "invalid_url"):
                # RFC 9309 2.3.1.3: "unavailable" (4xx but 429, or redirects that lead nowhere) means no rules
                return True
            raise WebImageError(exc.cause, f"robots.txt of {origin} could not be read ({exc})") from None
        parser = urllib.robotparser.RobotFileParser()
        if len(body) >= ROBOTS_MAX_BYTES:  # cut: its last line may be a rule cut short ("Disallow: /")
            body = body[:body.rfind(b"\n") + 1]
        parser.parse(body.decode("utf-8", errors="replace").splitlines())
        return parser
