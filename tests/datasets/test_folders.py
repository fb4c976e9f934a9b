"""After a build: the readers' metadata of each folder, and what is said of files of the older layout."""
from __future__ import annotations

import json
import shutil

from vlprep.pipeline.datasets.folders import describe, legacy_files
from vlprep.pipeline.datasets.registry import recipe
from vlprep.pipeline.layout import Layout


def test_files_of_the_older_layout_are_named_and_their_splits_leave_stats(demo_data, tmp_path):
    layout = Layout(tmp_path / "data")
    out = layout.out("vg")
    shutil.copytree(demo_data / "out" / "vg", out)
    (out / "train-concat-000000.tar").write_bytes(b"old shard")       # as an older vlprep stored VG concat
    (out / "train-concat.index.json").write_text("{}")
    stats = json.loads((out / "stats.json").read_text())
    stats["splits"]["train-concat"] = dict(stats["splits"]["train"])
    (out / "stats.json").write_text(json.dumps(stats))
    said: list[str] = []
    written = describe(layout, recipe("vg"), said.append)
    assert set(json.loads((out / "stats.json").read_text())["splits"]) == {"train"}
    assert (out / "train-concat-000000.tar").read_bytes() == b"old shard"   # never deleted for the user
    [note] = said
    assert "older vlprep layout" in note and "train-concat" in note
    assert note.endswith("rm -- train-concat-000000.tar train-concat.index.json")
    assert legacy_files(out) == [out / "train-concat-000000.tar", out / "train-concat.index.json"]
    assert out / "README.md" in written and out / "croissant.json" in written
    again: list[str] = []
    (out / "train-concat-000000.tar").unlink(), (out / "train-concat.index.json").unlink()
    describe(layout, recipe("vg"), again.append)
    assert again == []


def test_verify_refuses_readers_metadata_that_no_longer_matches(demo_data, tmp_path):
    from ..helpers import run_cli

    data = tmp_path / "data"
    shutil.copytree(demo_data, data, symlinks=True)
    run_cli("verify", "imagenet", "--data-dir", str(data))
    out = data / "out" / "imagenet"
    (out / "imagenet-val-000001.idx").unlink()      # DALI's index of one shard
    card = out / "README.md"
    card.write_text(card.read_text().replace("imagenet-val-", "imagenet-gone-"))
    energon_index = out / "imagenet-val-000000.tar.idx"
    energon_index.write_bytes(energon_index.read_bytes()[:-8] + bytes(8))  # one offset damaged, same size
    failed = run_cli("verify", "imagenet", "--data-dir", str(data), check=False)
    assert failed.returncode == 1, failed.stderr
    assert ("README.md, imagenet-val-000000.tar.idx, imagenet-val-000001.idx missing, damaged or out of date"
            in failed.stderr)
    fix = failed.stderr.split("fix: ", 1)[1].split(" (finished shards")[0]
    assert fix.startswith("run the build again to rewrite them: vlprep shard imagenet --split val ")
    assert "--shard-samples 10" in fix and "--limit" in fix  # what the split was built with: the same key
    command = fix.split(": ", 1)[1].split()[1:]
    run_cli(*command)                                                  # the fix, pasted
    run_cli("verify", "imagenet", "--data-dir", str(data))


def test_a_shard_whose_every_image_fails_is_not_published(demo_data, tmp_path):
    from megatron.energon import WorkerConfig, get_loader, get_val_dataset

    from ..helpers import run_cli

    data = tmp_path / "data"
    shutil.copytree(demo_data, data, symlinks=True)
    # one image per shard: the sample's undecodable image leaves its shard with nothing in it
    run_cli("shard", "imagenet", "--data-dir", str(data), "--split", "train", "--shard-samples", "1",
            "--limit", "1000000", "--force")
    out = data / "out" / "imagenet"
    index = json.loads((out / "imagenet-train.index.json").read_text())["shardlist"]
    stats = json.loads((out / "stats.json").read_text())["splits"]["train"]
    assert all(entry["nsamples"] == 1 for entry in index) and stats["skipped_images"] >= 1
    assert len(index) == stats["images"] == stats["shards"]
    assert sorted(p.name for p in out.glob("imagenet-train-*.tar")) == sorted(e["url"] for e in index)
    run_cli("verify", "imagenet", "--data-dir", str(data))
    dataset = get_val_dataset(str(out), split_part="train", batch_size=1,
                              worker_config=WorkerConfig(rank=0, world_size=1, num_workers=0))
    assert sum(1 for _ in get_loader(dataset)) == stats["images"]


def test_datasets_cache_of_a_folder_follows_a_rebuild(demo_data, tmp_path, monkeypatch):
    import datasets

    from ..helpers import run_cli

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    data = tmp_path / "data"
    shutil.copytree(demo_data, data, symlinks=True)
    folder, cache = str(data / "out" / "coco"), str(tmp_path / "cache")

    def keys() -> list[str]:
        return datasets.load_dataset(folder, split="karpathy_train", cache_dir=cache)["__key__"]

    full = keys()
    run_cli("shard", "coco", "--data-dir", str(data), "--limit", "10", "--force")   # a trial over the split
    trial = keys()
    assert len(trial) < len(full)
    run_cli("shard", "coco", "--data-dir", str(data), "--limit", "1000000", "--seed", "5")
    reshuffled = keys()
    assert sorted(reshuffled) == sorted(full) and reshuffled != full   # the same images, in another order
    run_cli("shard", "coco", "--data-dir", str(data), "--limit", "1000000")    # same counts and sizes again
    assert keys() == full


def test_verify_refuses_a_stray_shard_and_a_sha256_that_differs_from_the_index(demo_data, tmp_path):
    from ..helpers import run_cli

    data = tmp_path / "data"
    shutil.copytree(demo_data, data, symlinks=True)
    out = data / "out" / "coco"
    stray = out / "coco-karpathy-test-000007.tar"        # what a glob of the split would pick up
    shutil.copy(out / "coco-karpathy-train-000000.tar", stray)
    failed = run_cli("verify", "coco", "--data-dir", str(data), check=False)
    assert failed.returncode == 1
    assert "coco-karpathy-test-000007.tar: named as a shard of karpathy-test" in failed.stderr
    stray.unlink()
    index = out / "coco-karpathy-test.index.json"
    listing = json.loads(index.read_text())
    listing["shardlist"][0]["sha256"] = "0" * 64
    index.write_text(json.dumps(listing))
    failed = run_cli("verify", "coco", "--data-dir", str(data), check=False)
    assert failed.returncode == 1 and "sha256 differs from coco-karpathy-test.index.json" in failed.stderr


def test_a_rebuild_removes_the_preview_of_the_shards_it_replaced(demo_data, tmp_path):
    from ..helpers import run_cli

    data = tmp_path / "data"
    shutil.copytree(demo_data, data, symlinks=True)
    out = data / "out" / "coco"
    sheet = out / "coco-karpathy-train.preview.png"
    run_cli("preview", "coco", "--data-dir", str(data), "--limit", "2")
    kept = out / "coco-karpathy-test.preview.png"
    run_cli("preview", "coco", "--split", "karpathy-test", "--data-dir", str(data), "--limit", "2")
    assert sheet.is_file() and kept.is_file()
    rebuilt = run_cli("shard", "coco", "--data-dir", str(data), "--limit", "1000000", "--seed", "3")
    assert not sheet.exists() and f"removed {sheet}" in rebuilt.stdout
    assert kept.is_file()   # another split's sheet still shows what that split holds
