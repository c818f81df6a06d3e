"""OCR on rendered ads: real rapidocr on each backend, with the spaces it drops put back; a batch read side by side
gives exactly what reading its images one by one gives."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from bench.render_ads import render_ad_detailed, word_recall
from ctax.creatives.images import decode_rgb
from ctax.embedding.ocr import OCR_BACKENDS, OcrReader, cpu_count, open_reader, probe_images, respace
from tests.conftest import FONT, png_bytes


def test_respace_splits_run_together_words_and_keeps_brand_names() -> None:
    assert respace("Betterthanothersofitskind") == "Better than others of its kind"
    assert respace("Buy thenew Volkswagen") == "Buy the new Volkswagen"
    assert respace("Adidas DUNKIN cola") == "Adidas DUNKIN cola"


def test_ocr_reads_a_rendered_ad_in_reading_order() -> None:
    image = decode_rgb(png_bytes("Adopt a dog today", size=(520, 180)))
    assert OcrReader().read(image).lower() == "adopt a dog today"


@pytest.fixture(scope="module", params=OCR_BACKENDS)
def reader(request: pytest.FixtureRequest) -> Iterator[OcrReader]:
    """Two engines of one thread each: the pool path, whatever the machine's core count."""
    ocr = OcrReader(request.param, workers=2, threads=1)
    yield ocr
    ocr.close()


@pytest.fixture(scope="module")
def batch(shared_data: Path) -> list[Image.Image]:
    """Rendered Pitt ads (legible and not), the probe images, a blank one and a text on a wide banner."""
    rows = [json.loads(line) for line in (shared_data / "pitt_ads_dev.jsonl").open()][:3]
    ads = [render_ad_detailed(r["texts"], r["label"], seed=n, legible=n != 2).image for n, r in enumerate(rows)]
    blank = Image.new("RGB", (224, 224), (250, 250, 250))
    return [*ads, *probe_images()[:2], blank, decode_rgb(png_bytes("Fresh bread daily", size=(520, 180)))]


def test_a_batch_read_side_by_side_is_what_reading_one_by_one_gives(reader: OcrReader,
                                                                    batch: list[Image.Image]) -> None:
    one_by_one = [reader.read(image) for image in batch]
    assert reader.read_many(batch) == one_by_one  # same texts, same order
    assert [text.lower() for text in one_by_one[3:]] == ["adopt a dog today", "fresh coffee every morning", "",
                                                         "fresh bread daily"]
    assert reader.read_many([]) == []


def test_both_backends_read_the_same_text(batch: list[Image.Image]) -> None:
    texts = {}
    for backend in OCR_BACKENDS:
        ocr = OcrReader(backend, workers=1, threads=1)
        texts[backend] = ocr.read_many(batch[:3])
    assert texts["openvino"] == texts["onnxruntime"]


def test_rendered_ads_are_read(shared_data: Path, reader: OcrReader) -> None:
    rows = [json.loads(line) for line in (shared_data / "pitt_ads_dev.jsonl").open()][:4]
    ads = [render_ad_detailed(r["texts"], r["label"], seed=n, legible=True) for n, r in enumerate(rows)]
    read = reader.read_many([ad.image for ad in ads])
    recalls = [word_recall(ad.drawn_text, [text]) for ad, text in zip(ads, read, strict=True) if ad.drawn_text]
    assert recalls and sum(recalls) / len(recalls) >= 0.6, (read, [ad.drawn_text for ad in ads])


def _transparent_with_black_text() -> Image.Image:
    image = Image.new("RGBA", (360, 120), (0, 0, 0, 0))  # fully transparent black: black text on it is invisible
    ImageDraw.Draw(image).text((12, 40), "Cheap flights", font=ImageFont.truetype(FONT, 28), fill=(0, 0, 0, 255))
    return image


def test_an_unreadable_or_odd_image_does_not_sink_the_batch(reader: OcrReader,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    png = io.BytesIO()
    probe_images()[1].save(png, "PNG")
    truncated = Image.open(io.BytesIO(png.getvalue()[:300]))  # decodes lazily: fails when OCR loads it
    odd = [
        probe_images()[0],
        truncated,
        Image.new("La", (64, 64)),  # a mode PIL cannot convert to RGB
        Image.new("RGB", (0, 0)),
        Image.new("RGB", (1, 1)),
        _transparent_with_black_text(),
        probe_images()[2].convert("P"),
        probe_images()[3].convert("CMYK"),
    ]
    with caplog.at_level(logging.WARNING, logger="ctax.embedding.ocr"):
        texts = reader.read_many(odd)
    assert [t.lower() for t in texts] == ["adopt a dog today", "", "", "", "", "cheap flights",
                                          "save on winter tyres", "fly to lisbon for less"]
    warned = [r.getMessage() for r in caplog.records]
    assert any("truncated" in m for m in warned) and any("La (64, 64)" in m for m in warned), warned


def test_engines_share_the_cores_and_the_default_is_one_engine_per_core() -> None:
    ocr, how = open_reader("onnxruntime")
    assert (ocr.workers, ocr.threads) == (cpu_count(), 1)
    assert how == f"onnxruntime, {cpu_count()} engine(s) x 1 thread(s) (CTAX_OCR_BACKEND=onnxruntime)"
    assert OcrReader("onnxruntime", workers=1).threads == cpu_count()
    with pytest.raises(ValueError, match="at least 1"):
        OcrReader("onnxruntime", workers=0)
