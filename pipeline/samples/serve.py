"""A static file server on 127.0.0.1 that speaks enough HTTP for vlprep's downloader.

It answers ``Range`` requests (206, and 416 past the end), so the demo and the tests exercise the
real resume path against real sockets instead of mocks.
"""
from __future__ import annotations

import contextlib
import http.server
import os
import re
import threading
from functools import partial
from pathlib import Path
from typing import Iterator

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class RangeRequestHandler(http.server.SimpleHTTPRequestHandler):
    """``SimpleHTTPRequestHandler`` plus single-range ``Range`` support."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep the server quiet
        pass

    def send_head(self):  # type: ignore[override]
        header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not header or not path.is_file():
            return super().send_head()
        match = _RANGE.match(header.strip())
        size = path.stat().st_size
        if not match:
            return super().send_head()
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else size - 1
        if start >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        end = min(end, size - 1)
        handle = open(path, "rb")
        handle.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        return _Limited(handle, end - start + 1)


class _Limited:
    """A file object that stops after ``remaining`` bytes (what ``copyfile`` reads from)."""

    def __init__(self, handle, remaining: int) -> None:
        self.handle, self.remaining = handle, remaining

    def read(self, n: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        n = self.remaining if n < 0 else min(n, self.remaining)
        data = self.handle.read(n)
        self.remaining -= len(data)
        return data

    def close(self) -> None:
        self.handle.close()


@contextlib.contextmanager
def serve_directory(root: Path, handler: type[RangeRequestHandler] = RangeRequestHandler) -> Iterator[str]:
    """Serve ``root`` on an ephemeral loopback port; yield its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=os.fspath(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
