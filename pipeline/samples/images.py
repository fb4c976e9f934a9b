"""Small COCO-, Visual Genome- and ImageNet-format mirrors built locally, for ``vlprep demo`` and the tests.

Real formats throughout: zips of real JPEGs at the published member paths, the published JSON
shapes (Karpathy's ``dataset_coco.json``, COCO ``captions_*2014.json``, VG ``image_data.json`` and
``region_descriptions.json``), and the dirt real data has: captions with NULs, newlines, runs of
spaces and over-long text, a truncated JPEG, a CMYK JPEG, a PNG named ``.jpg``, an image listed in
the annotations but absent from the zip, VG images that are also in COCO's Karpathy val/test.
"""
from __future__ import annotations

import gzip
import io
import json
import random
import zipfile
from pathlib import Path

from PIL import Image

from ..fileio import atomic_path, ensure_dir
from .text import WORDS, write_sums

FIXED_DATE = (2014, 1, 1, 0, 0, 0)


def jpeg(rng: random.Random, size: tuple[int, int] = (64, 48), mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    """A small real image: a colour gradient with noise, so it compresses like a photo."""
    width, height = size
    image = Image.new("RGB", size)
    base = [rng.randrange(256) for _ in range(3)]
    image.putdata([((base[0] + x * 3 + rng.randrange(20)) % 256, (base[1] + y * 4) % 256,
                    (base[2] + x + y + rng.randrange(20)) % 256) for y in range(height) for x in range(width)])
    if mode != "RGB":
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def caption(rng: random.Random, dirty: bool) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16))).capitalize() + "."
    if dirty:
        text = rng.choice([f"  {text}\n", f"{text}\x00", f"a  lot   of\tspace {text}", f"{text} " + "very " * 80,
                           f"line\nbreak {text}", f"{text} 🙂 café"])
    return text


def _zip(path: Path, files: dict[str, bytes]) -> None:
    with atomic_path(path, durable=False) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for name in sorted(files):
            archive.writestr(zipfile.ZipInfo(name, FIXED_DATE), files[name])


def _images(rng: random.Random, folder: str, names: list[str], damaged: dict[str, str]) -> dict[str, bytes]:
    files = {}
    for name in names:
        kind = damaged.get(name)
        if kind == "missing":
            continue
        data = {"truncated": lambda: jpeg(rng)[:300], "cmyk": lambda: jpeg(rng, mode="CMYK"),
                "png": lambda: jpeg(rng, fmt="PNG")}.get(kind, lambda: jpeg(rng, (rng.randint(40, 90), 48)))()
        files[f"{folder}/{name}"] = data
    return files


def _coco_ids(rng: random.Random, n_train: int, n_val: int) -> tuple[list[int], list[int], dict[int, str]]:
    """The sample's train2014 and val2014 ids, and each id's Karpathy split."""
    train_ids = sorted(rng.sample(range(1, 600_000), n_train))
    val_ids = sorted(rng.sample(range(1, 600_000), n_val))
    karpathy_split = {i: "train" for i in train_ids}
    for n, i in enumerate(val_ids):
        karpathy_split[i] = ("val", "test", "restval", "restval")[n % 4]
    return train_ids, val_ids, karpathy_split


def _tar_gz(path: Path, files: list[tuple[str, bytes]]) -> None:
    """A .tar.gz with no time or temp name in its gzip header, so the same sample gives the same bytes."""
    import tarfile

    with (atomic_path(path, durable=False) as tmp, open(tmp, "wb") as raw,
          gzip.GzipFile(fileobj=raw, mode="wb", filename="", mtime=0) as zipped,
          tarfile.open(fileobj=zipped, mode="w", format=tarfile.USTAR_FORMAT) as tar):
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_300_000_000
            tar.addfile(info, io.BytesIO(data))


def _by_split(karpathy_split: dict[int, str]) -> dict[str, list[int]]:
    by_split: dict[str, list[int]] = {}
    for i, split in karpathy_split.items():
        by_split.setdefault(split, []).append(i)
    return by_split


def coco_split_ids(n_train: int = 24, n_val: int = 24, seed: int = 0) -> dict[str, list[int]]:
    """The ids by Karpathy split that :func:`build_coco_mirror` returns for these arguments, building nothing."""
    return _by_split(_coco_ids(random.Random(f"coco-{seed}"), n_train, n_val)[2])


def build_coco_mirror(root: Path, n_train: int = 24, n_val: int = 24, seed: int = 0) -> dict:
    """COCO at its mirror paths; return the ids by Karpathy split (for VG's leak guard)."""
    rng = random.Random(f"coco-{seed}")
    train_ids, val_ids, karpathy_split = _coco_ids(rng, n_train, n_val)
    names = {i: f"COCO_train2014_{i:012d}.jpg" for i in train_ids} | {i: f"COCO_val2014_{i:012d}.jpg" for i in val_ids}
    damaged = {names[train_ids[1]]: "truncated", names[train_ids[2]]: "missing", names[train_ids[3]]: "cmyk",
               names[train_ids[4]]: "png"}
    _zip(root / "zips/train2014.zip", _images(rng, "train2014", [names[i] for i in train_ids], damaged))
    _zip(root / "zips/val2014.zip", _images(rng, "val2014", [names[i] for i in val_ids], damaged))
    captions = {i: [caption(rng, rng.random() < 0.3) for _ in range(5 + (rng.random() < 0.2))]
                for i in train_ids + val_ids}
    captions[train_ids[5]][-1] = " \x00\t "  # empty once cleaned: dropped and counted
    sent = 0
    rows = []
    for imgid, i in enumerate(train_ids + val_ids):
        folder = "train2014" if i in train_ids else "val2014"
        sentences = []
        for text in captions[i]:
            sentences.append({"tokens": text.lower().split(), "raw": text, "imgid": imgid, "sentid": sent})
            sent += 1
        rows.append({"filepath": folder, "sentids": [s["sentid"] for s in sentences], "filename": names[i],
                     "imgid": imgid, "split": karpathy_split[i], "sentences": sentences, "cocoid": i})
    karpathy = json.dumps({"images": rows, "dataset": "coco"}).encode()
    _zip(root / "caption_datasets.zip", {"dataset_coco.json": karpathy, "dataset_flickr8k.json": b'{"images": []}'})
    annotations = {}
    ann_id = 1000
    for split, ids in (("train2014", train_ids), ("val2014", val_ids)):
        anns = []
        for i in ids:
            for text in captions[i]:
                anns.append({"image_id": i, "id": ann_id, "caption": text})
                ann_id += 7
        images = [{"id": i, "file_name": names[i], "width": 64, "height": 48} for i in ids]
        annotations[f"annotations/captions_{split}.json"] = json.dumps(
            {"info": {}, "images": images, "annotations": anns}).encode()
    _zip(root / "annotations/annotations_trainval2014.zip", annotations)
    write_sums(root, ["zips/train2014.zip", "zips/val2014.zip", "annotations/annotations_trainval2014.zip",
                      "caption_datasets.zip"])
    return _by_split(karpathy_split)


def build_vg_mirror(root: Path, coco_split_ids: dict[str, list[int]], n_images: int = 30, seed: int = 0) -> dict:
    """Visual Genome at its mirror paths; some images carry COCO ids (a few from Karpathy val/test)."""
    rng = random.Random(f"vg-{seed}")
    ids = list(range(1, n_images + 1))
    coco_ids: dict[int, int | None] = {i: None for i in ids}
    coco_ids[ids[0]] = coco_split_ids["val"][0]
    coco_ids[ids[1]] = coco_split_ids["test"][0]
    coco_ids[ids[2]] = coco_split_ids["train"][0]
    folders = {i: "VG_100K" if i % 3 else "VG_100K_2" for i in ids}
    rows = [{"image_id": i, "url": f"https://cs.stanford.edu/people/rak248/{folders[i]}/{i}.jpg",
             "width": 64, "height": 48, "coco_id": coco_ids[i], "flickr_id": None} for i in ids]
    damaged = {f"{ids[5]}.jpg": "truncated", f"{ids[6]}.jpg": "missing"}
    for folder, zip_name in (("VG_100K", "images.zip"), ("VG_100K_2", "images2.zip")):
        _zip(root / zip_name, _images(rng, folder, [f"{i}.jpg" for i in ids if folders[i] == folder], damaged))
    regions = []
    region_id = 5000
    for i in ids:
        image_regions = []
        for _ in range(rng.randint(3, 12)):
            region_id += rng.randint(1, 9)
            phrase = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
            if rng.random() < 0.1:
                phrase = rng.choice(["", "   ", f"{phrase}.", f"  {phrase}\x00 ", " ".join(WORDS[:70])])
            image_regions.append({"region_id": region_id, "width": rng.randint(1, 60), "height": rng.randint(1, 40),
                                  "image_id": i, "phrase": phrase, "y": rng.randint(0, 40), "x": rng.randint(0, 60)})
        if i == ids[7]:  # every description empty once cleaned: the image is skipped
            for region in image_regions:
                region["phrase"] = rng.choice(["", "  ", "\x00", " \n\t"])
        rng.shuffle(image_regions)
        regions.append({"regions": image_regions, "id": i})
    _zip(root / "image_data.json.zip", {"image_data.json": json.dumps(rows).encode()})
    _zip(root / "region_descriptions.json.zip", {"region_descriptions.json": json.dumps(regions).encode()})
    write_sums(root, ["images.zip", "images2.zip", "image_data.json.zip", "region_descriptions.json.zip"])
    return {"images": len(ids), "regions": sum(len(r["regions"]) for r in regions)}


IMAGENET_SAMPLE_CLASSES = [("n01440764", "tench, Tinca tinca"), ("n01443537", "goldfish, Carassius auratus"),
                           ("n01484850", "great white shark, white shark, man-eater"),
                           ("n01491361", "tiger shark, Galeocerdo cuvieri")]


def build_imagenet_mirror(root: Path, train_per_class: tuple[int, ...] = (9, 7, 6, 8), val_per_class: int = 3,
                          seed: int = 0) -> dict:
    """ImageNet at the hub's paths: ``classes.py``, ``data/train_images_{0..4}.tar.gz``, ``data/val_images.tar.gz``.

    Train images are spread over the five tarballs as the hub's are; the dirt ImageNet has is mixed
    in: a CMYK JPEG, a PNG named ``.JPEG``, a truncated JPEG, and a non-image member.
    """
    import tarfile

    rng = random.Random(f"imagenet-{seed}")
    lines = ["from collections import OrderedDict", "", "IMAGENET2012_CLASSES = OrderedDict(", "    {"]
    lines += [f'        "{synset}": "{name}",' for synset, name in IMAGENET_SAMPLE_CLASSES]
    lines += ["    }", ")", ""]
    ensure_dir(root / "data")
    (root / "classes.py").write_text("\n".join(lines))
    train: list[list[tuple[str, bytes]]] = [[] for _ in range(5)]
    n = 0
    for (synset, _), count in zip(IMAGENET_SAMPLE_CLASSES, train_per_class):
        for i in range(count):
            n += 1
            kind = {3: "cmyk", 8: "png", 13: "truncated"}.get(n)
            data = {"cmyk": lambda: jpeg(rng, mode="CMYK"), "png": lambda: jpeg(rng, fmt="PNG"),
                    "truncated": lambda: jpeg(rng)[:200]}.get(kind, lambda: jpeg(rng, (rng.randint(40, 90), 48)))()
            train[n % 5].append((f"{synset}_{1000 + i}_{synset}.JPEG", data))
    val = []
    v = 0
    for _ in range(val_per_class):
        for synset, _ in IMAGENET_SAMPLE_CLASSES:
            v += 1
            val.append((f"ILSVRC2012_val_{v:08d}_{synset}.JPEG", jpeg(rng, (56, 48))))

    for index, files in enumerate(train):
        _tar_gz(root / f"data/train_images_{index}.tar.gz", files + [("README.txt", b"not an image")] * (index == 0))
    _tar_gz(root / "data/val_images.tar.gz", val)
    relpaths = ["classes.py", *(f"data/train_images_{i}.tar.gz" for i in range(5)), "data/val_images.tar.gz"]
    write_sums(root, relpaths)
    return {"train": sum(train_per_class), "val": val_per_class * len(IMAGENET_SAMPLE_CLASSES),
            "damaged": 1, "converted": 2}


FLICKR30K_SAMPLE = {"train": 10, "val": 4, "test": 6}
"""Images per split of the sample (the published file: 29,000 / 1,014 / 1,000)."""


def build_flickr30k_mirror(root: Path, counts: dict[str, int] = FLICKR30K_SAMPLE, seed: int = 0) -> dict:
    """Flickr30K at its mirror paths: ``caption_datasets.zip`` with ``dataset_flickr30k.json`` in
    Karpathy's format, and ``flickr30k-images.tar.gz`` of real JPEGs (a truncated, a missing and a
    CMYK one in train; a test image with 6 captions, one of them empty once cleaned). Returns the
    image file names by split."""
    rng = random.Random(f"flickr30k-{seed}")
    rows, names, sent = [], {}, 0
    photo = 1000092795
    for split, count in counts.items():
        for _ in range(count):
            photo += rng.randint(1, 9_000)
            names.setdefault(split, []).append(f"{photo}.jpg")
    damaged = {names["train"][1]: "truncated", names["train"][2]: "missing", names["train"][3]: "cmyk"}
    for imgid, (split, name) in enumerate((s, n) for s, ns in names.items() for n in ns):
        texts = [caption(rng, rng.random() < 0.3) for _ in range(5)]
        if name == names["test"][1]:
            texts.append(" \x00\t ")  # a sixth caption, empty once cleaned: the image keeps 5
        sentences = [{"tokens": t.lower().split(), "raw": t, "imgid": imgid, "sentid": sent + i}
                     for i, t in enumerate(texts)]
        sent += len(texts)
        rows.append({"filename": name, "imgid": imgid, "sentences": sentences, "split": split,
                     "sentids": [s["sentid"] for s in sentences]})
    karpathy = json.dumps({"images": rows, "dataset": "flickr30k"}).encode()
    _zip(root / "caption_datasets.zip", {"dataset_flickr30k.json": karpathy, "dataset_flickr8k.json": b'{"images": []}'})
    images = _images(rng, "flickr30k-images", [n for ns in names.values() for n in ns], damaged)
    _tar_gz(root / "flickr30k-images.tar.gz", sorted(images.items()) + [("flickr30k-images/readme.txt", b"x")])
    write_sums(root, ["caption_datasets.zip", "flickr30k-images.tar.gz"])
    return names
