"""OCR on rendered ads: real rapidocr, with the spaces it drops put back."""

from __future__ import annotations

from ctax.creatives.images import decode_rgb
from ctax.embedding.ocr import OcrReader, respace
from tests.conftest import png_bytes


def test_respace_splits_run_together_words_and_keeps_brand_names() -> None:
    assert respace("Betterthanothersofitskind") == "Better than others of its kind"
    assert respace("Buy thenew Volkswagen") == "Buy the new Volkswagen"
    assert respace("Adidas DUNKIN cola") == "Adidas DUNKIN cola"


def test_ocr_reads_a_rendered_ad_in_reading_order() -> None:
    image = decode_rgb(png_bytes("Adopt a dog today", size=(520, 180)))
    assert OcrReader().read(image).lower() == "adopt a dog today"
