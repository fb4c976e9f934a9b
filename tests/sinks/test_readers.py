"""The demo's shard folders read by the readers researchers use, with nothing but their own APIs.

wids (one cache shared by every dataset), Hugging Face ``datasets``' webdataset builder (normal and
streaming), GNU tar checking the DALI indexes: each is pointed at what ``vlprep demo`` wrote and must
return every sample with every field.
"""
from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

FOLDERS = ("coco", "vg", "vg-concat", "cc3m", "imagenet")


def indexes(data: Path) -> list[Path]:
    """Every split's wids index under ``out/``."""
    return sorted(p for folder in FOLDERS for p in (data / "out" / folder).glob("*.index.json"))


def tar_samples(index: Path) -> dict[str, dict[str, bytes]]:
    """Every sample of a split read with tarfile: ``{key: {ext: bytes}}``, the ground truth."""
    found: dict[str, dict[str, bytes]] = {}
    for entry in json.loads(index.read_text())["shardlist"]:
        with tarfile.open(index.parent / entry["url"]) as archive:
            for member in archive:
                key, _, ext = member.name.partition(".")
                found.setdefault(key, {})[ext] = archive.extractfile(member).read()
    return found


def test_file_names_are_unique_across_out(demo_data):
    names = [p.name for folder in FOLDERS for p in (demo_data / "out" / folder).iterdir()
             if p.is_file() and p.name not in ("stats.json", "README.md", "croissant.json")
             and not p.name.startswith(".")]
    assert len(names) == len(set(names)) and len(names) > 20
    for folder in FOLDERS:
        for path in (demo_data / "out" / folder).glob("*.tar"):
            assert path.name.startswith(f"{folder}-")


def test_wids_with_one_cache_for_every_dataset_returns_each_datasets_own_samples(demo_data, tmp_path):
    import wids

    cache = tmp_path / "wids-cache"
    for index in indexes(demo_data):
        truth = tar_samples(index)
        dataset = wids.ShardListDataset(str(index), cache_dir=str(cache), keep=True)
        assert len(dataset) == len(truth)
        for position in range(len(dataset)):
            sample = dataset[position]
            stored = json.loads(truth[sample["__key__"]]["json"])  # wids decodes json and jpg itself
            assert sample[".json"] == stored, f"{index.name}: {sample['__key__']} is another dataset's sample"
            assert sample[".jpg"].size == (stored["width"], stored["height"])
            assert Path(sample["__shard__"]).name.startswith(index.name[: -len(".index.json")])
    assert len({p.name for p in cache.rglob("*.tar")}) == sum(
        len(json.loads(i.read_text())["shardlist"]) for i in indexes(demo_data))  # one cached file per shard


def schema_of(meta: dict) -> dict[str, str]:
    """Each key's JSON type, lists by their element types all the way down."""
    def kind(value) -> str:
        if isinstance(value, list):
            inner = {kind(v) for v in value}
            return f"list[{'|'.join(sorted(inner))}]"
        return type(value).__name__
    return {key: kind(value) for key, value in meta.items()}


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_sample_of_a_folder_has_one_schema(demo_data, folder):
    seen = {}
    for index in sorted((demo_data / "out" / folder).glob("*.index.json")):
        for key, sample in tar_samples(index).items():
            schema = {k: v.replace("list[]", "") for k, v in schema_of(json.loads(sample["json"])).items()}
            for field, kind in schema.items():
                if kind and field in seen and seen[field]:  # an empty list says nothing of its element type
                    assert kind == seen[field] or kind.startswith("list") and seen[field].startswith("list"), \
                        f"{folder} {key}: {field} is {kind}, elsewhere {seen[field]}"
                seen.setdefault(field, kind)
            assert set(schema) == set(seen), f"{folder} {key}: keys {sorted(set(schema) ^ set(seen))} differ"
    assert seen


@pytest.mark.parametrize("streaming", [False, True])
def test_hugging_face_webdataset_builder_reads_every_field_of_every_sample(demo_data, tmp_path, monkeypatch,
                                                                           streaming):
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for index in indexes(demo_data):
        stem = index.name[: -len(".index.json")]
        truth = tar_samples(index)
        loaded = datasets.load_dataset("webdataset", data_files={"train": str(index.parent / f"{stem}-*.tar")},
                                       split="train", streaming=streaming, cache_dir=str(tmp_path / "cache"))
        rows = list(loaded)
        assert len(rows) == len(truth), stem
        for row in rows:
            stored = json.loads(truth[row["__key__"]]["json"])
            assert row["json"] == stored, f"{stem} {row['__key__']}: fields lost or changed"
            assert row["jpg"] is not None


def test_dali_indexes_point_at_every_member(demo_data):
    for index in indexes(demo_data):
        for entry in json.loads(index.read_text())["shardlist"]:
            shard = index.parent / entry["url"]
            lines = shard.with_suffix(".idx").read_text().splitlines()
            assert lines[0] == f"v1.2 {entry['nsamples']}" and len(lines) == entry["nsamples"] + 1
            data = shard.read_bytes()
            for line in lines[1:]:
                fields = line.split(" ")
                assert len(fields) % 4 == 0
                stems = set()
                for ext, offset, size, name in zip(*[iter(fields)] * 4):
                    stems.add(name.split(".", 1)[0])
                    assert name.endswith(f".{ext}")
                    tar = subprocess.run(["tar", "-xOf", str(shard), name], capture_output=True, check=True)
                    assert data[int(offset): int(offset) + int(size)] == tar.stdout, f"{shard.name}: {name}"
                assert len(stems) == 1


@pytest.mark.parametrize("streaming", [False, True])
def test_each_demo_folder_loads_by_its_card_alone(demo_data, tmp_path, monkeypatch, streaming):
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for folder in FOLDERS:
        loaded = datasets.load_dataset(str(demo_data / "out" / folder), streaming=streaming,
                                       cache_dir=str(tmp_path / "cache"))
        splits = {index.name[len(folder) + 1: -len(".index.json")]: index
                  for index in (demo_data / "out" / folder).glob("*.index.json")}
        assert set(loaded) == {split.replace("-", "_") for split in splits}, folder
        for split, index in splits.items():
            truth = tar_samples(index)
            rows = list(loaded[split.replace("-", "_")])
            assert sorted(row["__key__"] for row in rows) == sorted(truth), f"{folder} {split}"
            for row in rows:
                assert row["json"] == json.loads(truth[row["__key__"]]["json"]), f"{folder} {split} {row['__key__']}"
                if "cls" in truth[row["__key__"]]:
                    assert row["cls"] == int(truth[row["__key__"]]["cls"])


def test_each_demo_folder_validates_in_mlcroissant_and_loads_in_energon(demo_data):
    import mlcroissant as mlc
    import yaml
    from braceexpand import braceexpand
    from megatron.energon import WorkerConfig, get_loader, get_val_dataset

    workers = WorkerConfig(rank=0, world_size=1, num_workers=0)
    for folder in FOLDERS:
        out = demo_data / "out" / folder
        metadata = mlc.Dataset(jsonld=str(out / "croissant.json")).metadata   # raises on a validation error
        shards = {e["url"]: e for i in out.glob("*.index.json") for e in json.loads(i.read_text())["shardlist"]}
        objects = {d.name: d for d in metadata.distribution if d.name in shards}
        assert set(objects) == set(shards) and all(objects[n].sha256 == shards[n]["sha256"] for n in shards)
        parts = yaml.safe_load((out / ".nv-meta" / "split.yaml").read_text())["split_parts"]
        for part, files in parts.items():
            dataset = get_val_dataset(str(out), split_part=part, batch_size=1, worker_config=workers)
            count = sum(1 for _ in get_loader(dataset))
            names = [name for pattern in files for name in braceexpand(pattern)]
            assert count == sum(shards[name]["nsamples"] for name in names), f"{folder} {part}"
