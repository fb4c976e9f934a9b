"""The shard writer builds tar headers itself; its bytes must be exactly what tarfile writes."""
from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from vlprep.pipeline.sinks.shards import _header, ustar_header, write_shard


@pytest.mark.parametrize("name,size", [("a.jpg", 0), ("000000123456.json", 1234), ("k.cls", 1), ("x" * 100, 5),
                                       ("dir/" * 30 + "long.jpg", 99_999_999), ("é日本.jpg", 10)])
def test_header_equals_tarfiles(name, size):
    assert ustar_header(name, size) == _header(name, size).tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


def test_shard_bytes_and_md5_equal_tarfiles(tmp_path):
    samples = [(f"k{i:03d}", {"jpg": bytes(range(i % 256)) * i, "json": b'{"a":1}', "cls": b"7"}) for i in range(60)]
    # Sizes on both sides of the small-member join, and data given as a memoryview into a buffer.
    blob = bytes(range(256)) * 800
    samples += [(f"m{size}", {"jpg": memoryview(blob)[:size], "json": blob[:size // 7]})
                for size in (16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 200_000)]
    info = write_shard(tmp_path / "s.tar", iter(samples))
    reference = io.BytesIO()
    with tarfile.open(fileobj=reference, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for ext in sorted(members):
                tar.addfile(_header(f"{key}.{ext}", len(members[ext])), io.BytesIO(members[ext]))
    assert (tmp_path / "s.tar").read_bytes() == reference.getvalue()
    assert (info.nsamples, info.filesize, info.md5sum) == (64, len(reference.getvalue()),
                                                           hashlib.md5(reference.getvalue()).hexdigest())


# ------------------------------------------------------------------ a split's bookkeeping (sinks/splits.py)

def _stage(writer, index: int, data: bytes) -> None:
    from vlprep.pipeline.fileio import write_json

    info = write_shard(writer.staged_path(index), iter([(f"k{index}", {"jpg": data})]))
    write_json(writer.record_path(index), {"shard": info.__dict__, "errors": []})


def test_split_writer_resumes_swaps_and_writes_the_index_last(tmp_path):
    import json

    from vlprep.pipeline.errors import VlprepError
    from vlprep.pipeline.layout import Layout
    from vlprep.pipeline.sinks.shards import ShardInfo, shard_name
    from vlprep.pipeline.sinks.splits import SplitWriter

    layout = Layout(tmp_path)
    writer = SplitWriter.start(layout, "demo", "train", "key1")
    assert writer.work == layout.work("demo") / "demo-train-key1" and writer.staged.is_dir()
    out = layout.out("demo")
    assert writer.stem == "demo-train" and writer.shard_name(3) == "demo-train-000003.tar"
    for name in (shard_name("demo-train", 5), shard_name("demo-train-x", 7), shard_name("demo-val", 0)):
        (out / name).write_bytes(b"older")  # a larger build's leftover, another split's shards
    (out / "stats.json").write_text(json.dumps({"dataset": "demo", "splits": {"val": {"images": 1}}}))
    _stage(writer, 0, b"a")
    assert writer.done(0) and not writer.done(1)
    _stage(writer, 1, b"bb")
    results = writer.results(2)
    with writer.publishing(2):
        assert (out / ".demo-train.swap.json").exists()
        writer.write_errors([{"key": "k9", "file": "f", "error": "cannot decode: x"}])
        stats = writer.write_stats({"images": 2, "work_key": writer.key, "config": {"limit": 5}})
        writer.write_index([ShardInfo(**r["shard"]) for r in results])
    assert not (out / ".demo-train.swap.json").exists()
    assert sorted(p.name for p in out.glob("*.tar")) == [
        "demo-train-000000.tar", "demo-train-000001.tar", "demo-train-x-000007.tar", "demo-val-000000.tar"]
    assert (out / "demo-train.errors.jsonl").read_bytes() == b'{"error":"cannot decode: x","file":"f","key":"k9"}\n'
    assert set(stats["splits"]) == {"train", "val"} and stats["dataset"] == "demo" and "vlprep_version" in stats
    index = json.loads((out / "demo-train.index.json").read_text())
    assert index["name"] == "demo-train" and [s["url"] for s in index["shardlist"]] == [
        "demo-train-000000.tar", "demo-train-000001.tar"]
    assert all(s["sha256"] == hashlib.sha256((out / s["url"]).read_bytes()).hexdigest() for s in index["shardlist"])
    again = SplitWriter.start(layout, "demo", "train", "key1")
    assert again.done(0) and again.done(1)  # published by this very key: nothing to write again
    assert not SplitWriter.start(layout, "demo", "train", "key2").done(0)
    with pytest.raises(VlprepError, match="this trial with --limit 1 would replace it with fewer"):
        SplitWriter.start(layout, "demo", "train", "key3", limit=1)
    SplitWriter.start(layout, "demo", "train", "key4", limit=3)  # a limit above what the split holds loses nothing


def test_swap_in_keeps_exactly_the_named_shards(tmp_path):
    from vlprep.pipeline.sinks.splits import swap_in

    staged, out = tmp_path / "staged", tmp_path / "demo"
    staged.mkdir(), out.mkdir()
    for name in ("demo-train-000000.tar", "demo-train-000002.tar"):
        (staged / name).write_bytes(b"new")
    for name in ("demo-train-000001.tar", "demo-train-000003.tar", "demo-valid-000003.tar"):
        (out / name).write_bytes(b"old")
    swap_in(staged, out, "train", {"demo-train-000000.tar", "demo-train-000001.tar", "demo-train-000002.tar"})
    assert sorted(p.name for p in out.iterdir()) == [
        "demo-train-000000.tar", "demo-train-000001.tar", "demo-train-000002.tar", "demo-valid-000003.tar"]
    assert not list(staged.iterdir())
