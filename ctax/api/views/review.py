"""Review items and decisions as the API answers them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from ctax.enums import FLAG_TITLES
from ctax.review import queue as review
from ctax.store.models import ApiKey, Creative, Label, ReviewDecision, ReviewItem
from ctax.store.repos import groups
from ctax.store.session import Session
from ctax.store.types import utcnow
from ctax.taxonomy import catalog


def label_ref(labels: dict[int, Label], label_id: int | None) -> dict[str, Any] | None:
    if label_id is None:
        return None
    label = labels.get(label_id)
    return {"id": label_id, "path": label.path if label else None, "status": label.status if label else None}


def _creative_view(item: ReviewItem, prediction: dict[str, Any]) -> dict[str, Any]:
    creative = item.creative
    return {
        "id": creative.id,
        "external_id": creative.external_id,
        "campaign": creative.campaign,
        "account_id": creative.account_id,
        "texts": creative.texts or [],
        "ocr_text": creative.ocr_text,
        "image_url": f"/v1/creatives/{creative.id}/image" if creative.image_sha256 else None,
        "image_size": [creative.image_width, creative.image_height] if creative.image_sha256 else None,
        "modalities_used": prediction.get("modalities_used", []),
        "metadata": creative.metadata_,
        "created_at": creative.created_at,
    }


def item_view(
    item: ReviewItem, labels: dict[int, Label], names: dict[int, str], me: ApiKey, now: dt.datetime
) -> dict[str, Any]:
    prediction = item.creative.prediction or {}
    live_claim = item.claimed_by is not None and item.claim_expires_at is not None and item.claim_expires_at >= now
    return {
        "id": item.id,
        "version": item.version,
        "status": item.status,
        "flag": item.flag,
        "flag_title": FLAG_TITLES.get(item.flag, item.flag),
        "reasons": prediction.get("reasons", []),
        "scores": prediction.get("scores") or {},
        "priority": item.priority,
        "priority_reason": item.priority_reason,
        "suggested_label": label_ref(labels, item.suggested_label_id),
        "asserted_label": label_ref(labels, item.asserted_label_id),
        "top_score": item.top_score,
        "top_k": prediction.get("top_k", []),
        "model_version": item.model_version_id,
        "proposal_id": item.proposal_id,
        "members": item.members,  # creatives this item stands for: its creative and its duplicate group's members
        "claim": {
            "by": names.get(item.claimed_by or -1, f"key {item.claimed_by}"),
            "mine": item.claimed_by == me.id,
            "expires_at": item.claim_expires_at,
        }
        if live_claim
        else None,
        "created_at": item.created_at,
        "decided_at": item.decided_at,
        "creative": _creative_view(item, prediction),
    }


def item_views(session: Session, items: list[ReviewItem], me: ApiKey) -> list[dict[str, Any]]:
    """Items with their labels and the names of who holds them, as seen by `me` now."""
    ids = {i for item in items for i in (item.suggested_label_id, item.asserted_label_id) if i is not None}
    labels = catalog.labels_by_ids(session, ids)
    names = review.holder_names(session, {item.claimed_by for item in items})
    now = utcnow()
    return [item_view(item, labels, names, me, now) for item in items]


def group_members_view(session: Session, item: ReviewItem, limit: int = 100) -> list[dict[str, Any]]:
    """The duplicates the item stands for beside its creative (the first `limit`; `members` counts them all)."""
    def view(creative: Creative) -> dict[str, Any]:
        return {"id": creative.id, "external_id": creative.external_id, "texts": creative.texts or [],
                "ocr_text": creative.ocr_text,
                "image_url": f"/v1/creatives/{creative.id}/image" if creative.image_sha256 else None,
                "flag": creative.flag, "created_at": creative.created_at, "labelled_at": creative.labelled_at}
    return [view(c) for c in groups.member_rows(session, item.creative_id, limit)]


def decision_view(decision: ReviewDecision, labels: dict[int, Label]) -> dict[str, Any]:
    return {
        "id": decision.id,
        "item_id": decision.review_item_id,
        "creative_id": decision.creative_id,
        "reviewer": decision.reviewer_name,
        "reviewer_key_id": decision.reviewer_key_id,
        "action": decision.action,
        "label": label_ref(labels, decision.label_id),
        "note": decision.note,
        "previous": decision.previous,
        "bulk_id": decision.bulk_id,
        "created_at": decision.created_at,
    }


def decision_views(session: Session, decisions: Iterable[ReviewDecision]) -> list[dict[str, Any]]:
    rows = list(decisions)
    labels = catalog.labels_by_ids(session, [r.label_id for r in rows if r.label_id is not None])
    return [decision_view(r, labels) for r in rows]
