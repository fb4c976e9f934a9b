"""Decode → crop → resize → flip → normalize, in one pass over as few pixels as the crop allows.

The JPEG is decoded by libjpeg-turbo (simplejpeg) at the smallest DCT scale 1/2, 1/4 or 1/8 that
still leaves the crop at least the output size on both sides, so a large crop costs a fraction of a
full decode and the DCT scaling does the first, anti-aliased, part of the downscale. Only the
power-of-two scales are used: libjpeg-turbo's SIMD inverse DCT covers them, while the 3/8, 5/8, ...
kernels are slower than a full decode. The crop is a view of the decoded array (no copy); the
resize is torch's antialiased uint8 kernel (the same filter as Pillow's ``resize``, within a few
grey levels); flip and normalization happen on the 224×224 result (or, with ``dtype="uint8"``,
normalization happens in the trainer: :func:`normalize`, on the GPU). Anything libjpeg-turbo refuses
(CMYK, PNG, damaged files) goes through Pillow, with its draft mode doing the DCT scaling.
"""
from __future__ import annotations

import io
import math

import numpy as np
import simplejpeg
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import VlprepError
from .augment import IMAGENET_MEAN, IMAGENET_STD, Crop, ViewConfig

DCT_DIVISORS = (8, 4, 2)
_SCALE = torch.tensor([1 / (255 * s) for s in IMAGENET_STD]).view(3, 1, 1)
_SHIFT = torch.tensor([m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]).view(3, 1, 1)


class ImageDecodeError(ValueError):
    """Bytes that neither libjpeg-turbo nor Pillow can decode."""


def image_size(data: bytes) -> tuple[int, int]:
    """(height, width) from the header alone: the crop is drawn before any pixel is decoded."""
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        return int(height), int(width)
    except ValueError:
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.height, image.width
        except Exception as exc:
            raise ImageDecodeError(f"not an image ({exc})") from exc


def dct_divisor(crop_h: int, crop_w: int, size: int) -> int:
    """The largest power-of-two reduction that keeps the crop at least ``size`` on both sides."""
    for divisor in DCT_DIVISORS:
        if crop_h >= size * divisor and crop_w >= size * divisor:
            return divisor
    return 1


def decode_reduced(data: bytes, height: int, width: int, divisor: int) -> np.ndarray:
    """RGB pixels (H×W×3 uint8) at 1/``divisor`` scale, ceil-rounded as libjpeg scales."""
    want_h, want_w = math.ceil(height / divisor), math.ceil(width / divisor)
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=want_h, min_width=want_w)
    except ValueError:
        pass
    try:
        with Image.open(io.BytesIO(data)) as image:
            if divisor > 1:
                image.draft("RGB", (want_w, want_h))
            return np.array(image.convert("RGB"))
    except Exception as exc:
        raise ImageDecodeError(f"cannot decode ({exc})") from exc


def scaled_box(crop: Crop, height: int, width: int, pixels: np.ndarray) -> tuple[int, int, int, int]:
    """The crop in the decoded array's pixels (exact at full scale; within half a pixel otherwise)."""
    sy, sx = pixels.shape[0] / height, pixels.shape[1] / width
    top, left = round(crop.i * sy), round(crop.j * sx)
    bottom = max(top + 1, min(pixels.shape[0], round((crop.i + crop.h) * sy)))
    right = max(left + 1, min(pixels.shape[1], round((crop.j + crop.w) * sx)))
    return top, left, bottom, right


def resize_uint8(pixels: np.ndarray, size: int, interpolation: str) -> torch.Tensor:
    """An H×W×3 uint8 view resized to 3×size×size uint8 with torch's antialiased kernel."""
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)
    if tensor.shape[-2:] == (size, size):
        return tensor[0]
    return F.interpolate(tensor, size=(size, size), mode=interpolation, antialias=True, align_corners=False)[0]


def normalize_view(view: torch.Tensor, flip: bool) -> torch.Tensor:
    """uint8 3×H×W → float32, ImageNet-normalized ((v/255 − mean)/std), flipped left-right if asked."""
    if flip:
        view = view.flip(-1)
    return normalize_pixels(view.to(torch.float32, memory_format=torch.contiguous_format))


def flip_view(view: torch.Tensor, flip: bool) -> torch.Tensor:
    """uint8 3×H×W flipped left-right if asked, contiguous: what ``dtype="uint8"`` ships from a worker."""
    return view.flip(-1) if flip else view.contiguous()


def normalize_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """Float pixels 0..255 (…×3×H×W) normalized in place: the one formula both dtypes go through.

    Multiply by 1/(255·std), then subtract mean/std, as two separate float32 operations, so a batch
    normalized on the GPU equals the views normalized one by one in the workers.
    """
    scale, shift = _constants(pixels.device)
    return pixels.mul_(scale).sub_(shift)


_DEVICE_CONSTANTS: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def _constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if device.type == "cpu":
        return _SCALE, _SHIFT
    if device not in _DEVICE_CONSTANTS:
        _DEVICE_CONSTANTS[device] = (_SCALE.to(device), _SHIFT.to(device))
    return _DEVICE_CONSTANTS[device]


def normalize(images: torch.Tensor, device: torch.device | str | None = None, *,
              non_blocking: bool = True) -> torch.Tensor:
    """Views from ``dtype="uint8"`` (3×H×W or N×3×H×W) → the float32 views of the float path.

    Workers then ship a quarter of the bytes and the GPU does the arithmetic: the batch is moved to
    ``device`` as uint8 (``non_blocking`` from pinned memory), converted and normalized there, with
    the same mean/std and the same operations as ``dtype="float32"``.
    """
    if images.dtype != torch.uint8:
        raise VlprepError(f"normalize: a {images.dtype} tensor; it takes the uint8 views of dtype='uint8'",
                          fix="build the dataset with dtype='uint8', or drop normalize: float views are "
                              "normalized already")
    if images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise VlprepError(f"normalize: shape {tuple(images.shape)}; it takes 3×H×W or N×3×H×W views",
                          fix="pass the image tensor of a dtype='uint8' item or batch")
    if device is not None:
        images = images.to(device, non_blocking=non_blocking)
    return normalize_pixels(images.to(torch.float32, memory_format=torch.contiguous_format))


def make_view_uint8(data: bytes, crop_fn, config: ViewConfig) -> tuple[torch.Tensor, bool]:
    """The view's pixels before normalization, and whether to flip it.

    ``crop_fn(height, width)`` returns (crop, flip); it is called once the header is read, so the
    crop decides how much of the image is decoded.
    """
    height, width = image_size(data)
    crop, flip = crop_fn(height, width)
    divisor = dct_divisor(crop.h, crop.w, config.size)
    pixels = decode_reduced(data, height, width, divisor)
    top, left, bottom, right = scaled_box(crop, height, width, pixels)
    return resize_uint8(pixels[top:bottom, left:right], config.size, config.interpolation), flip


def make_view(data: bytes, crop_fn, config: ViewConfig) -> torch.Tensor:
    """The normalized 3×size×size float view the trainer sees."""
    view, flip = make_view_uint8(data, crop_fn, config)
    return normalize_view(view, flip)
