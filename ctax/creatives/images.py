"""Checks an uploaded image before anything is stored (type, size, pixel count, a full decode), and decodes stored
images for the towers no larger than they need.

Decoding is where images cost memory: a 6300x6300 PNG is 40 M pixels, about 160 MB decoded. So the declared size
is checked before any pixel is decoded, the API decodes at most `image_decode_budget_pixels` at once across its
concurrent requests (the rest wait their turn), a JPEG is checked at 1/8 scale (its decoder scales the DCT, still
reading every byte, so truncation and corruption are still found), and the worker decodes every image down to
`image_decode_max_side`, JPEGs straight at the reduced scale, so a batch of 64 huge images costs megabytes each.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

from PIL import Image, UnidentifiedImageError

from ctax.config import DEFAULT_DECODE_MAX_SIDE
from ctax.errors import InvalidInput, PayloadTooLarge, ServiceUnavailable, UnsupportedMediaType

SUPPORTED = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# JPEG's decoder can scale by 1/2, 1/4 or 1/8 while decoding; the check needs only the data read, not the pixels.
JPEG_CHECK_SCALE = 8
# How long a request waits for its share of the decode budget before it is told to retry (503).
DECODE_WAIT_S = 30.0
# What the image towers see: their preprocessing scales the shorter side to 224 (336 for some towers) and crops the
# middle, so an image whose shorter side is 448 gives them everything a larger one would.
TOWER_SHORT_SIDE = 448


@dataclass(frozen=True)
class ImageInfo:
    mime: str
    width: int
    height: int


class PixelBudget:
    """How many pixels may be decoded at once in this process. A decode holds its pixels until it is done; one
    larger than the whole budget waits until nothing else is decoding and then runs alone."""

    def __init__(self, pixels: int, wait_s: float = DECODE_WAIT_S) -> None:
        self.total = pixels
        self.free = pixels
        self.wait_s = wait_s
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        need = min(pixels, self.total)
        with self._changed:
            if not self._changed.wait_for(lambda: self.free >= need, timeout=self.wait_s):
                raise ServiceUnavailable(
                    f"image: the server is decoding other images (budget {self.total} pixels); retry shortly",
                    field="image")
            self.free -= need
        try:
            yield
        finally:
            with self._changed:
                self.free += need
                self._changed.notify_all()


@cache
def shared_budget(pixels: int) -> PixelBudget:
    """The one budget of this process for a given size (the API's settings give one size)."""
    return PixelBudget(pixels)


def validate_image(data: bytes, *, max_bytes: int, max_pixels: int, budget_pixels: int | None = None) -> ImageInfo:
    """The image's type and size, after a decode that proves it readable; with `budget_pixels`, the decode waits
    for its share of this process's budget."""
    if not data:
        raise InvalidInput("image is empty (0 bytes)", field="image")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"image is {len(data)} bytes; the limit is {max_bytes}", field="image")
    with warnings.catch_warnings():
        # PIL warns (and past 2x its limit raises) on huge images; we apply our own limit before decoding.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise PayloadTooLarge(f"image declares too many pixels (decompression bomb): {exc}", field="image") from exc
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise UnsupportedMediaType("image is not a readable PNG, JPEG or WebP file", field="image") from exc
        with image:
            info = _declared(image, max_pixels)
            if image.format == "JPEG":
                scaled = (max(1, info.width // JPEG_CHECK_SCALE), max(1, info.height // JPEG_CHECK_SCALE))
                image.draft(image.mode, scaled)
            width, height = image.size
            if budget_pixels is None:
                _decode(image)
            else:
                with shared_budget(budget_pixels).hold(width * height):
                    _decode(image)
            return info


def _declared(image: Image.Image, max_pixels: int) -> ImageInfo:
    """What the header says, refused before decoding when it is more than the limit."""
    if image.format not in SUPPORTED:
        raise UnsupportedMediaType(f"image format {image.format} is not supported; send PNG, JPEG or WebP",
                                   field="image")
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} "
            "(decompression bomb guard)",
            field="image",
        )
    if width < 1 or height < 1:
        raise InvalidInput("image has no pixels", field="image")
    return ImageInfo(SUPPORTED[image.format], width, height)


def _decode(image: Image.Image) -> None:
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image decompression bomb: {exc}", field="image") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(f"image is corrupt or truncated: {exc}", field="image") from exc


def decode_rgb(data: bytes, max_side: int | None = DEFAULT_DECODE_MAX_SIDE, *,
               short_side: int | None = None) -> Image.Image:
    """A stored, already validated image as RGB for the towers and OCR: no larger than `max_side` on its longer
    side, and, with `short_side` (when no OCR will read it), reduced further until its shorter side is that. A JPEG
    is decoded straight at the nearest larger DCT scale, so its full size never exists in memory; other formats are
    decoded, then shrunk at once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data))
        target = _reduced(image.size, max_side, short_side)
        if target != image.size:
            # thumbnail() keeps the aspect ratio, asks a JPEG decoder for draft scaling first, and reduces in
            # integer steps before resampling (reducing_gap), which is both fast and sharp.
            image.thumbnail(target, Image.Resampling.BICUBIC, reducing_gap=2.0)
        else:
            image.load()
    return _on_white(image)


def _on_white(image: Image.Image) -> Image.Image:
    """RGB with any transparency composited onto white: converting RGBA straight to RGB keeps the colour under
    transparent pixels (often black), so dark text on a transparent PNG would become black on black for OCR and
    the image tower alike."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _reduced(size: tuple[int, int], max_side: int | None, short_side: int | None) -> tuple[int, int]:
    width, height = size
    scale = 1.0
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
    if short_side is not None and min(width, height) * scale > short_side:
        scale = short_side / min(width, height)
    if scale == 1.0:
        return size
    return max(1, round(width * scale)), max(1, round(height * scale))
