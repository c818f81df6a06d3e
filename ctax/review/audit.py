"""The audit trail: every decision keeps the state it replaced, so an undo or an inquiry can tell what changed."""

from __future__ import annotations

from typing import Any

from ctax.store.models import ReviewDecision, ReviewItem
from ctax.store.repos import review as items
from ctax.store.session import Session


def snapshot(session: Session, item: ReviewItem) -> dict[str, Any]:
    """The state a decision replaces, kept in the audit row."""
    creative = item.creative
    annotation = items.latest_annotation(session, item.creative_id)
    return {
        "item": {
            "status": item.status,
            "flag": item.flag,
            "version": item.version,
            "suggested_label_id": item.suggested_label_id,
            "asserted_label_id": item.asserted_label_id,
            "top_score": item.top_score,
            "priority": item.priority,
            "claimed_by": item.claimed_by,
            "proposal_id": item.proposal_id,
            "decided_at": item.decided_at.isoformat() if item.decided_at else None,
        },
        "creative": {
            "flag": creative.flag,
            "decided_label_id": creative.decided_label_id,
            "asserted_label_id": creative.asserted_label_id,
            "model_version": creative.model_version_id,
            "annotation": {
                "id": annotation.id,
                "label_id": annotation.label_id,
                "kind": annotation.kind,
                "source": annotation.source,
            }
            if annotation is not None
            else None,
        },
    }


def decisions(
    session: Session, *, reviewer_key_id: int | None = None, item_id: int | None = None, limit: int = 50,
    offset: int = 0
) -> tuple[list[ReviewDecision], int]:
    """Decisions newest first (undos included), optionally of one reviewer or one item, and how many in all."""
    return items.decision_page(session, reviewer_key_id=reviewer_key_id, item_id=item_id, limit=limit,
                               offset=offset)
