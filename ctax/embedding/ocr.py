"""OCR for creatives that arrive as an image without text (rapidocr on onnxruntime, models ship in the wheel)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from PIL import Image

MIN_CONFIDENCE = 0.5
_RUN = re.compile(r"[A-Za-z]{6,}")


def respace(text: str) -> str:
    """rapidocr drops the spaces between English words ("Betterthanothersofitskind"), which costs the text
    tower about 5 points of top-1 (docs/image_study.md). Runs of 6+ letters that are not words themselves are
    split by wordninja's word-frequency model; words it knows, brand names included ("Volkswagen"), stay whole."""
    import wordninja

    costs = wordninja.DEFAULT_LANGUAGE_MODEL._wordcost

    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        if word.lower() in costs:
            return word
        pieces = wordninja.split(word)
        return " ".join(pieces) if len(pieces) > 1 else word

    return _RUN.sub(fix, text)


class OcrReader:
    def __init__(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self._engine = RapidOCR()

    def read(self, image: Image.Image) -> str:
        result, _ = self._engine(np.asarray(image.convert("RGB"))[:, :, ::-1])  # rapidocr wants BGR like cv2
        if not result:
            return ""
        # Reading order: top to bottom, then left to right, by each box's top-left corner.
        lines = sorted(result, key=lambda item: (round(item[0][0][1] / 10), item[0][0][0]))
        return respace(" ".join(text for _, text, score in lines if float(score) >= MIN_CONFIDENCE).strip())

    def read_many(self, images: Sequence[Image.Image]) -> list[str]:
        return [self.read(image) for image in images]
