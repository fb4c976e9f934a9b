"""SBU Captions: ``sbu-captions-all.tar.gz`` holding ``sbu-captions-all.json``, three parallel lists.

The JSON is one object, ``{"image_urls": [...], "captions": [...], "user_ids": [...]}``: row ``i``
is the ``i``-th element of each list (1,000,000 rows). Parallel lists cannot be read row by row
from one stream (the URLs all come before the first caption), so :func:`write_rows` reads the
archive once, streaming each list's elements into a file of their own (one JSON value a line,
through :mod:`..sources.jsonstream`'s caps), then zips the three files into one JSON Lines file,
``{"url", "caption", "user_id"}`` a line, that the crawl reads as any JSONL list. Memory stays
bounded whatever the lists' length; lists of unequal length are an error, since no row could be
trusted to pair the right URL with the right caption.

An element that is not text (a null, a nested value) or a caption over the text cap keeps its row
as an empty value, so it fails as ``invalid_url`` or ``empty_caption`` and no later row shifts.
"""
from __future__ import annotations

import contextlib
import json
import os
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO, Iterator

from ..caps import DEFAULT_CAPS, Caps
from ..errors import VlprepError
from ..fileio import atomic_path, ensure_dir
from .listreaders import Columns

ARCHIVE_NAME = "sbu-captions-all.tar.gz"
JSON_NAME = "sbu-captions-all.json"
ROWS = 1_000_000
LISTS = {"image_urls": "url", "captions": "caption", "user_ids": "user_id"}
"""Each parallel list of the JSON, and the column its elements become."""
CANONICAL_NAME = "sbu-captions-all.jsonl"
COLUMNS = Columns(url="url", caption="caption", extra=("user_id",))
"""How the crawl reads the canonical file: the user id is kept in every sample's json."""
SCALARS = ("string", "number", "integer", "double", "boolean", "null")


def write_rows(archive: Path, dest: Path, caps: Caps = DEFAULT_CAPS) -> int:
    """Write the archive's rows to ``dest`` as JSON Lines (atomically); return how many rows."""
    parts = {key: ensure_dir(dest.parent) / f".{dest.name}.{key}.tmp-{os.getpid()}" for key in LISTS}
    try:
        with contextlib.ExitStack() as stack:
            files = {key: stack.enter_context(open(path, "w", encoding="utf-8", newline="\n"))
                     for key, path in parts.items()}
            counts = _split_lists(archive, files, caps)
        _check_lengths(archive, counts)
        with atomic_path(dest) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as out:
            for values in _zipped(parts):
                out.write(json.dumps(dict(zip(LISTS.values(), values)), ensure_ascii=False) + "\n")
    finally:
        for path in parts.values():
            path.unlink(missing_ok=True)
    return counts["image_urls"]


@contextlib.contextmanager
def _json_member(archive: Path) -> Iterator[IO[bytes]]:
    """The JSON member of the archive as a stream (the tar.gz is read forward, never extracted)."""
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            if member.isfile() and PurePosixPath(member.name).name == JSON_NAME:
                yield tar.extractfile(member)
                return
    raise VlprepError(f"{archive}: no member {JSON_NAME}", fix=f"pass the published {ARCHIVE_NAME}")


def _split_lists(archive: Path, files: dict[str, IO[str]], caps: Caps) -> dict[str, int]:
    """Stream each parallel list's elements into its file, one JSON text (or null) a line; count them."""
    import ijson

    from ..sources.archives import ARCHIVE_ERRORS
    from ..sources.jsonstream import PIECE, RAW_PER_DECODED, CappedJson, text_problem

    counts = dict.fromkeys(LISTS, 0)
    keys: list[str] = []
    nested = 0
    where = f"{archive} (member {JSON_NAME})"
    try:
        with _json_member(archive) as member:
            stream = CappedJson(member, RAW_PER_DECODED * caps.text_bytes, caps.json_depth, where)
            for prefix, event, value in ijson.parse(stream, use_float=True, buf_size=PIECE):
                if nested:  # inside an element that is itself a list or an object: one null for all of it
                    nested += event.startswith("start_") - event.startswith("end_")
                    continue
                if prefix == "" and event == "map_key":
                    keys.append(value)
                key, _, rest = prefix.partition(".")
                if rest != "item" or key not in files:
                    continue
                if event in ("start_map", "start_array"):
                    nested = 1
                    value = None
                elif event not in SCALARS:
                    continue
                text = value if isinstance(value, str) and text_problem(value, stream, caps.text_bytes) is None \
                    else (str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None)
                files[key].write(json.dumps(text, ensure_ascii=False) + "\n")
                counts[key] += 1
    except VlprepError:
        raise
    except (ijson.JSONError, ValueError, *ARCHIVE_ERRORS) as exc:
        raise VlprepError(f"{where}: not readable ({type(exc).__name__}: {exc})",
                          fix=f"fetch {ARCHIVE_NAME} again (delete it from DATA_DIR/raw/sbu first)") from None
    missing = [key for key in LISTS if key not in keys]
    if missing:
        raise VlprepError(f"{where}: no list {', '.join(missing)}; its keys are {', '.join(map(repr, keys[:20]))}",
                          fix=f"pass the published {ARCHIVE_NAME} (parallel lists {', '.join(LISTS)})")
    return counts


def _check_lengths(archive: Path, counts: dict[str, int]) -> None:
    if len(set(counts.values())) > 1:
        sizes = ", ".join(f"{key} {n:,}" for key, n in counts.items())
        raise VlprepError(f"{archive}: the parallel lists differ in length ({sizes}), so no row can be trusted to "
                          "pair a URL with its caption", fix=f"fetch the published {ARCHIVE_NAME} again")


def _zipped(parts: dict[str, Path]) -> Iterator[list]:
    """The lists' elements row by row, read back from their files in step."""
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(open(path, encoding="utf-8")) for path in parts.values()]
        for lines in zip(*handles):
            yield [json.loads(line) or "" for line in lines]
