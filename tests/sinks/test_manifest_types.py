"""Manifests are typed: keys stay strings with their leading zeros and integer columns are int64 with
no empty cell, for pandas reading the TSV (with the declared dtypes) and the parquet twin alike;
every manifest the code writes is documented; the twin is deterministic and held to its TSV."""
from __future__ import annotations

import fnmatch
import gzip
import re
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from vlprep.pipeline.datasets import registry
from vlprep.pipeline.errors import VlprepError
from vlprep.pipeline.reports.manifests import collect, dataset_of, validate
from vlprep.pipeline.sinks import manifests as manifest_sink

DOCS = Path(__file__).resolve().parents[2] / "docs" / "manifests.md"
ZERO_PADDED = {"coco": 12, "vg": 9}
"""Datasets whose key is a zero-padded id, and its width."""


def _tsv_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.tsv.gz"))


def _both_ways(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    tsv = pd.read_csv(path, sep="\t", dtype=manifest_sink.pandas_dtypes(path), keep_default_na=False)
    return tsv, pd.read_parquet(manifest_sink.twin(path))


def test_every_demo_manifest_reads_with_its_declared_types_both_ways(demo_data):
    paths = _tsv_paths(demo_data / "manifests")
    assert {dataset_of(p) for p in paths} == set(registry.names())
    for path in paths:
        schema = registry.recipe(dataset_of(path)).manifest.header
        header, text_rows = manifest_sink.read_tsv_gz(path)
        for frame in _both_ways(path):
            assert list(frame.columns) == list(schema) and len(frame) == len(text_rows), path.name
            for index, column in enumerate(schema.columns):
                values = frame[column.name]
                if column.dtype == manifest_sink.INT64:
                    assert str(values.dtype) == "int64" and not values.isna().any(), (path.name, column)
                    assert values.tolist() == [int(r[index]) for r in text_rows]
                else:
                    assert values.dtype == object or isinstance(values.dtype, pd.StringDtype), (path.name, column)
                    assert values.tolist() == [r[index] for r in text_rows], (path.name, column)
        dataset = dataset_of(path)
        if dataset in ZERO_PADDED:
            keys = _both_ways(path)[1]["key"]
            assert keys.str.fullmatch(rf"\d{{{ZERO_PADDED[dataset]}}}").all() and keys.str.startswith("0").all()
        assert _both_ways(path)[0].equals(_both_ways(path)[1]), path.name


def test_a_skipped_imagenet_image_has_label_minus_one_never_an_empty_cell(demo_data):
    tsv, parquet = _both_ways(demo_data / "manifests" / "imagenet-train.tsv.gz")
    skipped = tsv[tsv["status"].str.startswith("skipped")]
    assert len(skipped) and (skipped["label"] == -1).all()
    assert (tsv.loc[tsv["status"] == "used", "label"].between(0, 999)).all()
    assert parquet["label"].dtype == "int64"


def _documented_names() -> list[str]:
    """The backquoted file names in the first column of docs/manifests.md's table of manifests."""
    names = []
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            names += re.findall(r"`([^`]+)`", line.split("|")[1])
    return names


def _as_regex(documented: str) -> re.Pattern:
    return re.compile(re.sub(r"<[^>]+>|NAME", ".+", re.escape(documented).replace(r"\<", "<").replace(r"\>", ">")))


def test_every_manifest_the_code_writes_is_documented(demo_data):
    documented = [_as_regex(name) for name in _documented_names()]
    written = sorted(p.name for p in (demo_data / "manifests").iterdir())
    assert any(n.endswith(".parquet") for n in written) and "README.md" in written
    for name in written:
        assert any(pattern.fullmatch(name) for pattern in documented), f"{name} is not in {DOCS}"
    for recipe in registry.RECIPES:  # the recipes' patterns, also for files the demo does not write
        samples = [re.sub(r"<[^>]+>", "x", name) for name in _documented_names()]
        assert any(fnmatch.fnmatch(s, recipe.manifest.pattern) for s in samples), recipe.manifest.pattern
        assert fnmatch.fnmatch(manifest_sink.twin(Path(recipe.manifest.pattern.replace("*", "x"))).name,
                               recipe.manifest.pattern.replace(".tsv.gz", ".parquet"))
    text = DOCS.read_text(encoding="utf-8")
    for schema in manifest_sink.SCHEMAS:
        for column in schema.columns:
            assert f"| `{column.name}` | {column.dtype} |" in text, f"{column} has no row in a dtype table"


def test_the_parquet_twin_is_deterministic_typed_and_carries_no_pandas_metadata(tmp_path):
    rows = [("000000000042", "used"), ("000000027898", "skipped: cannot decode")]
    first = manifest_sink.write_tsv_gz(tmp_path / "a" / "coco-x.tsv.gz", manifest_sink.IMAGE_IDS, rows)
    second = manifest_sink.write_tsv_gz(tmp_path / "b" / "coco-x.tsv.gz", manifest_sink.IMAGE_IDS, iter(rows))
    assert first.read_bytes() == second.read_bytes()
    assert manifest_sink.twin(first).read_bytes() == manifest_sink.twin(second).read_bytes()
    parquet = pq.ParquetFile(manifest_sink.twin(first))
    assert parquet.metadata.metadata is None, "no pandas (or Arrow) key-value metadata"
    assert parquet.schema_arrow.equals(manifest_sink.IMAGE_IDS.arrow())
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    assert pq.read_table(manifest_sink.twin(first)).to_pylist()[0] == {"key": "000000000042", "status": "used"}


def test_integer_columns_take_numbers_or_their_documented_missing_value(tmp_path):
    path = manifest_sink.write_tsv_gz(tmp_path / "imagenet-val.tsv.gz", manifest_sink.LABELLED_FILES,
                                      [("a.JPEG", "7", "used"), ("b.JPEG", "", "skipped: cannot decode"),
                                       ("c.JPEG", None, "skipped: cannot decode")])
    assert [r[1] for r in manifest_sink.read_tsv_gz(path)[1]] == ["7", "-1", "-1"]
    for bad in ("", None, "1.5", "x", True):
        with pytest.raises(ValueError, match="row"):
            manifest_sink.write_tsv_gz(tmp_path / "cc3m-train-1.tsv.gz", manifest_sink.URL_ROWS,
                                       [(bad, "http://h/a.jpg", "ab" * 32, "cd" * 8)])
    with pytest.raises(TypeError, match="Schema"):
        manifest_sink.write_tsv_gz(tmp_path / "plain.tsv.gz", ("key", "status"), [("1", "used")])


def test_pandas_dtypes_comes_from_a_schema_a_tsv_or_a_parquet_file(demo_data, tmp_path):
    manifest = demo_data / "manifests" / "imagenet-val.tsv.gz"
    expected = {"file": "str", "label": "int64", "status": "str"}
    assert manifest_sink.pandas_dtypes(manifest_sink.LABELLED_FILES) == expected
    assert manifest_sink.pandas_dtypes(manifest) == expected
    assert manifest_sink.pandas_dtypes(str(manifest_sink.twin(manifest))) == expected
    other = tmp_path / "other.tsv.gz"
    other.write_bytes(gzip.compress(b"a\tb\n1\t2\n"))
    with pytest.raises(VlprepError, match="no manifest has the columns a, b"):
        manifest_sink.pandas_dtypes(other)


def test_the_validator_holds_each_twin_to_its_tsv(demo_data, tmp_path):
    folder = tmp_path / "manifests"
    shutil.copytree(demo_data / "manifests", folder)
    assert len(validate(folder)) == len(_tsv_paths(folder))
    twin = folder / "coco-karpathy-test.parquet"
    saved = twin.read_bytes()
    shutil.copyfile(folder / "vg-regions.parquet", twin)  # same schema, other rows
    with pytest.raises(VlprepError, match="coco-karpathy-test.parquet does not hold the rows"):
        validate(folder)
    shutil.copyfile(folder / "imagenet-val.parquet", twin)  # other schema
    with pytest.raises(VlprepError, match="coco-karpathy-test.parquet has schema"):
        validate(folder)
    twin.unlink()
    with pytest.raises(VlprepError, match="coco-karpathy-test.parquet is missing"):
        validate(folder)
    twin.write_bytes(saved)
    (folder / "coco-elsewhere.parquet").write_bytes(saved)
    with pytest.raises(VlprepError, match="coco-elsewhere.parquet: a parquet file with no"):
        validate(folder)


def test_the_validator_refuses_an_empty_integer_cell(demo_data, tmp_path):
    folder = tmp_path / "manifests"
    shutil.copytree(demo_data / "manifests", folder)
    path = folder / "imagenet-val.tsv.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    lines[1] = lines[1].replace("\t0\t", "\t\t", 1)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(VlprepError, match=r"imagenet-val.tsv.gz: column label \(int64\) holds ''"):
        validate(folder)


def test_build_gives_a_manifest_written_before_twins_its_twin_and_label_minus_one(tmp_path):
    old = tmp_path / "old" / "imagenet-train.tsv.gz"
    old.parent.mkdir()
    old.write_bytes(gzip.compress(b"file\tlabel\tstatus\na.JPEG\t3\tused\nb.JPEG\t\tskipped: cannot decode\n"))
    target = collect(old, tmp_path / "manifests" / old.name)
    frame = pd.read_parquet(manifest_sink.twin(target))
    assert frame["label"].tolist() == [3, -1] and frame["label"].dtype == "int64"
    again = collect(target, target)
    assert again.read_bytes() == target.read_bytes()
    assert validate(target.parent)[0].rows == 2
