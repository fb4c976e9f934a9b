"""img2dataset as the download engine of one window of rows, run in a child process.

``python -m vlprep.pipeline.engines.webdownload WINDOW.json`` calls ``img2dataset.download`` on the
window's input parquet. Two things are changed inside img2dataset, in whichever process runs its
downloader (multiprocessing, pyspark or ray workers alike: the downloader object travels to them by
pickling, with the crawl's :class:`FetchSettings` inside it, so no setting depends on a worker's
environment; the workers must be able to import vlprep, see :mod:`.clusters`):

- each URL is fetched by :func:`vlprep.pipeline.sources.webimage.fetch` (a deadline for the whole
  answer, a byte cap, the truncated-body check, the ``X-Robots-Tag`` rule) with the crawl's manners
  (:mod:`vlprep.pipeline.sources.politeness`: its User-Agent, a cap on requests per host, the pause
  a ``Retry-After`` asks for, robots.txt when asked), retried only for causes worth retrying (5xx,
  timeouts, dropped connections, 429);
- a body is accepted only if it decodes: the JPEG marker walk or a full Pillow decode, with the
  image's pixel count checked from its header first (a decompression bomb never gets decoded).

The child kills its own process group when its parent disappears (``kill -9`` of ``vlprep``), so
no orphaned crawl keeps writing into a window that the next run resumes.
"""
from __future__ import annotations

import functools
import io
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..sources.politeness import AGENT_TOKEN, ROBOTS_MAX_BYTES, HostGates, Politeness, RobotsRules, host_of

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

MODULE = "vlprep.pipeline.engines.webdownload"
"""This module's import name, also when it runs as ``__main__`` (pickled classes must name it)."""


def check_image(data: bytes, max_pixels: int) -> None:
    """Raise :class:`WebImageError` unless ``data`` is an image that decodes and is not a bomb."""
    from PIL import Image

    from ..sources.webimage import WebImageError
    from ..transforms.images import ImageError, prepare_image

    Image.MAX_IMAGE_PIXELS = None  # our own limit below, checked before any decode
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception as exc:  # noqa: BLE001 - any failure to identify means "not an image"
        raise WebImageError("not_an_image", f"cannot identify an image ({type(exc).__name__})") from None
    if width * height > max_pixels:
        raise WebImageError("too_large", f"{width}x{height} pixels > {max_pixels:,} (decompression bomb guard)")
    try:
        prepare_image(data)
    except ImageError as exc:
        raise WebImageError("not_an_image", f"does not decode: {exc}") from None


@dataclass(frozen=True)
class FetchSettings:
    """What every download of a crawl obeys, carried to the workers inside the pickled downloader."""

    max_bytes: int = 50_000_000
    max_pixels: int = 89_478_485
    politeness: Politeness = field(default_factory=Politeness)

    @classmethod
    def from_record(cls, record: dict) -> "FetchSettings":
        return cls(record["max_bytes"], record["max_pixels"], Politeness(**record["politeness"]))


_GATES: dict[int, HostGates] = {}
_ROBOTS: dict[tuple, RobotsRules] = {}
_STATE_LOCK = threading.Lock()


def _gates(per_host: int) -> HostGates:
    """This process's per-host slots: one set shared by all its download threads."""
    with _STATE_LOCK:
        return _GATES.setdefault(per_host, HostGates(per_host))


def _robots(settings: FetchSettings, timeout: float) -> RobotsRules:
    from ..sources.webimage import fetch

    agent = settings.politeness.user_agent
    with _STATE_LOCK:
        return _ROBOTS.setdefault((agent, timeout), RobotsRules(
            lambda url: fetch(url, timeout, ROBOTS_MAX_BYTES, agent, prefix=True)))


def _opted_out(headers, directives) -> bool:
    """img2dataset's ``X-Robots-Tag`` rule, for directives addressed to everyone, to vlprep, or to
    img2dataset (the engine that runs the crawl)."""
    from img2dataset.downloader import is_disallowed

    return bool(directives) and any(is_disallowed(headers, token, directives) for token in (AGENT_TOKEN, "img2dataset"))


def bounded_download_with_retry(row, timeout, retries, user_agent_token, disallowed_header_directives,
                                settings: FetchSettings | None = None):
    """Drop-in for img2dataset's ``download_image_with_retry``: ``(key, BytesIO | None, error | None)``.

    A 429 (or a 503 with ``Retry-After``) pauses every request of this process to that host for the
    time asked (or 1, 2, 4 … s when none is given) and counts as one of the ``retries``; a pause longer
    than ``retry_after_max`` fails the row as ``http_429``, a cause a later run retries.
    """
    from ..sources.webimage import RETRYABLE, WebImageError, fetch

    settings = settings or FetchSettings()
    manners = settings.politeness
    key, url = row
    host, gates = host_of(url), _gates(manners.per_host)
    error = "other: no attempt"
    for attempt in range(retries + 1):
        try:
            with gates.slot(host):
                if manners.robots_txt and not _robots(settings, timeout).allowed(url):
                    raise WebImageError("robots_txt", f"{AGENT_TOKEN} is disallowed this URL by the host's robots.txt")
                data = fetch(url, timeout, settings.max_bytes, manners.user_agent,
                             lambda headers: _opted_out(headers, disallowed_header_directives))
            check_image(data, settings.max_pixels)
            return key, io.BytesIO(data), None
        except WebImageError as exc:
            error = str(exc)
            if exc.cause == "http_429" or (exc.cause == "http_5xx" and exc.retry_after is not None):
                wait = exc.retry_after if exc.retry_after is not None else float(2 ** attempt)
                if wait > manners.retry_after_max:
                    error = f"http_429: the host asked to wait {wait:.0f} s (> {manners.retry_after_max:g} s)"
                    break
                gates.pause(host, wait)
                continue
            if exc.cause not in RETRYABLE:
                break
            time.sleep(min(0.2 * 2 ** attempt, 2.0))
    return key, None, error


def _install(settings: FetchSettings) -> None:
    import img2dataset.downloader  # noqa: F401 - loads the module into sys.modules

    sys.modules["img2dataset.downloader"].download_image_with_retry = functools.partial(
        bounded_download_with_retry, settings=settings)


def _downloader_class():
    from img2dataset.downloader import Downloader

    class BoundedDownloader(Downloader):
        """img2dataset's downloader with :func:`bounded_download_with_retry` installed where it runs,
        holding the crawl's settings as an attribute so that they travel with it when it is pickled."""

        def __init__(self, *args, vlprep_settings: FetchSettings, **kwargs):
            super().__init__(*args, **kwargs)
            self.vlprep_settings = vlprep_settings

        def __call__(self, row):
            _install(self.vlprep_settings)
            return super().__call__(row)

    BoundedDownloader.__module__ = MODULE
    BoundedDownloader.__qualname__ = "BoundedDownloader"
    return BoundedDownloader


def __getattr__(name: str):
    if name == "BoundedDownloader":  # resolved lazily so importing this module does not import img2dataset
        cls = _downloader_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def _watch_parent(parent: int) -> None:
    """Kill this process group once the parent is gone (its pid is no longer our parent)."""
    while True:
        if os.getppid() != parent:
            os.killpg(0, signal.SIGKILL)
        time.sleep(0.5)


def run_window(config: dict) -> None:
    import importlib

    import img2dataset

    from . import clusters

    module = importlib.import_module(MODULE)  # not __main__: the classes pickled must be importable by name
    # ``img2dataset.main`` the attribute is the CLI function; the module is only in sys.modules.
    engine = sys.modules["img2dataset.main"]
    engine.Downloader = functools.partial(module.BoundedDownloader,
                                          vlprep_settings=module.FetchSettings.from_record(config["settings"]))
    # Its logger polls every 5 s and the run waits for it at the end; a window needs no such delay.
    engine.LoggerProcess = functools.partial(engine.LoggerProcess, log_interval=0.5)
    cluster = clusters.ClusterConfig.from_json(config.get("cluster"))
    clusters.install(engine, cluster)
    options = config["img2dataset"]
    try:
        with clusters.session(cluster, options["processes_count"], config.get("name", "vlprep-window")):
            img2dataset.download(**options)
    except Exception as exc:
        clusters.write_cause(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
        raise


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    threading.Thread(target=_watch_parent, args=(config["parent_pid"],), daemon=True).start()
    run_window(config)


if __name__ == "__main__":
    main()
