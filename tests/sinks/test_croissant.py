"""``croissant.json`` passes mlcroissant's validation, states the true checksums, and mlcroissant
yields the records it can read from tar members (images, labels)."""
from __future__ import annotations

import hashlib
import json

import pytest

from vlprep.pipeline.datasets.metadata import sample_schema, write_folder_metadata
from vlprep.pipeline.sinks.folder import hf_split_names

from ..helpers import FOLDER_SPLITS, build_folder

import mlcroissant as mlc  # noqa: E402 - a test dependency: missing, the module fails loudly
EXPECTED_WARNINGS = {'Property "https://schema.org/datePublished" is recommended, but does not exist.'}
"""The only warning: no publication date is stated (the metadata holds no date, so equal folders give equal bytes)."""


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """mlcroissant extracts an archive into a cache folder named by its contentUrl alone, so two folders
    with equal shard names would share it: each test gets its own."""
    from etils import epath
    from mlcroissant._src.operation_graph.operations import extract

    monkeypatch.setattr(extract, "EXTRACT_PATH", epath.Path(tmp_path / "croissant-extract"))


def validated(path):
    dataset = mlc.Dataset(jsonld=str(path))
    issues = dataset.metadata.ctx.issues
    assert not issues.errors
    assert {w.split("] ", 1)[1] for w in issues.warnings} <= EXPECTED_WARNINGS
    return dataset


@pytest.mark.parametrize("name", sorted(FOLDER_SPLITS))
def test_croissant_validates_and_lists_every_shard_with_its_sha256(tmp_path, name):
    folder, recipe, variant, written = build_folder(tmp_path, name)
    write_folder_metadata(folder, recipe, variant)
    validated(folder / "croissant.json")
    doc = json.loads((folder / "croissant.json").read_text())
    assert doc["conformsTo"] == "http://mlcommons.org/croissant/1.1" and doc["license"].startswith("https://")
    assert doc["prov:wasDerivedFrom"] == [{"@id": url} for url in sorted(set(recipe.about.sources.values()))]
    objects = {o["contentUrl"]: o for o in doc["distribution"] if o["@type"] == "cr:FileObject"}
    assert set(objects) == {p.name for p in folder.glob("*.tar")}
    for shard_name, entry in objects.items():
        data = (folder / shard_name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["contentSize"] == f"{len(data)} B"
    record_sets = {r["@id"]: r for r in doc["recordSet"]}
    for split in hf_split_names(written).values():
        fields = {f["name"]: f for f in record_sets[split]["field"]}
        assert set(fields) == {"__key__"} | {f.name for f in sample_schema(recipe, variant).fields}
        assert f"{split}-images" in record_sets


def test_mlcroissant_yields_images_and_labels_of_every_sample(tmp_path):
    folder, recipe, variant, written = build_folder(tmp_path, "imagenet")
    write_folder_metadata(folder, recipe, variant)
    dataset = validated(folder / "croissant.json")
    for split, samples in written.items():
        expected = {key: meta for key, meta in samples}
        images = {r[f"{split}-images/__key__"].decode(): r[f"{split}-images/jpg"]
                  for r in dataset.records(f"{split}-images")}
        assert {key: image.size for key, image in images.items()} == \
            {key: (meta["width"], meta["height"]) for key, meta in expected.items()}
        labels = {r[f"{split}-labels/__key__"].decode(): r[f"{split}-labels/cls"]
                  for r in dataset.records(f"{split}-labels")}
        assert labels == {key: meta["label"] for key, meta in expected.items()}


def test_sample_fields_are_typed_from_the_schema(tmp_path):
    folder, recipe, variant, _ = build_folder(tmp_path, "vg-concat")
    write_folder_metadata(folder, recipe, variant)
    doc = json.loads((folder / "croissant.json").read_text())
    fields = {f["name"]: f for r in doc["recordSet"] if r["@id"] == "train" for f in r["field"]}
    assert fields["boxes"]["dataType"] == "cr:Int64" and fields["boxes"]["arrayShape"] == "-1,-1,4"
    assert fields["boxes"]["source"] == {"fileSet": {"@id": "train-json"}, "extract": {"jsonPath": "$.boxes"}}
    assert fields["joiner"]["dataType"] == "sc:Text" and "isArray" not in fields["joiner"]
    assert fields["__key__"]["references"] == {"field": {"@id": "train-images/__key__"}}
