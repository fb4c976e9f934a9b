"""A small web of images on 127.0.0.1 that answers the way the real web does, and a CC3M-format TSV.

Each URL's path names its behaviour: ``/good/<n>.jpg`` (a real JPEG), ``/png/<n>.png``,
``/webp/<n>.webp``, ``/404/<n>``, ``/403/<n>``, ``/flaky/<n>.jpg`` (500 on the first request, the
image after), ``/redirect/<n>`` (302 to a good image), ``/slow/<n>.jpg`` (a body trickled past any
sane deadline), ``/truncated/<n>.jpg`` (fewer bytes than its Content-Length), ``/html/<n>.jpg`` (an
HTML page), ``/bomb/<n>.png`` (a PNG header announcing 40,000 × 40,000 pixels), ``/noai/<n>.jpg`` (an
image sent with ``X-Robots-Tag: noai``). :meth:`SampleWeb.change` and :meth:`SampleWeb.remove` make a
URL answer other bytes or 404 later, as hosts do. Used by the demo, the tests and the benchmark.
"""
from __future__ import annotations

import contextlib
import http.server
import io
import random
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from PIL import Image

KINDS_OK = ("good", "png", "webp", "flaky", "redirect")
KINDS_FAIL = {"404": "http_4xx", "403": "http_4xx", "slow": "timeout", "truncated": "connection",
              "html": "not_an_image", "bomb": "too_large", "noai": "opted_out", "500": "http_5xx"}
"""Each failing kind and the cause vlprep reports for it."""
EXTENSIONS = {"good": ".jpg", "png": ".png", "webp": ".webp", "flaky": ".jpg", "redirect": "", "slow": ".jpg",
              "truncated": ".jpg", "html": ".jpg", "bomb": ".png", "noai": ".jpg", "404": "", "403": "", "500": ""}


def image_bytes(n: int, fmt: str = "JPEG", variant: int = 0) -> bytes:
    """A small real image, different for every ``n`` (and ``variant``)."""
    rng = random.Random(f"{n}-{variant}")
    width, height = rng.randint(40, 120), rng.randint(40, 120)
    image = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
    for _ in range(6):
        x, y = rng.randrange(width), rng.randrange(height)
        image.paste(tuple(rng.randrange(256) for _ in range(3)), (x, y, min(width, x + 15), min(height, y + 15)))
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A valid PNG header announcing a huge image, with one tiny compressed row: what a bomb looks like."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) \
        + chunk(b"IEND", b"")


@dataclass
class SampleWeb:
    base: str
    trickle_seconds: float = 30.0
    requests: list[str] = field(default_factory=list)
    _changed: set[str] = field(default_factory=set)
    _removed: set[str] = field(default_factory=set)
    _seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, kind: str, n: int) -> str:
        return f"{self.base}/{kind}/{n}{EXTENSIONS[kind]}"

    def change(self, url: str) -> None:
        self._changed.add(url.removeprefix(self.base))

    def remove(self, url: str) -> None:
        self._removed.add(url.removeprefix(self.base))

    def answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        path = handler.path
        with self._lock:
            self.requests.append(path)
            first = path not in self._seen
            self._seen.add(path)
        parts = path.strip("/").split("/")
        kind, n = parts[0], int(parts[1].split(".")[0]) if len(parts) > 1 and parts[1].split(".")[0].isdigit() else 0
        if path in self._removed or kind == "404":
            return send(handler, 404, b"not found", "text/plain")
        if kind == "403":
            return send(handler, 403, b"forbidden", "text/plain")
        if kind == "500" or (kind == "flaky" and first):
            return send(handler, 500, b"try again", "text/plain")
        variant = 1 if path in self._changed else 0
        if kind in ("good", "flaky"):
            return send(handler, 200, image_bytes(n, variant=variant), "image/jpeg")
        if kind == "png":
            return send(handler, 200, image_bytes(n, "PNG", variant), "image/png")
        if kind == "webp":
            return send(handler, 200, image_bytes(n, "WEBP", variant), "image/webp")
        if kind == "redirect":
            handler.send_response(302)
            handler.send_header("Location", f"/good/{n}.jpg")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return None
        if kind == "noai":
            return send(handler, 200, image_bytes(n), "image/jpeg", {"X-Robots-Tag": "noai"})
        if kind == "html":
            return send(handler, 200, b"<html><body>This image has moved.</body></html>", "text/html")
        if kind == "bomb":
            return send(handler, 200, bomb_png(), "image/png")
        if kind == "truncated":
            data = image_bytes(n)
            _head(handler, 200, "image/jpeg", len(data))
            handler.wfile.write(data[: len(data) // 3])
            handler.close_connection = True
            return None
        if kind == "slow":
            data = image_bytes(n)
            _head(handler, 200, "image/jpeg", len(data))
            pause = self.trickle_seconds / len(data)
            with contextlib.suppress(OSError):
                for i in range(len(data)):
                    handler.wfile.write(data[i:i + 1])
                    handler.wfile.flush()
                    time.sleep(max(pause, 0.05))
            return None
        return send(handler, 404, b"unknown", "text/plain")


def _head(handler, status: int, content_type: str, length: int, headers: dict | None = None) -> None:
    """Status line and headers; the body (announced as ``length`` bytes) is the caller's to send."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(length))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()


def send(handler, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
    """One whole answer; a client that hung up is not an error of the server's."""
    _head(handler, status, content_type, len(body), headers)
    with contextlib.suppress(OSError):
        handler.wfile.write(body)


@contextlib.contextmanager
def serve_web(trickle_seconds: float = 30.0, web_class: type[SampleWeb] = SampleWeb) -> Iterator[SampleWeb]:
    """Serve a :class:`SampleWeb` (or a subclass that answers more kinds) on 127.0.0.1 for the block."""
    web: SampleWeb | None = None

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            web.answer(self)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    web = web_class(f"http://127.0.0.1:{server.server_address[1]}", trickle_seconds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield web
    finally:
        server.shutdown()
        server.server_close()


def write_tsv(path: Path, web: SampleWeb, kinds: list[str], seed: int = 0) -> list[tuple[str, str]]:
    """A CC3M-format TSV (caption⇥url, no header) with one row per kind; return the (caption, url) rows.

    Dirt a real TSV has is mixed in by the caller through kinds: ``"no-tab"`` (a line without a
    tab), ``"empty-url"``, ``"empty-caption"`` (whitespace and a NUL only), ``"crlf"`` (a good row
    ending in ``\\r\\n``).
    """
    rng = random.Random(seed)
    words = "a dog cat man woman on the beach with red blue car street tree sky at night".split()
    rows = []
    lines = []
    for n, kind in enumerate(kinds):
        caption = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
        if n % 7 == 3:
            caption = f"  {caption}\x00 with  odd   spacing "
        if kind == "no-tab":
            rows.append((caption, ""))
            lines.append(caption.encode() + b"\n")
            continue
        if kind == "empty-url":
            url = ""
        elif kind == "empty-caption":
            caption, url = " \x00 ", web.url("good", n)
        else:
            url = web.url("good" if kind == "crlf" else kind, n)
        rows.append((caption, url))
        lines.append(f"{caption}\t{url}".encode() + (b"\r\n" if kind == "crlf" else b"\n"))
    path.write_bytes(b"".join(lines))
    return rows
