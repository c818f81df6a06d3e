"""Checks an uploaded image before anything is stored: type, size, pixel count, and a full decode."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from ctax.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

SUPPORTED = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


@dataclass(frozen=True)
class ImageInfo:
    mime: str
    width: int
    height: int


def validate_image(data: bytes, *, max_bytes: int, max_pixels: int) -> ImageInfo:
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
            if image.format not in SUPPORTED:
                raise UnsupportedMediaType(
                    f"image format {image.format} is not supported; send PNG, JPEG or WebP", field="image"
                )
            width, height = image.size
            if width * height > max_pixels:
                raise PayloadTooLarge(
                    f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} "
                    "(decompression bomb guard)",
                    field="image",
                )
            if width < 1 or height < 1:
                raise InvalidInput("image has no pixels", field="image")
            try:
                image.load()
            except Image.DecompressionBombError as exc:
                raise PayloadTooLarge(f"image decompression bomb: {exc}", field="image") from exc
            except (OSError, ValueError, SyntaxError) as exc:
                raise InvalidInput(f"image is corrupt or truncated: {exc}", field="image") from exc
            return ImageInfo(SUPPORTED[image.format], width, height)


def decode_rgb(data: bytes) -> Image.Image:
    """Decode a stored, already validated image for the encoders."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data))
        image.load()
    return image.convert("RGB")
