"""OCR-like readings of labelled texts: what the OCR thresholds are calibrated on."""

from __future__ import annotations

import numpy as np

from ctax.labelling.calibration.ocr_noise import ocr_like

SUMMARIES = ("I should buy a Lincoln Continental because it is a stylish luxury car",
             "I should buy this car because it is nice and showcase quality",
             "I should buy this Lincoln because it is stylish")


def test_a_reading_is_seeded_and_reads_like_ad_lettering_not_a_summary() -> None:
    readings = [ocr_like(SUMMARIES, np.random.default_rng(n)) for n in range(40)]
    assert readings == [ocr_like(SUMMARIES, np.random.default_rng(n)) for n in range(40)]
    assert len(set(readings)) > 30
    assert all(reading.strip() for reading in readings)
    # The summaries' framing is gone; short broken lines, some in capitals.
    assert not any("I should" in reading or "because" in reading for reading in readings)
    lines = [line for reading in readings for line in reading.split("\n")]
    assert np.mean([len(line.split()) for line in lines]) < 5
    assert any(line.isupper() for line in lines)
    # What the ad was about mostly survives.
    assert np.mean([any(word in reading.lower() for word in ("lincoln", "car", "stylish", "luxury", "nice"))
                    for reading in readings]) > 0.7


def test_a_text_without_the_framing_or_too_short_is_still_read() -> None:
    rng = np.random.default_rng(0)
    assert ocr_like(["Have a break, have a Kit Kat."], rng).strip()
    assert ocr_like(["ok"], rng) is not None
