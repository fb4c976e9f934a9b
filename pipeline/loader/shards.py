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
"""
from __future__ import annotations

import json
import random
import warnings
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch.utils.data
import webdataset as wds
from webdataset.utils import pytorch_worker_info

from ..errors import VlprepError
from .augment import sample_seed


@dataclass(frozen=True)
class ShardSet:
    """Shard paths (or URLs) in index order, with their sample counts when an index gave them."""

    urls: tuple[str, ...]
    nsamples: tuple[int, ...] | None
    source: str

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
    except (ValueError, KeyError, TypeError) as exc:
        raise VlprepError(f"{index}: not a wids shard index ({exc})",
                          fix="rebuild the split with vlprep shard, which writes the index last") from exc
    if not urls:
        raise VlprepError(f"{index}: the index lists no shards", fix="rebuild the split with vlprep shard")
    return ShardSet(urls, counts, str(index))


def epoch_order(urls: Sequence[str], seed: int, epoch: int, shuffle: bool) -> list[str]:
    """The epoch's shard order: the same on every rank, since it depends on (seed, epoch) alone."""
    order = list(urls)
    if shuffle:
        random.Random(sample_seed(seed, epoch, "", "shards")).shuffle(order)
    return order


def epoch_shards(shard_set: ShardSet, seed: int, epoch: int, shuffle: bool) -> Iterator[str]:
    """This rank's and worker's shards for one pass over the data."""
    rank, world, worker, workers = pytorch_worker_info()
    readers = world * workers
    if world > 1 and len(shard_set.urls) < readers:
        raise VlprepError(
            f"{shard_set.source}: {len(shard_set.urls)} shards cannot be dealt to {world} ranks × {workers} "
            f"workers = {readers} readers, so some would read nothing and a distributed step would wait for them",
            fix="use resampled=True (an equal share of samples per reader), fewer DataLoader workers, "
                "or reshard with a smaller --shard-samples")
    ordered = epoch_order(shard_set.urls, seed, epoch, shuffle)
    yield from wds.split_by_worker(wds.split_by_node(iter(ordered)))


def resampled_shards(shard_set: ShardSet, seed: int, epoch: int) -> Iterator[str]:
    """An endless draw of shards with replacement, different for every (epoch, rank, worker)."""
    rank, _, worker, _ = pytorch_worker_info()
    rng = random.Random(sample_seed(seed, epoch, f"{rank}/{worker}", "resample"))
    while True:
        yield shard_set.urls[rng.randrange(len(shard_set.urls))]


def per_reader_samples(epoch_samples: int) -> int:
    """Each reader's equal share of an epoch, so every rank yields the same number of samples."""
    _, world, _, workers = pytorch_worker_info()
    return max(1, epoch_samples // (world * workers))


class ShardStream(torch.utils.data.IterableDataset):
    """Samples from WebDataset shards, made into training items by ``make_item(sample, epoch)``.

    Works with a plain ``torch.utils.data.DataLoader`` (any ``num_workers``) and under
    ``torch.distributed`` (or ``RANK``/``WORLD_SIZE`` in the environment). Call
    :meth:`set_epoch` before each epoch; without it each pass advances the epoch by one on its own,
    which is also what persistent workers see.
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
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch of the next pass: it seeds the shard order, the shuffle, crops and captions."""
        self.epoch = epoch

    @property
    def nsamples(self) -> int | None:
        """Samples in one epoch over all ranks (the index's count, or ``epoch_samples``)."""
        return self.epoch_samples

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch
        self.epoch += 1
        handler = wds.warn_and_continue if self.skip_errors else wds.reraise_exception
        if self.resampled:
            urls: Iterator[str] = resampled_shards(self.shard_set, self.seed, epoch)
        else:
            urls = epoch_shards(self.shard_set, self.seed, epoch, self.shuffle)
        samples = wds.tarfile_to_samples(handler=handler)({"url": url} for url in urls)
        if self.shuffle_buffer > 1:
            rank, _, worker, _ = pytorch_worker_info()
            rng = random.Random(sample_seed(self.seed, epoch, f"{rank}/{worker}", "buffer"))
            samples = wds.shuffle(self.shuffle_buffer, min(100, self.shuffle_buffer), rng=rng)(samples)
        items = self._items(samples, epoch)
        if self.resampled:
            return islice(items, per_reader_samples(self.epoch_samples))
        return items

    def _items(self, samples: Iterator[dict[str, Any]], epoch: int) -> Iterator[Any]:
        for sample in samples:
            try:
                yield self.make_item(sample, epoch)
            except Exception as exc:
                where = f"{sample.get('__url__', '?')}: sample {sample.get('__key__', '?')}"
                if not self.skip_errors:
                    raise VlprepError(f"{where}: {exc}",
                                      fix="check the shard with vlprep verify, or pass skip_errors=True") from exc
                warnings.warn(f"skipped {where}: {exc}", stacklevel=2)
