"""Images as stored in shards: original bytes after a decode check, or resized on request.

The decode check runs Pillow in draft mode (the JPEG decoder scales by 1/8 while decoding), which
still reads every entropy-coded byte, so truncated or corrupt files are caught at a fraction of a
full decode. ``--resize N`` scales the shorter side to N pixels (never up) and re-encodes as JPEG
quality 95; draft mode again decodes at the smallest scale that stays at least N.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageFile

ImageFile.LOAD_TRUNCATED_IMAGES = False
JPEG_QUALITY = 95


class ImageError(ValueError):
    """An image that cannot be decoded, with the reason."""


@dataclass(frozen=True)
class StoredImage:
    data: bytes
    width: int
    height: int
    format: str
    converted: str | None = None
    """Why the bytes are not the original ones (resized, CMYK → RGB, PNG → JPEG), or None."""


def prepare_image(data: bytes, resize: int | None = None) -> StoredImage:
    """Check that ``data`` decodes; return it unchanged, or resized/converted to an RGB JPEG."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height, fmt, mode = image.width, image.height, image.format or "?", image.mode
            if resize is None and fmt == "JPEG" and mode in ("RGB", "L"):
                image.draft(mode, (max(1, width // 8), max(1, height // 8)))
                image.load()
                return StoredImage(data, width, height, fmt)
            target = _target_size(width, height, resize)
            image.draft("RGB", target)
            converted = image.convert("RGB")
            reason = []
            if target != (width, height):
                converted = converted.resize(target, Image.Resampling.BICUBIC)
                reason.append(f"resized to {target[0]}x{target[1]}")
            if fmt != "JPEG" or mode not in ("RGB", "L"):
                reason.append(f"{fmt} {mode} converted to RGB JPEG")
            if not reason:
                return StoredImage(data, width, height, fmt)
            out = io.BytesIO()
            converted.save(out, format="JPEG", quality=JPEG_QUALITY)
            return StoredImage(out.getvalue(), target[0], target[1], "JPEG", "; ".join(reason))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(str(exc) or type(exc).__name__) from exc


def _target_size(width: int, height: int, resize: int | None) -> tuple[int, int]:
    if resize is None or min(width, height) <= resize:
        return width, height
    scale = resize / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))
