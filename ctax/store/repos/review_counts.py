"""How many review items there are, by flag and status: the queue's depth (for /metrics, the queue's stats and
the discovery trigger)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ctax.enums import Flag, ReviewStatus
from ctax.store.models import ReviewItem


def open_count_by_flag(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(ReviewItem.flag, func.count()).where(ReviewItem.status == ReviewStatus.OPEN).group_by(ReviewItem.flag)
    ).all()
    return {flag: count for flag, count in rows}


def open_count_flagged(session: Session, flag: Flag, since: dt.datetime | None = None) -> int:
    """Open items flagged `flag` (since `since`, when given)."""
    query = select(func.count(ReviewItem.id)).where(ReviewItem.flag == flag, ReviewItem.status == ReviewStatus.OPEN)
    if since is not None:
        query = query.where(ReviewItem.created_at > since)
    return session.scalar(query) or 0


def count_by_status_and_flag(session: Session) -> list[tuple[str, str, int]]:
    """How many review items there are of each status and flag (the review queue's depth, for /metrics)."""
    rows = session.execute(
        select(ReviewItem.status, ReviewItem.flag, func.count()).group_by(ReviewItem.status, ReviewItem.flag)
    )
    return [(str(status), str(flag), count) for status, flag, count in rows]
