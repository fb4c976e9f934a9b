"""The dataset card: ``datasets.load_dataset(folder)`` alone gives every split, every sample and every
field with its type, in memory and streaming; the card says what was built and how to rebuild it."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from vlprep.pipeline.datasets.metadata import rebuild_command, sample_schema, write_folder_metadata
from vlprep.pipeline.errors import VlprepError
from vlprep.pipeline.sinks.features import hf_features
from vlprep.pipeline.sinks.folder import hf_split_names
from vlprep.pipeline.sinks.shards import json_bytes, write_shard

from ..helpers import FOLDER_SPLITS, build_folder, folder_recipe

datasets = pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch):
    """Nothing reaches the network, and the cache is the test's own."""
    home = tmp_path / "hf-home"
    for name, value in {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(home)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
    monkeypatch.setattr(datasets.config, "HF_MODULES_CACHE", home / "modules")


def card_header(folder: Path) -> dict:
    return yaml.safe_load((folder / "README.md").read_text(encoding="utf-8").split("---\n")[1])


def check_row(row: dict, key: str, meta: dict, folder: Path, label: bool) -> None:
    assert row["__key__"] == key
    assert Path(row["__url__"]).parent == folder
    assert row["json"] == meta  # every field, with its value and type
    image = row["jpg"]
    assert image.size == (meta["width"], meta["height"])
    if label:
        assert row["cls"] == meta["label"] and isinstance(row["cls"], int)


@pytest.mark.parametrize("name", sorted(FOLDER_SPLITS))
def test_load_dataset_reads_every_split_sample_and_field(tmp_path, name):
    folder, recipe, variant, written = build_folder(tmp_path, name)
    write_folder_metadata(folder, recipe, variant)
    schema = sample_schema(recipe, variant)
    names = hf_split_names(written)
    expected = datasets.Features._from_yaml_list(hf_features(schema))

    loaded = datasets.load_dataset(str(folder))
    assert set(loaded) == set(names.values())
    for split, samples in written.items():
        part = loaded[names[split]]
        assert part.features == expected
        assert len(part) == len(samples)
        for row, (key, meta) in zip(part, samples):
            check_row(row, key, meta, folder, schema.label is not None)

    streamed = datasets.load_dataset(str(folder), streaming=True)
    assert set(streamed) == set(names.values())
    for split, samples in written.items():
        rows = list(streamed[names[split]])
        assert streamed[names[split]].features == expected
        assert len(rows) == len(samples)
        for row, (key, meta) in zip(rows, samples):
            check_row(row, key, meta, folder, schema.label is not None)


def test_card_says_counts_mapping_rebuild_and_inputs(tmp_path):
    folder, recipe, variant, written = build_folder(tmp_path, "coco")
    write_folder_metadata(folder, recipe, variant)
    text = (folder / "README.md").read_text(encoding="utf-8")
    header = card_header(folder)
    assert header["license"] == "cc-by-4.0" and header["task_categories"] == ["image-to-text", "text-to-image"]
    files = header["configs"][0]["data_files"]
    assert [f["split"] for f in files] == ["karpathy_train", "karpathy_test", "train2014"]
    assert files[0]["path"] == "coco-karpathy-train-" + "[0-9]" * 6 + ".tar"
    assert "| karpathy-train | karpathy_train | train, karpathy-train | 5 | 3 | 5 of 113,287 published images |" in text
    assert "| train2014 | train2014 | train2014 | 4 | 2 | 4 of 82,783 published images |" in text
    assert "- karpathy-test: `vlprep shard coco --split karpathy-test`" in text
    stats = json.loads((folder / "stats.json").read_text())
    digest = stats["splits"]["karpathy-train"]["inputs"]["coco/zips/train2014.zip"]
    assert f"| `coco/zips/train2014.zip` | http://images.cocodataset.org/zips/train2014.zip | `{digest}` |" in text
    assert f"vlprep {stats['vlprep_version']}" in text
    assert "/tmp" not in text and str(tmp_path) not in text


def test_rebuild_command_repeats_what_changes_the_bytes():
    vg, _ = folder_recipe("vg")
    entry = {"config": {"limit": 500, "seed": 3, "max_count": 10_000, "max_bytes": 2_000_000_000, "resize": None,
                        "variant": {"variant": "concat", "leak_guard": False}}}
    assert rebuild_command(vg, "train", "concat", entry) == \
        "vlprep shard vg --variant concat --seed 3 --shard-mb 2000 --no-leak-guard --limit 500"
    cc3m, _ = folder_recipe("cc3m")
    assert rebuild_command(cc3m, "train", None, {"count": 16, "config": {"shard_samples": 8, "resize": 256}}) == \
        "vlprep fetch cc3m --resize 256 --shard-samples 8 --limit 16"
    imagenet, _ = folder_recipe("imagenet")
    assert rebuild_command(imagenet, "val", None, {"config": {"limit": None, "shard_samples": 10_000}}) == \
        "vlprep shard imagenet --split val"


def test_metadata_is_the_same_bytes_and_follows_the_splits(tmp_path):
    folder, recipe, variant, _ = build_folder(tmp_path, "imagenet")
    first = write_folder_metadata(folder, recipe, variant)
    before = {path: path.read_bytes() for path in first}
    other = tmp_path / "copy" / "imagenet"
    shutil.copytree(folder, other)
    for path in first:
        (other / path.relative_to(folder)).unlink()
    again = write_folder_metadata(other, recipe, variant)  # another folder, same shards: same bytes
    assert {p.relative_to(other): p.read_bytes() for p in again} == \
        {p.relative_to(folder): data for p, data in before.items()}
    mtimes = {p: p.stat().st_mtime_ns for p in first}
    assert write_folder_metadata(folder, recipe, variant) == first
    assert {p: p.stat().st_mtime_ns for p in first} == mtimes  # unchanged files are not rewritten

    (folder / "imagenet-val.index.json").unlink()  # val is no longer published
    for shard in folder.glob("imagenet-val-*.tar"):
        shard.unlink()
    written = write_folder_metadata(folder, recipe, variant)
    assert not list(folder.glob("imagenet-val-*.tar.idx"))
    assert [f["split"] for f in card_header(folder)["configs"][0]["data_files"]] == ["train"]
    assert all(path.exists() for path in written)


def test_nothing_is_written_before_a_split_is_published(tmp_path):
    recipe, _ = folder_recipe("coco")
    assert write_folder_metadata(tmp_path / "coco", recipe) == []
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "stats.json").write_text(json.dumps({"dataset": "coco", "splits": {"karpathy-test": {}}}))
    assert write_folder_metadata(tmp_path / "coco", recipe) == []  # stats but no index: not whole yet
    assert sorted(os.listdir(tmp_path / "coco")) == ["stats.json"]


def test_a_sample_that_does_not_match_the_schema_is_refused(tmp_path):
    folder, recipe, variant, written = build_folder(tmp_path, "cc3m")
    key, meta = written["train"][0]
    stale = {k: v for k, v in meta.items() if k not in ("converted", "conversion")}
    stale["stored"] = "re-encoded as JPEG"
    shard = folder / "cc3m-train-000000.tar"
    write_shard(shard, [(key, {"jpg": b"\xff\xd8", "json": json_bytes(stale)})])
    with pytest.raises(VlprepError, match="missing key 'converted'.*undeclared key 'stored'"):
        write_folder_metadata(folder, recipe, variant)
    assert not (folder / "README.md").exists()


@pytest.mark.slow
def test_the_cards_loading_snippets_run(tmp_path):
    """What the card tells a user to paste works: datasets, wids, mlcroissant and Energon, from ``out/..``."""
    import re
    import subprocess
    import sys

    folder, recipe, variant, _ = build_folder(tmp_path / "out", "imagenet")
    write_folder_metadata(folder, recipe, variant)
    code = "\n".join(re.findall(r"```python\n(.*?)```", (folder / "README.md").read_text(), flags=re.S))
    code += "\nprint(sorted(sample), len(list(images)), type(batch).__name__)"
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "CROISSANT_CACHE": str(tmp_path / "croissant"), "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == \
        f"['__key__', '__url__', 'cls', 'jpg', 'json'] {len(FOLDER_SPLITS['imagenet']['train'])} " \
        "ImageClassificationSample"
