"""What similar-creative search asks the database: which creatives a filter lets through (the mutable fields
live here, not in the index), the rows a hit is shown with, and the stored creatives a new version backfills."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, or_, select, tuple_
from sqlalchemy.orm import Session

from ctax.enums import CreativeStatus, Flag, ReviewStatus
from ctax.store.filters import label_subtree, of_account
from ctax.store.models import Creative, Label, ReviewItem
from ctax.store.repos.creatives import MAX_ID_CHARS

# The creatives a version's creatives collection is meant to hold: every one labelled (by a worker or imported).
SEARCHABLE = CreativeStatus.LABELLED


@dataclass(frozen=True)
class SearchFilter:
    label_id: int | None = None  # the decided label is this label or below it
    flags: Sequence[Flag] = ()
    statuses: Sequence[CreativeStatus] = ()
    review_statuses: Sequence[ReviewStatus] = ()
    account_id: int | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None

    @property
    def empty(self) -> bool:
        return not (self.label_id or self.flags or self.statuses or self.review_statuses
                    or self.account_id is not None or self.created_after or self.created_before)


@dataclass(frozen=True)
class HitRow:
    """What a search answer shows of one creative."""

    id: str
    status: str
    flag: str | None
    decided_label_id: int | None
    decided_label_path: str | None
    review_item_id: int | None
    review_status: str | None
    texts: list[str]
    ocr_text: str | None
    has_image: bool
    created_at: dt.datetime
    account_id: int | None


def _conditions(session: Session, f: SearchFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if f.label_id:
        where.append(Creative.decided_label_id.in_(label_subtree(session, f.label_id)))
    if f.flags:
        where.append(Creative.flag.in_(list(f.flags)))
    if f.statuses:
        where.append(Creative.status.in_(list(f.statuses)))
    if f.review_statuses:
        # A duplicate group's members are reviewed through their root's item (labelling/duplicates.py).
        reviewed = select(ReviewItem.creative_id).where(ReviewItem.status.in_(list(f.review_statuses)))
        where.append(or_(Creative.id.in_(reviewed), Creative.duplicate_of.in_(reviewed)))
    if f.account_id is not None:
        where.append(of_account(Creative.id, f.account_id))
    if f.created_after is not None:
        where.append(Creative.created_at >= f.created_after)
    if f.created_before is not None:
        where.append(Creative.created_at < f.created_before)
    return where


def qualifying_ids(session: Session, f: SearchFilter, cap: int) -> list[str]:
    """The ids of creatives the filter lets through, at most cap + 1 (more than cap: the filter is broad)."""
    return list(session.scalars(select(Creative.id).where(*_conditions(session, f)).limit(cap + 1)))


def keep_qualifying(session: Session, f: SearchFilter, ids: Sequence[str]) -> set[str]:
    """Those of `ids` the filter lets through."""
    if not ids:
        return set()
    found: set[str] = set()
    for start in range(0, len(ids), 5000):  # bound the IN list (SQLite's parameter limit)
        chunk = list(ids[start : start + 5000])
        found |= set(session.scalars(select(Creative.id).where(Creative.id.in_(chunk), *_conditions(session, f))))
    return found


def searchable_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Creative).where(Creative.status == SEARCHABLE)) or 0)


def exists(session: Session, creative_id: str, account_id: int | None = None) -> bool:
    """Whether the creative exists (and, with account_id, is that account's)."""
    if len(creative_id) > MAX_ID_CHARS:
        return False
    query = select(Creative.id).where(Creative.id == creative_id)
    if account_id is not None:
        query = query.where(Creative.account_id == account_id)
    return session.scalar(query) is not None


def stored_among(session: Session, ids: Sequence[str]) -> set[str]:
    """Those of these creatives that have a row (any status)."""
    found: set[str] = set()
    for start in range(0, len(ids), 1000):
        found |= set(session.scalars(select(Creative.id).where(Creative.id.in_(list(ids[start : start + 1000])))))
    return found


def hit_rows(session: Session, ids: Sequence[str]) -> dict[str, HitRow]:
    if not ids:
        return {}
    query = (
        select(Creative, Label.path, ReviewItem.id, ReviewItem.status)
        .outerjoin(Label, Label.id == Creative.decided_label_id)
        # Its review item, or a duplicate group member's group's (the root's): one item per group.
        .outerjoin(ReviewItem, ReviewItem.creative_id == func.coalesce(Creative.duplicate_of, Creative.id))
        .where(Creative.id.in_(list(ids)))
    )
    out: dict[str, HitRow] = {}
    for creative, path, item_id, item_status in session.execute(query):
        out[creative.id] = HitRow(
            id=creative.id, status=str(creative.status), flag=str(creative.flag) if creative.flag else None,
            decided_label_id=creative.decided_label_id, decided_label_path=path, review_item_id=item_id,
            review_status=str(item_status) if item_status else None, texts=list(creative.texts or []),
            ocr_text=creative.ocr_text, has_image=bool(creative.image_sha256), created_at=creative.created_at,
            account_id=creative.account_id)
    return out


@dataclass(frozen=True)
class StoredCreative:
    """A stored creative as a backfill encodes and indexes it."""

    id: str
    texts: list[str]
    ocr_text: str | None
    image_sha256: str | None
    decided_label_id: int | None
    account_id: int | None
    created_at: dt.datetime


def searchable_page(session: Session, after: tuple[dt.datetime, str] | None, limit: int) -> list[StoredCreative]:
    """The next `limit` searchable creatives in (created_at, id) order after the cursor: a backfill walks them."""
    query = select(Creative).where(Creative.status == SEARCHABLE)
    if after is not None:
        query = query.where(tuple_(Creative.created_at, Creative.id) > tuple_(after[0], after[1]))
    query = query.order_by(Creative.created_at, Creative.id).limit(limit)
    return [StoredCreative(c.id, list(c.texts or []), c.ocr_text, c.image_sha256, c.decided_label_id, c.account_id,
                           c.created_at) for c in session.scalars(query)]


def stored_creative(session: Session, creative_id: str) -> StoredCreative | None:
    c = session.get(Creative, creative_id) if len(creative_id) <= MAX_ID_CHARS else None
    if c is None:
        return None
    return StoredCreative(c.id, list(c.texts or []), c.ocr_text, c.image_sha256, c.decided_label_id, c.account_id,
                          c.created_at)
