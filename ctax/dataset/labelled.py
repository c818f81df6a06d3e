"""Labelled data for training, calibration and exemplars: the latest annotation of each creative counts,
rejections and retired labels drop out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ctax.store.models import Annotation, Creative, Label


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
    latest = (
        select(Annotation.creative_id, func.max(Annotation.id).label("annotation_id"))
        .group_by(Annotation.creative_id)
        .subquery()
    )
    rows = session.execute(
        select(Creative.id, Annotation.label_id, Creative.texts, Creative.ocr_text, Creative.image_sha256)
        .join(latest, latest.c.creative_id == Creative.id)
        .join(Annotation, Annotation.id == latest.c.annotation_id)
        .join(Label, Label.id == Annotation.label_id)
        .where(Annotation.kind == "label", Label.status == "active")
        .order_by(Creative.id)
    ).all()
    return [LabelledCreative(r[0], int(r[1]), tuple(r[2] or ()), r[3], r[4]) for r in rows]
