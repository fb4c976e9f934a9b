"""COCO and Visual Genome through the command line: real zips, real JPEGs, HTTP on loopback."""
from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from vlprep.pipeline.datasets.vg import join_descriptions, pack
from vlprep.pipeline.samples.images import build_coco_mirror, build_vg_mirror
from vlprep.pipeline.samples.serve import serve_directory
from vlprep.pipeline.transforms.bpe import REFERENCE, get_backend
from vlprep.pipeline.transforms.dictionary import load_dictionary
from vlprep.pipeline.transforms.text import clean_caption

from ..helpers import run_cli

TRIAL = ("--limit", "100000")  # sample data: the published-count check is for full runs


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("image-mirrors")
    splits = build_coco_mirror(root / "coco", n_train=30, n_val=24)
    build_vg_mirror(root / "vg", splits, n_images=30)
    return root / "coco", root / "vg", splits


@pytest.fixture
def fetched_images(tmp_path, mirrors) -> Path:
    coco, vg, _ = mirrors
    data = tmp_path / "data"
    with serve_directory(coco) as url:
        run_cli("fetch", "coco", "--data-dir", str(data), "--mirror", url, "--allow-unpublished")
    run_cli("fetch", "vg", "--data-dir", str(data), "--mirror", str(vg))
    return data


def samples(path: Path) -> list[dict]:
    return [dict(s) for s in wds.WebDataset(str(path), shardshuffle=False, empty_check=False)]


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tar"))}


def test_coco_shards_are_identical_for_every_worker_count_and_verify(tmp_path, fetched_images):
    run_cli("shard", "coco", "--data-dir", str(fetched_images), "--workers", "1", "--shard-samples", "7", *TRIAL)
    out = fetched_images / "out" / "coco"
    first = shard_bytes(out)
    assert len(first) == 6  # train 30 + restval 12, less one image missing from its zip: 41, by 7
    other = tmp_path / "other"
    other.mkdir()
    (other / "raw").symlink_to(fetched_images / "raw")
    run_cli("shard", "coco", "--data-dir", str(other), "--workers", "3", "--shard-samples", "7", *TRIAL,
            "--tokenizer", REFERENCE)
    assert shard_bytes(other / "out" / "coco") == first
    run_cli("verify", "coco", "--data-dir", str(fetched_images))
    index = json.loads((out / "coco-karpathy-train.index.json").read_text())
    assert index["__kind__"] == "wids-shard-index-v1"
    assert sum(s["nsamples"] for s in index["shardlist"]) == 42 - 2  # one missing, one truncated JPEG
    stats = json.loads((out / "stats.json").read_text())["splits"]["karpathy-train"]
    assert stats["skipped_images"] == 2 and stats["skipped_by_cause"] == {"cannot decode": 1, "missing from the zip": 1}
    assert stats["converted_images"] == 2  # the CMYK JPEG and the PNG named .jpg
    assert stats["empty_texts_dropped"] == 1  # a caption of only NUL and whitespace
    assert len(json.loads(next(s for shard in sorted(out.glob("coco-karpathy-train-*.tar")) for s in samples(shard)
                               if len(json.loads(s["json"])["texts"]) == 4)["json"])["text_ids"]) == 4
    errors = (out / "coco-karpathy-train.errors.jsonl").read_text().splitlines()
    assert len(errors) == 2 and all("train2014.zip:train2014/COCO_train2014_" in e for e in errors)


def test_coco_sample_content_tokens_and_tar_headers(fetched_images):
    run_cli("shard", "coco", "--data-dir", str(fetched_images), *TRIAL)
    shard = fetched_images / "out" / "coco" / "coco-karpathy-train-000000.tar"
    with tarfile.open(shard) as tar:
        members = tar.getmembers()
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
    keys = [m.name.split(".")[0] for m in members]
    assert keys[0::2] == keys[1::2]  # each sample's members are contiguous
    table = load_dictionary().gpt2_lookup(50257)
    reference = get_backend(REFERENCE)
    truncated = 0
    for sample in samples(shard):
        meta = json.loads(sample["json"])
        assert "." not in sample["__key__"] and meta["key"] == sample["__key__"]
        assert Image.open(io.BytesIO(sample["jpg"])).format == "JPEG"
        for text, ids, length in zip(meta["texts"], meta["tokens"], meta["lengths"]):
            assert text == clean_caption(text) and text  # cleaned: no NUL, newline or double space
            bpe = table[reference.encode(text)].tolist()
            assert length == len(bpe) and ids == [0, *bpe[:62], 2] and len(ids) <= 64
            truncated += length > 62
    assert truncated > 0


def test_coco_train_is_shuffled_by_seed_and_val_keeps_file_order(tmp_path, fetched_images):
    run_cli("shard", "coco", "--data-dir", str(fetched_images), *TRIAL)
    out = fetched_images / "out" / "coco"
    order = [s["__key__"] for s in samples(out / "coco-karpathy-train-000000.tar")]
    assert order != sorted(order)
    run_cli("shard", "coco", "--data-dir", str(fetched_images), "--seed", "1", *TRIAL)
    assert [s["__key__"] for s in samples(out / "coco-karpathy-train-000000.tar")] != order
    run_cli("shard", "coco", "--data-dir", str(fetched_images), "--split", "train2014", *TRIAL)
    run_cli("shard", "coco", "--data-dir", str(fetched_images), "--split", "karpathy-test", *TRIAL)
    test_keys = [s["__key__"] for s in samples(out / "coco-karpathy-test-000000.tar")]
    assert len(test_keys) == 6
    manifest = gzip.decompress((fetched_images / "manifests" / "coco-karpathy-test.tsv.gz").read_bytes()).decode()
    assert manifest.splitlines()[0] == "key\tstatus" and manifest.count("\tused") == 6


def test_full_split_count_mismatch_is_an_error_without_limit(fetched_images):
    failed = run_cli("shard", "coco", "--data-dir", str(fetched_images), check=False)
    assert failed.returncode == 1 and "113,287" in failed.stderr and "--limit" in failed.stderr


def test_shard_resumes_after_losing_a_shard(fetched_images):
    run_cli("shard", "coco", "--data-dir", str(fetched_images), "--shard-samples", "5", *TRIAL)
    out = fetched_images / "out" / "coco"
    before = shard_bytes(out)
    (out / "coco-karpathy-train-000002.tar").unlink()
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    run_cli("shard", "coco", "--data-dir", str(fetched_images), "--shard-samples", "5", *TRIAL)
    assert shard_bytes(out) == before
    assert all(out.joinpath(n).stat().st_mtime_ns == t for n, t in mtimes.items())  # finished shards untouched


def test_vg_leak_guard_regions_and_concat(fetched_images, mirrors):
    _, _, splits = mirrors
    run_cli("shard", "vg", "--data-dir", str(fetched_images), "--workers", "2")
    out = fetched_images / "out" / "vg"
    stats = json.loads((out / "stats.json").read_text())["splits"]["train"]
    assert stats["leak_guarded"] == 2 and stats["skipped_images"] == 3  # truncated, missing, no text left
    assert stats["skipped_by_cause"]["no text left after cleaning"] == 1 and stats["empty_texts_dropped"] > 3
    metas = [json.loads(s["json"]) for s in samples(out / "vg-train-000000.tar")]
    guarded = set(splits["val"]) | set(splits["test"])
    assert not any(m["coco_id"] in guarded for m in metas)
    assert {type(m["coco_id"]) for m in metas} == {int} and any(m["coco_id"] == -1 for m in metas)  # one type
    assert any(m["coco_id"] in splits["train"] for m in metas)
    for meta in metas:
        assert len(meta["texts"]) == len(meta["region_ids"]) == len(meta["boxes"]) == len(meta["tokens"])
        assert meta["region_ids"] == sorted(meta["region_ids"])
    manifest = gzip.decompress((fetched_images / "manifests" / "vg-regions.tsv.gz").read_bytes()).decode()
    assert manifest.count("\tleak-guarded") == 2

    run_cli("shard", "vg", "--data-dir", str(fetched_images), "--variant", "concat")
    concat_out = fetched_images / "out" / "vg-concat"  # a variant is a folder of its own: one schema per folder
    assert not list(out.glob("*concat*"))
    concat = {json.loads(s["json"])["image_id"]: json.loads(s["json"])
              for s in samples(concat_out / "vg-concat-train-000000.tar")}
    regions = {m["image_id"]: m for m in metas}
    assert concat.keys() == regions.keys()
    for image_id, meta in concat.items():
        flat = [r for group in meta["region_ids"] for r in group]
        assert flat == regions[image_id]["region_ids"]  # every description once, in order, never split
        assert all(len(ids) <= 64 for ids in meta["tokens"])
        assert all(length <= 62 or len(group) == 1 for length, group in zip(meta["lengths"], meta["region_ids"]))
    assert sum(len(m["texts"]) for m in concat.values()) < sum(len(m["texts"]) for m in regions.values())
    by_split = json.loads((out / "stats.json").read_text())["splits"]
    concat_split = json.loads((concat_out / "stats.json").read_text())["splits"]["train"]
    assert concat_split["descriptions"] == by_split["train"]["descriptions"] == by_split["train"]["texts"]
    assert (fetched_images / "manifests" / "vg-concat.tsv.gz").exists()
    run_cli("verify", "vg", "--data-dir", str(fetched_images))

    run_cli("shard", "vg", "--data-dir", str(fetched_images), "--no-leak-guard")
    stats = json.loads((out / "stats.json").read_text())["splits"]["train"]
    assert stats["leak_guarded"] == 0 and stats["images"] == 27


def test_vg_without_coco_says_how_to_guard(tmp_path, mirrors):
    _, vg, _ = mirrors
    data = tmp_path / "data"
    run_cli("fetch", "vg", "--data-dir", str(data), "--mirror", str(vg))
    failed = run_cli("shard", "vg", "--data-dir", str(data), check=False)
    assert failed.returncode == 1 and "vlprep fetch coco" in failed.stderr and "--no-leak-guard" in failed.stderr


def test_pack_is_greedy_in_order_and_never_splits():
    length = lambda text: len(text.split())  # noqa: E731 - a stand-in length: words
    phrases = ["a b", "c d e.", "f", "x " * 70, "g h"]
    groups = pack(phrases, length)
    assert [members for _, members in groups] == [[0, 1, 2], [3], [4]]
    assert groups[0][0] == "a b. c d e. f"
    assert join_descriptions("ends here!", "next") == "ends here! next"


def test_verify_catches_a_damaged_shard(fetched_images):
    run_cli("shard", "coco", "--data-dir", str(fetched_images), *TRIAL)
    shard = fetched_images / "out" / "coco" / "coco-karpathy-train-000000.tar"
    data = bytearray(shard.read_bytes())
    data[2000] ^= 0xFF
    shard.write_bytes(bytes(data))
    failed = run_cli("verify", "coco", "--data-dir", str(fetched_images), check=False)
    assert failed.returncode == 1 and "coco-karpathy-train-000000.tar" in failed.stderr


def test_stats_table_is_what_the_shards_hold(fetched_images):
    data = str(fetched_images)
    failed = run_cli("stats", "coco", "vg", "--data-dir", data, check=False)
    assert failed.returncode == 1 and "vlprep shard coco" in failed.stderr
    run_cli("shard", "coco", "--data-dir", data, *TRIAL)
    run_cli("shard", "coco", "--data-dir", data, "--split", "karpathy-test", *TRIAL)
    run_cli("shard", "vg", "--data-dir", data)
    run_cli("shard", "vg", "--data-dir", data, "--variant", "concat")
    printed = run_cli("stats", "coco", "vg", "--data-dir", data).stdout
    table = json.loads((fetched_images / "out" / "stats.json").read_text())
    rows = {(r["dataset"], r["split"]): r for r in table["rows"]}
    assert list(rows) == [("coco", "karpathy-train"), ("coco", "karpathy-test"), ("vg", "train"),
                          ("vg-concat", "train")]
    held = {}
    for (folder, split), row in rows.items():
        shards = sorted((fetched_images / "out" / folder).glob(f"{folder}-{split}-0*.tar"))
        metas = [json.loads(s["json"]) for shard in shards for s in samples(shard)]
        lengths = [n for m in metas for n in m["lengths"]]
        held[folder, split] = (len(metas), len(lengths), sum(lengths))
        assert (row["images"], row["pairs"]) == (len(metas), len(lengths))
        assert row["tokens_per_text"] == pytest.approx(sum(lengths) / len(lengths), abs=1e-3)
        assert row["texts_per_image"] == pytest.approx(len(lengths) / len(metas), abs=1e-3)
        assert row["in_total"] == ((folder, split) in (("coco", "karpathy-train"), ("vg", "train")))
        assert f"{row['images']:,}" in printed
    images = held["coco", "karpathy-train"][0] + held["vg", "train"][0]
    pairs = held["coco", "karpathy-train"][1] + held["vg", "train"][1]
    tokens = held["coco", "karpathy-train"][2] + held["vg", "train"][2]
    assert (table["total"]["images"], table["total"]["pairs"]) == (images, pairs)
    assert table["total"]["tokens_per_text"] == pytest.approx(tokens / pairs, abs=1e-2)
    assert table["method"]["total"]["images"] == 191_032 and table["method"]["total"]["pairs"] == 5_975_436
    markdown = (fetched_images / "out" / "stats.md").read_text()
    assert f"| coco | karpathy-train | {held['coco', 'karpathy-train'][0]:,} |" in markdown
    assert "| vg | (method) | 108,249 | 50.00 | 4.70 | 5,408,689 |" in markdown
    assert f"| total |  | {images:,} |" in markdown
    with Image.open(fetched_images / "out" / "text-lengths.png") as picture:
        assert picture.format == "PNG" and picture.height > 4 * 200
