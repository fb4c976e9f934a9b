"""The sample schemas the recipes declare are what their builders store: every sample json of a real
build (sample mirrors, the real CLI) has exactly the declared keys and types, and the folder metadata
written over the real output loads with ``datasets``."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from vlprep.pipeline.datasets.metadata import sample_schema, write_folder_metadata
from vlprep.pipeline.samples.images import build_coco_mirror, build_imagenet_mirror, build_vg_mirror
from vlprep.pipeline.sinks import shards as shard_sink
from vlprep.pipeline.sinks.features import problems

from ..helpers import folder_recipe, run_cli

TRIAL = ("--limit", "100000")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(shard_sink, "conversion_fields"),
                       reason="builders store converted/conversion on every sample only with the new layout"),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """COCO (two Karpathy splits), VG (both variants) and ImageNet built from the sample mirrors."""
    root = tmp_path_factory.mktemp("schemas")
    splits = build_coco_mirror(root / "mirror" / "coco", n_train=10, n_val=8)
    build_vg_mirror(root / "mirror" / "vg", splits, n_images=10)
    build_imagenet_mirror(root / "mirror" / "imagenet")
    data = root / "data"
    for name in ("coco", "vg", "imagenet"):
        extra = ("--allow-unpublished",) if name == "coco" else ()
        run_cli("fetch", name, "--data-dir", str(data), "--mirror", str(root / "mirror" / name), *extra)
    for split in ("karpathy-train", "karpathy-test"):
        run_cli("shard", "coco", "--data-dir", str(data), "--split", split, "--shard-samples", "4", *TRIAL)
    for variant in ("regions", "concat"):
        run_cli("shard", "vg", "--data-dir", str(data), "--variant", variant, "--shard-samples", "4")
    for split in ("train", "val"):
        run_cli("shard", "imagenet", "--data-dir", str(data), "--split", split, "--shard-samples", "8", *TRIAL)
    return data / "out"


@pytest.mark.parametrize("name", ["coco", "vg", "vg-concat", "imagenet"])
def test_every_stored_sample_matches_its_declared_schema(built, name, tmp_path, monkeypatch):
    recipe, variant = folder_recipe(name)
    schema = sample_schema(recipe, variant)
    folder = built / name
    shards = sorted(folder.glob(f"{name}-*.tar"))
    assert shards
    for shard in shards:
        with tarfile.open(shard) as archive:
            for member in archive:
                if member.name.endswith(".json"):
                    meta = json.loads(archive.extractfile(member).read())
                    assert problems(schema, meta) == [], f"{shard.name}:{member.name}"
    assert (folder / "README.md") in write_folder_metadata(folder, recipe, variant)

    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    loaded = datasets.load_dataset(str(folder))
    published = sum(shard["nsamples"] for index in folder.glob("*.index.json")
                    for shard in json.loads(index.read_text())["shardlist"])
    assert sum(len(part) for part in loaded.values()) == published
