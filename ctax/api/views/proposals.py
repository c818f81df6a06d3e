"""New-label proposals as the API answers them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ctax.review import proposals
from ctax.store.models import Creative, Label, Proposal, ReviewItem
from ctax.store.session import Session
from ctax.taxonomy import catalog


def proposal_labels(session: Session, rows: Sequence[Proposal]) -> dict[int, Label]:
    """The labels proposals name (suggested parents, created labels), by id."""
    ids = [i for row in rows for i in (row.suggested_parent_id, row.created_label_id) if i is not None]
    return catalog.labels_by_ids(session, ids)


def member_view(creative: Creative, item: ReviewItem | None) -> dict[str, Any]:
    return {
        "creative_id": creative.id,
        "review_item_id": item.id if item else None,
        "review_status": item.status if item else None,
        "texts": creative.texts or [],
        "ocr_text": creative.ocr_text,
        "image_url": f"/v1/creatives/{creative.id}/image" if creative.image_sha256 else None,
    }


def proposal_view(session: Session, proposal: Proposal, labels: dict[int, Label], sample: int | None
                  ) -> dict[str, Any]:
    """The proposal, with its first `sample` members (all for None)."""
    def ref(label_id: int | None) -> dict[str, Any] | None:
        label = labels.get(label_id) if label_id is not None else None
        return {"id": label.id, "path": label.path} if label else None

    parent = ref(proposal.suggested_parent_id)
    return {
        "id": proposal.id,
        "status": proposal.status,
        "suggested_name": proposal.suggested_name,
        "suggested_parent": parent,
        "suggested_path": f"{parent['path']}/{proposal.suggested_name}" if parent else None,
        "terms": proposal.terms,
        "cohesion": proposal.cohesion,
        "size": len(proposal.member_ids),
        "model_version": proposal.model_version_id,
        "created_label": ref(proposal.created_label_id),
        "created_at": proposal.created_at,
        "decided_at": proposal.decided_at,
        "members": [member_view(c, i) for c, i in proposals.members(session, proposal, sample)],
    }
