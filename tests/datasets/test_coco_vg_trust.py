"""COCO and Visual Genome under hostile input, through the real CLI: a 256 MB caption, JSON nested
200,000 levels deep, an oversized image member, duplicate ids, and rows that are not what the
published files hold. Memory cases run under a 2 GiB address-space limit."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Callable, Iterable

import pytest
import webdataset as wds

from ..helpers import COCO_FILES, copy_mirror, one_line_error, rewrite_member, run_cli, shard, write_sums

VG_FILES = ["images.zip", "images2.zip", "image_data.json.zip", "region_descriptions.json.zip"]
BIG = 256 << 20


def edit_json(path: Path, name: str, change: Callable[[object], object]) -> None:
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read(name))
    rewrite_member(path, name, [json.dumps(change(data)).encode()])


def huge_text(size: int) -> Iterable[bytes]:
    piece = b"a long caption " * (1 << 16)
    left = size
    while left:
        yield piece[:min(left, len(piece))]
        left -= min(left, len(piece))


def karpathy_rows(mirror: Path) -> list[dict]:
    with zipfile.ZipFile(mirror / "caption_datasets.zip") as archive:
        return json.loads(archive.read("dataset_coco.json"))["images"]


def samples(out: Path, split: str) -> dict[str, dict]:
    found = {}
    for shard_path in sorted(out.glob(f"{out.name}-{split}-*.tar")):
        for sample in wds.WebDataset(str(shard_path), shardshuffle=False, empty_check=False):
            assert sample["__key__"] not in found
            found[sample["__key__"]] = json.loads(sample["json"])
    return found


def test_coco_huge_caption_bad_captions_duplicate_id_and_huge_image_in_bounded_memory(tmp_path, base):
    mirror = copy_mirror(base, tmp_path, "coco")
    rows = karpathy_rows(mirror)
    train = [row for row in rows if row["split"] == "train"]
    victim, odd, twice, heavy = train[0], train[8], train[9], train[10]
    victim["sentences"][1]["raw"] = "@@BIG@@"
    odd["sentences"][0]["raw"], odd["sentences"][1]["raw"], odd["sentences"][2]["raw"] = None, 42, ["a", "b"]
    rows.append({**twice, "sentences": [{**twice["sentences"][0], "raw": "a second row with the same cocoid"}]})
    head, tail = json.dumps({"images": rows, "dataset": "coco"}).encode().split(b"@@BIG@@")
    rewrite_member(mirror / "caption_datasets.zip", "dataset_coco.json", [head, *huge_text(BIG), tail])
    heavy_member = f"train2014/{heavy['filename']}"
    rewrite_member(mirror / "zips/train2014.zip", heavy_member, [b"\xff\xd8" + b"\0" * (300 << 20)])
    write_sums(mirror, COCO_FILES)
    assert (mirror / "caption_datasets.zip").stat().st_size < 5 << 20

    result, data = shard("coco", mirror, tmp_path, "--workers", "2", capped=True)
    assert result.returncode == 0, result.stderr
    out = data / "out" / "coco"
    stats = json.loads((out / "stats.json").read_text())["splits"]["karpathy-train"]
    errors = [json.loads(line) for line in (out / "coco-karpathy-train.errors.jsonl").read_text().splitlines()]
    by_cause = {}
    for error in errors:
        by_cause.setdefault(error["error"].split(":")[0], []).append(error)
    [big] = by_cause["text over the cap"]
    assert big["key"] == f"{victim['cocoid']:012d}" and big["text_id"] == victim["sentences"][1]["sentid"]
    assert "--max-text-kb" in big["error"] and big["bytes"] >= BIG
    assert sorted(e["text_id"] for e in by_cause["text is not a string (null)"] + by_cause["text is not a string "
                  "(int)"] + by_cause["text is not a string (list)"]) == [s["sentid"] for s in odd["sentences"][:3]]
    [duplicate] = by_cause["duplicate key"]
    assert duplicate["key"] == f"{twice['cocoid']:012d}"
    [over] = by_cause["image over the cap"]
    assert over["key"] == f"{heavy['cocoid']:012d}" and "--max-member-mb" in over["error"]
    assert stats["dropped_texts"] == 4 and stats["dropped_texts_by_cause"]["text over the cap"] == 1
    found = samples(out, "karpathy-train")
    kept = found[f"{victim['cocoid']:012d}"]
    assert len(kept["texts"]) == len(victim["sentences"]) - 1 and victim["sentences"][1]["sentid"] not in kept["text_ids"]
    assert len(found[f"{odd['cocoid']:012d}"]["texts"]) == len(odd["sentences"]) - 3
    assert "a second row with the same cocoid" not in found[f"{twice['cocoid']:012d}"]["texts"]
    assert f"{heavy['cocoid']:012d}" not in found
    assert sum(p.stat().st_size for p in out.glob("*.tar")) < 10 << 20  # the caption was not copied in
    run_cli("verify", "coco", "--data-dir", str(data))


def test_coco_max_text_kb_drops_a_caption_over_it(tmp_path, base):
    mirror = copy_mirror(base, tmp_path, "coco")
    rows = karpathy_rows(mirror)
    row = next(r for r in rows if r["split"] == "train" and len(r["sentences"]) >= 2)
    row["sentences"][0]["raw"] = "word " * 600  # 3 KB
    edit_json(mirror / "caption_datasets.zip", "dataset_coco.json", lambda _: {"images": rows, "dataset": "coco"})
    write_sums(mirror, COCO_FILES)
    result, data = shard("coco", mirror, tmp_path, "--max-text-kb", "2")
    assert result.returncode == 0, result.stderr
    errors = (data / "out" / "coco" / "coco-karpathy-train.errors.jsonl").read_text()
    assert "text over the cap: 3,000 bytes > 2 KB (--max-text-kb)" in errors


def test_coco_deeply_nested_json_stops_with_one_line(tmp_path, base):
    mirror = copy_mirror(base, tmp_path, "coco")
    depth = 200_000
    rewrite_member(mirror / "caption_datasets.zip", "dataset_coco.json",
                   [b'{"images": ', b"[" * depth, b"]" * depth, b"}"])
    write_sums(mirror, COCO_FILES)
    result, _ = shard("coco", mirror, tmp_path, capped=True)
    one_line_error(result, "caption_datasets.zip", "dataset_coco.json", "64 levels", "--max-json-depth")


def test_vg_region_descriptions_nested_200000_deep_in_a_tiny_zip_stop_with_one_line(tmp_path, base):
    mirror = copy_mirror(base, tmp_path, "vg")
    depth = 200_000
    rewrite_member(mirror / "region_descriptions.json.zip", "region_descriptions.json", [b"[" * depth, b"]" * depth])
    write_sums(mirror, VG_FILES)
    assert (mirror / "region_descriptions.json.zip").stat().st_size < 4096
    result, _ = shard("vg", mirror, tmp_path, "--no-leak-guard", capped=True)
    one_line_error(result, "region_descriptions.json.zip", "region_descriptions.json", "64 levels",
                   "--max-json-depth")


def test_vg_huge_description_and_duplicate_image_id(tmp_path, base):
    mirror = copy_mirror(base, tmp_path, "vg")
    with zipfile.ZipFile(mirror / "region_descriptions.json.zip") as archive:
        images = json.loads(archive.read("region_descriptions.json"))
    victim = images[3]
    victim["regions"][0]["phrase"] = "@@BIG@@"
    images.append({"id": images[4]["id"], "regions": [{**images[4]["regions"][0], "phrase": "again"}]})
    head, tail = json.dumps(images).encode().split(b"@@BIG@@")
    rewrite_member(mirror / "region_descriptions.json.zip", "region_descriptions.json", [head, *huge_text(BIG), tail])
    write_sums(mirror, VG_FILES)
    result, data = shard("vg", mirror, tmp_path, "--no-leak-guard", capped=True)
    assert result.returncode == 0, result.stderr
    out = data / "out" / "vg"
    errors = [json.loads(line) for line in (out / f"{out.name}-train.errors.jsonl").read_text().splitlines()]
    [big] = [e for e in errors if e["error"].startswith("text over the cap")]
    assert big["key"] == f"{victim['id']:09d}" and big["text_id"] == victim["regions"][0]["region_id"]
    assert [e["key"] for e in errors if e["error"] == "duplicate key"] == [f"{images[4]['id']:09d}"]
    found = samples(out, "train")
    assert "again" not in found[f"{images[4]['id']:09d}"]["texts"]
    assert victim["regions"][0]["region_id"] not in found[f"{victim['id']:09d}"]["region_ids"]
    run_cli("verify", "vg", "--data-dir", str(data))


@pytest.mark.parametrize("case", ["unknown filepath", "missing cocoid", "string cocoid"])
def test_coco_malformed_rows_stop_with_one_line(tmp_path, base, case):
    mirror = copy_mirror(base, tmp_path, "coco")
    rows = karpathy_rows(mirror)
    row = next(r for r in rows if r["split"] == "train")
    if case == "unknown filepath":
        row["filepath"] = "train2015"
    elif case == "missing cocoid":
        del row["cocoid"]
    else:
        row["cocoid"] = "12x"
    edit_json(mirror / "caption_datasets.zip", "dataset_coco.json", lambda _: {"images": rows, "dataset": "coco"})
    write_sums(mirror, COCO_FILES)
    result, _ = shard("coco", mirror, tmp_path)
    word = {"unknown filepath": "'train2015'", "missing cocoid": "no 'cocoid' field",
            "string cocoid": "'cocoid' is '12x'"}[case]
    one_line_error(result, "caption_datasets.zip", "dataset_coco.json", "image 0", word)


@pytest.mark.parametrize("case", ["non-numeric x", "missing region_id"])
def test_vg_malformed_regions_stop_with_one_line(tmp_path, base, case):
    mirror = copy_mirror(base, tmp_path, "vg")
    with zipfile.ZipFile(mirror / "region_descriptions.json.zip") as archive:
        images = json.loads(archive.read("region_descriptions.json"))
    region = images[2]["regions"][1]
    if case == "non-numeric x":
        region["x"] = "abc"
    else:
        del region["region_id"]
    edit_json(mirror / "region_descriptions.json.zip", "region_descriptions.json", lambda _: images)
    write_sums(mirror, VG_FILES)
    result, _ = shard("vg", mirror, tmp_path, "--no-leak-guard")
    word = "'x' is 'abc'" if case == "non-numeric x" else "no 'region_id' field"
    one_line_error(result, "region_descriptions.json.zip", f"image {images[2]['id']}", word)


class ShortReads:
    """A source that returns a few bytes per read, so every string boundary falls between reads."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.position = data, step, 0

    def read(self, size: int) -> bytes:
        piece = self.data[self.position:self.position + min(size, self.step)]
        self.position += len(piece)
        return piece


def filtered(data: bytes, step: int, max_string: int, max_depth: int = 64):
    from vlprep.pipeline.sources.jsonstream import CappedJson

    stream = CappedJson(ShortReads(data, step), max_string, max_depth, "t.zip (member t.json)")
    return b"".join(iter(lambda: stream.read(5), b"")), stream


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1 << 20])
def test_capped_json_passes_every_string_within_the_cap_unchanged(step):
    import random

    rng = random.Random(step)
    alphabet = ['a', ' ', '[', ']', '{', '}', '"', '\\', ':', ',', 'é', '\u2028', '\x01', '🙂']
    value = [{"k[": "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))), "n": [[i, {"x": None}]]}
             for i in range(60)]
    data = json.dumps(value).encode() if step % 2 else json.dumps(value, ensure_ascii=False).encode()
    out, _ = filtered(data, step, max_string=10_000)
    assert json.loads(out) == value


@pytest.mark.parametrize("step", [1, 3, 64])
def test_capped_json_replaces_a_long_string_and_stops_past_the_depth(step):
    from vlprep.pipeline.errors import VlprepError

    long = 'x\\"[{' * 50
    data = json.dumps({"a": ["short", long, "after"]}).encode()
    out, stream = filtered(data, step, max_string=100)
    parsed = json.loads(out)
    assert parsed["a"][0] == "short" and parsed["a"][2] == "after"
    assert stream.oversized(parsed["a"][1]) == len(json.dumps(long)) - 2
    assert stream.oversized("\x00vlprep-over-cap-0") is None  # no input can forge a placeholder
    assert filtered(b"[" * 64 + b"]" * 64, step, 100)[0] == b"[" * 64 + b"]" * 64
    with pytest.raises(VlprepError, match="deeper than 64 levels"):
        filtered(b'["[[[", ' + b"[" * 64 + b"]" * 64 + b"]", step, 100)


def test_coco_annotations_of_another_shape_stop_even_in_a_limited_trial(tmp_path, base):
    """A top-level list where COCO has an object holds no image of the split: an error, not an
    empty split with exit code 0 (a --limit trial skips the published-count check)."""
    mirror = copy_mirror(base, tmp_path, "coco")
    edit_json(mirror / "caption_datasets.zip", "dataset_coco.json", lambda data: data["images"])
    write_sums(mirror, COCO_FILES)
    result, data = shard("coco", mirror, tmp_path)
    one_line_error(result, "caption_datasets.zip", "no image of split karpathy-train")
    assert not list((data / "out" / "coco").glob("*.tar"))
