"""The review queue: flagged creatives become review items, ordered so the most instructive come first; reviewers
claim them and decide them (review_decisions.py), and every decision becomes labelled data.

Concurrency. Every change to an item's state is one conditional UPDATE (status, claim and `version` in its WHERE
clause), so of two reviewers racing for an item exactly one wins and the other gets a 409 naming who won. The
`version` column is the ORM's optimistic counter: decisions and re-flags by the worker bump it, claims do not (a
claim changes nothing a reviewer looked at). A decision may carry the version its reviewer saw; a retried
request that finds the item already decided the same way by the same reviewer is answered, not applied again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from sqlalchemy import ColumnElement, String, cast, func, or_, select, update
from sqlalchemy.orm import Session, joinedload

from ctax.errors import Conflict, NotFound
from ctax.store.models import ApiKey, Creative, Label, ReviewDecision, ReviewItem, utcnow
from ctax.taxonomy import catalog

Action = Literal["confirm", "relabel", "new_label", "reject"]
ACTIONS: tuple[Action, ...] = ("confirm", "relabel", "new_label", "reject")
REOPEN = "reopen"
Order = Literal["priority", "newest", "oldest", "score", "-score"]


# -- flagging (called by the labelling worker) ---------------------------------------------------------------


# -- reading the queue ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFilter:
    flag: str | None = None
    status: Literal["open", "decided", "all"] = "open"
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
    order: Order = "priority"


def _subtree_ids(session: Session, label_id: int) -> Any:
    label = catalog.get_label(session, label_id)
    return select(Label.id).where(or_(Label.id == label.id, Label.path.startswith(label.path + "/", autoescape=True)))


def claimable_by(key_id: int, now: dt.datetime) -> ColumnElement[bool]:
    return or_(ReviewItem.claimed_by.is_(None), ReviewItem.claimed_by == key_id, ReviewItem.claim_expires_at < now)


def _query(session: Session, f: QueueFilter, now: dt.datetime) -> Any:
    query = select(ReviewItem)
    if f.status != "all":
        query = query.where(ReviewItem.status == f.status)
    if f.flag:
        query = query.where(ReviewItem.flag == f.flag)
    if f.label_id is not None:
        query = query.where(ReviewItem.suggested_label_id.in_(_subtree_ids(session, f.label_id)))
    if f.asserted_label_id is not None:
        query = query.where(ReviewItem.asserted_label_id.in_(_subtree_ids(session, f.asserted_label_id)))
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
        words = select(Creative.id).where(
            *[
                or_(cast(Creative.texts, String).ilike(f"%{term}%"), Creative.ocr_text.ilike(f"%{term}%"))
                for term in f.text.split()
            ]
        )
        query = query.where(ReviewItem.creative_id.in_(words))
    return query


_ORDER = {
    "priority": (ReviewItem.priority.desc(), ReviewItem.created_at, ReviewItem.id),
    "newest": (ReviewItem.created_at.desc(), ReviewItem.id.desc()),
    "oldest": (ReviewItem.created_at, ReviewItem.id),
    "score": (ReviewItem.top_score, ReviewItem.id),
    "-score": (ReviewItem.top_score.desc(), ReviewItem.id),
}


def list_items(
    session: Session, f: QueueFilter, limit: int = 50, offset: int = 0, now: dt.datetime | None = None
) -> tuple[list[ReviewItem], int]:
    query = _query(session, f, now or utcnow())
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.options(joinedload(ReviewItem.creative).joinedload(Creative.asserted_label))
        .order_by(*_ORDER[f.order])
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), total


def counts(session: Session, key_id: int, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    by_flag = dict(
        session.execute(
            select(ReviewItem.flag, func.count()).where(ReviewItem.status == "open").group_by(ReviewItem.flag)
        ).all()
    )
    since = now - dt.timedelta(hours=24)
    mine = session.scalar(
        select(func.count(ReviewDecision.id)).where(
            ReviewDecision.reviewer_key_id == key_id,
            ReviewDecision.created_at >= since,
            ReviewDecision.action != REOPEN,
        )
    )
    return {"open": sum(by_flag.values()), "open_by_flag": by_flag, "decided_by_me_24h": mine or 0}


def get_item(session: Session, item_id: int) -> ReviewItem:
    item = session.get(ReviewItem, item_id, populate_existing=True)
    if item is None:
        raise NotFound(f"no review item {item_id}")
    return item


def history(session: Session, item_id: int) -> list[ReviewDecision]:
    return list(
        session.scalars(
            select(ReviewDecision).where(ReviewDecision.review_item_id == item_id).order_by(ReviewDecision.id)
        )
    )


def last_decision(session: Session, item_id: int) -> ReviewDecision | None:
    return session.scalar(
        select(ReviewDecision)
        .where(ReviewDecision.review_item_id == item_id, ReviewDecision.action != REOPEN)
        .order_by(ReviewDecision.id.desc())
        .limit(1)
    )


# -- claims --------------------------------------------------------------------------------------------------


def _holder(session: Session, key_id: int | None) -> str:
    key = session.get(ApiKey, key_id) if key_id is not None else None
    return key.name if key is not None else f"key {key_id}"


def refusal(session: Session, item: ReviewItem, key: ApiKey, now: dt.datetime) -> Conflict:
    """Why an item cannot be worked by this key right now."""
    if item.status != "open":
        last = last_decision(session, item.id)
        who = f" by {last.reviewer_name} ({last.action})" if last is not None else ""
        return Conflict(
            f"review item {item.id} was already decided{who}; nothing was changed",
            item_id=item.id,
            status=item.status,
            version=item.version,
        )
    if item.claimed_by not in (None, key.id) and item.claim_expires_at is not None and item.claim_expires_at >= now:
        return Conflict(
            f"review item {item.id} is claimed by {_holder(session, item.claimed_by)} until "
            f"{item.claim_expires_at:%H:%M:%S} UTC; pick another item",
            item_id=item.id,
            claimed_by=_holder(session, item.claimed_by),
            claim_expires_at=item.claim_expires_at.isoformat(),
        )
    return Conflict(f"review item {item.id} changed while you decided; reload it", item_id=item.id)


def claim(session: Session, item_id: int, key: ApiKey, ttl_s: float, now: dt.datetime | None = None) -> ReviewItem:
    """Atomic: the UPDATE's WHERE clause is the check, so two reviewers cannot both hold an item."""
    now = now or utcnow()
    result = session.execute(
        update(ReviewItem)
        .where(ReviewItem.id == item_id, ReviewItem.status == "open", claimable_by(key.id, now))
        .values(claimed_by=key.id, claim_expires_at=now + dt.timedelta(seconds=ttl_s))
        .execution_options(synchronize_session=False)
    )
    item = get_item(session, item_id)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise refusal(session, item, key, now)
    return item


def release(session: Session, item_id: int, key: ApiKey) -> ReviewItem:
    session.execute(
        update(ReviewItem)
        .where(ReviewItem.id == item_id, ReviewItem.claimed_by == key.id)
        .values(claimed_by=None, claim_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return get_item(session, item_id)


def claim_next(
    session: Session, f: QueueFilter, key: ApiKey, ttl_s: float, now: dt.datetime | None = None
) -> ReviewItem | None:
    """The item this reviewer should work now: one they already hold, else the first available in queue order."""
    now = now or utcnow()
    matching = _query(session, f, now).subquery()
    mine = session.scalars(
        select(ReviewItem)
        .where(
            ReviewItem.status == "open",
            ReviewItem.claimed_by == key.id,
            ReviewItem.claim_expires_at >= now,
            ReviewItem.id.in_(select(matching.c.id)),
        )
        .order_by(*_ORDER[f.order])
        .limit(1)
    ).first()
    if mine is not None:
        candidates = [mine]
    else:
        candidates, _ = list_items(session, replace(f, available_to=key.id), limit=20, now=now)
    for candidate in candidates:
        try:
            return claim(session, candidate.id, key, ttl_s, now)
        except Conflict:  # another reviewer took it between the read and the claim: try the next one
            continue
    return None
