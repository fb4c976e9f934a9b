"""img2dataset as the download engine of one window of rows, run in a child process.

``python -m vlprep.pipeline.engines.webdownload WINDOW.json`` calls ``img2dataset.download`` on the
window's input parquet. Two things are changed inside img2dataset, in whichever process runs its
downloader (multiprocessing, pyspark or ray workers alike: the downloader object travels to them by
pickling, with its settings as attributes, and names this module, which vlprep ships to cluster
workers itself; see :mod:`.clusters`):

- each URL is fetched by :func:`vlprep.pipeline.sources.webimage.fetch` (a deadline for the whole
  answer, a byte cap, the truncated-body check, img2dataset's ``X-Robots-Tag`` rule), retried only
  for causes worth retrying (5xx, timeouts, dropped connections);
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
from pathlib import Path

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


def bounded_download_with_retry(row, timeout, retries, user_agent_token, disallowed_header_directives, *,
                                max_bytes: int = 50_000_000, max_pixels: int = 89_478_485):
    """Drop-in for img2dataset's ``download_image_with_retry``: ``(key, BytesIO | None, error | None)``.

    The bounds come bound by :meth:`BoundedDownloader.__call__` from the downloader's ``settings``
    (environment variables never reach Ray or Spark workers)."""
    from img2dataset.downloader import is_disallowed

    from ..sources.webimage import RETRYABLE, WebImageError, fetch

    key, url = row

    def disallowed(headers) -> bool:
        return bool(disallowed_header_directives) and is_disallowed(headers, user_agent_token,
                                                                    disallowed_header_directives)

    error = "other: no attempt"
    for attempt in range(retries + 1):
        try:
            data = fetch(url, timeout, max_bytes, user_agent_token, disallowed)
            check_image(data, max_pixels)
            return key, io.BytesIO(data), None
        except WebImageError as exc:
            error = str(exc)
            if exc.cause not in RETRYABLE:
                break
            time.sleep(min(0.2 * 2 ** attempt, 2.0))
    return key, None, error


def _install(settings: dict) -> None:
    import img2dataset.downloader  # noqa: F401 - loads the module into sys.modules

    bounds = {k: int(settings[k]) for k in ("max_bytes", "max_pixels") if k in settings}
    sys.modules["img2dataset.downloader"].download_image_with_retry = functools.partial(
        bounded_download_with_retry, **bounds)


def _downloader_class():
    from img2dataset.downloader import Downloader

    class BoundedDownloader(Downloader):
        """img2dataset's downloader with :func:`bounded_download_with_retry` installed where it runs.

        ``settings`` (max_bytes, max_pixels, Ray nodes to leave out) is set before img2dataset hands
        the object to its distributor, so it travels with every task."""

        settings: dict = {}

        def __call__(self, row):
            _install(self.settings)
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


def make_downloader(settings: dict, **kwargs):
    """img2dataset builds its ``Downloader(**kwargs)``; ours carries ``settings`` as an attribute."""
    import importlib

    downloader = importlib.import_module(MODULE).BoundedDownloader(**kwargs)
    downloader.settings = dict(settings)
    return downloader


def run_window(config: dict) -> None:
    import img2dataset

    from . import clusters

    # ``img2dataset.main`` the attribute is the CLI function; the module is only in sys.modules.
    engine = sys.modules["img2dataset.main"]
    cluster = clusters.ClusterConfig.from_json(config.get("cluster"))
    settings = {"max_bytes": config["max_bytes"], "max_pixels": config["max_pixels"],
                "exclude_nodes": list(cluster.exclude_nodes)}
    engine.Downloader = functools.partial(make_downloader, settings)
    # Its logger polls every 5 s and the run waits for it at the end; a window needs no such delay.
    engine.LoggerProcess = functools.partial(engine.LoggerProcess, log_interval=0.5)
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
