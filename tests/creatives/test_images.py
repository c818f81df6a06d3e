"""Images cost memory when decoded: the API's decodes share one pixel budget, a JPEG is checked at a reduced scale,
and the worker decodes no larger than the towers and OCR read."""

from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image

from ctax.creatives.images import PixelBudget, decode_rgb, shared_budget, validate_image
from ctax.errors import InvalidInput, PayloadTooLarge, ServiceUnavailable
from tests.conftest import png_bytes


def _encoded(size: tuple[int, int], fmt: str, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_the_worker_decodes_no_larger_than_its_max_side(fmt: str) -> None:
    data = _encoded((6000, 3000), fmt)
    image = decode_rgb(data, 2000)
    assert image.mode == "RGB" and image.size == (2000, 1000)
    assert decode_rgb(_encoded((640, 480), fmt), 2000).size == (640, 480)  # small images stay as they are
    assert decode_rgb(data, None).size == (6000, 3000)


@pytest.mark.parametrize("size,expected", [((6000, 3000), (896, 448)), ((3000, 6000), (448, 896)),
                                           ((8000, 300), (2000, 75)), ((400, 300), (400, 300))])
def test_without_ocr_an_image_is_decoded_down_to_what_the_towers_see(size, expected) -> None:
    assert decode_rgb(_encoded(size, "JPEG"), 2000, short_side=448).size == expected


def test_a_jpeg_is_checked_without_decoding_it_at_full_size() -> None:
    data = _encoded((4000, 3000), "JPEG")
    info = validate_image(data, max_bytes=len(data), max_pixels=12_000_000, budget_pixels=12_000_000)
    assert (info.mime, info.width, info.height) == ("image/jpeg", 4000, 3000)  # the declared size is reported
    truncated = data[: len(data) // 2]
    with pytest.raises(InvalidInput, match="truncated"):
        validate_image(truncated, max_bytes=len(data), max_pixels=12_000_000)


def test_a_declared_size_over_the_limit_is_refused_before_decoding() -> None:
    data = _encoded((3000, 3000), "PNG")
    with pytest.raises(PayloadTooLarge, match="9000000 pixels; the limit is 8000000"):
        validate_image(data, max_bytes=len(data), max_pixels=8_000_000)


def test_decodes_wait_for_their_share_of_the_budget() -> None:
    budget = PixelBudget(1000, wait_s=5.0)
    order: list[str] = []
    with budget.hold(800):
        waiter = threading.Thread(target=lambda: _hold_and_log(budget, 800, order))
        waiter.start()
        time.sleep(0.2)
        assert order == []  # 800 + 800 > 1000: the second decode waits
        order.append("first done")
    waiter.join(timeout=5)
    assert order == ["first done", "second ran"]
    assert budget.free == 1000


def _hold_and_log(budget: PixelBudget, pixels: int, order: list[str]) -> None:
    with budget.hold(pixels):
        order.append("second ran")


def test_an_image_larger_than_the_whole_budget_runs_alone_and_a_long_wait_is_a_503() -> None:
    budget = PixelBudget(1000, wait_s=0.2)
    with budget.hold(5000):  # larger than the budget: it takes all of it
        assert budget.free == 0
        with pytest.raises(ServiceUnavailable, match="retry"), budget.hold(1):
            pass
    assert budget.free == 1000


def test_validate_image_waits_for_the_shared_budget_of_its_process() -> None:
    data = png_bytes("SALE", size=(400, 300))
    budget = shared_budget(123_457)
    done: list[str] = []
    with budget.hold(123_457):  # another request is decoding as much as the budget allows
        checker = threading.Thread(target=lambda: done.append(
            validate_image(data, max_bytes=len(data), max_pixels=10**6, budget_pixels=123_457).mime))
        checker.start()
        time.sleep(0.3)
        assert done == []
    checker.join(timeout=10)
    assert done == ["image/png"] and budget.free == 123_457


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_on_white_not_on_black(mode: str) -> None:
    # Dark ink on a fully transparent canvas whose hidden colour is black: a straight convert("RGB") gives black on
    # black, which neither OCR nor the image tower can read.
    canvas = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    canvas.paste((10, 10, 10, 255), (5, 5, 15, 15))
    image = canvas.convert(mode) if mode != "P" else canvas.convert("P", palette=Image.Palette.ADAPTIVE)
    if mode == "P":
        image.info["transparency"] = image.getpixel((0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    decoded = decode_rgb(buffer.getvalue())
    assert decoded.mode == "RGB"
    assert decoded.getpixel((30, 15)) == (255, 255, 255)  # the transparent background
    assert max(decoded.getpixel((10, 10))) < 40  # the ink stays dark
