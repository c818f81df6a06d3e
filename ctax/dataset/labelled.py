"""Labelled data for training, calibration and exemplars: the latest annotation of each creative counts,
rejections and retired labels drop out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ctax.store.repos import annotations as annotation_rows
from ctax.store.session import Session


@dataclass(frozen=True)
class LabelledCreative:
    creative_id: str
    label_id: int
    texts: tuple[str, ...]
    ocr_text: str | None
    image_sha256: str | None

    def draw_key(self, seed: int) -> str:
        """A seeded sort key for drawing samples: from the content, not the id, which is random per import,
        so that the same data split the same way in every database (an evaluation rerun, a restored backup);
        the id only breaks ties between identical creatives."""
        content = json.dumps([self.texts, self.ocr_text, self.image_sha256], ensure_ascii=False)
        return hashlib.sha256(f"{seed}:{content}".encode()).hexdigest() + self.creative_id


def current_annotations(session: Session) -> list[LabelledCreative]:
    return [
        LabelledCreative(creative_id, label_id, tuple(texts or ()), ocr_text, image_sha256)
        for creative_id, label_id, texts, ocr_text, image_sha256 in annotation_rows.current_labels(session)
    ]
