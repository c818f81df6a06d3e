"""New-label proposals: list them, run discovery, accept (optionally renamed or moved) or reject."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from ctax.api.deps import DbDep, Reviewer
from ctax.api.params import MAX_LIST_ITEMS, CreativeId, Id, LabelRef, RequestBody, ShortText
from ctax.api.routes.review import one_of
from ctax.api.views.proposals import proposal_labels, proposal_view
from ctax.api.views.review import decision_view
from ctax.enums import ProposalStatus
from ctax.review import proposals
from ctax.review.discovery import DiscoveryParams

router = APIRouter(prefix="/v1/proposals", tags=["proposals"])

StatusOrAll = Annotated[ProposalStatus | Literal["all"], one_of([*ProposalStatus, "all"])]


class DiscoverIn(RequestBody):
    min_cluster_size: int = Field(default=DiscoveryParams.min_cluster_size, ge=2, le=500)
    min_samples: int | None = Field(default=None, ge=1, le=500)


class AcceptIn(RequestBody):
    name: ShortText | None = Field(
        default=None, description="the new label's name; default the suggested one"
    )
    parent: LabelRef | None = Field(default=None, description="the parent's path or id; default the suggested parent")
    into: LabelRef | None = Field(
        default=None, description="an existing label (path or id) to label the members with instead of creating one"
    )
    members: list[CreativeId] | None = Field(
        default=None, max_length=MAX_LIST_ITEMS, description="creative ids to label; default every member")


@router.get("")
def list_proposals(
    _: Reviewer,
    db: DbDep,
    status: StatusOrAll = ProposalStatus.OPEN,
    sample: Annotated[int, Query(ge=0, le=50, description="members shown per proposal")] = 6,
) -> dict[str, Any]:
    """Clusters of creatives that fit no label, each a candidate taxonomy node."""
    with db.read() as session:
        rows = proposals.list_proposals(session, status)
        labels = proposal_labels(session, rows)
        discovery = proposals.discovery_state(session)
        return {
            "items": [proposal_view(session, row, labels, sample) for row in rows],
            "total": len(rows),
            "discovery_pending": discovery.pending,
            "has_new_label_items": discovery.has_new_label_items,
        }


@router.post("/discover", status_code=202)
def discover(_: Reviewer, db: DbDep, body: DiscoverIn | None = None) -> dict[str, Any]:
    """Cluster the open new_label items now (the labelling worker runs it; proposals appear when it is done)."""
    body = body or DiscoverIn()
    with db.write() as session:
        job = proposals.request_discovery(session, "requested", **body.model_dump(exclude_none=True))
    return {"job_id": job.id, "status": "queued"}


@router.get("/{proposal_id}")
def get_proposal(proposal_id: Id, _: Reviewer, db: DbDep) -> dict[str, Any]:
    with db.read() as session:
        row = proposals.get_proposal(session, proposal_id)
        return proposal_view(session, row, proposal_labels(session, [row]), None)


@router.post("/{proposal_id}/accept")
def accept(proposal_id: Id, key: Reviewer, db: DbDep, body: AcceptIn | None = None) -> dict[str, Any]:
    """Create the label under the (suggested or given) parent, or use an existing one (`into`), and label the
    members you kept."""
    body = body or AcceptIn()
    with db.write() as session:
        outcome = proposals.accept(
            session, proposal_id, key, name=body.name, parent=body.parent, into=body.into, members=body.members
        )
        labels = proposal_labels(session, [outcome.proposal])
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
def reject(proposal_id: Id, key: Reviewer, db: DbDep) -> dict[str, Any]:
    """Not a new label: the members stay in the queue, to be decided one by one."""
    with db.write() as session:
        row = proposals.reject(session, proposal_id, key)
        return proposal_view(session, row, proposal_labels(session, [row]), 0)
