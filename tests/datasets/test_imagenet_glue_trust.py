"""ImageNet, GLUE, dict.txt and full disks under hostile or unlucky input, through the real command line.

Each case is one a verified file can hold: an image member of 1 GiB, two files of one key, a member
name that is too long or not UTF-8, a GLUE sentence of 256 MB, labels that are strings, NaN or
fractions, a ``#fairseq:overwrite`` dictionary, a disk that fills up. None may end in a traceback,
a ``MemoryError`` or an OOM kill; memory-bound cases run under a 2 GiB address-space limit and
report their peak RSS.
"""
from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow as pa
import pytest
import webdataset as wds

from vlprep.pipeline.samples.images import jpeg
from vlprep.pipeline.samples.text import build_glue_mirror

from ..helpers import assert_clean_failure, fetched_imagenet, glue_data, imagenet_mirror, rte, run_cli, zeros_gz
from ..helpers import run_capped_printing_peak as run_capped

GIB = 1 << 30
TRIAL = ("--limit", "100000")
RSS_BUDGET = 1_000_000_000


# ------------------------------------------------------------------------------------------ ImageNet

def tar_member(name: str, data: bytes, encoding: str = "utf-8") -> bytes:
    """One member as a GNU tar writes it (long names get a ``././@LongLink`` header)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 1_300_000_000
    return info.tobuf(tarfile.GNU_FORMAT, encoding, "surrogateescape") + data + b"\0" * (-len(data) % 512)


def huge_member(name: str, size: int) -> list[bytes]:
    info = tarfile.TarInfo(name)
    info.size = size
    return [gzip.compress(info.tobuf(tarfile.USTAR_FORMAT)), zeros_gz(size + -size % 512)]


def test_a_1gib_member_is_skipped_unread_and_listed_with_the_cap_and_its_option(tmp_path):
    big = "n01440764_9999_n01440764.JPEG"
    mirror = imagenet_mirror(tmp_path, {0: huge_member(big, GIB) + huge_member("notes/big.bin", GIB)})
    data = fetched_imagenet(tmp_path, mirror)
    result, peak = run_capped("shard", "imagenet", "--data-dir", str(data), "--workers", "2", *TRIAL)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert peak < RSS_BUDGET, f"peak RSS {peak / 1e6:.0f} MB"
    out = data / "out" / "imagenet"
    errors = [json.loads(line) for line in (out / "imagenet-train.errors.jsonl").read_text().splitlines()]
    over = [e for e in errors if e["file"] == big]
    assert len(over) == 1 and "--max-member-mb" in over[0]["error"] and "1,073,741,824 bytes" in over[0]["error"]
    assert not any("big.bin" in e["file"] for e in errors)  # not an image: skipped unread, not an image error
    stats = json.loads((out / "stats.json").read_text())["splits"]["train"]
    assert stats["over_member_cap"] == 1 and stats["images"] == 29
    run_cli("verify", "imagenet", "--data-dir", str(data))
    # a cap above the member's size reads it (and the zeros then fail to decode as an image)
    run_cli("shard", "imagenet", "--data-dir", str(data), "--max-member-mb", "2048", *TRIAL, timeout=600)
    errors = (out / "imagenet-train.errors.jsonl").read_text()
    assert big in errors and "cannot decode" in errors and "--max-member-mb" not in errors


def samples(out: Path, split: str) -> list[dict]:
    return [dict(s) for shard in sorted(out.glob(f"{out.name}-{split}-0*.tar"))
            for s in wds.WebDataset(str(shard), shardshuffle=False, empty_check=False)]


def test_duplicate_names_keep_the_first_and_dotted_names_get_their_own_key(tmp_path):
    import random

    rng = random.Random(5)
    first, again = jpeg(rng, (40, 40)), jpeg(rng, (44, 40))
    dotted, underscored = jpeg(rng, (48, 40)), jpeg(rng, (52, 40))
    extra = {0: [gzip.compress(tar_member("n01440764_77_n01440764.JPEG", first)
                               + tar_member("n01443537_5.1_n01443537.JPEG", dotted))],
             3: [gzip.compress(tar_member("other/n01440764_77_n01440764.JPEG", again)
                               + tar_member("n01443537_5_1_n01443537.JPEG", underscored))]}
    data = fetched_imagenet(tmp_path, imagenet_mirror(tmp_path, extra))
    run_cli("shard", "imagenet", "--data-dir", str(data), "--shard-samples", "8", *TRIAL)
    out = data / "out" / "imagenet"
    got = samples(out, "train")
    keys = [s["__key__"] for s in got]
    assert len(keys) == len(set(keys)) == 29 + 3
    by_key = {s["__key__"]: s for s in got}
    assert by_key["n01440764_77_n01440764"]["jpg"] == first  # the first in tarball order is kept
    assert by_key["n01443537_5%2E1_n01443537"]["jpg"] == dotted
    assert by_key["n01443537_5_1_n01443537"]["jpg"] == underscored
    assert by_key["n01440764_1000_n01440764"]  # ImageNet's own names keep their keys
    errors = [json.loads(line) for line in (out / "imagenet-train.errors.jsonl").read_text().splitlines()]
    duplicate = [e for e in errors if e["error"].startswith("duplicate key")]
    assert [e["file"] for e in duplicate] == ["n01440764_77_n01440764.JPEG"]
    assert "train_images_3.tar.gz" in duplicate[0]["error"]
    assert json.loads((out / "stats.json").read_text())["splits"]["train"]["duplicate_keys"] == 1
    run_cli("verify", "imagenet", "--data-dir", str(data))


@pytest.mark.parametrize("name, encoding, words", [
    ("n01440764_" + "x" * 200 + "_n01440764.JPEG", "utf-8", ("file name of 225 bytes", "at most 90")),
    ("n01440764_\xe9t\xe9_n01440764.JPEG", "latin-1", ("not UTF-8", "b'n01440764_\\xe9t\\xe9_n01440764.JPEG'")),
])
def test_a_member_name_too_long_or_not_utf8_is_one_clear_error(tmp_path, name, encoding, words):
    import random

    extra = {2: [gzip.compress(tar_member(name, jpeg(random.Random(1), (40, 40)), encoding))]}
    data = fetched_imagenet(tmp_path, imagenet_mirror(tmp_path, extra))
    result = run_cli("shard", "imagenet", "--data-dir", str(data), *TRIAL, check=False)
    assert_clean_failure(result, "train_images_2.tar.gz", "fix:", "vlprep fetch imagenet", *words)


# ---------------------------------------------------------------------------------------------- GLUE

def test_a_sentence_over_the_cap_stops_with_its_file_row_and_option_and_the_option_raises_it(tmp_path):
    long = "word " * ((2 << 20) // 5)
    data = glue_data(tmp_path, "RTE", "train", rte(["short"] * 5 + [long] + ["short"] * 6))
    failed = run_cli("binarize", "glue", "--data-dir", str(data), "--task", "RTE", *TRIAL, check=False)
    assert_clean_failure(failed, "rte/train-00000-of-00001.parquet", "row 5 ", "'sentence1'", "--max-text-kb",
                         "vlprep fetch glue --task RTE")
    run_cli("binarize", "glue", "--data-dir", str(data), "--task", "RTE", "--max-text-kb", "4096", *TRIAL)
    run_cli("verify", "glue", "--data-dir", str(data))


@pytest.mark.parametrize("shape", ["one 256 MB value", "one 1000 KB value on 1000 rows (dictionary pages)"])
def test_a_huge_glue_file_is_refused_in_bounded_memory(tmp_path, shape):
    if shape.startswith("one 256"):
        table = rte(["short"] * 3 + ["x" * (256 << 20)] + ["short"] * 8)
    else:
        big = pa.DictionaryArray.from_arrays(pa.array([0] * 1000, pa.int32()), pa.array(["y" * 1000 * 1024]))
        table = pa.table({"sentence1": big, "sentence2": ["h"] * 1000, "label": [0] * 1000, "idx": range(1000)})
    data = glue_data(tmp_path, "RTE", "train", table, compression="zstd", store_schema=False)
    del table
    result, peak = run_capped("binarize", "glue", "--data-dir", str(data), "--task", "RTE", *TRIAL)
    cause = "row group 0 holds" if shape.startswith("one 256") else "bytes of text, more than any GLUE split"
    assert_clean_failure(result, "rte/train-00000-of-00001.parquet", cause, "--max-text-kb", "fix:")
    assert peak < RSS_BUDGET, f"peak RSS {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("task, split, table, words", [
    ("RTE", "train", rte(["a"] * 12, label=["entailment"] * 12), ("column 'label' holds string", "class numbers")),
    ("RTE", "train", rte(["a"] * 12, label=[0.0] * 5 + [float("nan")] + [1.0] * 6), ("row 5 ", "nan")),
    ("RTE", "validation", rte(["a"] * 12, label=[1.0] * 7 + [1.7] + [0.0] * 4), ("row 7 ", "1.7", "0..1")),
    ("RTE", "train", rte(["a"] * 12, label=pa.array([0] * 10 + [None, 1], pa.int64())), ("row 10 ", "None")),
    ("RTE", "train", rte(list(range(12))), ("column 'sentence1' holds int64", "not text")),
    ("RTE", "test", rte(["a"] * 4 + [None] + ["b"] * 7), ("row 4 ", "no sentence1 (null)")),
    ("STS-B", "validation", rte(["a"] * 12, label=pa.array([1.5] * 2 + [None] + [2.0] * 9, pa.float32())),
     ("row 2 ", "STS-B score None")),
    ("STS-B", "train", rte(["a"] * 12, label=pa.array([1.5] * 3 + [7.5] + [2.0] * 8, pa.float32())),
     ("row 3 ", "STS-B score 7.5", "0 to 5")),
])
def test_bad_labels_and_sentences_are_one_line_naming_file_row_and_fix(tmp_path, task, split, table, words):
    data = glue_data(tmp_path, task, split, table)
    failed = run_cli("binarize", "glue", "--data-dir", str(data), "--task", task, *TRIAL, check=False)
    config = {"RTE": "rte", "STS-B": "stsb"}[task]
    assert_clean_failure(failed, f"{config}/{split}-00000-of-00001.parquet", f"vlprep fetch glue --task {task}", *words)


def test_integral_float_labels_are_their_class(tmp_path):
    """A float column (pandas makes one of ints with a null) whose values are whole numbers is accepted."""
    data = glue_data(tmp_path, "RTE", "train", rte(["a b"] * 12, label=[0.0, 1.0] * 6))
    run_cli("binarize", "glue", "--data-dir", str(data), "--task", "RTE", *TRIAL)
    label_dict = (data / "out" / "glue" / "RTE-bin" / "label" / "dict.txt").read_text()
    assert label_dict.startswith("entailment 6\nnot_entailment 6\n")
    run_cli("verify", "glue", "--data-dir", str(data))


# ---------------------------------------------------------------------------------------- dict.txt

def test_an_overwrite_flagged_or_loosely_written_dict_is_accepted_by_binarize_and_verify_alike(fetched, tmp_path):
    from vlprep.pipeline.transforms.dictionary import load_dictionary

    try:
        from fairseq.data import Dictionary as FairseqDictionary
    except ImportError:
        FairseqDictionary = None
    shipped = load_dictionary().to_text()
    data = str(fetched)
    for name, text in (("overwrite", shipped + "13 5 #fairseq:overwrite\n"),
                       ("loose", shipped.replace("\n11 ", "\n11 0", 1) + "new 07  \n")):
        path = tmp_path / f"{name}.txt"
        path.write_text(text)
        run_cli("binarize", "owt", "--data-dir", data, "--dict", str(path), "--limit", "20", "--workers", "1")
        run_cli("verify", "owt", "--data-dir", data)
        written = load_dictionary(fetched / "out" / "owt" / "dict.txt")
        assert written.indices == load_dictionary(path).indices
        if FairseqDictionary is not None:  # and the trainer's loader reads the same indices back
            assert FairseqDictionary.load(str(fetched / "out" / "owt" / "dict.txt")).indices == written.indices


# ---------------------------------------------------------------------------------------- disk full

def fill_limit(limit: int):
    def limit_file_size() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_file_size


def run_limited(limit: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlprep.cli", *args], capture_output=True, text=True, timeout=300,
                          preexec_fn=fill_limit(limit))


def glue_with_rows(tmp_path: Path, rows: int) -> Path:
    mirror = tmp_path / "mirror"
    build_glue_mirror(mirror, rows=rows)
    data = tmp_path / "data"
    run_cli("fetch", "glue", "--data-dir", str(data), "--mirror", str(mirror), "--task", "QQP")
    return data


def test_a_file_size_limit_names_the_file_being_written(tmp_path):
    data = glue_with_rows(tmp_path, 3000)
    failed = run_limited(16_000, "binarize", "glue", "--data-dir", str(data), "--task", "QQP", *TRIAL)
    assert_clean_failure(failed, "file size limit reached while writing", str(data / "out" / "glue"), "train.bin")
    imagenet = fetched_imagenet(tmp_path / "imagenet", imagenet_mirror(tmp_path / "imagenet", {}))
    failed = run_limited(16_000, "shard", "imagenet", "--data-dir", str(imagenet), "--workers", "2", *TRIAL)
    # shards are written in the work folder's staged/ and swapped into out/ when the split is whole
    assert_clean_failure(failed, "file size limit reached while writing", str(imagenet / "work" / "imagenet"),
                         "staged/imagenet-train-000000.tar")


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MB tmpfs (needs root and a kernel that lets this process mount)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                                                        str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (the file-size-limit test covers the message)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_names_the_file_being_written(tmp_path, tiny_disk):
    data = glue_with_rows(tmp_path, 3000)
    (tiny_disk / "raw").symlink_to(data / "raw")
    failed = run_cli("binarize", "glue", "--data-dir", str(tiny_disk), "--task", "QQP", *TRIAL, check=False)
    assert_clean_failure(failed, "no space left on device while writing", str(tiny_disk / "out" / "glue"))
    shutil.rmtree(tiny_disk / "out", ignore_errors=True)
    imagenet = fetched_imagenet(tmp_path / "imagenet", imagenet_mirror(tmp_path / "imagenet", {}))
    (tiny_disk / "raw").unlink()
    (tiny_disk / "raw").symlink_to(imagenet / "raw")
    (tiny_disk / "filler").write_bytes(b"\0" * 900_000)
    failed = run_cli("shard", "imagenet", "--data-dir", str(tiny_disk), "--workers", "2", *TRIAL, check=False)
    assert_clean_failure(failed, "no space left on device while writing", str(tiny_disk))
