"""Which shards a process reads, epoch by epoch, and the sample stream built on webdataset.

Epoch mode (the default) reads every shard once per epoch: the shard list is shuffled by
(seed, epoch), identically on every rank, then dealt out by webdataset's ``split_by_node`` (rank)
and ``split_by_worker`` (DataLoader worker), so each sample is seen exactly once across all ranks
and workers. Under several ranks, fewer shards than ranks × workers would leave some reader with
nothing; that is refused with a clear error rather than left to hang a distributed step. (In a
single process an idle DataLoader worker harms nothing, so there it is allowed.) Resampled mode draws shards with
replacement from a (seed, epoch, rank, worker) stream and cuts each worker's stream at an equal
share of ``epoch_samples``, so every rank yields the same number of samples and any shard count
works.

Each pass takes the next epoch by itself, also in non-persistent DataLoader workers, and a stream
resumes mid-epoch from its ``state_dict``: how both work is in :mod:`.state`. Each sample read is
tagged with its shard and position there, so a resumed reader drops what was delivered before
decoding it.
"""
from __future__ import annotations

import copy
import json
import random
import warnings
from collections import Counter
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch.utils.data
import webdataset as wds
from webdataset.utils import pytorch_worker_info

from ..errors import VlprepError
from .augment import sample_seed
from .state import (ConsumedMap, EpochCounters, EpochProgress, Progress, ResampledProgress, layout_readers,
                    make_state, progress_of, reader_key, reader_layout, reader_slot, shards_fingerprint)


@dataclass(frozen=True)
class ShardSet:
    """Shard paths (or URLs) in index order, with their sample counts when an index gave them."""

    urls: tuple[str, ...]
    nsamples: tuple[int, ...] | None
    source: str
    md5s: tuple[str, ...] | None = None
    """Each shard's md5 when an index gave it: what a resume state is checked against."""

    @property
    def total(self) -> int | None:
        return None if self.nsamples is None else sum(self.nsamples)


def resolve_shards(shards: str | Path | Sequence[str | Path]) -> ShardSet:
    """Shards from ``<stem>.index.json``, its prefix (``out/coco/coco-karpathy-train``), or a list of tars.

    The wids index that ``vlprep shard`` writes beside the shards is preferred: it holds each shard's
    sample count, which resampled mode and ``len()`` need.
    """
    if isinstance(shards, (list, tuple)):
        urls = tuple(str(s) for s in shards)
        if not urls:
            raise VlprepError("no shards given", fix="pass a <split>.index.json written by vlprep shard")
        return ShardSet(urls, None, f"{len(urls)} shard paths")
    text = str(shards)
    if text.endswith(".tar") or "{" in text or "::" in text:
        return ShardSet(tuple(wds.shardlists.expand_urls(text)), None, text)
    index = Path(text if text.endswith(".index.json") else text + ".index.json")
    if not index.is_file():
        raise VlprepError(f"{index}: no shard index here",
                          fix="build the shards first (vlprep shard coco|vg|imagenet, vlprep fetch cc3m) and "
                              "pass out/<folder>/<folder>-<split>.index.json or its prefix "
                              "out/<folder>/<folder>-<split>")
    return read_index(index)


def read_index(index: Path) -> ShardSet:
    try:
        entries = json.loads(index.read_text())["shardlist"]
        urls = tuple(str(index.parent / entry["url"]) for entry in entries)
        counts = tuple(int(entry["nsamples"]) for entry in entries)
        md5s = tuple(str(entry.get("md5sum", "")) for entry in entries)
    except (ValueError, KeyError, TypeError) as exc:
        raise VlprepError(f"{index}: not a wids shard index ({exc})",
                          fix="rebuild the split with vlprep shard, which writes the index last") from exc
    if not urls:
        raise VlprepError(f"{index}: the index lists no shards", fix="rebuild the split with vlprep shard")
    return ShardSet(urls, counts, str(index), md5s if all(md5s) else None)


def epoch_order(urls: Sequence[str], seed: int, epoch: int, shuffle: bool) -> list[str]:
    """The epoch's shard order: the same on every rank, since it depends on (seed, epoch) alone."""
    order = list(urls)
    if shuffle:
        random.Random(sample_seed(seed, epoch, "", "shards")).shuffle(order)
    return order


def epoch_shards(shard_set: ShardSet, seed: int, epoch: int, shuffle: bool,
                 names: Sequence[str] | None = None) -> Iterator[str]:
    """This rank's and worker's shards for one pass over the data (their ``names`` when given, in
    index order, else their urls)."""
    rank, world, worker, workers = pytorch_worker_info()
    readers = world * workers
    if world > 1 and len(shard_set.urls) < readers:
        raise VlprepError(
            f"{shard_set.source}: {len(shard_set.urls)} shards cannot be dealt to {world} ranks × {workers} "
            f"workers = {readers} readers, so some would read nothing and a distributed step would wait for them",
            fix="use resampled=True (an equal share of samples per reader), fewer DataLoader workers, "
                "or reshard with a smaller --shard-samples")
    ordered = epoch_order(shard_set.urls if names is None else names, seed, epoch, shuffle)
    yield from wds.split_by_worker(wds.split_by_node(iter(ordered)))


def resampled_shards(shard_set: ShardSet, seed: int, epoch: int, salt: str = "") -> Iterator[str]:
    """An endless draw of shards with replacement, different for every (epoch, rank, worker, salt)."""
    rng = random.Random(sample_seed(seed, epoch, stream_key(salt), "resample"))
    while True:
        yield shard_set.urls[rng.randrange(len(shard_set.urls))]


def stream_key(salt: str = "") -> str:
    """This reader's key for its seeded streams: ``rank/worker``, and the salt of a re-dealt resume."""
    rank, _, worker, _ = pytorch_worker_info()
    return f"{rank}/{worker}" + (f"/{salt}" if salt else "")


def per_reader_samples(epoch_samples: int) -> int:
    """Each reader's equal share of an epoch, so every rank yields the same number of samples."""
    _, world, _, workers = pytorch_worker_info()
    return max(1, epoch_samples // (world * workers))


def shard_names(urls: Sequence[str]) -> tuple[str, ...]:
    """The names a resume state keys shards by, one per entry: file names, so the data may move
    between save and resume (the full paths when two shards share a file name); a shard listed
    again is a new entry, ``name#2``, whose samples are read and counted again."""
    unique = list(dict.fromkeys(urls))
    base = {url: url.rstrip("/").rsplit("/", 1)[-1] for url in unique}
    if len(set(base.values())) < len(base):
        base = {url: url for url in unique}
    seen: Counter[str] = Counter()
    names = []
    for url in urls:
        seen[url] += 1
        names.append(base[url] if seen[url] == 1 else f"{base[url]}#{seen[url]}")
    return tuple(names)


def positioned_samples(names: Iterable[str], urls: Mapping[str, str], counts: Mapping[str, int],
                       consumed: ConsumedMap, handler: Callable[[Exception], bool]) -> Iterator[dict[str, Any]]:
    """The raw samples of the named shards not yet consumed, each tagged with its shard and position.

    A consumed position is dropped as its tar members are read, before anything is decoded; a shard
    the index says is wholly consumed is not opened at all.
    """
    for name in names:
        if name in counts and consumed.count(name) >= counts[name]:
            continue
        samples = wds.tariterators.tarfile_samples([{"url": urls[name]}], handler=handler)
        for position, sample in enumerate(samples):
            if not consumed.has(name, position):
                sample[SHARD], sample[POSITION] = name, position
                yield sample


SHARD, POSITION = "__shard__", "__position__"
SKIPPED = object()


class ShardStream(torch.utils.data.IterableDataset):
    """Samples from WebDataset shards, made into training items by ``make_item(sample, epoch)``.

    Works with a plain ``torch.utils.data.DataLoader`` (any ``num_workers``, persistent or not), with
    torchdata's ``StatefulDataLoader``, and under ``torch.distributed`` (or ``RANK``/``WORLD_SIZE``
    in the environment). Each pass takes the next epoch on its own; :meth:`set_epoch` fixes it.
    :meth:`state_dict` / :meth:`load_state_dict` resume mid-epoch (see :mod:`.state`).
    """

    def __init__(self, shard_set: ShardSet, make_item: Callable[[dict[str, Any], int], Any], *,
                 seed: int = 0, shuffle: bool = True, shuffle_buffer: int = 1000, resampled: bool = False,
                 epoch_samples: int | None = None, skip_errors: bool = False) -> None:
        super().__init__()
        if resampled and epoch_samples is None and shard_set.total is None:
            raise VlprepError(f"{shard_set.source}: resampled mode needs the epoch length",
                              fix="pass epoch_samples=N, or give the <split>.index.json that holds the counts")
        self.shard_set = shard_set
        self.make_item = make_item
        self.seed = seed
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer if shuffle else 0
        self.resampled = resampled
        self.epoch_samples = epoch_samples if epoch_samples is not None else shard_set.total
        self.skip_errors = skip_errors
        self.names = shard_names(shard_set.urls)
        self.urls = dict(zip(self.names, shard_set.urls))
        self.counts = dict(zip(self.names, shard_set.nsamples or ()))
        self.fingerprint = shards_fingerprint(self.names, shard_set.md5s) if shard_set.md5s else ""
        self._epochs = EpochCounters()
        self._resume: Progress | None = None
        self._progress: Progress | None = None

    # ------------------------------------------------------------------ epochs

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch of the next pass in every worker, persistent or not: it seeds the shard order,
        the shuffle, crops and captions. A loaded resume state is kept when it is of this epoch."""
        self._epochs.set(epoch)
        self._progress = None
        if self._resume is not None and self._resume.epoch != epoch:
            self._resume = None

    @property
    def epoch(self) -> int:
        """The epoch the next pass in this process takes."""
        return self._epochs.peek(reader_slot())

    @property
    def nsamples(self) -> int | None:
        """Samples in one epoch over all ranks (the index's count, or ``epoch_samples``)."""
        return self.epoch_samples

    # ------------------------------------------------------------------ resume

    def state_dict(self) -> dict[str, Any]:
        """The epoch and what of it this process delivered (plain ints, strings and bytes).

        In a DataLoader worker (as ``StatefulDataLoader`` asks) or a single-process loader it is
        exact between batches. In the main process of a plain DataLoader with workers, the workers'
        progress is not visible: this is then the start of the epoch the next pass takes.
        """
        progress = self._progress if self._progress is not None else self._fresh_progress(self.epoch, begin=False)
        return make_state(progress, self.seed, self.shard_set.source, self.fingerprint)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from ``state``: the next pass is its epoch, less what the state says was delivered.

        Loaded in the main process (before the DataLoader starts its workers) it reaches every
        worker; loaded inside a worker (StatefulDataLoader's own resume) it sets that worker only.
        """
        where = self.shard_set.source
        progress = progress_of(state, where)
        mode = "resampled" if self.resampled else "epoch"
        if state["mode"] != mode:
            raise VlprepError(f"{where}: a {state['mode']}-mode state for a {mode}-mode dataset",
                              fix=f"build the dataset with resampled={state['mode'] == 'resampled'}, as when saved")
        if int(state["seed"]) != self.seed:
            raise VlprepError(f"{where}: the state was saved with seed={state['seed']}, this dataset has {self.seed}",
                              fix=f"build the dataset with seed={state['seed']}, as when saved")
        if isinstance(progress, EpochProgress):
            self._check_shards(progress.consumed)
        saved = str(state.get("shards", ""))
        if saved and self.fingerprint and saved != self.fingerprint:
            raise VlprepError(f"{where}: the shards changed since the state was saved (rebuilt: their md5 in the "
                              "index differ), so the rest of that epoch is not there to resume",
                              fix="resume with the shards the state was saved on, or start the epoch again "
                                  "(set_epoch) without loading the state")
        in_worker = torch.utils.data.get_worker_info() is not None
        self._epochs.set(progress.epoch, reader_slot() if in_worker else None)
        self._resume, self._progress = progress, None

    def _check_shards(self, consumed: ConsumedMap) -> None:
        where = self.shard_set.source
        for name in consumed.names():
            if name not in self.urls:
                raise VlprepError(f"{where}: the state names shard {name}, which is not among these "
                                  f"{len(self.names)} shards", fix="resume with the shards the state was saved on")
            if name in self.counts and consumed.highest(name) >= self.counts[name]:
                raise VlprepError(f"{where}: the state marks sample {consumed.highest(name)} of {name}, which "
                                  f"holds {self.counts[name]}", fix="resume with the shards the state was saved on")

    def _fresh_progress(self, epoch: int, begin: bool) -> Progress:
        """The progress a pass of ``epoch`` starts from: a loaded resume of that epoch, or nothing.

        ``begin`` marks a pass that starts now (resampled counts then name this reader).
        """
        resume = self._resume if self._resume is not None and self._resume.epoch == epoch else None
        if not self.resampled:
            consumed = ConsumedMap()
            if isinstance(resume, EpochProgress):
                consumed.update(resume.consumed)
            return EpochProgress(epoch, consumed)
        if not begin:
            if resume is not None:
                return copy.deepcopy(resume)
            return ResampledProgress(epoch, reader_layout(), per_reader_samples(self.epoch_samples))
        return self._resampled_start(epoch, resume if isinstance(resume, ResampledProgress) else None)

    def _resampled_start(self, epoch: int, resume: ResampledProgress | None) -> ResampledProgress:
        """This reader's quota and counts: continued on the saved layout, re-dealt on another."""
        layout, me = reader_layout(), reader_key()
        if resume is not None and resume.folded + sum(resume.delivered.values()) == 0:
            resume = None  # nothing delivered yet: the epoch starts afresh on this layout
        if resume is not None and resume.layout == layout:
            if me not in resume.delivered:
                raise VlprepError(f"{self.shard_set.source}: the state has no count for reader {me}",
                                  fix="load merge_states(...) of every rank's saved state")
            return copy.deepcopy(resume)
        readers = layout[0] * layout[1]
        if resume is None:
            quota, folded = per_reader_samples(self.epoch_samples), 0
        else:
            missing = sorted(set(layout_readers(resume.layout)) - set(resume.delivered))
            if missing:
                raise VlprepError(f"{self.shard_set.source}: the state lacks the counts of readers "
                                  f"{', '.join(missing)} of its {resume.layout[0]} ranks x {resume.layout[1]} workers",
                                  fix="load merge_states(...) of every rank's saved state")
            target = resume.folded + resume.quota * len(resume.delivered)
            folded = resume.folded + sum(resume.delivered.values())
            quota = max(0, target - folded) // readers
        return ResampledProgress(epoch, layout, quota, folded, {me: 0}, {me: 0})

    # ------------------------------------------------------------------ passes

    def __iter__(self) -> Iterator[Any]:
        epoch = self._epochs.take(reader_slot())
        progress = self._fresh_progress(epoch, begin=True)
        if self._resume is not None and self._resume.epoch != epoch:
            self._resume = None  # a pass of another epoch began here: the resume is behind it
        self._progress = progress
        if isinstance(progress, ResampledProgress):
            return self._resampled_items(progress)
        return self._epoch_items(progress)

    def _handler(self) -> Callable[[Exception], bool]:
        return wds.warn_and_continue if self.skip_errors else wds.reraise_exception

    def _shuffled(self, samples: Iterator[dict[str, Any]], epoch: int, salt: str = "") -> Iterator[dict[str, Any]]:
        if self.shuffle_buffer <= 1:
            return samples
        rng = random.Random(sample_seed(self.seed, epoch, stream_key(salt), "buffer"))
        return wds.shuffle(self.shuffle_buffer, min(100, self.shuffle_buffer), rng=rng)(samples)

    def _epoch_items(self, progress: EpochProgress) -> Iterator[Any]:
        """This reader's shards of the epoch, less the consumed positions; each marked as it is delivered."""
        names = epoch_shards(self.shard_set, self.seed, progress.epoch, self.shuffle, self.names)
        samples = positioned_samples(names, self.urls, self.counts, progress.consumed, self._handler())
        for sample in self._shuffled(samples, progress.epoch):
            item = self._item(sample, progress.epoch)
            progress.consumed.add(sample[SHARD], sample[POSITION])
            if item is not SKIPPED:
                yield item

    def _resampled_items(self, progress: ResampledProgress) -> Iterator[Any]:
        """This reader's draws up to its quota; on a resume, past the draws it had already made."""
        me = reader_key()
        urls = resampled_shards(self.shard_set, self.seed, progress.epoch, progress.salt)
        samples = wds.tarfile_to_samples(handler=self._handler())({"url": url} for url in urls)
        samples = islice(self._shuffled(samples, progress.epoch, progress.salt), progress.drawn[me], None)
        if progress.delivered[me] >= progress.quota:
            return
        for sample in samples:
            item = self._item(sample, progress.epoch)
            progress.drawn[me] += 1
            if item is not SKIPPED:
                progress.delivered[me] += 1
                yield item
                if progress.delivered[me] >= progress.quota:
                    return

    def _item(self, sample: dict[str, Any], epoch: int) -> Any:
        try:
            return self.make_item(sample, epoch)
        except Exception as exc:
            where = f"{sample.get('__url__', '?')}: sample {sample.get('__key__', '?')}"
            if not self.skip_errors:
                raise VlprepError(f"{where}: {exc}",
                                  fix="check the shard with vlprep verify, or pass skip_errors=True") from exc
            warnings.warn(f"skipped {where}: {exc}", stacklevel=2)
            return SKIPPED
