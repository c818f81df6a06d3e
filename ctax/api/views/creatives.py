"""Creatives as the API answers them: the acknowledgement of a POST and the full view of one creative."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ctax.enums import CreativeStatus
from ctax.store.models import Creative, ReviewItem


class Accepted(BaseModel):
    id: str
    status: CreativeStatus
    created: bool


class BatchAccepted(BaseModel):
    items: list[Accepted]


def accepted(creative: Creative, created: bool) -> Accepted:
    return Accepted(id=creative.id, status=creative.status, created=created)


def creative_view(creative: Creative, review: ReviewItem | None = None) -> dict[str, Any]:
    """Build it inside the read block: it follows the creative's asserted label."""
    prediction = creative.prediction or {}
    return {
        "id": creative.id,
        "status": creative.status,
        "external_id": creative.external_id,
        "campaign": creative.campaign,
        "source": creative.source,
        "account_id": creative.account_id,  # none for imported data and for what reviewers or admins posted
        "texts": creative.texts,
        "ocr_text": creative.ocr_text,
        "image": _image(creative),
        "asserted_label": {
            "label_id": creative.asserted_label_id,
            "path": creative.asserted_label.path if creative.asserted_label else None,
        }
        if creative.asserted_label_id
        else None,
        "metadata": creative.metadata_,
        "created_at": creative.created_at,
        "labelled_at": creative.labelled_at,
        "attempts": creative.attempts,
        "error": creative.error,
        "model_version": creative.model_version_id,
        "top_k": prediction.get("top_k", []),
        "decided_label": prediction.get("decided_label"),
        "flag": creative.flag,
        "scores": prediction.get("scores"),
        "reasons": prediction.get("reasons", []),
        "modalities": prediction.get("modalities"),
        "modalities_used": prediction.get("modalities_used", []),
        # The root of the near-duplicate group it joined (none: a root, or in no group): it took the group's decision.
        "duplicate_of": creative.duplicate_of,
        "split_from": prediction.get("split_from"),  # the group a reviewer took it out of (review/groups.py)
        # Its review item, or for a group member its group's (one item per group; `members` counts the creatives
        # it stands for, the root included).
        "review": {"id": review.id, "status": review.status, "flag": review.flag, "members": review.members,
                   "creative_id": review.creative_id} if review else None,
    }


def _image(creative: Creative) -> dict[str, Any] | None:
    if not creative.image_sha256:
        return None
    return {
        "sha256": creative.image_sha256,
        "mime": creative.image_mime,
        "width": creative.image_width,
        "height": creative.image_height,
        "url": f"/v1/creatives/{creative.id}/image",
    }
