"""Model versions: which one is active, the next sequence number, the one a rollback returns to; and the stamp of
the label set that a version's calibration (and a labeller built on it) was made against."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ctax.enums import VersionStatus
from ctax.store.models import Label, ModelVersion


def active(session: Session) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.status == VersionStatus.ACTIVE))


def get(session: Session, version_id: str) -> ModelVersion | None:
    return session.get(ModelVersion, version_id)


def next_seq(session: Session) -> int:
    return (session.scalar(select(func.max(ModelVersion.seq))) or 0) + 1


def newest_first(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.seq.desc())))


def last_retired_before(session: Session, promoted_before: dt.datetime | None) -> ModelVersion | None:
    """The retired version promoted most recently (before `promoted_before` when given): the one that was active
    before the current one."""
    query = select(ModelVersion).where(
        ModelVersion.status == VersionStatus.RETIRED, ModelVersion.promoted_at.is_not(None)
    )
    if promoted_before is not None:
        query = query.where(ModelVersion.promoted_at < promoted_before)
    return session.scalar(query.order_by(ModelVersion.promoted_at.desc()).limit(1))


def label_set_stamp(session: Session) -> tuple[int, str]:
    """How many labels exist and when the last one changed: equal stamps mean the same label set (a retired or
    renamed label moves `updated_at`, a new one the count)."""
    count, changed = session.execute(select(func.count(Label.id), func.max(Label.updated_at))).one()
    return int(count), str(changed)
