"""A crawl's manners against a real HTTP server on 127.0.0.1: who it says it is, how many requests one
host sees at once, how it answers 429 with Retry-After, and robots.txt."""
from __future__ import annotations

import contextlib
import email.utils
import http.server
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from vlprep.pipeline import __version__
from vlprep.pipeline.engines.webdownload import FetchSettings, bounded_download_with_retry
from vlprep.pipeline.samples.web import image_bytes, send
from vlprep.pipeline.sources.politeness import Politeness, check_contact, retry_after_seconds
from vlprep.pipeline.sources.webimage import classify


@dataclass
class Host:
    """One web host: what it answered, to whom, and how many requests it had open at once."""

    robots: tuple[int, bytes] | None = None
    delay: float = 0.0
    agents: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    times: dict[str, list[float]] = field(default_factory=dict)
    open_now: int = 0
    most_open: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    base: str = ""

    def answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        path = handler.path
        with self.lock:
            self.agents.append(handler.headers.get("User-Agent", ""))
            self.paths.append(path)
            first = path not in self.times
            self.times.setdefault(path, []).append(time.monotonic())
            self.open_now += 1
            self.most_open = max(self.most_open, self.open_now)
        try:
            self._answer(handler, path, first)
        finally:
            with self.lock:
                self.open_now -= 1

    def _answer(self, handler, path: str, first: bool) -> None:
        if path == "/robots.txt":
            status, body = self.robots or (404, b"")
            if status == 302:  # a redirect to itself, for ever
                return send(handler, 302, b"", "text/plain", {"Location": "/robots.txt"})
            return send(handler, status, body, "text/plain")
        time.sleep(self.delay)
        kind = path.split("/")[1]
        if kind == "busy" and first:
            return send(handler, 429, b"slow down", "text/plain", {"Retry-After": "1"})
        if kind == "busy-date" and first:
            when = email.utils.formatdate(time.time() + 2, usegmt=True)
            return send(handler, 429, b"slow down", "text/plain", {"Retry-After": when})
        if kind == "busy-long":
            return send(handler, 429, b"slow down", "text/plain", {"Retry-After": "3600"})
        return send(handler, 200, image_bytes(len(path)), "image/jpeg")


@contextlib.contextmanager
def serve(host: Host):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            host.answer(self)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    host.base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()


def download(url: str, manners: Politeness, retries: int = 2, timeout: float = 5.0):
    settings = FetchSettings(politeness=manners)
    return bounded_download_with_retry((0, url), timeout, retries, None, ("noai",), settings=settings)


def test_user_agent_names_vlprep_and_the_contact():
    with serve(Host()) as host:
        _, data, error = download(f"{host.base}/img/1.jpg", Politeness(contact="mailto:crawl@example.org"))
    assert error is None and data is not None
    assert host.agents == [f"vlprep/{__version__} (+mailto:crawl@example.org)"]


@pytest.mark.parametrize("contact", ["https://x.org/\r\nX-Evil: 1", "https://user:pw@x.org/", "https://x.org/?token=s",
                                     "javascript:alert(1)", "me@example.org", "https://a.example/)(", "https://a b/",
                                     "mailto:me@x.org?subject=hi", "ftp://x.org/",
                                     "", "é@x.org", "a" * 201])
def test_a_contact_that_would_inject_headers_or_leak_a_secret_is_refused(contact):
    with pytest.raises(ValueError):
        check_contact(contact)
    with pytest.raises(ValueError):
        Politeness(contact=contact)


def test_per_host_limit_holds_across_the_threads_of_a_process():
    with serve(Host(delay=0.3)) as host:
        manners = Politeness(per_host=2)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda n: download(f"{host.base}/img/{n}.jpg", manners), range(12)))
    assert all(error is None for _, _, error in results)
    assert host.most_open == 2, host.most_open


def test_429_with_retry_after_pauses_the_host_then_succeeds():
    with serve(Host()) as host:
        manners = Politeness(per_host=4, retry_after_max=5)
        started = time.monotonic()
        _, data, error = download(f"{host.base}/busy/1.jpg", manners)
        waited = time.monotonic() - started
    assert error is None and data is not None
    first, second = host.times["/busy/1.jpg"]
    assert second - first >= 0.95 and waited >= 0.95


def test_retry_after_as_an_http_date_is_honoured():
    with serve(Host()) as host:
        _, data, error = download(f"{host.base}/busy-date/1.jpg", Politeness(retry_after_max=10))
    assert error is None
    first, second = host.times["/busy-date/1.jpg"]
    assert second - first >= 0.9  # HTTP dates have whole seconds: 2 s asked, at least 1 s left
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: no wait
    assert retry_after_seconds("120") == 120.0 and retry_after_seconds("soon") is None


def test_a_pause_longer_than_the_cap_fails_the_row_at_once_as_a_transient_429():
    with serve(Host()) as host:
        started = time.monotonic()
        _, data, error = download(f"{host.base}/busy-long/1.jpg", Politeness(retry_after_max=2))
        elapsed = time.monotonic() - started
    assert data is None and classify(error) == "http_429" and "3600" in error
    assert elapsed < 1.5 and len(host.times["/busy-long/1.jpg"]) == 1


def test_a_pause_holds_the_other_threads_to_that_host():
    with serve(Host()) as host:
        manners = Politeness(per_host=8, retry_after_max=5)
        with ThreadPoolExecutor(4) as pool:
            busy = pool.submit(download, f"{host.base}/busy/7.jpg", manners)
            time.sleep(0.3)  # the 429 has arrived; these must wait for the pause to end
            others = [pool.submit(download, f"{host.base}/img/{n}.jpg", manners) for n in range(3)]
            assert all(f.result()[2] is None for f in [busy, *others])
    paused_from = host.times["/busy/7.jpg"][0]
    for n in range(3):
        assert host.times[f"/img/{n}.jpg"][0] - paused_from >= 0.95


ROBOTS = b"User-agent: *\nDisallow: /all-private/\n\nUser-agent: vlprep\nDisallow: /private/\n"


def test_robots_txt_is_read_once_per_host_and_obeyed_when_asked():
    with serve(Host(robots=(200, ROBOTS))) as host:
        manners = Politeness(robots_txt=True)
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda p: download(f"{host.base}{p}", manners),
                                    ["/img/1.jpg", "/private/2.jpg", "/img/3.jpg", "/private/4.jpg"] * 3))
        assert [classify(e) if e else "ok" for _, _, e in results] == ["ok", "robots_txt", "ok", "robots_txt"] * 3
        assert host.paths.count("/robots.txt") == 1
        assert not any(p.startswith("/private/") for p in host.paths)
        # without the option, robots.txt is neither read nor obeyed
        _, data, error = download(f"{host.base}/private/9.jpg", Politeness())
        assert error is None and host.paths.count("/robots.txt") == 1


def test_robots_txt_unavailable_allows_and_unreachable_disallows_for_now():
    for unavailable in ((404, b""), (302, b"")):  # a 4xx, or redirects that lead nowhere: no rules
        with serve(Host(robots=unavailable)) as host:
            _, _, error = download(f"{host.base}/private/1.jpg", Politeness(robots_txt=True))
            assert error is None, (unavailable, error)
    with serve(Host(robots=(503, b"down"))) as host:
        results = [download(f"{host.base}/img/{n}.jpg", Politeness(robots_txt=True), retries=0) for n in range(5)]
        assert all(classify(e) == "http_5xx" and "robots.txt" in e for _, _, e in results)
        assert not any(p.startswith("/img/") for p in host.paths)
        assert host.paths.count("/robots.txt") == 1  # asked once; its failure holds for the process a minute


def test_a_huge_robots_txt_is_read_for_its_first_512_kib():
    rules = b"User-agent: vlprep\nDisallow: /private/\n" + b"Disallow: /x\n" * 400_000  # 5 MB
    with serve(Host(robots=(200, rules))) as host:
        manners = Politeness(robots_txt=True)
        assert download(f"{host.base}/img/1.jpg", manners)[2] is None
        assert classify(download(f"{host.base}/private/2.jpg", manners)[2]) == "robots_txt"
