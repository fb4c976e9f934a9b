"""ImageNet-1k through the command line: hub (gated) or mirror, tarballs streamed into shards."""
from __future__ import annotations

import gzip
import http.server
import json
import threading
from pathlib import Path

import pytest
import webdataset as wds

from vlprep.pipeline.samples.images import IMAGENET_SAMPLE_CLASSES, build_imagenet_mirror

from ..helpers import HubHandler, run_cli

TRIAL = ("--limit", "100000")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet-mirror")
    build_imagenet_mirror(root)
    return root


@pytest.fixture
def fetched(tmp_path, mirror) -> Path:
    data = tmp_path / "data"
    run_cli("fetch", "imagenet", "--data-dir", str(data), "--mirror", str(mirror))
    return data


class ImagenetHub(HubHandler):
    repo = "ILSVRC/imagenet-1k"


@pytest.fixture
def hub(mirror):
    ImagenetHub.files = {str(p.relative_to(mirror)): p.read_bytes() for p in mirror.rglob("*")
                         if p.is_file() and p.name != "SHA256SUMS"}
    ImagenetHub.gated = False
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ImagenetHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def samples(out: Path, split: str) -> list[dict]:
    return [dict(s) for shard in sorted(out.glob(f"imagenet-{split}-0*.tar"))
            for s in wds.WebDataset(str(shard), shardshuffle=False, empty_check=False)]


def test_fetch_from_the_hub_and_a_gated_answer_says_what_to_do(tmp_path, hub):
    env = {"HF_ENDPOINT": hub, "HF_TOKEN": ""}
    data = tmp_path / "data"
    result = run_cli("fetch", "imagenet", "--data-dir", str(data), env=env)
    assert "7 fetched" in result.stdout and (data / "raw" / "imagenet" / "data" / "val_images.tar.gz").exists()
    ImagenetHub.gated = True
    failed = run_cli("fetch", "imagenet", "--data-dir", str(tmp_path / "other"), env=env, check=False)
    assert failed.returncode == 1 and "gated" in failed.stderr and "HF_TOKEN" in failed.stderr
    assert "accept the terms" in failed.stderr


def test_train_shards_labels_shuffle_workers_and_dirt(tmp_path, fetched):
    data = str(fetched)
    run_cli("shard", "imagenet", "--data-dir", data, "--workers", "1", "--shard-samples", "8", *TRIAL)
    out = fetched / "out" / "imagenet"
    first = {p.name: p.read_bytes() for p in out.glob("imagenet-train-*.tar")}
    assert len(first) >= 3
    other = tmp_path / "other"
    other.mkdir()
    (other / "raw").symlink_to(fetched / "raw")
    run_cli("shard", "imagenet", "--data-dir", str(other), "--workers", "3", "--shard-samples", "8", *TRIAL)
    assert {p.name: p.read_bytes() for p in (other / "out" / "imagenet").glob("imagenet-train-*.tar")} == first

    got = samples(out, "train")
    labels = {synset: index for index, (synset, _) in enumerate(IMAGENET_SAMPLE_CLASSES)}
    assert len(got) == 30 - 1  # one truncated JPEG skipped
    for sample in got:
        meta = json.loads(sample["json"])
        assert int(sample["cls"]) == meta["label"] == labels[meta["synset"]]
        assert meta["file_name"].endswith(f"_{meta['synset']}.JPEG") and sample["__key__"] == meta["file_name"][:-5]
        assert sample["jpg"][:2] == b"\xff\xd8"
    names = [json.loads(s["json"])["file_name"] for s in got]
    assert names != sorted(names)  # shuffled across the tarballs
    stats = json.loads((out / "stats.json").read_text())["splits"]["train"]
    assert stats["converted_images"] == 2 and stats["skipped_images"] == 1
    assert {c["converted"] for c in stats["converted"]} == {"JPEG CMYK converted to RGB JPEG",
                                                          "PNG RGB converted to RGB JPEG"}
    assert stats["read"]["classes"] == 4 and (stats["read"]["min_per_class"], stats["read"]["max_per_class"]) == (6, 9)
    errors = (out / "imagenet-train.errors.jsonl").read_text().splitlines()
    assert len(errors) == 1 and "cannot decode" in errors[0]
    manifest = gzip.decompress((fetched / "manifests" / "imagenet-train.tsv.gz").read_bytes()).decode().splitlines()
    assert manifest[0] == "file\tlabel\tstatus" and len(manifest) == 1 + 30
    assert sum(line.endswith("\tused") for line in manifest) == 29

    reseeded = tmp_path / "reseeded"
    reseeded.mkdir()
    (reseeded / "raw").symlink_to(fetched / "raw")
    run_cli("shard", "imagenet", "--data-dir", str(reseeded), "--seed", "1", "--shard-samples", "8", *TRIAL)
    assert [json.loads(s["json"])["file_name"] for s in samples(reseeded / "out" / "imagenet", "train")] != names

    lost = sorted(out.glob("imagenet-train-*.tar"))[1]
    lost.unlink()
    run_cli("shard", "imagenet", "--data-dir", data, "--shard-samples", "8", *TRIAL)
    assert {p.name: p.read_bytes() for p in out.glob("imagenet-train-*.tar")} == first
    run_cli("verify", "imagenet", "--data-dir", data)


def test_val_keeps_file_order_and_counts_are_checked(fetched):
    data = str(fetched)
    run_cli("shard", "imagenet", "--data-dir", data, "--split", "val", "--shard-samples", "5", *TRIAL)
    got = samples(fetched / "out" / "imagenet", "val")
    names = [json.loads(s["json"])["file_name"] for s in got]
    assert names == sorted(names) and len(names) == 12
    failed = run_cli("shard", "imagenet", "--data-dir", data, "--split", "val", check=False)
    assert failed.returncode == 1 and "50,000" in failed.stderr and "--limit" in failed.stderr
    printed = run_cli("stats", "imagenet", "--data-dir", data).stdout
    assert "val" in printed and "12" in printed


def test_verify_catches_a_wrong_label(fetched):
    data = str(fetched)
    run_cli("shard", "imagenet", "--data-dir", data, "--split", "val", *TRIAL)
    shard = fetched / "out" / "imagenet" / "imagenet-val-000000.tar"
    raw = bytearray(shard.read_bytes())
    where = raw.index(b".cls")
    body = where - where % 512 + 512  # the data block after the header holding the name
    raw[body] = ord("9") if raw[body] != ord("9") else ord("8")
    shard.write_bytes(bytes(raw))
    failed = run_cli("verify", "imagenet", "--data-dir", data, check=False)
    assert failed.returncode == 1 and "imagenet-val-000000.tar" in failed.stderr


def test_limit_keeps_the_first_n_images_in_tarball_order(fetched):
    import tarfile

    order = []
    for index in range(5):
        with tarfile.open(fetched / "raw" / "imagenet" / "data" / f"train_images_{index}.tar.gz") as tar:
            order += [m.name for m in tar if m.name.endswith(".JPEG")]
    run_cli("shard", "imagenet", "--data-dir", str(fetched), "--limit", "10", "--workers", "2")
    stats = json.loads((fetched / "out" / "imagenet" / "stats.json").read_text())["splits"]["train"]
    manifest = gzip.decompress((fetched / "manifests" / "imagenet-train.tsv.gz").read_bytes()).decode().splitlines()
    assert sorted(line.split("\t")[0] for line in manifest[1:]) == sorted(order[:10])
    assert stats["images"] + stats["skipped_images"] == 10
