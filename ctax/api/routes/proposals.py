"""New-label proposals: list them, run discovery, accept (optionally renamed or moved) or reject."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from ctax.api.deps import DispatcherDep, Reviewer, SessionDep
from ctax.api.routes.review import commit, decision_view
from ctax.jobs import DISCOVER
from ctax.review import proposals
from ctax.review.discovery import DiscoveryParams
from ctax.store.models import Creative, Label, OutboxJob, Proposal, ReviewItem
from ctax.store.outbox import enqueue
from ctax.taxonomy import catalog

router = APIRouter(prefix="/v1/proposals", tags=["proposals"])


class DiscoverIn(BaseModel):
    min_cluster_size: int = Field(DiscoveryParams.min_cluster_size, ge=2, le=500)
    min_samples: int | None = Field(None, ge=1, le=500)


class AcceptIn(BaseModel):
    name: str | None = Field(None, max_length=200, description="the new label's name; default the suggested one")
    parent: str | int | None = Field(None, description="the parent's path or id; default the suggested parent")
    into: str | int | None = Field(
        None, description="an existing label (path or id) to label the members with instead of creating one"
    )
    members: list[str] | None = Field(None, description="creative ids to label; default every member")


def _members(session: Session, proposal: Proposal, limit: int | None) -> list[dict[str, Any]]:
    ids = proposal.member_ids[:limit] if limit is not None else proposal.member_ids
    creatives = {c.id: c for c in session.scalars(select(Creative).where(Creative.id.in_(ids)))}
    items = {i.creative_id: i for i in session.scalars(select(ReviewItem).where(ReviewItem.creative_id.in_(ids)))}
    out = []
    for creative_id in ids:
        creative = creatives.get(creative_id)
        if creative is None:
            continue
        item = items.get(creative_id)
        out.append(
            {
                "creative_id": creative_id,
                "review_item_id": item.id if item else None,
                "review_status": item.status if item else None,
                "texts": creative.texts or [],
                "ocr_text": creative.ocr_text,
                "image_url": f"/v1/creatives/{creative.id}/image" if creative.image_sha256 else None,
            }
        )
    return out


def proposal_view(session: Session, proposal: Proposal, labels: dict[int, Label], sample: int | None) -> dict[str, Any]:
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
        "members": _members(session, proposal, sample),
    }


def _labels_of(session: Session, rows: list[Proposal]) -> dict[int, Label]:
    ids = [i for row in rows for i in (row.suggested_parent_id, row.created_label_id) if i is not None]
    return catalog.labels_by_ids(session, ids)


@router.get("")
def list_proposals(
    _: Reviewer,
    session: SessionDep,
    status: Literal["open", "accepted", "rejected", "all"] = "open",
    sample: Annotated[int, Query(ge=0, le=50, description="members shown per proposal")] = 6,
) -> dict[str, Any]:
    """Clusters of creatives that fit no label, each a candidate taxonomy node."""
    rows = proposals.list_proposals(session, status)
    labels = _labels_of(session, rows)
    pending = session.scalar(
        select(OutboxJob.id).where(OutboxJob.task == DISCOVER, OutboxJob.sent_at.is_(None)).limit(1)
    )
    unclustered = session.scalar(
        select(ReviewItem.id).where(ReviewItem.flag == "new_label", ReviewItem.status == "open").limit(1)
    )
    return {
        "items": [proposal_view(session, row, labels, sample) for row in rows],
        "total": len(rows),
        "discovery_pending": pending is not None,
        "has_new_label_items": unclustered is not None,
    }


@router.post("/discover", status_code=202)
def discover(_: Reviewer, session: SessionDep, dispatcher: DispatcherDep, body: DiscoverIn | None = None
             ) -> dict[str, Any]:
    """Cluster the open new_label items now (the labelling worker runs it; proposals appear when it is done)."""
    body = body or DiscoverIn()
    job = enqueue(session, DISCOVER, {"reason": "requested", **body.model_dump(exclude_none=True)})
    session.flush()
    job_id = job.id
    commit(session, dispatcher)
    return {"job_id": job_id, "status": "queued"}


@router.get("/{proposal_id}")
def get_proposal(proposal_id: int, _: Reviewer, session: SessionDep) -> dict[str, Any]:
    row = proposals.get_proposal(session, proposal_id)
    return proposal_view(session, row, _labels_of(session, [row]), None)


@router.post("/{proposal_id}/accept")
def accept(proposal_id: int, key: Reviewer, session: SessionDep, dispatcher: DispatcherDep,
           body: AcceptIn | None = None) -> dict[str, Any]:
    """Create the label under the (suggested or given) parent, or use an existing one (`into`), and label the
    members you kept."""
    body = body or AcceptIn()
    outcome = proposals.accept(
        session, proposal_id, key, name=body.name, parent=body.parent, into=body.into, members=body.members
    )
    commit(session, dispatcher)
    labels = _labels_of(session, [outcome.proposal])
    labels[outcome.label.id] = outcome.label
    return {
        "proposal": proposal_view(session, outcome.proposal, labels, 0),
        "label": {"id": outcome.label.id, "path": outcome.label.path},
        "labelled": len(outcome.labelled),
        "skipped": outcome.skipped,
        "replayed": outcome.replayed,
        "decisions": [decision_view(o.decision, labels) for o in outcome.labelled],
    }


@router.post("/{proposal_id}/reject")
def reject(proposal_id: int, key: Reviewer, session: SessionDep, dispatcher: DispatcherDep) -> dict[str, Any]:
    """Not a new label: the members stay in the queue, to be decided one by one."""
    row = proposals.reject(session, proposal_id, key)
    commit(session, dispatcher)
    return proposal_view(session, row, _labels_of(session, [row]), 0)
