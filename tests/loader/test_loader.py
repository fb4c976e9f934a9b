"""The trainer-side loader: crop draws, views, epoch splitting, and fairseq-equivalent text items."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader

from vlprep.pipeline.errors import VlprepError
from vlprep.pipeline.loader import (IMAGE_SCALE, IMAGENET_MEAN, IMAGENET_STD, PAIR_SCALE, RATIO, ViewConfig,
                                    crop_params, glue_dataset, image_dataset, pair_dataset, text_dataset)
from vlprep.pipeline.loader.augment import draw_view, flip_draw, sample_generator
from vlprep.pipeline.loader.decode import dct_divisor, make_view
from vlprep.pipeline.loader.shards import epoch_order, resolve_shards

from ..helpers import run_cli


def photo(width: int, height: int, seed: int = 0, noise: float = 6.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 / width, y * 255 / height, 128 + 100 * np.sin(x / 37.0) * np.cos(y / 23.0)], -1)
    return np.clip(pixels + rng.normal(0, noise, pixels.shape), 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray, fmt: str = "JPEG", mode: str | None = None, **save) -> bytes:
    image = Image.fromarray(pixels)
    if mode:
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, fmt, **({"quality": 92} if fmt == "JPEG" else {}), **save)
    return out.getvalue()


# ---------------------------------------------------------------- crop draws


def torchvision_get_params(height: int, width: int, scale, ratio):
    """torchvision's RandomResizedCrop.get_params (v0.15-0.20) on the global RNG, line for line."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = torch.randint(0, height - h + 1, size=(1,)).item()
            j = torch.randint(0, width - w + 1, size=(1,)).item()
            return i, j, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w = width
        h = height
    return (height - h) // 2, (width - w) // 2, h, w


@pytest.mark.parametrize("scale", [IMAGE_SCALE, PAIR_SCALE])
@pytest.mark.parametrize("size", [(480, 640), (500, 333), (40, 900)])
def test_crop_draws_equal_torchvisions_on_the_same_rng_state(scale, size):
    for seed in range(300):
        torch.manual_seed(seed)
        expected = torchvision_get_params(*size, scale, RATIO)
        flip_expected = bool(torch.rand(1) < 0.5)
        generator = torch.Generator().manual_seed(seed)
        crop = crop_params(*size, scale, RATIO, generator)
        assert (crop.i, crop.j, crop.h, crop.w) == expected
        assert flip_draw(0.5, generator) == flip_expected


def test_crop_draws_equal_installed_torchvision():
    transforms = pytest.importorskip("torchvision.transforms")
    image = Image.new("RGB", (640, 480))
    for seed in range(200):
        torch.manual_seed(seed)
        expected = transforms.RandomResizedCrop.get_params(image, list(IMAGE_SCALE), list(RATIO))
        crop = crop_params(480, 640, IMAGE_SCALE, RATIO, torch.Generator().manual_seed(seed))
        assert (crop.i, crop.j, crop.h, crop.w) == tuple(expected)


@pytest.mark.parametrize("scale", [IMAGE_SCALE, PAIR_SCALE])
@pytest.mark.parametrize("height,width", [(512, 512), (480, 640)])
def test_crop_statistics(scale, height, width):
    """Area in the scale range, aspect ratio in (3/4, 4/3), inside the image, flips at rate 0.5."""
    draws = 4000
    config = ViewConfig(scale=scale)
    areas, aspects, flips = [], [], 0
    for n in range(draws):
        crop, flip = draw_view(height, width, config, sample_generator(1, 0, f"key{n}"))
        assert 0 <= crop.i and crop.i + crop.h <= height and 0 <= crop.j and crop.j + crop.w <= width
        areas.append(crop.h * crop.w / (height * width))
        aspects.append(crop.w / crop.h)
        flips += flip
    areas, aspects = np.array(areas), np.array(aspects)
    rounding = 2.5 / 100  # w and h are rounded to whole pixels; the smallest crop here is ~ 157x157
    assert areas.min() >= scale[0] * (1 - rounding) and areas.max() <= scale[1]
    assert aspects.min() >= RATIO[0] * (1 - rounding) and aspects.max() <= RATIO[1] * (1 + rounding)
    if height == width:  # log-uniform aspect draws, symmetric image: half the crops wider than tall
        assert abs(np.mean(aspects > 1) - 0.5) < 0.05
    # area is uniform in scale for the draws that fit; the mean sits inside the range, not at an edge
    assert scale[0] + 0.2 * (scale[1] - scale[0]) < areas.mean() < scale[0] + 0.6 * (scale[1] - scale[0])
    sigma = math.sqrt(0.25 / draws)
    assert abs(flips / draws - 0.5) < 4 * sigma


def test_fallback_is_the_centered_crop_in_ratio():
    crop = crop_params(20, 400, IMAGE_SCALE, RATIO, torch.Generator().manual_seed(0))
    assert (crop.h, crop.w) == (20, round(20 * 4 / 3))
    assert (crop.i, crop.j) == (0, (400 - crop.w) // 2)


def test_views_are_seeded_by_sample_not_by_order():
    config = ViewConfig()
    first = draw_view(480, 640, config, sample_generator(0, 3, "000001"))
    again = draw_view(480, 640, config, sample_generator(0, 3, "000001"))
    other_epoch = draw_view(480, 640, config, sample_generator(0, 4, "000001"))
    assert first == again and first != other_epoch


# ---------------------------------------------------------------- pixels


def reference_view(data: bytes, crop, flip: bool, size: int = 224, resample=Image.Resampling.BICUBIC) -> np.ndarray:
    """The naive torchvision-style pipeline: full Pillow decode, crop, resize, flip, ToTensor, Normalize."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image = image.crop((crop.j, crop.i, crop.j + crop.w, crop.i + crop.h)).resize((size, size), resample)
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.asarray(image, dtype=np.float32) / 255
    return ((pixels - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("shape", [(480, 640), (1200, 1600)])
def test_view_matches_full_decode_pipeline(shape, interpolation):
    data = encode(photo(shape[1], shape[0]))
    config = ViewConfig(scale=PAIR_SCALE, interpolation=interpolation)
    resample = Image.Resampling.BICUBIC if interpolation == "bicubic" else Image.Resampling.BILINEAR
    divisors = set()
    for n in range(12):
        crop, flip = draw_view(*shape, config, sample_generator(0, 0, str(n)))
        divisors.add(dct_divisor(crop.h, crop.w, 224))
        ours = make_view(data, lambda h, w: (crop, flip), config).numpy()
        assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
        diff = np.abs(ours - reference_view(data, crop, flip, resample=resample))
        # one grey level is 1/255/0.225 = 0.017 here; DCT-domain scaling differs from a spatial filter
        # by a few levels at most on average
        assert diff.mean() < (0.02 if divisors == {1} else 0.06), (crop, diff.mean())
    if shape == (1200, 1600):
        assert divisors - {1}, "large crops must be decoded at a reduced DCT scale"


def test_eval_view_is_the_whole_image_resized():
    data = encode(photo(300, 200))
    config = ViewConfig(train=False)
    crop, flip = draw_view(200, 300, config, None)
    assert (crop.i, crop.j, crop.h, crop.w, flip) == (0, 0, 200, 300, False)
    ours = make_view(data, lambda h, w: draw_view(h, w, config, None), config).numpy()
    assert np.abs(ours - reference_view(data, crop, False)).mean() < 0.02


@pytest.mark.parametrize("kind", ["grayscale", "cmyk", "png", "progressive"])
def test_view_of_other_encodings(kind):
    pixels = photo(320, 240)
    data = {"grayscale": lambda: encode(pixels, mode="L"), "cmyk": lambda: encode(pixels, mode="CMYK"),
            "png": lambda: encode(pixels, "PNG"), "progressive": lambda: encode(pixels, progressive=True)}[kind]()
    config = ViewConfig()
    crop, flip = draw_view(240, 320, config, sample_generator(0, 0, kind))
    ours = make_view(data, lambda h, w: (crop, flip), config).numpy()
    assert ours.shape == (3, 224, 224) and np.isfinite(ours).all()
    assert np.abs(ours - reference_view(data, crop, flip)).mean() < 0.03


# ---------------------------------------------------------------- shard streams


def write_shards(root: Path, shards: int, per_shard: int, name: str = "train") -> Path:
    """ImageNet-style shards (jpg, cls, json) with a wids index, written by webdataset's TarWriter."""
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    key = 0
    for s in range(shards):
        path = root / f"{name}-{s:06d}.tar"
        with wds.TarWriter(str(path)) as sink:
            for _ in range(per_shard):
                pixels = photo(64 + 8 * (key % 5), 48 + 4 * (key % 3), seed=key, noise=2)
                sink.write({"__key__": f"{key:06d}", "jpg": encode(pixels), "cls": str(key % 10).encode(),
                            "json": json.dumps({"label": key % 10}).encode()})
                key += 1
        entries.append({"url": path.name, "nsamples": per_shard, "filesize": path.stat().st_size, "md5sum": ""})
    index = root / f"{name}.index.json"
    index.write_text(json.dumps({"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": name,
                                 "shardlist": entries}))
    return index


def keys_seen(dataset, monkeypatch, rank: int, world: int, workers: int) -> list[str]:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))
    loader = DataLoader(dataset, batch_size=None, num_workers=workers)
    return [item[-1] for item in loader]


def test_epoch_mode_sees_every_sample_once_across_2_ranks_x_2_workers(tmp_path, monkeypatch):
    index = write_shards(tmp_path, shards=9, per_shard=5)
    dataset = image_dataset(index, train=True, with_keys=True, shuffle_buffer=8, seed=5)
    everything = {f"{k:06d}" for k in range(45)}
    orders = []
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            dataset.set_epoch(epoch)
            seen += keys_seen(dataset, monkeypatch, rank, 2, 2)
        assert sorted(seen) == sorted(everything), f"epoch {epoch}: duplicates or gaps"
        orders.append(seen)
    assert orders[0] != orders[1], "the epoch must reshuffle"
    # the shard order is a function of (seed, epoch) only: every rank computes the same one
    urls = resolve_shards(index).urls
    assert epoch_order(urls, 5, 1, True) == epoch_order(list(urls), 5, 1, True) != epoch_order(urls, 5, 0, True)
    # and the whole epoch is reproducible (each pass advances the epoch: every simulated rank sets it)
    again = []
    for rank in (0, 1):
        dataset.set_epoch(1)
        again += keys_seen(dataset, monkeypatch, rank, 2, 2)
    assert again == orders[1]


def test_items_do_not_depend_on_the_worker_count(tmp_path, monkeypatch):
    index = write_shards(tmp_path, shards=4, per_shard=3)
    results = []
    for workers in (0, 2):
        dataset = image_dataset(index, train=True, with_keys=True, seed=2)
        dataset.set_epoch(7)
        monkeypatch.delenv("RANK", raising=False)
        monkeypatch.delenv("WORLD_SIZE", raising=False)
        items = {key: (image, label) for image, label, key in DataLoader(dataset, batch_size=None, num_workers=workers)}
        results.append(items)
    assert results[0].keys() == results[1].keys()
    for key, (image, label) in results[0].items():
        assert torch.equal(image, results[1][key][0]) and label == results[1][key][1] == int(key) % 10


def test_fewer_shards_than_readers_is_a_clear_error(tmp_path, monkeypatch):
    index = write_shards(tmp_path, shards=3, per_shard=4)
    dataset = image_dataset(index, with_keys=True)
    with pytest.raises(Exception, match="3 shards cannot be dealt to 2 ranks × 2 workers") as info:
        keys_seen(dataset, monkeypatch, 0, 2, 2)
    assert "resampled=True" in str(info.value)


def test_resampled_mode_gives_every_rank_an_equal_share(tmp_path, monkeypatch):
    index = write_shards(tmp_path, shards=2, per_shard=6)
    dataset = image_dataset(index, with_keys=True, resampled=True)
    counts = [len(keys_seen(dataset, monkeypatch, rank, 2, 2)) for rank in (0, 1)]
    assert counts == [6, 6]  # 12 samples / (2 ranks × 2 workers) = 3 per reader, 2 readers per rank
    dataset = image_dataset([str(p) for p in sorted(tmp_path.glob("*.tar"))], resampled=True, epoch_samples=40,
                            with_keys=True)
    assert len(keys_seen(dataset, monkeypatch, 1, 2, 2)) == 20


def test_errors_name_the_shard_and_sample(tmp_path):
    index = write_shards(tmp_path, shards=1, per_shard=2)
    path = tmp_path / "train-000000.tar"
    with wds.TarWriter(str(path)) as sink:
        sink.write({"__key__": "bad", "jpg": b"not an image", "cls": b"1"})
    with pytest.raises(VlprepError, match=r"train-000000.tar: sample bad: .*not an image"):
        list(image_dataset(index))
    with pytest.warns(UserWarning, match="skipped"):
        assert list(image_dataset(index, skip_errors=True)) == []


def test_missing_index_says_how_to_build_it(tmp_path):
    with pytest.raises(VlprepError, match="vlprep shard"):
        image_dataset(tmp_path / "out" / "coco" / "karpathy-train")


# ---------------------------------------------------------------- on the demo's outputs


def test_the_documented_example_runs(demo_data, tmp_path):
    """docs/loader.md's example, run as a user would after `vlprep demo`."""
    import re
    import subprocess
    import sys

    text = (Path(__file__).resolve().parents[2] / "docs" / "loader.md").read_text()
    script = tmp_path / "example.py"
    script.write_text(re.search(r"```python\n(.*?)```", text, re.S).group(1))
    result = subprocess.run([sys.executable, str(script)], cwd=demo_data.parent, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("0 torch.Size([8, 3, 224, 224]) torch.Size([8, 64])")
    assert lines[3].split()[1:2] == ["[0,"]


def shard_json(index: Path) -> dict[str, dict]:
    out = {}
    for url in resolve_shards(index).urls:
        for sample in wds.tariterators.tarfile_samples([{"url": url}]):
            out[sample["__key__"]] = json.loads(sample["json"])
    return out


@pytest.mark.parametrize("split", ["coco/coco-karpathy-train", "vg/vg-train", "vg-concat/vg-concat-train",
                                   "cc3m/cc3m-train"])
def test_pair_dataset_pads_the_chosen_caption(demo_data, split):
    prefix = demo_data / "out" / split
    stored = shard_json(Path(f"{prefix}.index.json"))
    dataset = pair_dataset(prefix, with_keys=True, seed=3)
    chosen_by_epoch = []
    for epoch in (0, 1, 2):
        dataset.set_epoch(epoch)
        chosen = {}
        for image, tokens, mask, key in DataLoader(dataset, batch_size=None, num_workers=2):
            assert image.shape == (3, 224, 224) and tokens.shape == mask.shape == (64,)
            length = int((~mask).sum())
            assert torch.all(tokens[length:] == 1) and tokens[0] == 0 and tokens[length - 1] == 2
            captions = stored[key]["tokens"]
            assert tokens[:length].tolist() in captions
            chosen[key] = captions.index(tokens[:length].tolist())
        assert chosen.keys() == stored.keys()
        chosen_by_epoch.append(chosen)
    if any(len(meta["tokens"]) > 1 for meta in stored.values()):
        assert chosen_by_epoch[0] != chosen_by_epoch[1], "captions must be re-chosen each epoch"


def test_image_dataset_reads_imagenet_labels(demo_data):
    index = demo_data / "out" / "imagenet" / "imagenet-val.index.json"
    stored = shard_json(index)
    items = list(image_dataset(index, train=False, with_keys=True))
    assert [key for _, _, key in items] == list(stored)  # eval keeps the index order
    for image, label, key in items:
        assert label == stored[key]["label"] and image.shape == (3, 224, 224)
    with pytest.raises(VlprepError, match="no .cls member"):
        next(iter(image_dataset(demo_data / "out" / "coco" / "coco-karpathy-test")))


@pytest.mark.parametrize("tokens_per_sample", [512, 64, 2])
def test_text_blocks_equal_fairseq_masked_lm(demo_data, tokens_per_sample):
    from fairseq.data import Dictionary, PrependTokenDataset, TokenBlockDataset, data_utils

    out = demo_data / "out" / "owt"
    dictionary = Dictionary.load(str(out / "dict.txt"))
    for split in ("train", "valid"):
        raw = data_utils.load_indexed_dataset(str(out / split), dictionary)
        blocks = TokenBlockDataset(raw, raw.sizes, tokens_per_sample - 1, pad=dictionary.pad(),
                                   eos=dictionary.eos(), break_mode="none")
        expected = PrependTokenDataset(blocks, dictionary.bos())
        ours = text_dataset(out, split, tokens_per_sample)
        assert len(ours) == len(expected) > 0
        assert np.array_equal(ours.sizes, expected.sizes)
        for i in range(len(ours)):
            assert torch.equal(ours[i], expected[i]), (split, i)


@pytest.mark.parametrize("task,split", [("MNLI", "valid1"), ("MNLI", "train"), ("STS-B", "valid"),
                                        ("CoLA", "train"), ("RTE", "test"), ("QQP", "valid")])
@pytest.mark.parametrize("separator", [None, 2])
def test_glue_items_equal_fairseq_sentence_prediction(demo_data, task, split, separator):
    from fairseq.tasks.sentence_prediction import SentencePredictionConfig, SentencePredictionTask

    task_dir = demo_data / "out" / "glue" / f"{task}-bin"
    regression = task == "STS-B"
    labels = task_dir / "label" / "dict.txt"
    num_classes = 1 if regression else sum(1 for line in labels.read_text().splitlines()
                                           if not line.startswith("madeupword"))
    cfg = SentencePredictionConfig(data=str(task_dir), num_classes=num_classes, init_token=0,
                                   separator_token=separator, regression_target=regression, no_shuffle=True,
                                   seed=1, max_positions=512)
    fairseq_task = SentencePredictionTask.setup_task(cfg)
    expected = fairseq_task.load_dataset(split)
    ours = glue_dataset(task_dir, split, separator_token=separator)
    assert len(ours) == len(expected) > 0
    for i in range(len(ours)):
        tokens, target = ours[i]
        item = expected[i]
        assert torch.equal(tokens, item["net_input.src_tokens"]), (task, split, i)
        if "target" in item:
            expected_target = torch.as_tensor(item["target"])
            assert torch.equal(torch.as_tensor(target), expected_target.reshape(torch.as_tensor(target).shape))
        else:
            assert target is None
    if len(ours) > 1 and separator is None and task == "MNLI":
        assert ours[0][0].tolist().count(2) == 2  # <s> s1 </s> s2 </s>


# ---------------------------------------------------------------- preview


@pytest.mark.parametrize("args,cells,pictures", [(["coco", "--n", "5"], 5, 1),
                                                  (["vg", "--variant", "concat", "--limit", "4", "--augmented"], 4, 2),
                                                  (["imagenet", "--augmented", "--limit", "3"], 3, 2)])
def test_preview_writes_a_png(demo_data, args, cells, pictures):
    result = run_cli("preview", *args, "--data-dir", str(demo_data))
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        columns = min(cells, 3 if "--augmented" in args else 4)
        assert image.width == columns * (pictures * 224 + (pictures - 1) * 8 + 8) + 8
        # not a blank page: the pictures are drawn
        assert np.asarray(image.convert("L")).std() > 20


def test_preview_marks_truncated_captions(demo_data):
    from vlprep.pipeline.reports.preview import caption_lines
    from vlprep.pipeline.transforms.dictionary import load_dictionary

    stored = shard_json(demo_data / "out" / "coco" / "coco-karpathy-train.index.json")
    long = next(meta for meta in stored.values() if max(meta["lengths"]) > 62)
    pick = max(range(len(long["lengths"])), key=lambda i: long["lengths"][i])
    lines, warnings = caption_lines(long, pick, load_dictionary())
    assert warnings == [f"truncated: {long['lengths'][pick]} BPE tokens, 62 kept"]
    assert lines[0].startswith(f"[{pick + 1}/{len(long['lengths'])}] ")


def test_preview_of_an_unbuilt_split_names_the_built_ones(demo_data):
    result = run_cli("preview", "coco", "--split", "train2014", "--data-dir", str(demo_data), check=False)
    assert result.returncode == 1
    assert "built splits: karpathy-test, karpathy-train" in result.stderr and "fix:" in result.stderr


def test_preview_draws_broken_and_foreign_samples_instead_of_failing(tmp_path):
    out = tmp_path / "data" / "out" / "cc3m"
    index = write_shards(out, shards=1, per_shard=2, name="cc3m-train")
    with wds.TarWriter(str(out / "cc3m-train-000000.tar")) as sink:  # replace: one foreign caption, one broken image
        sink.write({"__key__": "good", "jpg": encode(photo(80, 60)), "json": json.dumps({"caption": "a cat"}).encode()})
        sink.write({"__key__": "bad", "jpg": b"not an image", "json": b"{}"})
    assert index.is_file()
    result = run_cli("preview", "cc3m", "--augmented", "--data-dir", str(tmp_path / "data"))
    assert "cc3m train: 2 samples" in result.stdout
    with Image.open(result.stdout.strip().splitlines()[-1]) as image:
        image.verify()
