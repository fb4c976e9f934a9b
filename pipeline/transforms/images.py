"""Images as stored in shards: the original bytes after a decode check, or resized on request.

The check: a JPEG whose marker structure walks cleanly from start- to end-of-image is kept as it is
(see :mod:`.jpeg`); anything the walk does not accept is fully decoded by Pillow, which has the last
word. ``vlprep verify`` later fully decodes every stored image.

``--resize N`` scales the shorter side to N pixels (never up). A JPEG is decoded by libjpeg-turbo
(simplejpeg) at the smallest DCT scale M/8 that stays at least the target, which filters in the
frequency domain (the anti-aliasing step) and skips most of the inverse DCT. The remaining factor
is then below 2 (below 1.33 for the usual photo to 256), which OpenCV's bicubic interpolation
bridges without visible aliasing; only where it is 1.5 or more (targets under 1/4 of the original)
OpenCV's area averaging is used instead. The result is re-encoded as JPEG quality 95. Against a
full Pillow decode + antialiased bicubic resize this is about 2-3x faster per image. Other formats, CMYK and anything simplejpeg refuses take the
Pillow path to RGB first.
"""
from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageFile

from .jpeg import Frame, JpegStructureError, check_structure

if TYPE_CHECKING:  # numpy is imported where pixels are handled: keeping originals never needs it
    import numpy as np

ImageFile.LOAD_TRUNCATED_IMAGES = False
JPEG_QUALITY = 95


class ImageError(ValueError):
    """An image that cannot be decoded, with the reason."""


@dataclass(frozen=True)
class StoredImage:
    data: bytes | memoryview
    width: int
    height: int
    format: str
    converted: str | None = None
    """Why the bytes are not the original ones (resized, CMYK → RGB, PNG → JPEG), or None."""


def prepare_image(data: bytes | memoryview, resize: int | None = None) -> StoredImage:
    """Check that ``data`` decodes; return it unchanged, or resized/converted to a JPEG.

    ``data`` may be a memoryview (a slice of a memory-mapped file): kept as it is, it is returned
    without a copy.
    """
    walk = _walk(data)
    if isinstance(walk, Frame):
        kept = _kept_as_is(data, walk, resize)
        if kept is not None:
            return kept
    data = bytes(data)
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height, fmt, mode = image.width, image.height, image.format or "?", image.mode
            target = _target_size(width, height, resize)
            if fmt == "JPEG" and mode in ("RGB", "L"):
                if isinstance(walk, JpegStructureError):
                    _decode_fully(image, walk)
                if target == (width, height):
                    return StoredImage(data, width, height, fmt)
                resized = _resize_jpeg(data, mode, target)
                if resized is not None:
                    return StoredImage(resized, target[0], target[1], "JPEG", f"resized to {target[0]}x{target[1]}")
            return _convert(image, target)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(str(exc) or type(exc).__name__) from exc


def _walk(data: bytes) -> Frame | JpegStructureError:
    """The marker walk's verdict, made once per image: the frame it found, or why it stopped."""
    try:
        return check_structure(data)
    except JpegStructureError as exc:
        return exc


def _kept_as_is(data: bytes, frame: Frame, resize: int | None) -> StoredImage | None:
    """The common case without opening Pillow: a JPEG whose marker walk passed, grey or colour (not
    CMYK), that needs no resize. Its size comes from the frame header, as Pillow would read it.
    Anything else returns None and takes the general path."""
    if frame.components not in (1, 3) or frame.height == 0:
        return None
    if frame.width * frame.height > 2 * (Image.MAX_IMAGE_PIXELS or 0) > 0:
        raise ImageError(f"{frame.width}x{frame.height} pixels is over the decompression-bomb limit")
    if _target_size(frame.width, frame.height, resize) != (frame.width, frame.height):
        return None
    return StoredImage(data, frame.width, frame.height, "JPEG")


def _decode_fully(image: Image.Image, structure: JpegStructureError) -> None:
    """A JPEG the walk did not accept: a full decode decides (raising on failure)."""
    try:
        image.load()
    except OSError as exc:
        raise ImageError(f"{exc} ({structure})") from exc


@functools.lru_cache(maxsize=1)
def _cv2():
    """OpenCV, imported on first use and kept to one thread: parallelism is one process per worker."""
    import cv2

    cv2.setNumThreads(1)
    return cv2


def _resize_jpeg(data: bytes, mode: str, target: tuple[int, int]) -> bytes | None:
    """Scaled libjpeg-turbo decode + area resize + encode; None when simplejpeg refuses the file."""
    import simplejpeg

    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="GRAY" if mode == "L" else "BGR", strict=False,
                                        min_width=target[0], min_height=target[1])
    except ValueError:
        return None
    return _encode_bgr(_resize_array(pixels, target))


def _convert(image: Image.Image, target: tuple[int, int]) -> StoredImage:
    """Any decodable image (PNG, CMYK JPEG, ...) → RGB JPEG at ``target`` size."""
    width, height, fmt, mode = image.width, image.height, image.format or "?", image.mode
    image.draft("RGB", target)
    import numpy as np

    pixels = np.asarray(image.convert("RGB"))[:, :, ::-1]
    reason = []
    if target != (width, height):
        pixels = _resize_array(pixels, target)
        reason.append(f"resized to {target[0]}x{target[1]}")
    if fmt != "JPEG" or mode not in ("RGB", "L"):
        reason.append(f"{fmt} {mode} converted to RGB JPEG")
    return StoredImage(_encode_bgr(pixels), target[0], target[1], "JPEG", "; ".join(reason) or None)


def _resize_array(pixels: np.ndarray, target: tuple[int, int]) -> np.ndarray:
    """Bicubic for the small factor left after DCT scaling; area averaging for a large one."""
    if (pixels.shape[1], pixels.shape[0]) == target:
        return pixels
    cv2 = _cv2()
    factor = min(pixels.shape[1] / target[0], pixels.shape[0] / target[1])
    return cv2.resize(pixels, target, interpolation=cv2.INTER_AREA if factor >= 1.5 else cv2.INTER_CUBIC)


def _encode_bgr(pixels: np.ndarray) -> bytes:
    cv2 = _cv2()
    import numpy as np

    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(pixels), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ImageError("JPEG encoding failed")
    return encoded.tobytes()


def _target_size(width: int, height: int, resize: int | None) -> tuple[int, int]:
    if resize is None or min(width, height) <= resize:
        return width, height
    scale = resize / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))
