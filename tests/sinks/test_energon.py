"""Energon loads a written folder with no ``energon prepare``: batches of the declared sample type from
every split part, and the tar indexes are the bytes ``energon prepare`` writes."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

from vlprep.pipeline.datasets.metadata import read_folder, sample_schema, write_folder_metadata
from vlprep.pipeline.errors import VlprepError
from vlprep.pipeline.sinks.splits import remove_stale_shards

from ..helpers import FOLDER_SPLITS, build_folder, publish_split

import megatron.energon as energon  # noqa: E402 - a test dependency: missing, the module fails loudly


def worker_config():
    return energon.WorkerConfig(rank=0, world_size=1, num_workers=0)


def load_all(folder, part: str) -> list:
    """Every sample of one split part, in order, through Energon's val loader (one pass, no shuffle)."""
    dataset = energon.get_val_dataset(str(folder), split_part=part, batch_size=1, worker_config=worker_config())
    return [sample for batch in energon.get_loader(dataset) for sample in _unbatch(batch)]


def _unbatch(batch) -> list[tuple]:
    return list(zip(batch.__key__, *(getattr(batch, name) for name in _fields(batch))))


def _fields(batch) -> tuple[str, ...]:
    return ("caption",) if hasattr(batch, "caption") else ("label", "label_name")


def test_coco_loads_as_captions_from_every_split_part(tmp_path):
    folder, recipe, variant, written = build_folder(tmp_path, "coco")
    write_folder_metadata(folder, recipe, variant)
    dataset = energon.get_train_dataset(str(folder), split_part="train", batch_size=2, shuffle_buffer_size=None,
                                        max_samples_per_sequence=None, worker_config=worker_config())
    batch = next(iter(energon.get_loader(dataset)))
    assert type(batch).__name__ == "CaptioningSample" and tuple(batch.image.shape[:2]) == (2, 3)
    captions = {key: meta["texts"][0] for key, meta in written["karpathy-train"]}
    assert all(captions[key] == caption for key, caption in zip(batch.__key__, batch.caption))
    for part, split in (("test", "karpathy-test"), ("karpathy-test", "karpathy-test"), ("train2014", "train2014")):
        assert [(key, caption) for key, caption in load_all(folder, part)] == \
            [(key, meta["texts"][0]) for key, meta in written[split]]


def test_imagenet_loads_as_classification_with_labels(tmp_path):
    folder, recipe, variant, written = build_folder(tmp_path, "imagenet")
    write_folder_metadata(folder, recipe, variant)
    for part in ("train", "val"):
        assert load_all(folder, part) == [(key, meta["label"], meta["class_name"]) for key, meta in written[part]]
    dataset = energon.get_train_dataset(str(folder), split_part="train", batch_size=3, shuffle_buffer_size=4,
                                        max_samples_per_sequence=2, worker_config=worker_config())
    batch = next(iter(energon.get_loader(dataset)))
    assert type(batch).__name__ == "ImageClassificationSample" and batch.image.shape[:2] == (3, 3)


def test_vg_concat_loads_its_first_packed_caption(tmp_path):
    folder, recipe, variant, written = build_folder(tmp_path, "vg-concat")
    write_folder_metadata(folder, recipe, variant)
    assert load_all(folder, "train") == [(key, meta["texts"][0]) for key, meta in written["train"]]


def test_tar_indexes_and_info_are_what_energon_prepare_writes(tmp_path):
    from megatron.energon.flavors.webdataset.base_webdataset import BaseWebdatasetFactory

    folder, recipe, variant, _ = build_folder(tmp_path, "imagenet", per_shard=3)
    write_folder_metadata(folder, recipe, variant)
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    shards = sorted(p.name for p in folder.glob("*.tar"))
    for name in shards:
        shutil.copy(folder / name, prepared / name)
    BaseWebdatasetFactory.prepare_dataset(prepared, shards, split_parts_patterns=[("train", r"imagenet-train-.*"),
                                                                                  ("val", r"imagenet-val-.*")],
                                          workers=1)
    for name in shards:
        assert (folder / f"{name}.idx").read_bytes() == (prepared / f"{name}.idx").read_bytes()
    ours = json.loads((folder / ".nv-meta" / ".info.json").read_text())
    theirs = json.loads((prepared / ".nv-meta" / ".info.json").read_text())
    assert ours["shard_counts"] == theirs["shard_counts"]
    from braceexpand import braceexpand as expand

    split = yaml.safe_load((folder / ".nv-meta" / "split.yaml").read_text())
    assert {part: [n for p in names for n in expand(p)] for part, names in split["split_parts"].items()} == \
        {"train": [n for n in shards if "-train-" in n], "val": [n for n in shards if "-val-" in n]}


def test_tar_indexes_follow_the_shards_beside_dali_indexes(tmp_path):
    from vlprep.pipeline.sinks import dali

    folder, recipe, variant, _ = build_folder(tmp_path, "coco")
    write_folder_metadata(folder, recipe, variant)
    index = folder / "coco-train2014-000000.tar.idx"
    dali.refresh(folder, read_folder(folder, recipe, variant).shards())
    assert index.exists() and (folder / "coco-train2014-000000.idx").exists()  # each keeps the other's
    before = {p: p.stat().st_mtime_ns for p in folder.glob("*.tar.idx")}
    write_folder_metadata(folder, recipe, variant)
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*.tar.idx")} == before  # unchanged shards: not scanned
    assert (folder / "coco-train2014-000000.idx").exists()

    old_index = index.read_bytes()
    publish_split(folder, "coco", "train2014", sample_schema(recipe, variant), FOLDER_SPLITS["coco"]["train2014"][:1])
    remove_stale_shards(folder, "train2014", {"coco-train2014-000000.tar"})  # as the build's swap does
    write_folder_metadata(folder, recipe, variant)  # train2014 rebuilt smaller: one shard of one sample
    assert index.read_bytes() != old_index and not (folder / "coco-train2014-000001.tar.idx").exists()
    assert load_all(folder, "train2014")[0][0] == FOLDER_SPLITS["coco"]["train2014"][0]


def test_a_shard_that_disagrees_with_its_index_is_refused(tmp_path):
    folder, recipe, variant, written = build_folder(tmp_path, "vg")
    index = folder / "vg-train.index.json"
    data = json.loads(index.read_text())
    data["shardlist"][0]["nsamples"] += 1
    index.write_text(json.dumps(data))
    with pytest.raises(VlprepError, match="2 samples in the tar, 3 in its wids index"):
        write_folder_metadata(folder, recipe, variant)
