"""The review queue: flagged creatives become review items (labelling.flagging), ordered so the most instructive
come first; reviewers claim them (claims.py) and decide them (decisions.py), and every decision becomes labelled
data.

Concurrency. Every change to an item's state is one conditional UPDATE (status, claim and `version` in its WHERE
clause; store.repos.review), so of two reviewers racing for an item exactly one wins and the other gets a 409
naming who won. The `version` column is the ORM's optimistic counter: decisions and re-flags by the worker bump
it, claims do not (a claim changes nothing a reviewer looked at). A decision may carry the version its reviewer
saw; a retried request that finds the item already decided the same way by the same reviewer is answered, not
applied again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from ctax.errors import NotFound
from ctax.store.models import ReviewDecision, ReviewItem
from ctax.store.repos import review as items
from ctax.store.repos import review_counts
from ctax.store.repos.review import QueueFilter
from ctax.store.session import Session
from ctax.store.types import utcnow
from ctax.taxonomy import catalog

__all__ = ["QueueFilter", "checked", "counts", "get_item", "history", "holder_names", "last_decision", "list_items"]


def checked(session: Session, f: QueueFilter) -> QueueFilter:
    """The filter, once the labels it names are known to exist (NotFound otherwise)."""
    for label_id in (f.label_id, f.asserted_label_id):
        if label_id is not None:
            catalog.get_label(session, label_id)
    return f


def list_items(
    session: Session, f: QueueFilter, limit: int = 50, offset: int = 0, now: dt.datetime | None = None
) -> tuple[list[ReviewItem], int]:
    """One page of the queue, its items' creatives loaded, and how many items match in all."""
    return items.queue_page(session, checked(session, f), limit, offset, now or utcnow())


def counts(session: Session, key_id: int, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    by_flag = review_counts.open_count_by_flag(session)
    mine = items.decision_count_by(session, key_id, since=now - dt.timedelta(hours=24))
    return {"open": sum(by_flag.values()), "open_by_flag": by_flag, "decided_by_me_24h": mine}


def get_item(session: Session, item_id: int) -> ReviewItem:
    """The item as the database has it now (after a conditional UPDATE, not as this session last saw it)."""
    item = session.get(ReviewItem, item_id, populate_existing=True)
    if item is None:
        raise NotFound(f"no review item {item_id}")
    return item


def history(session: Session, item_id: int) -> list[ReviewDecision]:
    return items.history(session, item_id)


def last_decision(session: Session, item_id: int) -> ReviewDecision | None:
    return items.last_decision(session, item_id)


def holder_names(session: Session, key_ids: Iterable[int | None]) -> dict[int, str]:
    """The names of the keys holding claims, by key id."""
    return items.key_names(session, key_ids)
