"""Flickr30K through the command line: Karpathy's split file and a real images tarball, on loopback."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import webdataset as wds

from vlprep.pipeline.samples.images import FLICKR30K_SAMPLE, build_flickr30k_mirror
from vlprep.pipeline.samples.serve import serve_directory
from vlprep.pipeline.transforms.bpe import REFERENCE, get_backend
from vlprep.pipeline.transforms.dictionary import load_dictionary
from vlprep.pipeline.transforms.text import clean_caption

from ..helpers import assert_clean_failure, run_cli

TRIAL = ("--limit", "100000")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("flickr30k-mirror")
    return root, build_flickr30k_mirror(root)


@pytest.fixture(scope="module")
def fetched(tmp_path_factory, mirror) -> Path:
    root, _ = mirror
    data = tmp_path_factory.mktemp("flickr30k") / "data"
    with serve_directory(root) as url:
        result = run_cli("fetch", "flickr30k", "--data-dir", str(data), "--mirror", url, "--allow-unpublished")
    assert "NOT the published file" in result.stdout
    return data


def karpathy_rows(root: Path) -> list[dict]:
    with zipfile.ZipFile(root / "caption_datasets.zip") as archive:
        return json.loads(archive.read("dataset_flickr30k.json"))["images"]


def samples(out: Path, split: str) -> list[dict]:
    return [dict(s) for path in sorted(out.glob(f"flickr30k-{split}-*.tar"))
            for s in wds.WebDataset(str(path), shardshuffle=False, empty_check=False)]


def test_images_archive_is_recorded_never_verified(fetched):
    sources = json.loads((fetched / "raw" / "flickr30k" / "SOURCE.json").read_text())
    assert sources["flickr30k-images.tar.gz"]["verified"] is False
    assert sources["flickr30k-images.tar.gz"]["checked"] == "mirror-sums"
    assert sources["caption_datasets.zip"]["official_url"].endswith("caption_datasets.zip")


def test_local_images_archive_is_recorded_and_missing_archive_names_the_option(tmp_path, mirror):
    root, _ = mirror
    data = tmp_path / "data"
    only_zip = tmp_path / "zip-only"  # a mirror with the split file only
    only_zip.mkdir()
    shutil.copy(root / "caption_datasets.zip", only_zip)
    with serve_directory(only_zip) as url:
        failed = run_cli("fetch", "flickr30k", "--data-dir", str(data), "--mirror", url, "--allow-unpublished",
                         check=False)
    assert_clean_failure(failed, "flickr30k-images.tar.gz", "HTTP 404")
    copy = tmp_path / "Downloads" / "flickr30k-images.tar.gz"
    copy.parent.mkdir()
    shutil.copy(root / "flickr30k-images.tar.gz", copy)
    with serve_directory(only_zip) as url:
        result = run_cli("fetch", "flickr30k", "--data-dir", str(data), "--mirror", url, "--allow-unpublished",
                         "--images", str(copy))
    assert "no published checksum: recorded sha256" in result.stdout
    sources = json.loads((data / "raw" / "flickr30k" / "SOURCE.json").read_text())
    assert sources["flickr30k-images.tar.gz"]["checked"] == "recorded"
    assert sources["flickr30k-images.tar.gz"]["kind"] == "local"


def test_shards_hold_every_image_with_its_cleaned_capped_captions(fetched, mirror):
    root, names = mirror
    run_cli("shard", "flickr30k", "--data-dir", str(fetched), "--split", "train", "--workers", "2", *TRIAL)
    run_cli("shard", "flickr30k", "--data-dir", str(fetched), "--split", "test", *TRIAL)
    out = fetched / "out" / "flickr30k"
    rows = {row["filename"]: row for row in karpathy_rows(root)}
    backend, dictionary = get_backend(REFERENCE), load_dictionary()
    lookup = dictionary.gpt2_lookup(50257)
    for split in ("train", "test"):
        got = samples(out, split)
        errors = [json.loads(line) for line in (out / f"flickr30k-{split}.errors.jsonl").read_text().splitlines()]
        assert len(got) + len(errors) == FLICKR30K_SAMPLE[split]
        for sample in got:
            meta = json.loads(sample["json"])
            row = rows[meta["file_name"]]
            assert sample["__key__"] == meta["key"] == meta["flickr_id"] == row["filename"][:-4]
            assert meta["image_id"] == row["imgid"] and row["split"] == split
            cleaned = [(s["sentid"], clean_caption(s["raw"])) for s in row["sentences"]]
            assert meta["texts"] == [t for _, t in cleaned if t]
            assert meta["text_ids"] == [i for i, t in cleaned if t]
            for text, ids, length in zip(meta["texts"], meta["tokens"], meta["lengths"]):
                bpe = [int(lookup[i]) for i in backend.encode(text)]
                assert length == len(bpe) and ids == [0, *bpe[:62], 2]
    train_errors = (out / "flickr30k-train.errors.jsonl").read_text()
    assert names["train"][1][:-4] in train_errors and "cannot decode" in train_errors      # truncated
    assert names["train"][2][:-4] in train_errors and "missing from the zip" in train_errors  # not in the tarball
    stats = json.loads((out / "stats.json").read_text())["splits"]
    assert stats["train"]["converted_images"] == 1 and stats["test"]["texts"] == 30
    assert stats["test"]["empty_texts_dropped"] == 1
    run_cli("verify", "flickr30k", "--data-dir", str(fetched))
    table = run_cli("stats", "flickr30k", "--data-dir", str(fetched)).stdout
    assert "flickr30k test" in table and "flickr30k train" in table


def test_same_bytes_from_the_zip_form_of_the_archive(tmp_path, fetched, mirror):
    """The images as flickr30k-images.zip give the shards the tarball gives (the repack changes nothing)."""
    root, _ = mirror
    import tarfile

    zipped = tmp_path / "mirror"
    zipped.mkdir()
    shutil.copy(root / "caption_datasets.zip", zipped)
    with tarfile.open(root / "flickr30k-images.tar.gz") as tar, \
            zipfile.ZipFile(zipped / "flickr30k-images.zip", "w") as archive:
        for member in tar.getmembers():
            archive.writestr(member.name, tar.extractfile(member).read())
    data = tmp_path / "data"
    with serve_directory(zipped) as url:
        run_cli("fetch", "flickr30k", "--data-dir", str(data), "--mirror", url, "--allow-unpublished",
                "--images", str(zipped / "flickr30k-images.zip"))
    run_cli("shard", "flickr30k", "--data-dir", str(data), *TRIAL)
    run_cli("shard", "flickr30k", "--data-dir", str(fetched), *TRIAL)
    ours, theirs = data / "out" / "flickr30k", fetched / "out" / "flickr30k"
    assert (ours / "flickr30k-test-000000.tar").read_bytes() == (theirs / "flickr30k-test-000000.tar").read_bytes()


def test_published_counts_are_checked_without_limit(fetched):
    result = run_cli("shard", "flickr30k", "--data-dir", str(fetched), "--split", "val", check=False)
    assert_clean_failure(result, "flickr30k val", "1,014 images", "--limit")


def test_hostile_split_file_stops_with_the_file_and_record(tmp_path, mirror):
    root, _ = mirror
    rows = karpathy_rows(root)
    rows[2]["filename"] = "../../etc/passwd.jpg"
    bad = tmp_path / "mirror"
    bad.mkdir()
    with zipfile.ZipFile(bad / "caption_datasets.zip", "w") as archive:
        archive.writestr("dataset_flickr30k.json", json.dumps({"images": rows, "dataset": "flickr30k"}))
    data = tmp_path / "data"
    run_cli("fetch", "flickr30k", "--data-dir", str(data), "--mirror", str(bad), "--allow-unpublished",
            "--images", str(root / "flickr30k-images.tar.gz"))
    split = rows[2]["split"]
    result = run_cli("shard", "flickr30k", "--data-dir", str(data), "--split", split, *TRIAL, check=False)
    assert_clean_failure(result, "caption_datasets.zip", "dataset_flickr30k.json", "image 2", "filename",
                         "vlprep fetch flickr30k")
