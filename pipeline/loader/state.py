"""Which epoch each pass over the shards is, and how far into its epoch a stream got: the resume state.

**Epochs.** Every pass (every ``iter(dataset)``, which a DataLoader makes once per worker and
per ``iter(loader)``) takes the next epoch of its reader slot: the DataLoader worker id, 0 in the
main process. The slots' next epochs live in a small tensor in shared memory
(:class:`EpochCounters`), created with the dataset, so the counter a worker advances is the one
the main process and the workers of the next ``iter(loader)`` read: a plain counter on the dataset
would be advanced on the worker's copy only and lost when a non-persistent worker exits, and epoch
1 would repeat epoch 0's order, crops and captions. The tensor survives fork, and spawn pickling
too (torch's ForkingPickler reductions send the shared storage, not a copy). ``set_epoch(e)``
writes ``e`` into every slot, so it reaches persistent workers as well; ``load_state_dict`` inside
a worker (what torchdata's ``StatefulDataLoader`` does) sets that worker's slot only.

**Resume state.** ``ShardStream.state_dict()`` is a plain dict of ints, strings and bytes
(``torch.save`` and ``all_gather_object`` take it as is):

- epoch mode: ``{"epoch", "seed", "consumed": {shard name: bitmap}}``, where bit ``p`` (byte
  ``p >> 3``, bit ``p & 7``) is set when the ``p``-th sample of that shard was delivered in this
  epoch: 1.28 M samples cost 160 KB. A shard's name is its file name (its path when two given
  shards share a file name; ``name#2`` for a shard listed a second time), so the data may move
  between save and resume. States merge by
  union, so the states of several workers and ranks add up to one; a resumed reader reads its
  shards and drops consumed positions before anything is decoded, whatever the rank × worker
  layout is now, so the rest of the epoch is exactly the samples not yet delivered, each with the
  view, flip and caption seeded by ``(seed, epoch, key)`` as before.
- resampled mode (draws with replacement, so "which samples" has no exact meaning): a count per
  reader ``"rank/worker"`` of the samples it drew and delivered, with the layout ``[world,
  workers]`` that drew them. Resumed on the same layout, each reader skips the samples it had
  drawn (undecoded) and continues its stream exactly. On another layout the samples left in the
  epoch are split equally among the new readers, which draw from fresh streams.

Only delivered samples count: the dataset marks a sample consumed as it hands it to the
DataLoader's fetcher, and ``StatefulDataLoader`` keeps each worker's state with the batch it came
with, so samples still in the prefetch queue are not in the saved state.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

import torch
from webdataset.utils import pytorch_worker_info

from ..errors import VlprepError

STATE_FORMAT = "vlprep-shard-stream/1"
MAX_SLOTS = 1024  # DataLoader workers per process; 8 KB of shared memory
MODES = ("epoch", "resampled")


def reader_slot() -> int:
    """This process's epoch slot: its DataLoader worker id, 0 in the main process."""
    slot = pytorch_worker_info()[2]
    if not 0 <= slot < MAX_SLOTS:
        raise VlprepError(f"DataLoader worker {slot}: the epoch counters have {MAX_SLOTS} slots",
                          fix=f"use at most {MAX_SLOTS} DataLoader workers")
    return slot


def reader_key() -> str:
    """This reader's name in a resampled state: ``rank/worker``."""
    rank, _, worker, _ = pytorch_worker_info()
    return f"{rank}/{worker}"


def reader_layout() -> tuple[int, int]:
    """(world size, DataLoader workers per rank) of the readers dealing out an epoch."""
    _, world, _, workers = pytorch_worker_info()
    return world, workers


class EpochCounters:
    """The next epoch of each reader slot, in shared memory so workers and the main process agree."""

    def __init__(self, epoch: int = 0) -> None:
        self.next = torch.full((MAX_SLOTS,), epoch, dtype=torch.int64).share_memory_()

    def take(self, slot: int) -> int:
        """The epoch of a new pass in ``slot``; the slot's next pass gets the one after it."""
        epoch = int(self.next[slot])
        self.next[slot] = epoch + 1
        return epoch

    def peek(self, slot: int) -> int:
        return int(self.next[slot])

    def set(self, epoch: int, slot: int | None = None) -> None:
        """The next pass of ``slot`` (of every slot when None) is ``epoch``."""
        if slot is None:
            self.next.fill_(epoch)
        else:
            self.next[slot] = epoch


class ConsumedMap:
    """The delivered sample positions of each shard: one bit per position, in a growing bytearray."""

    def __init__(self, bits: Mapping[str, bytes] | None = None) -> None:
        self._bits: dict[str, bytearray] = {name: bytearray(b) for name, b in (bits or {}).items()}

    def add(self, name: str, position: int) -> None:
        bits = self._bits.setdefault(name, bytearray())
        byte = position >> 3
        if byte >= len(bits):
            bits.extend(bytes(byte + 1 - len(bits)))
        bits[byte] |= 1 << (position & 7)

    def has(self, name: str, position: int) -> bool:
        bits = self._bits.get(name)
        byte = position >> 3
        return bits is not None and byte < len(bits) and bool(bits[byte] >> (position & 7) & 1)

    def count(self, name: str) -> int:
        return int.from_bytes(self._bits.get(name, b""), "little").bit_count()

    def total(self) -> int:
        return sum(self.count(name) for name in self._bits)

    def names(self) -> list[str]:
        return list(self._bits)

    def highest(self, name: str) -> int:
        """The highest consumed position of a shard, −1 when none."""
        return int.from_bytes(self._bits.get(name, b""), "little").bit_length() - 1

    def update(self, other: ConsumedMap) -> None:
        """Union in place: a position is consumed when either map says so."""
        for name, bits in other._bits.items():
            mine = self._bits.setdefault(name, bytearray())
            if len(mine) < len(bits):
                mine.extend(bytes(len(bits) - len(mine)))
            for i, byte in enumerate(bits):
                mine[i] |= byte

    def to_state(self) -> dict[str, bytes]:
        """Immutable copies: StatefulDataLoader diffs successive states by value."""
        return {name: bytes(bits) for name, bits in self._bits.items()}


@dataclass
class EpochProgress:
    """An epoch-mode pass: its epoch and the positions delivered in it (those of a resume included)."""

    epoch: int
    consumed: ConsumedMap = field(default_factory=ConsumedMap)

    def body(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "consumed": self.consumed.to_state()}


@dataclass
class ResampledProgress:
    """A resampled pass: what every reader of this layout drew and delivered in the epoch so far.

    ``folded`` counts the samples delivered under earlier layouts (before a resume on another
    layout); ``quota`` is each reader's share of the epoch under this layout; ``salt`` tells the
    fresh streams of a changed layout from the original ones.
    """

    epoch: int
    layout: tuple[int, int]
    quota: int
    folded: int = 0
    drawn: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)

    @property
    def salt(self) -> str:
        return f"resume{self.folded}" if self.folded else ""

    def body(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "layout": list(self.layout), "quota": self.quota, "folded": self.folded,
                "drawn": dict(self.drawn), "delivered": dict(self.delivered)}


Progress = EpochProgress | ResampledProgress


def make_state(progress: Progress, seed: int, source: str, shards: str = "") -> dict[str, Any]:
    """``shards``: the fingerprint of the shards' contents (:func:`shards_fingerprint`), "" if unknown."""
    mode = "resampled" if isinstance(progress, ResampledProgress) else "epoch"
    return {"format": STATE_FORMAT, "mode": mode, "seed": seed, "source": source, "shards": shards,
            **progress.body()}


def shards_fingerprint(names: Iterable[str], digests: Iterable[str]) -> str:
    """16 hex digits over each shard's name and md5 (from the wids index): a state records it, so a
    rebuild that keeps the shard names and counts (a new --seed) cannot be resumed as if unchanged."""
    import hashlib

    text = "".join(f"{name} {digest}\n" for name, digest in zip(names, digests))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def progress_of(state: Mapping[str, Any], where: str) -> Progress:
    """The progress a (checked) state records."""
    check_format(state, where)
    try:
        if state["mode"] == "epoch":
            return EpochProgress(int(state["epoch"]), ConsumedMap(state["consumed"]))
        return ResampledProgress(int(state["epoch"]), (int(state["layout"][0]), int(state["layout"][1])),
                                 int(state["quota"]), int(state["folded"]),
                                 {str(k): int(v) for k, v in state["drawn"].items()},
                                 {str(k): int(v) for k, v in state["delivered"].items()})
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise VlprepError(f"{where}: a damaged shard stream state ({exc!r})",
                          fix="resume from a state saved by ShardStream.state_dict or StatefulDataLoader") from exc


def check_format(state: Any, where: str) -> None:
    if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
        hint = (" (a StatefulDataLoader state: pass merge_states(state))"
                if isinstance(state, Mapping) and ("_snapshot" in state or "dataset_state" in state) else "")
        raise VlprepError(f"{where}: not a shard stream state{hint}",
                          fix="pass ShardStream.state_dict(), or merge_states(loader.state_dict()) for a "
                              "StatefulDataLoader's state")
    if state.get("mode") not in MODES:
        raise VlprepError(f"{where}: unknown mode {state.get('mode')!r}", fix=f"a state's mode is one of {MODES}")


def stream_states(saved: Any) -> Iterator[Mapping[str, Any]]:
    """The shard stream states inside ``saved``: one state, a StatefulDataLoader state (with or
    without workers), or a list or tuple of these (one per rank, as ``all_gather_object`` gives)."""
    if isinstance(saved, (list, tuple)):
        for one in saved:
            yield from stream_states(one)
        return
    if not isinstance(saved, Mapping):
        raise VlprepError(f"a {type(saved).__name__} is not a shard stream or StatefulDataLoader state",
                          fix="pass what ShardStream.state_dict() or StatefulDataLoader.state_dict() returned")
    if saved.get("format") == STATE_FORMAT:
        yield saved
    elif "_snapshot" in saved:
        if saved.get("_steps_since_snapshot", 0):
            raise VlprepError(f"a StatefulDataLoader state taken {saved['_steps_since_snapshot']} batches after its "
                              "last snapshot: the workers' states do not cover those batches",
                              fix="build the StatefulDataLoader with snapshot_every_n_steps=1 (its default)")
        for worker in saved["_snapshot"]["_worker_snapshots"].values():
            if worker.get("dataset_state") is not None:
                yield worker["dataset_state"]
    elif "dataset_state" in saved:
        if saved["dataset_state"] is not None:
            yield saved["dataset_state"]
    else:
        check_format(saved, "merge_states")


def merge_states(*saved: Any) -> dict[str, Any]:
    """One state from those saved by several workers and ranks: the union of what they delivered.

    Accepts shard stream states, ``StatefulDataLoader.state_dict()`` results and lists of either
    (e.g. every rank's, gathered with ``torch.distributed.all_gather_object``). Load the result
    with ``dataset.load_state_dict`` before building the DataLoader; any number of ranks and
    workers may then resume from it.
    """
    states = [state for one in saved for state in stream_states(one)]
    if not states:
        raise VlprepError("merge_states: no shard stream state in what was given",
                          fix="pass the StatefulDataLoader or ShardStream state_dict() of every rank")
    first = states[0]
    check_format(first, "merge_states")
    for state in states[1:]:
        check_format(state, "merge_states")
        for key in ("mode", "seed", "epoch", "shards"):
            if state.get(key, "") != first.get(key, ""):
                raise VlprepError(f"merge_states: states that differ in {key} ({first.get(key)} and {state.get(key)})",
                                  fix="merge states saved at the same step of the same run, by every rank")
    progress = [progress_of(state, "merge_states") for state in states]
    merged = progress[0]
    if isinstance(merged, EpochProgress):
        for other in progress[1:]:
            merged.consumed.update(other.consumed)
    else:
        for other in progress[1:]:
            merge_counts(merged, other)
    return make_state(merged, int(first["seed"]), str(first.get("source", "")), str(first.get("shards", "")))


def merge_counts(into: ResampledProgress, other: ResampledProgress) -> None:
    same = (into.layout, into.quota, into.folded) == (other.layout, other.quota, other.folded)
    if not same:
        raise VlprepError("merge_states: resampled states from different reader layouts or resumes",
                          fix="merge states saved at the same step of the same run, by every rank")
    for counts, more in ((into.drawn, other.drawn), (into.delivered, other.delivered)):
        for reader, count in more.items():
            counts[reader] = max(count, counts.get(reader, 0))


def layout_readers(layout: tuple[int, int]) -> Iterable[str]:
    world, workers = layout
    return (f"{rank}/{worker}" for rank in range(world) for worker in range(workers))
