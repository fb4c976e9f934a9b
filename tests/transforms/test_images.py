"""The image check and resize that shards rely on, held against Pillow's full decode."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vlprep.pipeline.transforms.images import ImageError, prepare_image
from vlprep.pipeline.transforms.jpeg import JpegStructureError, check_structure


def _photo(width: int = 160, height: int = 120, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 / width, y * 255 / height, (x + y) % 256], -1) + rng.normal(0, 20, (height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _jpeg(mode: str = "RGB", **save) -> bytes:
    image = Image.fromarray(_photo())
    if mode != "RGB":
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, **save)
    return out.getvalue()


VARIANTS = {
    "baseline": _jpeg(),
    "progressive": _jpeg(progressive=True),
    "grayscale": _jpeg("L"),
    "cmyk": _jpeg("CMYK"),
    "optimized 4:4:4": _jpeg(optimize=True, subsampling=0),
    "with exif": _jpeg(exif=Image.Exif().tobytes()),
}


def _pillow_decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
        return True
    except Exception:
        return False


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_clean_jpegs_pass_the_structure_walk(name):
    check_structure(VARIANTS[name])
    check_structure(VARIANTS[name] + b"trailing bytes after EOI are legal")


def test_restart_markers_and_fill_bytes_pass():
    data = bytearray(_jpeg())
    # A restart interval adds RSTn markers inside the entropy data.
    image = Image.open(io.BytesIO(bytes(data)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, restart_marker_blocks=1)
    with_rst = out.getvalue()
    assert any(bytes([0xFF, m]) in with_rst for m in range(0xD0, 0xD8))
    check_structure(with_rst)
    # Fill bytes (extra 0xFF) may precede any marker.
    padded = with_rst[:2] + b"\xff\xff" + with_rst[2:]
    check_structure(padded)
    assert _pillow_decodes(padded)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_the_walk_never_accepts_a_cut_that_pillow_refuses(name):
    """Every truncation point: accepted by the walk ⇒ decoded by Pillow (the walk is never laxer)."""
    data = VARIANTS[name]
    refused = 0
    for cut in range(0, len(data) - 1, 7):
        piece = data[:cut]
        try:
            check_structure(piece)
        except JpegStructureError:
            refused += 1
            continue
        assert _pillow_decodes(piece), f"cut at {cut} passed the walk but Pillow refuses it"
    assert refused == len(range(0, len(data) - 1, 7))  # no cut-off file keeps its end-of-image marker


def test_prepare_image_refuses_what_pillow_refuses_and_names_why():
    data = VARIANTS["baseline"]
    for bad in (data[: len(data) // 2], data[:-2], b"", b"not an image at all", data[:300]):
        with pytest.raises(ImageError):
            prepare_image(bad)
        with pytest.raises(ImageError):
            prepare_image(bad, 64)
    with pytest.raises(ImageError, match="truncated"):
        prepare_image(data[:-2])


def test_damage_the_walk_does_not_know_goes_to_a_full_decode():
    """Junk between segments: the walk stops, Pillow decodes it (with a warning), so it is kept."""
    data = VARIANTS["baseline"]
    sos = data.index(b"\xff\xda")
    junk = data[:sos] + b"\x00\x00" + data[sos:]
    with pytest.raises(JpegStructureError):
        check_structure(junk)
    assert _pillow_decodes(junk)
    assert prepare_image(junk).data == junk


def test_plain_jpegs_keep_their_bytes_others_are_converted():
    for name in ("baseline", "progressive", "grayscale", "with exif"):
        stored = prepare_image(VARIANTS[name])
        assert stored.data == VARIANTS[name] and stored.converted is None
    cmyk = prepare_image(VARIANTS["cmyk"])
    assert cmyk.converted == "JPEG CMYK converted to RGB JPEG"
    assert Image.open(io.BytesIO(cmyk.data)).mode == "RGB"
    png = io.BytesIO()
    Image.fromarray(_photo()).save(png, "PNG")
    stored = prepare_image(png.getvalue())
    assert stored.converted == "PNG RGB converted to RGB JPEG" and stored.data[:2] == b"\xff\xd8"


@pytest.mark.parametrize("name", ["baseline", "progressive", "grayscale", "cmyk"])
def test_resize_matches_a_full_pillow_resize(name):
    """Shorter side to 64, never up; pixels within a few levels of Pillow's full decode + box resize.

    The test photo is noisy (sigma 20), so filters and the JPEG round trip differ by a few levels;
    swapped colour channels would differ by about 28.
    """
    stored = prepare_image(VARIANTS[name], 64)
    assert (stored.width, stored.height) == (85, 64)
    assert stored.converted.startswith("resized to 85x64")
    with Image.open(io.BytesIO(stored.data)) as image:
        assert image.format == "JPEG" and image.size == (85, 64)
        ours = np.asarray(image.convert("RGB"), dtype=np.float64)
    reference = Image.open(io.BytesIO(VARIANTS[name])).convert("RGB").resize((85, 64), Image.Resampling.BOX)
    mean_error = np.abs(ours - np.asarray(reference, dtype=np.float64)).mean()
    assert mean_error < 9, mean_error
    assert prepare_image(VARIANTS[name], 500).data == (VARIANTS[name] if name != "cmyk"
                                                      else prepare_image(VARIANTS[name]).data)


def test_a_large_reduction_stays_close_to_pillow():
    """1000x800 to 64: DCT scale 1/8 leaves a factor of 1.56, bridged by area averaging."""
    out = io.BytesIO()
    Image.fromarray(_photo(1000, 800, seed=3)).save(out, "JPEG", quality=90)
    stored = prepare_image(out.getvalue(), 64)
    assert (stored.width, stored.height) == (80, 64)
    ours = np.asarray(Image.open(io.BytesIO(stored.data)).convert("RGB"), dtype=np.float64)
    reference = Image.open(io.BytesIO(out.getvalue())).convert("RGB").resize((80, 64), Image.Resampling.BOX)
    assert np.abs(ours - np.asarray(reference, dtype=np.float64)).mean() < 6
