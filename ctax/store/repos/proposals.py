"""New-label proposals: their rows, the review items linked to them, and what discovery reads.

Linking items to a proposal, and the density bonus discovery adds to their priority, are core UPDATEs that leave
the items' `version` alone: neither changes anything a reviewer saw. A proposal's decision is one conditional
UPDATE on its status, so two reviewers deciding one proposal cannot both succeed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from ctax.enums import CreativeStatus, Flag, ProposalStatus, ReviewStatus
from ctax.jobs import DISCOVER
from ctax.store.models import Creative, OutboxJob, Proposal, ReviewItem

# -- proposals -------------------------------------------------------------------------------------------------


def with_status(session: Session, status: ProposalStatus) -> list[Proposal]:
    """In the order they were created."""
    return list(session.scalars(select(Proposal).where(Proposal.status == status).order_by(Proposal.id)))


def listing(session: Session, status: ProposalStatus | None) -> list[Proposal]:
    """Proposals of one status (every one for None), by status, newest first."""
    query = select(Proposal)
    if status is not None:
        query = query.where(Proposal.status == status)
    return list(session.scalars(query.order_by(Proposal.status, Proposal.id.desc())))


def delete_proposals(session: Session, proposal_ids: Sequence[int]) -> None:
    session.execute(delete(Proposal).where(Proposal.id.in_(list(proposal_ids))))


def decide_if_open(session: Session, proposal_id: int, status: ProposalStatus, key_id: int,
                   now: dt.datetime) -> bool:
    """The status flip is conditional: of two reviewers deciding one proposal, one matches the row."""
    result = session.execute(
        update(Proposal)
        .where(Proposal.id == proposal_id, Proposal.status == ProposalStatus.OPEN)
        .values(status=status, decided_by=key_id, decided_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def record_acceptance(session: Session, proposal_id: int, label_id: int, member_ids: Sequence[str]) -> None:
    session.execute(
        update(Proposal)
        .where(Proposal.id == proposal_id)
        .values(created_label_id=label_id, member_ids=list(member_ids))
        .execution_options(synchronize_session=False)
    )


# -- the review items of proposals --------------------------------------------------------------------------------


def open_items_of(session: Session, creative_ids: Sequence[str]) -> list[ReviewItem]:
    """The open review items of these creatives, highest priority first."""
    return list(
        session.scalars(
            select(ReviewItem)
            .where(ReviewItem.creative_id.in_(list(creative_ids)), ReviewItem.status == ReviewStatus.OPEN)
            .order_by(ReviewItem.priority.desc())
        )
    )


def link_open_items(session: Session, proposal_id: int, creative_ids: Sequence[str]) -> None:
    session.execute(
        update(ReviewItem)
        .where(ReviewItem.creative_id.in_(list(creative_ids)), ReviewItem.status == ReviewStatus.OPEN)
        .values(proposal_id=proposal_id)
        .execution_options(synchronize_session=False)
    )


def unlink_items(session: Session, proposal_ids: Sequence[int]) -> None:
    session.execute(
        update(ReviewItem)
        .where(ReviewItem.proposal_id.in_(list(proposal_ids)))
        .values(proposal_id=None)
        .execution_options(synchronize_session=False)
    )


def set_priority(session: Session, item_id: int, priority: float, reason: str) -> None:
    session.execute(
        update(ReviewItem)
        .where(ReviewItem.id == item_id)
        .values(priority=priority, priority_reason=reason)
        .execution_options(synchronize_session=False)
    )


def members(session: Session, creative_ids: Sequence[str]) -> tuple[dict[str, Creative], dict[str, ReviewItem]]:
    """The creatives of these ids and their review items, each by creative id."""
    ids = list(creative_ids)
    creatives = {c.id: c for c in session.scalars(select(Creative).where(Creative.id.in_(ids)))}
    items = {i.creative_id: i for i in session.scalars(select(ReviewItem).where(ReviewItem.creative_id.in_(ids)))}
    return creatives, items


# -- what discovery reads, and its requests -----------------------------------------------------------------------


def open_new_label_contents(session: Session) -> list[Any]:
    """(id, texts, ocr_text, image_sha256) of every creative with an open new_label item, in the queue's order of
    arrival."""
    return list(
        session.execute(
            select(Creative.id, Creative.texts, Creative.ocr_text, Creative.image_sha256)
            .join(ReviewItem, ReviewItem.creative_id == Creative.id)
            .where(ReviewItem.flag == Flag.NEW_LABEL, ReviewItem.status == ReviewStatus.OPEN)
            .order_by(ReviewItem.id)
        ).all()
    )


def recent_labelled_texts(session: Session, limit: int) -> list[tuple[str, list[str] | None, str | None]]:
    """(id, texts, ocr_text) of the `limit` most recently created labelled creatives."""
    rows = session.execute(
        select(Creative.id, Creative.texts, Creative.ocr_text)
        .where(Creative.status == CreativeStatus.LABELLED)
        .order_by(Creative.created_at.desc())
        .limit(limit)
    ).all()
    return [(cid, texts, ocr) for cid, texts, ocr in rows]


def has_open_new_label_items(session: Session) -> bool:
    return session.scalar(
        select(ReviewItem.id)
        .where(ReviewItem.flag == Flag.NEW_LABEL, ReviewItem.status == ReviewStatus.OPEN)
        .limit(1)
    ) is not None


def discovery_pending(session: Session) -> bool:
    """A discovery request waits in the outbox."""
    return session.scalar(
        select(OutboxJob.id).where(OutboxJob.task == DISCOVER, OutboxJob.sent_at.is_(None)).limit(1)
    ) is not None


def last_discovery_request_at(session: Session) -> dt.datetime | None:
    """When discovery was last requested (sent or not)."""
    return session.scalar(select(func.max(OutboxJob.created_at)).where(OutboxJob.task == DISCOVER))
