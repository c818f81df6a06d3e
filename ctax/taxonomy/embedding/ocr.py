"""OCR for creatives that arrive as an image without text (rapidocr on onnxruntime, models ship in the wheel)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

MIN_CONFIDENCE = 0.5


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
        return " ".join(text for _, text, score in lines if float(score) >= MIN_CONFIDENCE).strip()

    def read_many(self, images: Sequence[Image.Image]) -> list[str]:
        return [self.read(image) for image in images]
