"""Jobs written in the same transaction as the change that needs them, sent to the queue after commit; and the
creatives waiting to be sent to the labelling queue (the creatives table is their outbox)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from ctax.enums import CreativeStatus
from ctax.jobs import DEFAULT_QUEUES, SYNC_INDEX
from ctax.store.models import Creative, OutboxJob
from ctax.store.session import Database, mark_queued_work
from ctax.store.types import utcnow


def enqueue(session: Session, task: str, *args: object, queue: str | None = None) -> OutboxJob:
    job = OutboxJob(task=task, args=list(args), queue=queue or DEFAULT_QUEUES[task])
    session.add(job)
    mark_queued_work(session)
    return job


def request_index_sync(session: Session, reason: str) -> OutboxJob:
    """The worker diffs labels and exemplars against the index, so one pending request covers many changes."""
    pending = session.scalars(
        select(OutboxJob).where(OutboxJob.task == SYNC_INDEX, OutboxJob.sent_at.is_(None)).limit(1)
    ).first()
    return pending or enqueue(session, SYNC_INDEX, reason)


def flush(db: Database, send: Callable[[str, list[Any], str], None], limit: int = 100) -> int:
    """Send every unsent job, oldest first; a job whose send fails stays unsent and is tried again later."""
    sent = 0
    with db.write() as session:
        query = select(OutboxJob).where(OutboxJob.sent_at.is_(None)).order_by(OutboxJob.id).limit(limit)
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for job in session.scalars(query):
            try:
                send(job.task, list(job.args), job.queue)
            except Exception as exc:  # the broker may be down: keep the job for the next flush
                job.attempts += 1
                job.last_error = repr(exc)[:2000]
                continue
            job.sent_at = utcnow()
            sent += 1
    return sent


def undispatched(session: Session, limit: int, requeue_before: dt.datetime, lease_before: dt.datetime,
                 ahead: int | None = None) -> list[str]:
    """Ids to send, at most `limit`: first what must be sent again (dispatched long ago but still queued: the message
    was lost; or held by a worker whose lease ran out), then creatives never dispatched, taken in turns across
    accounts (each account's oldest, then each one's second oldest, ...).

    `ahead` bounds the creatives sent and not yet claimed (None: no bound). Everything used to go to the broker as
    soon as it was committed, and the broker's queue is first come, first served: an account that posted 50,000
    creatives held every other account's next one behind all of them, and a backlog older than
    CTAX_REQUEUE_AFTER_S was sent again as lost. With a bound the rest waits here, where the turns are taken."""
    queued = Creative.status == CreativeStatus.QUEUED
    again = list(session.scalars(
        select(Creative.id)
        .where(
            or_(
                queued & (Creative.dispatched_at < requeue_before),
                # Resent once per lease: after the resend dispatched_at is newer than the stale claim.
                (Creative.status == CreativeStatus.PROCESSING)
                & (Creative.claimed_at < lease_before)
                & (Creative.dispatched_at < Creative.claimed_at),
            )
        )
        .order_by(Creative.created_at)
        .limit(limit)
    ))
    room = limit - len(again)
    if ahead is not None:
        sent = session.scalar(select(func.count()).select_from(Creative)
                              .where(queued, Creative.dispatched_at >= requeue_before))
        room = min(room, ahead - int(sent or 0) - len(again))
    if room <= 0:
        return again
    turn = func.row_number().over(partition_by=Creative.account_id,
                                  order_by=(Creative.created_at, Creative.id)).label("turn")
    fresh = select(Creative.id, Creative.created_at, turn).where(queued, Creative.dispatched_at.is_(None)).subquery()
    return again + list(session.scalars(
        select(fresh.c.id).order_by(fresh.c.turn, fresh.c.created_at, fresh.c.id).limit(room)))


def held_back(session: Session) -> bool:
    """Whether creatives wait that were never sent (with a bound ahead of the workers: held back by it)."""
    waiting = select(Creative.id).where(Creative.status == CreativeStatus.QUEUED, Creative.dispatched_at.is_(None))
    return session.scalar(select(waiting.exists())) is True


def mark_dispatched(session: Session, ids: Sequence[str], at: dt.datetime) -> None:
    if ids:
        session.execute(update(Creative).where(Creative.id.in_(ids)).values(dispatched_at=at))


def resend_dispatched(session: Session) -> int:
    """Send again every creative dispatched but not claimed yet: the SQLite broker hides a message once it is
    delivered, so the message a SIGKILLed worker had fetched is gone. A duplicate message costs one UPDATE that
    claims nothing (`claim` takes only what is free)."""
    result = session.execute(
        update(Creative)
        .where(Creative.status == CreativeStatus.QUEUED, Creative.dispatched_at.is_not(None))
        .values(dispatched_at=None)
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    if count:
        mark_queued_work(session)
    return count
