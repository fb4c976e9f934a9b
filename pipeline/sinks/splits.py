"""A split's bookkeeping, owned by one writer: shards are built beside the published split and swapped in when complete.

A split's files in ``out/<folder>/`` (``<folder>`` is the dataset, or a variant with a folder of
its own) are named by its stem ``<folder>-<split>``: shards
``<stem>-NNNNNN.tar``, ``<stem>.index.json``, ``<stem>.errors.jsonl``, so no two files under ``out/``
share a name.

A build writes its shards into ``<work folder>/staged/`` (the work folder, ``<split>-<work key>``,
is named by the work key, so a killed run resumes there) and records each finished shard in
``shard-<index>.json``. Only when every shard is staged are they renamed into ``out/<folder>/``,
stale higher-numbered shards removed, and the split's errors, stats and manifest written, the wids
index last. A run that fails or is killed before that leaves the published split exactly as it was
(and ``verify`` passes on it). The renames take milliseconds; a kill inside them is noted in
``out/<folder>/.<stem>.swap.json``, and the next run with the same key finishes the swap from its
records.

Example::

    writer = SplitWriter.start(layout, dataset, split, key, limit, force)  # refuses a worse trial
    for index in range(count):
        if not writer.done(index):
            ...  # a worker writes writer.staged_path(index) and records writer.record_path(index)
    results = writer.results(count)
    with writer.publishing(count):
        writer.write_errors(errors)
        writer.write_stats(split_stats)
        ...  # the manifest
        writer.write_index(shards)  # last: the split is whole

Builds that are not staged by work key use the functions directly: :func:`swap_in` (or
:func:`remove_stale_shards`), :func:`write_errors`, :func:`merge_split_stats` and :func:`write_index`.
"""
from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Any, Container, Iterable, Iterator

from .. import __version__
from ..errors import VlprepError
from ..fileio import atomic_path, ensure_dir, read_json, write_json
from ..layout import Layout
from .shards import ShardInfo, json_bytes, shard_name, split_stem, write_wids_index

STAGED = "staged"


def staged_dir(work: Path) -> Path:
    """Where a build's shards are written until the whole split is ready."""
    return ensure_dir(Path(work) / STAGED)


def stem(out: Path, split: str) -> str:
    """The split's file prefix in the folder ``out``: ``<folder name>-<split>``."""
    return split_stem(Path(out).name, split)


def index_path(out: Path, split: str) -> Path:
    """``out/<stem>.index.json``: the wids index, written last, that says the split is whole."""
    return Path(out) / f"{stem(out, split)}.index.json"


def errors_path(out: Path, split: str) -> Path:
    return Path(out) / f"{stem(out, split)}.errors.jsonl"


def journal_path(out: Path, split: str) -> Path:
    return Path(out) / f".{stem(out, split)}.swap.json"


def published_split(out: Path, split: str) -> dict | None:
    """The split's entry of ``out/<folder>/stats.json`` when its index is there too, else None."""
    stats_path = Path(out) / "stats.json"
    if not stats_path.exists() or not index_path(out, split).exists():
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


TRIAL_FIX = "pass --force to replace it, or run the trial with another --data-dir"
"""The fix of a refused trial (:func:`refuse_smaller_trial`)."""


def smaller_trial(built_limit: int | None, limit: int | None) -> bool:
    """Whether a build with ``limit`` would hold less than one built with ``built_limit`` (None: no limit)."""
    return limit is not None and (built_limit is None or built_limit > limit)


def built_with(built_limit: int | None) -> str:
    """``with no --limit`` or ``with --limit N``: how an output was built, for messages (N as typed)."""
    return "with no --limit" if built_limit is None else f"with --limit {built_limit}"


def refuse_smaller_trial(target: Path, built_limit: int | None, holds: str, limit: int | None, force: bool,
                         command: str | None = None, what: str = "the published split",
                         considered: int | None = None) -> None:
    """Refuse a ``--limit`` build that would replace ``target``, built with ``built_limit`` (None: no
    limit) and holding ``holds``, with fewer records, unless ``force``. ``command`` names the build
    when the whole command is known; ``considered`` (records the output was built from), when given,
    lets a limit at or above it through: such a trial cannot hold fewer."""
    if force or not smaller_trial(built_limit, limit) or (considered is not None and considered <= limit):
        return
    raise VlprepError(f"{target}: {what} was built {built_with(built_limit)} ({holds}); "
                      f"{command or 'this trial with'} --limit {limit} would replace it with fewer", fix=TRIAL_FIX)


def check_not_worse(out: Path, split: str, limit: int | None, force: bool, command: str | None = None) -> None:
    """Refuse a ``--limit`` build that would replace a split built with no limit or a larger one.

    A trial over a full split would otherwise silently throw away hours of work; the published
    split is kept unless ``--force`` says to replace it. Other option changes (seed, resize, shard
    size) replace a split with an equally complete one and are allowed.
    """
    published = published_split(out, split)
    if force or limit is None or published is None:
        return
    refuse_smaller_trial(Path(out) / split, (published.get("config") or {}).get("limit"),
                         f"{published.get('images', 0):,} images", limit, force, command,
                         considered=published.get("images", 0) + published.get("skipped_images", 0))


def unlisted_shards(out: Path, split: str, listed: Container[str]) -> list[Path]:
    """Files in ``out`` named as shards of ``split`` (``<stem>-NNNNNN.tar``) that its index does not list."""
    return sorted(p for p in Path(out).glob(f"{stem(out, split)}-[0-9][0-9][0-9][0-9][0-9][0-9].tar")
                  if p.name not in listed)


def remove_stale_shards(out: Path, split: str, keep: Container[str]) -> None:
    """Delete the split's shards ``<stem>-NNNNNN.tar`` in ``out`` whose name is not in ``keep``
    (left by an earlier, larger configuration, or no longer part of the split)."""
    for stale in Path(out).glob(f"{stem(out, split)}-[0-9][0-9][0-9][0-9][0-9][0-9].tar"):
        if stale.name not in keep:
            stale.unlink()


@contextlib.contextmanager
def swapping(out: Path, split: str, staged: Path, count: int, key: str) -> Iterator[None]:
    """Move ``count`` staged shards into ``out`` and drop stale ones; the block writes the rest, index last."""
    journal = journal_path(out, split)
    write_json(journal, {"work_key": key})
    names = [shard_name(stem(out, split), index) for index in range(count)]
    for name in names:
        if (Path(staged) / name).exists():
            os.replace(Path(staged) / name, Path(out) / name)
    remove_stale_shards(out, split, set(names))
    yield
    journal.unlink()


def swap_in(staged: Path, out: Path, split: str, keep: Container[str]) -> None:
    """Move every staged shard into ``out`` (in name order), then drop the split's shards not in ``keep``.

    For a build that writes all its shards again on every run (no journal: a run killed among the
    moves is repaired by the next one, which writes every shard again and the index last).
    """
    for shard in sorted(Path(staged).glob("*.tar")):
        os.replace(shard, Path(out) / shard.name)
    remove_stale_shards(out, split, keep)


def write_errors(out: Path, split: str, errors: Iterable[dict]) -> Path:
    """``out/<stem>.errors.jsonl``: one compact json line per item left out, in the order given."""
    path = errors_path(out, split)
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"".join(json_bytes(e) + b"\n" for e in errors))
    return path


def merge_split_stats(out: Path, dataset: str, split: str, split_stats: dict) -> dict:
    """Put the split's entry into ``out/stats.json`` (other splits kept, ``vlprep_version`` now this
    one's); return the whole file's content."""
    stats_path = Path(out) / "stats.json"
    stats = read_json(stats_path) if stats_path.exists() else {"dataset": dataset, "splits": {}}
    stats["vlprep_version"] = __version__
    stats["splits"][split] = split_stats
    write_json(stats_path, stats)
    return stats


def write_index(out: Path, split: str, shards: list[ShardInfo]) -> Path:
    """``out/<stem>.index.json`` (wids): written last, it is what says the split is whole."""
    path = index_path(out, split)
    write_wids_index(path, stem(out, split), shards)
    return path


class SplitWriter:
    """The bookkeeping of one split built by shards in a work folder named by its work key.

    ``out`` is ``out/<folder>/``; ``work`` the build's work folder. Shard ``i`` is written to
    :meth:`staged_path` and recorded in :meth:`record_path` (json holding at least
    ``{"shard": ShardInfo fields}``); a recorded shard is not written again (:meth:`done`).
    """

    def __init__(self, out: Path, dataset: str, split: str, key: str, work: Path) -> None:
        self.out, self.dataset, self.split, self.key, self.work = Path(out), dataset, split, key, Path(work)
        self.staged = staged_dir(self.work)

    @classmethod
    def start(cls, layout: Layout, dataset: str, split: str, key: str, limit: int | None = None,
              force: bool = False, command: str | None = None, folder: str | None = None) -> SplitWriter:
        """The writer of split ``split`` in ``out/<folder>/`` (default: the dataset's folder), with its
        work folder ``work/<dataset>/<stem>-<key>``.

        Refuses first (:func:`check_not_worse`) a ``--limit`` build that would replace a more
        complete split; ``command`` names the build in that message (the whole command, when known).
        """
        out = ensure_dir(layout.out(folder or dataset))
        check_not_worse(out, split, limit, force, command)
        return cls(out, dataset, split, key, ensure_dir(layout.work(dataset) / f"{stem(out, split)}-{key}"))

    @functools.cached_property
    def out_holds(self) -> bool:
        """Whether the shards now in ``out`` are this build's (read once, at the first :meth:`done`)."""
        return holds_key(self.out, self.split, self.key)

    @property
    def stem(self) -> str:
        return stem(self.out, self.split)

    def shard_name(self, index: int) -> str:
        return shard_name(self.stem, index)

    def staged_path(self, index: int) -> Path:
        return self.staged / self.shard_name(index)

    def record_path(self, index: int) -> Path:
        return self.work / f"shard-{index:06d}.json"

    def done(self, index: int) -> bool:
        """Shard ``index`` is finished: recorded, and staged or published by this very build."""
        return shard_done(self.record_path(index), self.staged_path(index), self.out / self.shard_name(index),
                          self.out_holds)

    def results(self, count: int) -> list[dict[str, Any]]:
        """The records of shards ``0..count-1``, in order (every one must be finished)."""
        return [read_json(self.record_path(index)) for index in range(count)]

    @contextlib.contextmanager
    def publishing(self, count: int) -> Iterator[None]:
        """Swap the ``count`` staged shards in and drop stale ones; the block writes the rest, index last."""
        with swapping(self.out, self.split, self.staged, count, self.key):
            yield

    def write_errors(self, errors: Iterable[dict]) -> Path:
        return write_errors(self.out, self.split, errors)

    def write_stats(self, split_stats: dict) -> dict:
        return merge_split_stats(self.out, self.dataset, self.split, split_stats)

    def write_index(self, shards: list[ShardInfo]) -> Path:
        return write_index(self.out, self.split, shards)

    def drop_empty(self, shards: list[ShardInfo]) -> list[ShardInfo]:
        """The shards that hold samples; published shards that hold none are removed.

        A shard is planned before its images are decoded, so one whose every image fails is an
        empty tar: readers that open each shard (Energon, DALI) fail on it, and it holds nothing.
        The numbers of the others are kept (a gap in them is harmless to every reader)."""
        for shard in shards:
            if shard.nsamples == 0:
                (self.out / shard.url).unlink(missing_ok=True)
        return [shard for shard in shards if shard.nsamples > 0]
