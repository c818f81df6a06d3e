"""Review items and their decisions: the queue's filters and orders, claims, the audit trail, and the conditional
UPDATEs every change of an item's state is made of.

Concurrency. Every change to an item's state is one conditional UPDATE with status, claim and `version` in its
WHERE clause, so of two reviewers racing for an item exactly one matches the row; each such function answers
whether it did, and the caller explains a refusal. `version` is the ORM's optimistic counter: decisions, undos and
re-flags by the worker bump it, claims do not (a claim changes nothing a reviewer looked at). The UPDATEs skip the
session's synchronisation: callers reload the item (`get_item`) after one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, String, cast, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session, joinedload

from ctax.enums import REOPEN, Flag, QueueOrder, ReviewStatus
from ctax.store.filters import label_subtree, of_account
from ctax.store.models import Annotation, ApiKey, Creative, ReviewDecision, ReviewItem


@dataclass(frozen=True)
class QueueFilter:
    flag: Flag | None = None
    status: ReviewStatus | Literal["all"] = ReviewStatus.OPEN
    label_id: int | None = None  # the suggested label is this label or below it
    asserted_label_id: int | None = None  # the asserted label is this label or below it
    min_score: float | None = None
    max_score: float | None = None
    min_age_s: float | None = None
    max_age_s: float | None = None
    available_to: int | None = None  # hide items someone other than this key holds a live claim on
    proposal_id: int | None = None
    text: str | None = None
    exclude: Sequence[int] = ()
    order: QueueOrder = QueueOrder.PRIORITY
    account_id: int | None = None  # only the creatives of this account


_ORDER = {
    QueueOrder.PRIORITY: (ReviewItem.priority.desc(), ReviewItem.created_at, ReviewItem.id),
    QueueOrder.NEWEST: (ReviewItem.created_at.desc(), ReviewItem.id.desc()),
    QueueOrder.OLDEST: (ReviewItem.created_at, ReviewItem.id),
    QueueOrder.SCORE: (ReviewItem.top_score, ReviewItem.id),
    QueueOrder.SCORE_DESC: (ReviewItem.top_score.desc(), ReviewItem.id),
}


# -- the queue -------------------------------------------------------------------------------------------------


def claimable_by(key_id: int, now: dt.datetime) -> ColumnElement[bool]:
    return or_(ReviewItem.claimed_by.is_(None), ReviewItem.claimed_by == key_id, ReviewItem.claim_expires_at < now)


def _matching_text(text: str) -> Select[str]:
    return select(Creative.id).where(
        *[or_(cast(Creative.texts, String).ilike(f"%{term}%"), Creative.ocr_text.ilike(f"%{term}%"))
          for term in text.split()]
    )


def _queue(session: Session, f: QueueFilter, now: dt.datetime) -> Select[ReviewItem]:
    query = select(ReviewItem)
    if f.status != "all":
        query = query.where(ReviewItem.status == f.status)
    if f.flag:
        query = query.where(ReviewItem.flag == f.flag)
    if f.label_id is not None:
        query = query.where(ReviewItem.suggested_label_id.in_(label_subtree(session, f.label_id)))
    if f.asserted_label_id is not None:
        query = query.where(ReviewItem.asserted_label_id.in_(label_subtree(session, f.asserted_label_id)))
    if f.min_score is not None:
        query = query.where(ReviewItem.top_score >= f.min_score)
    if f.max_score is not None:
        query = query.where(ReviewItem.top_score <= f.max_score)
    if f.min_age_s is not None:
        query = query.where(ReviewItem.created_at <= now - dt.timedelta(seconds=f.min_age_s))
    if f.max_age_s is not None:
        query = query.where(ReviewItem.created_at >= now - dt.timedelta(seconds=f.max_age_s))
    if f.available_to is not None:
        query = query.where(claimable_by(f.available_to, now))
    if f.proposal_id is not None:
        query = query.where(ReviewItem.proposal_id == f.proposal_id)
    if f.exclude:
        query = query.where(ReviewItem.id.not_in(list(f.exclude)))
    if f.text:
        query = query.where(ReviewItem.creative_id.in_(_matching_text(f.text)))
    if f.account_id is not None:
        query = query.where(of_account(ReviewItem.creative_id, f.account_id))
    return query


def queue_page(
    session: Session, f: QueueFilter, limit: int, offset: int, now: dt.datetime
) -> tuple[list[ReviewItem], int]:
    """One page of the items matching `f` in its order (their creatives loaded), and how many match in all."""
    query = _queue(session, f, now)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.options(joinedload(ReviewItem.creative).joinedload(Creative.asserted_label))
        .order_by(*_ORDER[f.order])
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), total


def first_held(session: Session, f: QueueFilter, key_id: int, now: dt.datetime) -> ReviewItem | None:
    """The first open item matching `f` that this key holds a live claim on."""
    matching = _queue(session, f, now).subquery()
    return session.scalars(
        select(ReviewItem)
        .where(
            ReviewItem.status == ReviewStatus.OPEN,
            ReviewItem.claimed_by == key_id,
            ReviewItem.claim_expires_at >= now,
            ReviewItem.id.in_(select(matching.c.id)),
        )
        .order_by(*_ORDER[f.order])
        .limit(1)
    ).first()


def item_of_creative(session: Session, creative_id: str) -> ReviewItem | None:
    return session.scalar(select(ReviewItem).where(ReviewItem.creative_id == creative_id))


def items_of_creatives(session: Session, creative_ids: Sequence[str]) -> dict[str, ReviewItem]:
    """The review item of each creative that has one (open or decided)."""
    if not creative_ids:
        return {}
    return {item.creative_id: item for item in session.scalars(
        select(ReviewItem).where(ReviewItem.creative_id.in_(list(creative_ids))))}


def open_items(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """New open review items (ReviewItem columns per row) in one executemany, without an ORM object each: the
    labelling worker opens one per flagged creative of every batch."""
    if rows:
        session.execute(insert(ReviewItem), [{"status": ReviewStatus.OPEN, **row} for row in rows])


def key_names(session: Session, key_ids: Iterable[int | None]) -> dict[int, str]:
    wanted = [k for k in set(key_ids) if k is not None]
    if not wanted:
        return {}
    return {key_id: name for key_id, name in session.execute(
        select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(wanted))).all()}


# -- state changes: one conditional UPDATE each ------------------------------------------------------------------


def _changed(session: Session, where: Sequence[ColumnElement[bool]], **values: Any) -> bool:
    """One conditional UPDATE of an item; whether it matched (the caller explains a refusal)."""
    result = session.execute(
        update(ReviewItem).where(*where).values(**values).execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def claim_if_available(session: Session, item_id: int, key_id: int, until: dt.datetime, now: dt.datetime) -> bool:
    """The WHERE clause is the check, so two reviewers cannot both hold an item."""
    return _changed(session, [ReviewItem.id == item_id, ReviewItem.status == ReviewStatus.OPEN,
                              claimable_by(key_id, now)], claimed_by=key_id, claim_expires_at=until)


def release_claim(session: Session, item_id: int, key_id: int) -> None:
    _changed(session, [ReviewItem.id == item_id, ReviewItem.claimed_by == key_id], claimed_by=None,
             claim_expires_at=None)


def decide_if_unchanged(session: Session, item: ReviewItem, key_id: int, now: dt.datetime) -> bool:
    """Mark the item decided if it is still open, at the version the caller read, and not held by another key."""
    return _changed(
        session,
        [ReviewItem.id == item.id, ReviewItem.version == item.version, ReviewItem.status == ReviewStatus.OPEN,
         claimable_by(key_id, now)],
        status=ReviewStatus.DECIDED, decided_at=now, claimed_by=None, claim_expires_at=None,
        version=ReviewItem.version + 1, updated_at=now,
    )


def reopen_if_unchanged(session: Session, item: ReviewItem, key_id: int, until: dt.datetime,
                        now: dt.datetime) -> bool:
    """Open a decided item again, claimed by `key_id`, if it is still at the version the caller read."""
    return _changed(
        session,
        [ReviewItem.id == item.id, ReviewItem.version == item.version, ReviewItem.status == ReviewStatus.DECIDED],
        status=ReviewStatus.OPEN, decided_at=None, claimed_by=key_id, claim_expires_at=until,
        version=ReviewItem.version + 1, updated_at=now,
    )


# -- decisions and the annotations they made ---------------------------------------------------------------------


def history(session: Session, item_id: int) -> list[ReviewDecision]:
    return list(
        session.scalars(
            select(ReviewDecision).where(ReviewDecision.review_item_id == item_id).order_by(ReviewDecision.id)
        )
    )


def last_decision(session: Session, item_id: int) -> ReviewDecision | None:
    """The item's latest decision that counts (undos are recorded beside decisions, and are not one)."""
    return session.scalar(
        select(ReviewDecision)
        .where(ReviewDecision.review_item_id == item_id, ReviewDecision.action != REOPEN)
        .order_by(ReviewDecision.id.desc())
        .limit(1)
    )


def decision_count_by(session: Session, key_id: int, since: dt.datetime) -> int:
    return session.scalar(
        select(func.count(ReviewDecision.id)).where(
            ReviewDecision.reviewer_key_id == key_id,
            ReviewDecision.created_at >= since,
            ReviewDecision.action != REOPEN,
        )
    ) or 0


def decision_page(
    session: Session, *, reviewer_key_id: int | None, item_id: int | None, limit: int, offset: int
) -> tuple[list[ReviewDecision], int]:
    """Decisions newest first, optionally of one reviewer or one item, and how many match in all."""
    query = select(ReviewDecision)
    if reviewer_key_id is not None:
        query = query.where(ReviewDecision.reviewer_key_id == reviewer_key_id)
    if item_id is not None:
        query = query.where(ReviewDecision.review_item_id == item_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(ReviewDecision.id.desc()).limit(limit).offset(offset)).all()
    return list(rows), total


def latest_annotation(session: Session, creative_id: str) -> Annotation | None:
    return session.scalar(
        select(Annotation).where(Annotation.creative_id == creative_id).order_by(Annotation.id.desc()).limit(1)
    )


def delete_annotations_of(session: Session, decision_id: int) -> None:
    session.execute(delete(Annotation).where(Annotation.decision_id == decision_id))


