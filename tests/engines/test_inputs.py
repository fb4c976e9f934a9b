"""No stale outputs: a changed raw file rebuilds what it feeds, verify holds outputs against raw/, and
a re-shard swaps a split in only when it is complete. Real CLI, real archives, mirrors on disk."""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import webdataset as wds

from vlprep.pipeline.samples.images import build_coco_mirror, build_imagenet_mirror, build_vg_mirror, jpeg
from vlprep.pipeline.samples.text import build_glue_mirror, build_owt_mirror
from vlprep.pipeline.sources.checksums import SUMS_NAME, format_sha256sums, parse_sha256sums

from ..helpers import run_cli

TRIAL = ("--limit", "100000")  # sample data: the published-count check is for full runs
NEW_CAPTION = "a freshly written caption about a purple giraffe number {n}"


# ------------------------------------------------------------------------------------------- helpers

def reseal(mirror: Path, relpath: str) -> None:
    """Update the mirror's SHA256SUMS for a file rewritten in it (so fetch takes the new bytes)."""
    sums = parse_sha256sums((mirror / SUMS_NAME).read_text(), SUMS_NAME)
    sums[relpath] = hashlib.sha256((mirror / relpath).read_bytes()).hexdigest()
    (mirror / SUMS_NAME).write_text(format_sha256sums(sums))


def copy_mirror(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def rewrite_karpathy_captions(mirror: Path, images: int) -> int:
    """Give the first ``images`` Karpathy-train images new captions; return how many captions changed."""
    path = mirror / "caption_datasets.zip"
    with zipfile.ZipFile(path) as archive:
        files = {info.filename: archive.read(info) for info in archive.infolist()}
    data = json.loads(files["dataset_coco.json"])
    changed = 0
    for row in [r for r in data["images"] if r["split"] == "train"][:images]:
        for sentence in row["sentences"]:
            sentence["raw"] = NEW_CAPTION.format(n=changed)
            changed += 1
    files["dataset_coco.json"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, body in sorted(files.items()):
            archive.writestr(name, body)
    reseal(mirror, "caption_datasets.zip")
    return changed


def shard_texts(out: Path, split: str) -> list[str]:
    return [text for shard in sorted(out.glob(f"{out.name}-{split}-0*.tar"))
            for sample in wds.WebDataset(str(shard), shardshuffle=False, empty_check=False)
            for text in json.loads(sample["json"])["texts"]]


def split_files(out: Path, split: str) -> dict[str, bytes]:
    """The published split: its shards and its index."""
    paths = [*out.glob(f"{out.name}-{split}-0*.tar"), out / f"{out.name}-{split}.index.json"]
    return {p.name: p.read_bytes() for p in sorted(paths)}


def fails_naming(result: subprocess.CompletedProcess, *words: str) -> bool:
    return result.returncode != 0 and all(word in result.stderr for word in words) and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------- COCO / VG

@pytest.fixture
def coco_vg(tmp_path) -> tuple[Path, Path, Path]:
    """A data dir with COCO and VG fetched from folder mirrors; return (data, coco mirror, vg mirror)."""
    coco, vg = tmp_path / "coco-mirror", tmp_path / "vg-mirror"
    splits = build_coco_mirror(coco, n_train=30, n_val=24)
    build_vg_mirror(vg, splits, n_images=30)
    data = tmp_path / "data"
    run_cli("fetch", "coco", "--data-dir", str(data), "--mirror", str(coco), "--allow-unpublished")
    run_cli("fetch", "vg", "--data-dir", str(data), "--mirror", str(vg))
    return data, coco, vg


def test_refetched_coco_captions_reach_the_shards_and_verify_names_the_stale_input(tmp_path, coco_vg):
    data, coco, _ = coco_vg
    out = data / "out" / "coco"
    run_cli("shard", "coco", "--data-dir", str(data), "--shard-samples", "7", *TRIAL)
    run_cli("shard", "vg", "--data-dir", str(data))
    run_cli("verify", "coco", "--data-dir", str(data))
    stats = json.loads((out / "stats.json").read_text())["splits"]["karpathy-train"]
    assert set(stats["inputs"]) == {"coco/caption_datasets.zip", "coco/zips/train2014.zip", "coco/zips/val2014.zip"}
    assert "coco/caption_datasets.zip" in json.loads((data / "out" / "vg" / "stats.json").read_text())[
        "splits"]["train"]["inputs"]  # the leak guard's input

    newer = copy_mirror(coco, tmp_path / "coco-mirror-2")
    changed = rewrite_karpathy_captions(newer, images=10)
    run_cli("fetch", "coco", "--data-dir", str(data), "--mirror", str(newer), "--allow-unpublished")

    stale = run_cli("verify", "coco", "--data-dir", str(data), check=False)
    assert fails_naming(stale, "caption_datasets.zip", "changed", "vlprep shard coco")
    stale_vg = run_cli("verify", "vg", "--data-dir", str(data), check=False)
    assert fails_naming(stale_vg, str(Path("raw") / "coco" / "caption_datasets.zip"), "vlprep shard vg")

    run_cli("shard", "coco", "--data-dir", str(data), "--shard-samples", "7", *TRIAL)
    texts = shard_texts(out, "karpathy-train")
    fresh = {NEW_CAPTION.format(n=n) for n in range(changed)}
    # every new caption of an image that made it into the shards (one image is missing, one truncated)
    assert len(fresh & set(texts)) >= changed - 12 and len(fresh & set(texts)) > 0
    run_cli("verify", "coco", "--data-dir", str(data))
    run_cli("shard", "vg", "--data-dir", str(data))
    run_cli("verify", "vg", "--data-dir", str(data))


def test_coco_raw_tampered_after_sharding_fails_verify_and_deleted_raw_only_warns(coco_vg):
    data, _, _ = coco_vg
    run_cli("shard", "coco", "--data-dir", str(data), "--split", "karpathy-test", *TRIAL)
    zipped = data / "raw" / "coco" / "zips" / "val2014.zip"
    with open(zipped, "ab") as handle:  # still a readable zip, but not the bytes the shards came from
        handle.write(b"trailing bytes")
    failed = run_cli("verify", "coco", "--data-dir", str(data), check=False)
    assert fails_naming(failed, "val2014.zip", "vlprep shard coco --split karpathy-test")
    zipped.unlink()
    kept = run_cli("verify", "coco", "--data-dir", str(data))
    assert "val2014.zip is gone" in kept.stderr and "karpathy-test: ok" in kept.stdout


def test_a_killed_reshard_leaves_the_previous_split_intact_and_verifying(tmp_path):
    mirror = tmp_path / "coco-mirror"
    build_coco_mirror(mirror, n_train=160, n_val=40)
    data = tmp_path / "data"
    run_cli("fetch", "coco", "--data-dir", str(data), "--mirror", str(mirror), "--allow-unpublished")
    run_cli("shard", "coco", "--data-dir", str(data), "--shard-samples", "50", *TRIAL)
    out = data / "out" / "coco"
    before = split_files(out, "karpathy-train")
    args = ["shard", "coco", "--data-dir", str(data), "--shard-samples", "1", "--workers", "1", *TRIAL]
    process = subprocess.Popen([sys.executable, "-m", "vlprep.cli", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ})
    seen = {p: p.stat().st_mtime_ns for p in data.rglob("coco-karpathy-train-0*.tar")}
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        written = [p for p in data.rglob("coco-karpathy-train-0*.tar") if seen.get(p) != _mtime(p)]
        if len(written) >= 3:  # the new build is under way: kill it mid-run
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    assert process.wait() == -signal.SIGKILL, "the re-shard finished before it could be killed"
    assert split_files(out, "karpathy-train") == before
    run_cli("verify", "coco", "--data-dir", str(data))

    run_cli(*args)  # the same command again finishes the new split and swaps it in
    assert len(list(out.glob("coco-karpathy-train-0*.tar"))) > 100
    run_cli("verify", "coco", "--data-dir", str(data))


def test_a_swap_cut_short_is_finished_by_the_next_run(tmp_path, coco_vg):
    data, _, _ = coco_vg
    out = data / "out" / "coco"
    run_cli("shard", "coco", "--data-dir", str(data), "--shard-samples", "20", *TRIAL)
    (out / "coco-karpathy-train-000005.tar").mkdir()  # the sixth move fails: five new shards are already in
    args = ("shard", "coco", "--data-dir", str(data), "--shard-samples", "5", *TRIAL)
    assert run_cli(*args, check=False).returncode != 0
    assert (out / ".coco-karpathy-train.swap.json").exists()
    (out / "coco-karpathy-train-000005.tar").rmdir()
    run_cli(*args)
    assert not (out / ".coco-karpathy-train.swap.json").exists()
    run_cli("verify", "coco", "--data-dir", str(data))
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "raw").symlink_to(data / "raw")
    run_cli("shard", "coco", "--data-dir", str(clean), "--shard-samples", "5", *TRIAL)
    assert split_files(out, "karpathy-train") == split_files(clean / "out" / "coco", "karpathy-train")


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def test_a_limited_trial_does_not_replace_a_more_complete_split_without_force(coco_vg):
    data, _, _ = coco_vg
    out = data / "out" / "coco"
    run_cli("shard", "coco", "--data-dir", str(data), "--split", "karpathy-val", *TRIAL)
    before = split_files(out, "karpathy-val")
    refused = run_cli("shard", "coco", "--data-dir", str(data), "--split", "karpathy-val", "--limit", "3", check=False)
    assert fails_naming(refused, "karpathy-val", "--limit 3", "--force")
    assert split_files(out, "karpathy-val") == before
    run_cli("shard", "coco", "--data-dir", str(data), "--split", "karpathy-val", "--limit", "3", "--force")
    assert json.loads((out / "stats.json").read_text())["splits"]["karpathy-val"]["images"] == 3
    run_cli("shard", "coco", "--data-dir", str(data), "--split", "karpathy-val", *TRIAL)  # more complete: allowed
    assert split_files(out, "karpathy-val") == before
    run_cli("verify", "coco", "--data-dir", str(data))


# ------------------------------------------------------------------------------------------- ImageNet

def replace_val_image(mirror: Path) -> tuple[str, bytes]:
    """Put another picture under the first val file name; return the sample key and the new bytes."""
    path = mirror / "data" / "val_images.tar.gz"
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    picture = jpeg(random.Random("replacement"), (72, 40))
    members[0] = (members[0][0], picture)
    with tarfile.open(path, "w:gz", format=tarfile.USTAR_FORMAT) as tar:
        for info, body in members:
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    reseal(mirror, "data/val_images.tar.gz")
    return members[0][0].name[:-len(".JPEG")], picture


def val_images(out: Path) -> dict[str, bytes]:
    return {sample["__key__"]: sample["jpg"] for shard in sorted(out.glob("imagenet-val-0*.tar"))
            for sample in wds.WebDataset(str(shard), shardshuffle=False, empty_check=False)}


def test_imagenet_changed_tarball_gives_the_changed_image_and_verify_names_it(tmp_path):
    mirror = tmp_path / "imagenet-mirror"
    build_imagenet_mirror(mirror)
    data = tmp_path / "data"
    run_cli("fetch", "imagenet", "--data-dir", str(data), "--mirror", str(mirror))
    run_cli("shard", "imagenet", "--data-dir", str(data), "--split", "val", "--shard-samples", "5", *TRIAL)
    out = data / "out" / "imagenet"
    stats = json.loads((out / "stats.json").read_text())["splits"]["val"]
    assert set(stats["inputs"]) == {"imagenet/classes.py", "imagenet/data/val_images.tar.gz"}

    newer = copy_mirror(mirror, tmp_path / "imagenet-mirror-2")
    key, picture = replace_val_image(newer)
    run_cli("fetch", "imagenet", "--data-dir", str(data), "--mirror", str(newer))
    stale = run_cli("verify", "imagenet", "--data-dir", str(data), check=False)
    assert fails_naming(stale, "val_images.tar.gz", "vlprep shard imagenet --split val")

    run_cli("shard", "imagenet", "--data-dir", str(data), "--split", "val", "--shard-samples", "5", *TRIAL)
    assert val_images(out)[key] == picture
    run_cli("verify", "imagenet", "--data-dir", str(data))


# ------------------------------------------------------------------------------------------- OWT, GLUE

def test_owt_changed_subset_fails_verify_and_a_refetch_rebuilds(tmp_path):
    mirror = tmp_path / "owt-mirror"
    build_owt_mirror(mirror, (0, 5), chunks=2, docs_per_chunk=10, seed=7)
    data = tmp_path / "data"
    run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", str(mirror), "--subsets", "0,5")
    binarize = ("binarize", "owt", "--data-dir", str(data), "--train-subsets", "0", "--valid-subsets", "5")
    run_cli(*binarize)
    out = data / "out" / "owt"
    stats = json.loads((out / "stats.json").read_text())
    assert set(stats["inputs"]) == {"owt/subsets/urlsf_subset00.tar", "owt/subsets/urlsf_subset05.tar"}
    train = (out / "train.bin").read_bytes()

    other = tmp_path / "owt-other"
    build_owt_mirror(other, (0,), chunks=2, docs_per_chunk=10, seed=8)
    newer = copy_mirror(mirror, tmp_path / "owt-mirror-2")
    shutil.copy(other / "subsets" / "urlsf_subset00.tar", newer / "subsets" / "urlsf_subset00.tar")
    reseal(newer, "subsets/urlsf_subset00.tar")
    run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", str(newer), "--subsets", "0,5")
    stale = run_cli("verify", "owt", "--data-dir", str(data), check=False)
    assert fails_naming(stale, "urlsf_subset00.tar", "vlprep binarize owt")

    run_cli(*binarize)
    assert (out / "train.bin").read_bytes() != train
    run_cli("verify", "owt", "--data-dir", str(data))


def test_glue_parquet_changed_after_binarize_fails_verify(tmp_path):
    mirror = tmp_path / "glue-mirror"
    build_glue_mirror(mirror)
    data = tmp_path / "data"
    run_cli("fetch", "glue", "--data-dir", str(data), "--mirror", str(mirror), "--task", "RTE")
    run_cli("binarize", "glue", "--data-dir", str(data), "--task", "RTE", *TRIAL)
    run_cli("verify", "glue", "--data-dir", str(data))
    parquet = data / "raw" / "glue" / "rte" / "train-00000-of-00001.parquet"
    shutil.copy(data / "raw" / "glue" / "rte" / "validation-00000-of-00001.parquet", parquet)
    stale = run_cli("verify", "glue", "--data-dir", str(data), check=False)
    assert fails_naming(stale, "train-00000-of-00001.parquet", "vlprep binarize glue --task RTE")


# ------------------------------------------------------------------------------------------- CC3M

def test_cc3m_edited_tsv_fails_verify_and_the_next_fetch_serves_the_new_caption(tmp_path):
    from vlprep.pipeline.samples.web import serve_web, write_tsv

    tsv = tmp_path / "Train_GCC-training.tsv"
    data = tmp_path / "data"
    fetch = ("fetch", "cc3m", "--data-dir", str(data), "--tsv", str(tsv), "--limit", "3", "--timeout", "3",
             "--retries", "1", "--workers", "1", "--threads", "4")
    with serve_web(trickle_seconds=1) as web:
        rows = write_tsv(tsv, web, ["good"] * 5)
        run_cli(*fetch)
        out = data / "out" / "cc3m"
        assert json.loads((out / "stats.json").read_text())["splits"]["train"]["inputs"] == {
            "cc3m/Train_GCC-training.tsv": hashlib.sha256(tsv.read_bytes()).hexdigest()}  # --tsv is brought into raw/
        caption = NEW_CAPTION.format(n=1)
        tsv.write_text("".join(f"{caption if n == 1 else text}\t{url}\n" for n, (text, url) in enumerate(rows)))
        stale = run_cli("verify", "cc3m", "--data-dir", str(data), check=False)
        assert fails_naming(stale, tsv.name, "changed", "vlprep fetch cc3m")
        run_cli(*fetch)
    assert caption in shard_texts(out, "train")
    run_cli("verify", "cc3m", "--data-dir", str(data))
