"""Creatives: the API's reads and what the worker writes under its lease (the lease itself: store/leases.py; the
dispatcher's outbox view: store/outbox.py).

`store_results` and `fail` write only where the calling worker still holds the claim, so a slow worker never
overwrites the result of the one that took its work over.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, exists, func, or_, select, update
from sqlalchemy import delete as sa_delete
from sqlalchemy.orm import Session, load_only, selectinload

from ctax.enums import CreativeStatus, Flag, ReviewStatus
from ctax.store.models import Annotation, Creative, ReviewItem
from ctax.store.repos import accounts
from ctax.store.session import mark_queued_work
from ctax.store.types import utcnow

# Longer ids are not ours (ids are 32 hex characters); refusing them early keeps junk out of the query.
MAX_ID_CHARS = 64


# -- the API's reads ---------------------------------------------------------------------------------------------


def get(session: Session, creative_id: str, account_id: int | None = None) -> Creative | None:
    """The creative; with `account_id`, only if it is that account's (another's is as absent as a wrong id)."""
    if len(creative_id) > MAX_ID_CHARS:
        return None
    creative = session.get(Creative, creative_id, options=[selectinload(Creative.asserted_label)])
    return creative if creative is not None and account_id in (None, creative.account_id) else None


def page(
    session: Session,
    *,
    status: CreativeStatus | None,
    flag: Flag | None,
    external_id: str | None,
    limit: int,
    offset: int,
    account_id: int | None = None,
    campaign: str | None = None,
) -> tuple[list[Creative], int]:
    """Newest first, with their asserted labels loaded; and how many match in all (of one account's, if given)."""
    query = select(Creative)
    if account_id is not None:
        query = query.where(Creative.account_id == account_id)
    if status:
        query = query.where(Creative.status == status)
    if flag:
        query = query.where(Creative.flag == flag)
    if external_id:
        query = query.where(Creative.external_id == external_id)
    if campaign:
        query = query.where(Creative.campaign == campaign)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.options(selectinload(Creative.asserted_label))
        .order_by(Creative.created_at.desc(), Creative.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total


def count_by_status(session: Session) -> list[tuple[str, int]]:
    rows = session.execute(select(Creative.status, func.count()).group_by(Creative.status))
    return [(str(status), count) for status, count in rows]


# -- arriving --------------------------------------------------------------------------------------------------


def by_idempotency_key(session: Session, api_key_id: int | None, key: str) -> Creative | None:
    """What an earlier request with this Idempotency-Key made in the key's account (or by the key, if it has none)."""
    own = Creative.account_id.is_(None) & (Creative.api_key_id == api_key_id)
    account = accounts.of_key(api_key_id)  # in the same statement: no extra round trip
    scope = own if account is None else or_(Creative.account_id == account, own)
    return session.scalar(select(Creative).where(Creative.idempotency_key == key, scope).limit(1))


def add(session: Session, creative: Creative) -> Creative:
    """Insert a creative to label; it is sent to the queue as soon as the transaction commits."""
    session.add(creative)
    session.flush()
    mark_queued_work(session)
    return creative


def images_in_use(session: Session, digests: Sequence[str]) -> set[str]:
    """Which of these image blobs a stored creative refers to."""
    if not digests:
        return set()
    return set(session.scalars(select(Creative.image_sha256).where(Creative.image_sha256.in_(list(digests)))))


def requeue(session: Session, creative: Creative) -> Creative:
    """Queue a failed creative again, its attempts forgotten."""
    creative.status = CreativeStatus.QUEUED
    creative.error = None
    creative.attempts = 0
    creative.dispatched_at = None
    mark_queued_work(session)
    return creative


# -- the worker's lease ----------------------------------------------------------------------------------------


def by_ids(session: Session, ids: Sequence[str]) -> list[Creative]:
    if not ids:
        return []
    return list(session.scalars(select(Creative).where(Creative.id.in_(list(ids)))))


@dataclass(frozen=True)
class LabelResult:
    """What labelling decided for one creative; its text key and duplicate group: ctax/labelling/duplicates.py."""

    creative_id: str
    prediction: dict[str, Any]
    flag: Flag
    decided_label_id: int | None
    ocr_text: str | None
    text_sha256: str | None = None
    duplicate_of: str | None = None


def store_results(session: Session, worker: str, version: str, results: Sequence[LabelResult]) -> set[str]:
    """Store a batch of results where `worker` still holds the claim; returns the ids stored.

    A slow worker whose lease was taken over must not overwrite the newer claim's work, so each row's UPDATE is
    guarded by claimed_by and status, and what landed is counted (or, when some did not, read back)."""
    if not results:
        return set()
    now = utcnow()
    rows = [{"b_id": r.creative_id, "status": CreativeStatus.LABELLED, "prediction": r.prediction, "flag": r.flag,
             "decided_label_id": r.decided_label_id, "model_version_id": version, "labelled_at": now, "error": None,
             "ocr_text": r.ocr_text, "claimed_at": None, "claimed_by": None, "updated_at": now,
             "text_sha256": r.text_sha256, "duplicate_of": r.duplicate_of} for r in results]
    table = cast(Table, Creative.__table__)
    connection = session.connection()
    # executemany: one statement for the batch instead of one round trip per creative
    result = connection.execute(
        update(table).where(
            table.c.id == bindparam("b_id"),
            table.c.claimed_by == worker,
            table.c.status == CreativeStatus.PROCESSING,
        ),
        rows,
    )
    ids = {r.creative_id for r in results}
    # Each id matches at most one row, so when as many rows changed as there are ids every one landed and reading
    # them back would only say so again (the usual case; a lost claim falls through to the read).
    if connection.dialect.supports_sane_multi_rowcount and result.rowcount == len(ids):
        return ids
    return set(session.scalars(select(Creative.id).where(
        Creative.id.in_([r.creative_id for r in results]), Creative.status == CreativeStatus.LABELLED,
        Creative.model_version_id == version, Creative.labelled_at == now)))


def fail(
    session: Session, creative_id: str, worker: str, reason: str, *, retryable: bool, max_attempts: int
) -> CreativeStatus | None:
    """Queue the creative again (retryable, attempts left) or mark it failed, if `worker` still holds its claim;
    returns the new status, or None when the claim was lost to another worker."""
    creative = session.get(Creative, creative_id)
    if creative is None or creative.claimed_by != worker:
        return None
    if retryable and creative.attempts < max_attempts:
        status = CreativeStatus.QUEUED
        creative.dispatched_at = None
        mark_queued_work(session)
    else:
        status = CreativeStatus.FAILED
    creative.status = status
    creative.error = reason[:4000]
    creative.claimed_at = None
    creative.claimed_by = None
    return status


# -- the novelty sweep -----------------------------------------------------------------------------------------


# What the sweep reads and writes of each creative in the window; the rest of a row (its dates, metadata, claim)
# is loaded, deferred, only for the rare creative raised to new_label.
SWEPT_COLUMNS = (Creative.id, Creative.status, Creative.model_version_id, Creative.texts, Creative.ocr_text,
                 Creative.asserted_label_id, Creative.prediction, Creative.decided_label_id, Creative.flag,
                 Creative.duplicate_of, Creative.campaign, Creative.account_id)


# What it bounds a young creative's fit with, before it knows whether to re-decide it: no prediction, whose JSON
# was most of loading the window's rows while nine in ten are left as they are.
BOUNDED_COLUMNS = (Creative.id, Creative.texts, Creative.ocr_text, Creative.asserted_label_id, Creative.flag,
                   Creative.campaign, Creative.account_id)


def labelled_briefly(session: Session, ids: Sequence[str], version: str) -> dict[str, Any]:
    """As labelled_by, as plain rows of BOUNDED_COLUMNS (attributes named as the model's)."""
    if not ids:
        return {}
    rows = session.execute(select(*BOUNDED_COLUMNS).where(
        Creative.id.in_(list(ids)), Creative.status == CreativeStatus.LABELLED, Creative.model_version_id == version))
    return {row.id: row for row in rows}


def labelled_by(session: Session, ids: Sequence[str], version: str) -> dict[str, Creative]:
    """Those of `ids` still labelled by `version` (not relabelled by a later one, not failed since), with the
    columns the novelty sweep reads loaded."""
    if not ids:
        return {}
    rows = session.scalars(select(Creative).options(load_only(*SWEPT_COLUMNS)).where(
        Creative.id.in_(list(ids)), Creative.status == CreativeStatus.LABELLED, Creative.model_version_id == version))
    return {row.id: row for row in rows}


def reviewed_among(session: Session, ids: Sequence[str]) -> set[str]:
    """Those of `ids` whose review item a reviewer has already decided."""
    if not ids:
        return set()
    return set(session.scalars(select(ReviewItem.creative_id).where(
        ReviewItem.creative_id.in_(list(ids)), ReviewItem.status != ReviewStatus.OPEN)))


def has_annotations(session: Session, creative_id: str) -> bool:
    """Whether the creative is labelled data (imported, or decided by a reviewer)."""
    return session.scalar(select(exists().where(Annotation.creative_id == creative_id))) is True


def delete(session: Session, creative_id: str, unless_claimed_after: dt.datetime) -> bool:
    """The row, unless a worker claimed it after `unless_claimed_after` (a live lease); whether it went. The schema's
    ON DELETE CASCADE takes its annotations, review item and the decisions on it, and SET NULL unhooks group members
    (creatives/removal.py hands a group on first). The claim is judged by the DELETE itself: on PostgreSQL a claim
    committed after the caller read the row is seen here (each statement sees what was committed before it, and
    waits for a claim in flight)."""
    free = or_(Creative.status != CreativeStatus.PROCESSING, Creative.claimed_at.is_(None),
               Creative.claimed_at <= unless_claimed_after)
    result = session.execute(sa_delete(Creative).where(Creative.id == creative_id, free)
                             .execution_options(synchronize_session=False))
    return cast(int, getattr(result, "rowcount", 0)) == 1
