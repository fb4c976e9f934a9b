"""After a build: the readers' metadata of each folder, and what is said of files of the older layout."""
from __future__ import annotations

import json
import shutil

from vlprep.pipeline.datasets.folders import describe, legacy_files
from vlprep.pipeline.datasets.registry import recipe
from vlprep.pipeline.layout import Layout


def test_an_older_layout_is_refused_with_its_rebuilds_and_its_files_named_once_rebuilt(demo_data, tmp_path):
    from ..helpers import run_cli

    data = tmp_path / "data"
    shutil.copytree(demo_data, data, symlinks=True)
    layout = Layout(data)
    out, concat = layout.out("vg"), layout.out("vg-concat")
    shutil.rmtree(concat)                                     # as an older vlprep stored VG concat: a split of out/vg
    (out / "train-concat-000000.tar").write_bytes(b"old shard")
    (out / "train-concat.index.json").write_text("{}")
    stats = json.loads((out / "stats.json").read_text())
    stats["splits"]["train-concat"] = {**stats["splits"]["train"], "config": {
        **stats["splits"]["train"]["config"], "variant": {"variant": "concat", "leak_guard": True}}}
    (out / "stats.json").write_text(json.dumps(stats))
    for command in ("verify", "stats"):
        refused = run_cli(command, "vg", "--data-dir", str(data), check=False)
        assert refused.returncode == 1 and "train-concat is a split of an older vlprep layout" in refused.stderr
        assert "vlprep shard vg --variant concat --limit 1000000" in refused.stderr, refused.stderr
    said: list[str] = []
    describe(layout, recipe("vg"), said.append)                # a build of the regions variant
    assert said == [f"note: {out}: train-concat is still of the older vlprep layout; rebuild it: "
                    "vlprep shard vg --variant concat --limit 1000000"]
    assert "train-concat" in json.loads((out / "stats.json").read_text())["splits"]   # kept until rebuilt
    rebuilt = run_cli("shard", "vg", "--variant", "concat", "--limit", "1000000", "--data-dir", str(data))
    assert "rm -- train-concat-000000.tar train-concat.index.json" in rebuilt.stdout
    assert set(json.loads((out / "stats.json").read_text())["splits"]) == {"train"}
    assert (out / "train-concat-000000.tar").read_bytes() == b"old shard"   # never deleted for the user
    assert legacy_files(out) == [out / "train-concat-000000.tar", out / "train-concat.index.json"]
    run_cli("verify", "vg", "--data-dir", str(data))
    (out / "train-concat-000000.tar").unlink(), (out / "train-concat.index.json").unlink()
    again: list[str] = []
    describe(layout, recipe("vg"), again.append)
    assert again == []


def test_the_rm_of_many_older_files_names_each_split_exactly(tmp_path):
    from vlprep.pipeline.datasets.folders import removal

    files = [tmp_path / f"{split}-{n:06d}.tar" for split in ("train2014", "val") for n in range(12)]
    files += [tmp_path / "train2014.index.json", tmp_path / "train2014.errors.jsonl"]
    assert removal(files) == ("train2014-[0-9][0-9][0-9][0-9][0-9][0-9].tar train2014.index.json "
                              "train2014.errors.jsonl val-[0-9][0-9][0-9][0-9][0-9][0-9].tar val.index.json "
                              "val.errors.jsonl")


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


def test_a_damaged_index_or_stats_file_is_one_message_naming_it(demo_data, tmp_path):
    from ..helpers import run_cli

    data = tmp_path / "data"
    shutil.copytree(demo_data, data, symlinks=True)
    index = data / "out" / "imagenet" / "imagenet-val.index.json"
    index.write_text(index.read_text()[:40])
    for args in (("verify", "imagenet"), ("preview", "imagenet", "--split", "val")):
        failed = run_cli(*args, "--data-dir", str(data), check=False)
        assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
        assert f"{index}: damaged wids shard index" in failed.stderr and "fix: rebuild the split" in failed.stderr
    stats = data / "out" / "coco" / "stats.json"
    stats.write_text("{not json")
    failed = run_cli("stats", "coco", "--data-dir", str(data), check=False)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert f"{stats}: damaged, not valid JSON" in failed.stderr
