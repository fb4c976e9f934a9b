"""pipeline/samples: the samples and the demo, which nothing else in vlprep.pipeline imports."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest

from vlprep.pipeline.datasets.registry import names
from vlprep.pipeline.samples.demo import dataset_steps, plan, run_demo
from vlprep.pipeline.samples.images import build_coco_mirror, coco_split_ids
from vlprep.pipeline.sinks import manifests as manifest_sink

OPTIONAL_EXTRAS = {"torch": "loader"}
"""Packages an optional extra brings, and the extra: a module that needs one not installed is skipped."""

IMPORT_ALL_BUT_SAMPLES = r"""
import importlib, json, pkgutil, sys

import vlprep.pipeline

SAMPLES = "vlprep.pipeline.samples"
imported, skipped = [], {}


def missing(error):
    while error is not None:
        if isinstance(error, ModuleNotFoundError) and error.name:
            return error.name
        error = error.__cause__
    return None


def walk(package):
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.name == SAMPLES:
            continue
        try:
            module = importlib.import_module(info.name)
        except ModuleNotFoundError as error:
            skipped[info.name] = missing(error)
            continue
        imported.append(info.name)
        if info.ispkg:
            walk(module)


walk(vlprep.pipeline)
print(json.dumps({"imported": imported, "skipped": skipped,
                  "samples": sorted(m for m in sys.modules if m == SAMPLES or m.startswith(SAMPLES + "."))}))
"""


def test_no_module_of_the_package_imports_the_samples():
    """Every module of vlprep.pipeline but pipeline.samples.*, imported in a fresh interpreter, leaves samples out."""
    result = subprocess.run([sys.executable, "-c", IMPORT_ALL_BUT_SAMPLES], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    for module, package in found["skipped"].items():
        assert package and package.split(".")[0] in OPTIONAL_EXTRAS, f"{module} does not import: {package} is missing"
    if found["skipped"]:
        extras = sorted({OPTIONAL_EXTRAS[package.split(".")[0]] for package in found["skipped"].values()})
        warnings.warn(f"not imported, the {', '.join(extras)} extra is not installed: "
                      f"{', '.join(sorted(found['skipped']))}", stacklevel=1)
    assert {"vlprep.pipeline.engines.textbin", "vlprep.pipeline.reports.table", "vlprep.pipeline.datasets.vg",
            "vlprep.pipeline.sources.http", "vlprep.pipeline.locking"} <= set(found["imported"])
    assert found["samples"] == []


def test_the_demo_runs_one_step_per_dataset_with_the_steps_it_needs():
    assert tuple(dataset_steps()) == names()  # one step per recipe, in registry order
    assert plan() == names()
    assert plan(["vg"]) == ("coco", "vg")  # VG's leak guard reads the Karpathy split coco fetched
    assert plan(["glue", "owt", "glue"]) == ("owt", "glue")
    with pytest.raises(ValueError, match="unknown demo step.*bogus"):
        plan(["owt", "bogus"])


def test_the_vg_sample_gets_the_coco_sample_ids_without_building_it(tmp_path):
    assert coco_split_ids() == build_coco_mirror(tmp_path / "coco")
    assert coco_split_ids(8, 12, seed=3) == build_coco_mirror(tmp_path / "other", 8, 12, seed=3)


@pytest.mark.slow
def test_a_demo_of_some_steps_runs_them_and_the_steps_across_those_datasets(tmp_path):
    said: list[str] = []
    result = run_demo(tmp_path / "data", workers=1, say=said.append, steps=["vg"])
    assert result.steps == ("coco", "vg")
    out = tmp_path / "data" / "out"
    written = sorted(p for name in ("coco", "vg", "vg-concat") for p in (out / name).iterdir())
    manifests = sorted((tmp_path / "data" / "manifests").glob("*.tsv.gz"))
    assert [p.name for p in manifests] == ["coco-karpathy-test.tsv.gz", "coco-karpathy-train.tsv.gz",
                                           "vg-concat.tsv.gz", "vg-regions.tsv.gz"]
    assert result.outputs == written + [out / "stats.json", out / "stats.md", out / "text-lengths.png",
                                        *[p for m in manifests for p in (m, manifest_sink.twin(m))],
                                        tmp_path / "data" / "manifests" / "README.md"]
    assert {p.name for p in written} >= {"coco-karpathy-test.index.json", "coco-karpathy-train-000000.tar",
                                         "stats.json", "vg-concat-train.index.json", "vg-train.errors.jsonl"}
    assert "stats coco vg (Table 1 of the sample):" in said
    assert any(line.startswith("manifest build: 4 manifests") for line in said)
    assert not any(line.startswith(("preview", "loader")) for line in said)  # the trainer side needs owt and imagenet
