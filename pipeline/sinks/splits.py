"""A split's bookkeeping: shards are built beside the published split and swapped in when complete.

A build writes its shards into ``<work folder>/staged/`` (the work folder is named by the work key,
so a killed run resumes there) and records each finished shard. Only when every shard is staged are
they renamed into ``out/<dataset>/``, stale higher-numbered shards removed, and the split's errors,
stats and manifest written, the wids index last. A run that fails or is killed before that leaves
the published split exactly as it was (and ``verify`` passes on it). The renames take milliseconds;
a kill inside them is noted in ``out/<dataset>/.<split>.swap.json``, and the next run with the same
key finishes the swap from its records.

Example::

    staged = staged_dir(work)
    done = shard_done(record, staged / name, out / name, holds_key(out, split, key))
    ...
    with swapping(out, split, staged, len(shards), key):
        write_errors(); write_stats(); write_manifest(); write_wids_index(...)  # index last
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from ..errors import VlprepError
from ..fileio import ensure_dir, read_json, write_json
from .shards import shard_name

STAGED = "staged"


def staged_dir(work: Path) -> Path:
    """Where a build's shards are written until the whole split is ready."""
    return ensure_dir(Path(work) / STAGED)


def journal_path(out: Path, split: str) -> Path:
    return Path(out) / f".{split}.swap.json"


def published_split(out: Path, split: str) -> dict | None:
    """The split's entry of ``out/<dataset>/stats.json`` when its index is there too, else None."""
    stats_path = Path(out) / "stats.json"
    if not stats_path.exists() or not (Path(out) / f"{split}.index.json").exists():
        return None
    return read_json(stats_path).get("splits", {}).get(split)


def holds_key(out: Path, split: str, key: str) -> bool:
    """True if the shards under ``out`` named for ``split`` are those of the build ``key``.

    Either the published split was built with that key, or a swap of that key was cut short (its
    shards are partly moved: the journal says whose they are).
    """
    journal = journal_path(out, split)
    if journal.exists():
        return read_json(journal).get("work_key") == key
    published = published_split(out, split)
    return published is not None and published.get("work_key") == key


def shard_done(record: Path, staged: Path, final: Path, out_holds: bool) -> bool:
    """A shard is finished if its record exists and its file is staged, or published by this build."""
    if not record.exists():
        return False
    size = read_json(record)["shard"]["filesize"]
    places = (staged, final) if out_holds else (staged,)
    return any(path.exists() and path.stat().st_size == size for path in places)


def check_not_worse(out: Path, split: str, limit: int | None, force: bool, command: str) -> None:
    """Refuse a ``--limit`` build that would replace a split built with no limit or a larger one.

    A trial over a full split would otherwise silently throw away hours of work; the published
    split is kept unless ``--force`` says to replace it. Other option changes (seed, resize, shard
    size) replace a split with an equally complete one and are allowed.
    """
    published = published_split(out, split)
    if force or limit is None or published is None:
        return
    old_limit = (published.get("config") or {}).get("limit")
    if old_limit is None or old_limit > limit:
        built = "with no --limit" if old_limit is None else f"with --limit {old_limit:,}"
        raise VlprepError(
            f"{Path(out) / split}: the published split was built {built} ({published.get('images', 0):,} images); "
            f"{command} --limit {limit:,} would replace it with fewer",
            fix="pass --force to replace it, or run the trial with another --data-dir")


@contextlib.contextmanager
def swapping(out: Path, split: str, staged: Path, count: int, key: str) -> Iterator[None]:
    """Move ``count`` staged shards into ``out`` and drop stale ones; the block writes the rest, index last."""
    journal = journal_path(out, split)
    write_json(journal, {"work_key": key})
    for index in range(count):
        name = shard_name(split, index)
        if (Path(staged) / name).exists():
            os.replace(Path(staged) / name, Path(out) / name)
    for stale in Path(out).glob(f"{split}-[0-9][0-9][0-9][0-9][0-9][0-9].tar"):
        if int(stale.stem.rsplit("-", 1)[1]) >= count:  # left by an earlier, larger configuration
            stale.unlink()
    yield
    journal.unlink()
