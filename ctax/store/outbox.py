"""Jobs written in the same transaction as the change that needs them, sent to the queue after commit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ctax.jobs import DEFAULT_QUEUES, SYNC_INDEX
from ctax.store.models import OutboxJob
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
