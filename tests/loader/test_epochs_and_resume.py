"""Epochs that advance by themselves in any DataLoader, exact mid-epoch resume, and uint8 views."""
from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from vlprep.pipeline.errors import VlprepError
from vlprep.pipeline.loader import image_dataset, merge_states, normalize, pair_dataset

from .splits import demo_prefix, index_path, shard_path, write_pair_shards

pytestmark = [pytest.mark.filterwarnings("ignore:'set_vital' is deprecated"),
              pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")]

SIZE = 32    # small views keep the tests fast; the crop, flip and caption draws are the same at 224
SEED = 11


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """6 image-text shards × 5 samples (30), three captions per image; the split's prefix."""
    return write_pair_shards(tmp_path_factory.mktemp("toy"), shards=6, per_shard=5)


@pytest.fixture(autouse=True)
def one_rank(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


def pairs(prefix: Path, **options):
    return pair_dataset(prefix, size=SIZE, seed=SEED, with_keys=True, shuffle_buffer=8, **options)


def items_of(batches) -> list[tuple]:
    """(key, image, tokens, mask) per sample, from batched or unbatched pair items."""
    out = []
    for batch in batches:
        image, tokens, mask, keys = batch
        if isinstance(keys, str):
            out.append((keys, image, tokens, mask))
        else:
            out += [(key, image[i], tokens[i], mask[i]) for i, key in enumerate(keys)]
    return out


def epoch_items(prefix: Path, epoch: int, **options) -> dict[str, tuple]:
    """The whole epoch in one process: key → (image, tokens, mask), the reference views."""
    dataset = pairs(prefix, **options)
    dataset.set_epoch(epoch)
    return {key: rest for key, *rest in items_of(DataLoader(dataset, batch_size=None))}


def assert_same_views(items: list[tuple], reference: dict[str, tuple]) -> None:
    for key, *tensors in items:
        for ours, expected in zip(tensors, reference[key]):
            assert torch.equal(ours, expected), key


def assert_exactly_the_epoch(before: list[tuple], after: list[tuple], reference: dict[str, tuple]) -> None:
    """Delivered before the save + after the resume = the epoch: nothing repeated, nothing lost."""
    keys = [key for key, *_ in before + after]
    assert len(keys) == len(set(keys)), f"repeated: {[k for k, n in Counter(keys).items() if n > 1]}"
    assert set(keys) == set(reference), f"lost: {sorted(set(reference) - set(keys))}"
    assert_same_views(before + after, reference)


def take(loader, batches: int) -> list[tuple]:
    """The first ``batches`` batches of a fresh pass (the loader keeps prefetching behind them)."""
    iterator = iter(loader)
    return items_of(next(iterator) for _ in range(batches))


# ---------------------------------------------------------------- epochs


def test_each_pass_advances_the_epoch_with_non_persistent_workers(toy):
    dataset = pairs(toy)
    loader = DataLoader(dataset, batch_size=None, num_workers=2, persistent_workers=False)
    first, second = items_of(loader), items_of(loader)
    assert [k for k, *_ in first] != [k for k, *_ in second], "epoch 1 must reshuffle"
    views = {key: (image, tokens) for key, image, tokens, _ in first}
    crops_changed = sum(not torch.equal(image, views[key][0]) for key, image, *_ in second)
    captions_changed = sum(not torch.equal(tokens, views[key][1]) for key, _, tokens, _ in second)
    assert crops_changed > 20 and captions_changed > 10
    # the second pass is epoch 1, exactly as set_epoch(1) gives it, order included
    fresh = pairs(toy)
    fresh.set_epoch(1)
    expected = items_of(DataLoader(fresh, batch_size=None, num_workers=2))
    assert [k for k, *_ in second] == [k for k, *_ in expected]
    assert_same_views(second, {key: rest for key, *rest in expected})
    assert dataset.epoch == 2


def test_set_epoch_reaches_persistent_workers(toy):
    dataset = pairs(toy)
    loader = DataLoader(dataset, batch_size=None, num_workers=2, persistent_workers=True)
    items_of(loader)
    dataset.set_epoch(5)
    fifth = items_of(loader)
    sixth = items_of(loader)  # and then they advance on their own
    assert_exactly_the_epoch(fifth, [], epoch_items(toy, 5))
    assert_exactly_the_epoch(sixth, [], epoch_items(toy, 6))


@pytest.mark.slow  # two spawned workers import torch: about 5 s
def test_epoch_counters_survive_spawned_workers(toy):
    dataset = pairs(toy)
    loader = DataLoader(dataset, batch_size=None, num_workers=1, multiprocessing_context="spawn")
    zeroth, first = items_of(loader), items_of(loader)
    assert_exactly_the_epoch(zeroth, [], epoch_items(toy, 0))
    assert_exactly_the_epoch(first, [], epoch_items(toy, 1))


# ---------------------------------------------------------------- exact resume


@pytest.mark.parametrize("saved_workers,resumed_workers,how", [
    (2, 2, "loader"),   # StatefulDataLoader.load_state_dict: each worker restores its own state
    (2, 3, "merged"),   # another worker count: the workers' states merged into the dataset
    (2, 0, "merged"),
    (0, 2, "merged"),
    (0, 0, "loader"),
])
def test_stateful_dataloader_resumes_the_rest_of_the_epoch(toy, saved_workers, resumed_workers, how):
    reference = epoch_items(toy, 3)
    dataset = pairs(toy)
    dataset.set_epoch(3)
    loader = StatefulDataLoader(dataset, batch_size=4, num_workers=saved_workers)
    before = take(loader, 3)
    saved = io.BytesIO()
    torch.save(loader.state_dict(), saved)   # what a checkpoint holds
    del loader
    state = torch.load(io.BytesIO(saved.getvalue()), weights_only=False)

    resumed = pairs(toy)
    if how == "loader":
        loader = StatefulDataLoader(resumed, batch_size=4, num_workers=resumed_workers)
        loader.load_state_dict(state)
    else:
        resumed.load_state_dict(merge_states(state))
        loader = StatefulDataLoader(resumed, batch_size=4, num_workers=resumed_workers)
    after = items_of(loader)
    assert len(before) == 12
    assert_exactly_the_epoch(before, after, reference)
    # the pass after the resumed epoch is the whole next epoch
    assert_exactly_the_epoch(items_of(loader), [], epoch_items(toy, 4))


@pytest.mark.parametrize("how", ["loader", "merged"])
def test_resume_in_a_later_epoch_of_persistent_workers(toy, how):
    loader = StatefulDataLoader(pairs(toy), batch_size=4, num_workers=2, persistent_workers=True)
    items_of(loader)   # epoch 0, whole
    before = take(loader, 2)
    state = loader.state_dict()
    del loader
    dataset = pairs(toy)
    if how == "merged":
        dataset.load_state_dict(merge_states(state))
    loader = StatefulDataLoader(dataset, batch_size=4, num_workers=2, persistent_workers=True)
    if how == "loader":
        loader.load_state_dict(state)
    assert_exactly_the_epoch(before, items_of(loader), epoch_items(toy, 1))
    assert_exactly_the_epoch(items_of(loader), [], epoch_items(toy, 2))


def test_two_ranks_states_merge_and_resume_on_one_rank(toy, monkeypatch):
    reference = epoch_items(toy, 2)
    states, before = [], []
    for rank, batches in ((0, 2), (1, 1)):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        dataset = pairs(toy)
        dataset.set_epoch(2)
        loader = StatefulDataLoader(dataset, batch_size=3, num_workers=2)
        before += take(loader, batches)
        states.append(loader.state_dict())
        del loader
    merged = merge_states(states)   # what every rank loads after all_gather_object
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    dataset = pairs(toy)
    dataset.load_state_dict(merged)
    dataset.set_epoch(2)   # a trainer's loop sets the epoch it resumes: the loaded state is kept
    after = items_of(StatefulDataLoader(dataset, batch_size=3, num_workers=2))
    assert len(before) == 9
    assert_exactly_the_epoch(before, after, reference)


def test_resumed_readers_skip_consumed_samples_before_decoding(toy):
    dataset = pairs(toy)
    dataset.set_epoch(1)
    iterator = iter(dataset)
    before = items_of(next(iterator) for _ in range(13))
    state = dataset.state_dict()
    resumed = pairs(toy)
    resumed.load_state_dict(state)
    made = []
    make_item = resumed.make_item
    resumed.make_item = lambda sample, epoch: made.append(sample["__key__"]) or make_item(sample, epoch)
    after = items_of(resumed)
    assert len(made) == len(after) == 17, "a consumed sample must not be decoded again"
    assert_exactly_the_epoch(before, after, epoch_items(toy, 1))


def test_state_is_plain_compact_and_survives_moving_the_shards(toy, tmp_path):
    dataset = pairs(toy)
    iterator = iter(dataset)
    before = items_of(next(iterator) for _ in range(7))
    state = dataset.state_dict()
    assert state["epoch"] == 0 and state["seed"] == SEED
    assert all(isinstance(bits, bytes) and len(bits) == 1 for bits in state["consumed"].values())
    assert sum(int.from_bytes(bits, "little").bit_count() for bits in state["consumed"].values()) == 7
    saved = io.BytesIO()
    torch.save(state, saved)
    loaded = torch.load(io.BytesIO(saved.getvalue()), weights_only=True)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for number in range(6):
        shutil.copy(shard_path(toy, number), moved)
    shutil.copy(index_path(toy), moved)
    resumed = pairs(moved / toy.name)
    resumed.load_state_dict(loaded)
    assert resumed.state_dict()["consumed"] == state["consumed"]   # before a pass: the state as loaded
    assert_exactly_the_epoch(before, items_of(resumed), epoch_items(toy, 0))


def test_a_state_of_shards_rebuilt_under_the_same_names_is_refused(toy, tmp_path):
    dataset = pairs(toy)
    iterator = iter(dataset)
    for _ in range(5):
        next(iterator)
    state = dataset.state_dict()
    rebuilt = tmp_path / "rebuilt"
    rebuilt.mkdir()
    for number in range(6):        # the same names and counts, other bytes (as a rebuild with a new --seed)
        shutil.copy(shard_path(toy, 5 - number), rebuilt / shard_path(toy, number).name)
    index = json.loads(index_path(toy).read_text())
    by_name = {entry["url"]: entry for entry in index["shardlist"]}
    index["shardlist"] = [{**by_name[shard_path(toy, 5 - n).name], "url": shard_path(toy, n).name} for n in range(6)]
    (rebuilt / index_path(toy).name).write_text(json.dumps(index))
    with pytest.raises(VlprepError, match="the shards changed since the state was saved"):
        pairs(rebuilt / toy.name).load_state_dict(state)
    pairs(toy).load_state_dict(state)                 # the shards it was saved on
    with pytest.raises(VlprepError, match="differ in shards"):
        merge_states(state, {**state, "shards": "0" * 16})


def test_a_shard_listed_twice_is_read_twice_and_resumed_as_two(toy):
    shards = [str(shard_path(toy, 0)), str(shard_path(toy, 1)), str(shard_path(toy, 0))]
    dataset = pair_dataset(shards, size=SIZE, seed=SEED, with_keys=True, shuffle_buffer=0)
    iterator = iter(dataset)
    before = [next(iterator)[-1] for _ in range(7)]
    resumed = pair_dataset(shards, size=SIZE, seed=SEED, with_keys=True, shuffle_buffer=0)
    resumed.load_state_dict(dataset.state_dict())
    keys = before + [key for *_, key in resumed]
    assert Counter(keys) == Counter({f"{k:06d}": 2 for k in range(5)} | {f"{k:06d}": 1 for k in range(5, 10)})


def test_a_plain_dataloader_state_at_an_epoch_boundary(toy):
    """A plain DataLoader's workers cannot report to the main process: save between epochs there."""
    dataset = pairs(toy)
    loader = DataLoader(dataset, batch_size=5, num_workers=2)
    items_of(loader)
    state = dataset.state_dict()
    assert state["epoch"] == 1 and state["consumed"] == {}
    resumed = pairs(toy)
    resumed.load_state_dict(state)
    assert_exactly_the_epoch(items_of(DataLoader(resumed, batch_size=5, num_workers=2)), [], epoch_items(toy, 1))


# ---------------------------------------------------------------- resampled mode


def resampled_keys(loader) -> list[str]:
    return [key for key, *_ in items_of(loader)]


def test_resampled_resume_on_the_same_layout_continues_the_draws(toy):
    dataset = pairs(toy, resampled=True)
    dataset.set_epoch(2)
    whole = items_of(StatefulDataLoader(dataset, batch_size=2, num_workers=2))
    assert len(whole) == 30
    dataset = pairs(toy, resampled=True)
    dataset.set_epoch(2)
    loader = StatefulDataLoader(dataset, batch_size=2, num_workers=2)
    before = take(loader, 4)
    state = loader.state_dict()
    del loader
    loader = StatefulDataLoader(pairs(toy, resampled=True), batch_size=2, num_workers=2)
    loader.load_state_dict(state)
    after = items_of(loader)
    assert Counter(k for k, *_ in before + after) == Counter(k for k, *_ in whole)
    assert_same_views(before + after, epoch_items(toy, 2))


def test_resampled_resume_on_another_layout_delivers_the_rest_by_count(toy):
    dataset = pairs(toy, resampled=True, epoch_samples=31)
    loader = StatefulDataLoader(dataset, batch_size=2, num_workers=2)   # 2 readers × 15 = 30 this epoch
    before = take(loader, 3)
    state = merge_states(loader.state_dict())
    del loader
    resumed = pairs(toy, resampled=True, epoch_samples=31)
    resumed.load_state_dict(state)
    loader = StatefulDataLoader(resumed, batch_size=2, num_workers=3)
    after = items_of(loader)
    assert len(before) == 6 and len(after) == 24   # the 24 left, 8 per reader
    assert_same_views(before + after, epoch_items(toy, 0))
    assert len(items_of(loader)) == 30   # the next epoch: 3 readers × 10


# ---------------------------------------------------------------- refusals


def test_states_that_do_not_fit_are_refused_with_the_fix(toy, monkeypatch):
    dataset = pairs(toy)
    next(iter(dataset))
    state = dataset.state_dict()
    with pytest.raises(VlprepError, match="seed=11.*\n  fix: build the dataset with seed=11"):
        pair_dataset(toy, seed=3).load_state_dict(state)
    with pytest.raises(VlprepError, match="epoch-mode state for a resampled-mode dataset"):
        pairs(toy, resampled=True).load_state_dict(state)
    loader = StatefulDataLoader(pairs(toy), batch_size=2)
    next(iter(loader))
    with pytest.raises(VlprepError, match=r"StatefulDataLoader state: pass merge_states\(state\)"):
        pairs(toy).load_state_dict(loader.state_dict())
    foreign = write_pair_shards(toy.parent / "other", shards=2, per_shard=3, dataset="other")
    with pytest.raises(VlprepError, match="names shard .*which is not among these 2 shards"):
        pairs(foreign).load_state_dict(state)
    later = pairs(toy)
    later.set_epoch(4)
    with pytest.raises(VlprepError, match="differ in epoch"):
        merge_states(state, later.state_dict())
    # a resampled state from one rank of two cannot be re-dealt: the other rank's counts are missing
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    ranked = pairs(toy, resampled=True)
    next(iter(ranked))
    partial = ranked.state_dict()
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    single = pairs(toy, resampled=True)
    single.load_state_dict(partial)
    with pytest.raises(VlprepError, match="lacks the counts of readers 1/0"):
        next(iter(single))


# ---------------------------------------------------------------- uint8 views


@pytest.mark.parametrize("make", [pair_dataset, image_dataset])
def test_uint8_batches_normalize_to_the_float_batches(toy, make):
    batches = {}
    for dtype in ("float32", "uint8"):
        dataset = make(toy, size=SIZE, seed=SEED, with_keys=True, dtype=dtype)
        batches[dtype] = list(DataLoader(dataset, batch_size=8, num_workers=2))
    for floats, pixels in zip(batches["float32"], batches["uint8"]):
        assert floats[-1] == pixels[-1]   # same keys, same order
        assert pixels[0].dtype == torch.uint8 and pixels[0].shape == floats[0].shape
        assert pixels[0].nbytes * 4 == floats[0].nbytes
        torch.testing.assert_close(normalize(pixels[0]), floats[0], rtol=0, atol=1e-6)
        for rest_float, rest_uint8 in zip(floats[1:-1], pixels[1:-1]):
            assert torch.equal(rest_float, rest_uint8)


def test_uint8_views_of_the_demo_coco_equal_the_float_views(demo_data):
    prefix = demo_prefix(demo_data, "coco", "karpathy-train")
    floats = {key: image for image, *_, key in pair_dataset(prefix, with_keys=True, seed=4)}
    pixels = {key: image for image, *_, key in pair_dataset(prefix, with_keys=True, seed=4, dtype=torch.uint8)}
    assert floats.keys() == pixels.keys() and len(floats) > 10
    batch = torch.stack([pixels[key] for key in floats])
    torch.testing.assert_close(normalize(batch, device="cpu"), torch.stack(list(floats.values())), rtol=0, atol=1e-6)
    assert torch.equal(normalize(pixels[next(iter(floats))]), normalize(batch)[0])


def test_normalize_and_dtype_refuse_what_they_cannot_take(toy):
    with pytest.raises(VlprepError, match="float32 tensor"):
        normalize(torch.zeros(2, 3, 4, 4))
    with pytest.raises(VlprepError, match=r"shape \(4, 4\)"):
        normalize(torch.zeros(4, 4, dtype=torch.uint8))
    with pytest.raises(VlprepError, match="dtype 'float16'"):
        pair_dataset(toy, dtype="float16")


# ---------------------------------------------------------------- the documented resume


def test_the_documented_resume_runs(demo_data, tmp_path):
    """docs/loader.md's StatefulDataLoader snippet, run as a user would after `vlprep demo`."""
    import re
    import subprocess
    import sys

    text = (Path(__file__).resolve().parents[2] / "docs" / "loader.md").read_text()
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S)
                   if "StatefulDataLoader" in block and "vlprep-demo" in block)
    script = tmp_path / "resume.py"
    script.write_text(snippet)
    result = subprocess.run([sys.executable, str(script)], cwd=demo_data.parent, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    seen, rest, unique, whole = result.stdout.split()
    assert seen == "12" and int(rest) > 0 and unique == whole == "True"
