"""Jobs written in the same transaction as the change that needs them, sent to the queue after commit; and the
creatives waiting to be sent to the labelling queue (the creatives table is their outbox)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ctax.enums import CreativeStatus, JobState
from ctax.jobs import DEFAULT_QUEUES, MAX_JOB_STARTS, RESENT_WHEN_LOST, SYNC_INDEX
from ctax.store.models import Creative, OutboxJob, WorkerHeartbeat
from ctax.store.session import Database, mark_queued_work
from ctax.store.types import utcnow


def enqueue(session: Session, task: str, *args: object, queue: str | None = None, after_s: float = 0.0) -> OutboxJob:
    """A job sent once its transaction commits, and `after_s` seconds have passed: a delay waits here, not on a
    worker (a message with a countdown is held by the worker that fetched it, and lost with it)."""
    not_before = utcnow() + dt.timedelta(seconds=after_s) if after_s > 0 else None
    job = OutboxJob(task=task, args=list(args), queue=queue or DEFAULT_QUEUES[task], not_before=not_before)
    session.add(job)
    mark_queued_work(session)
    return job


def request_index_sync(session: Session, reason: str) -> OutboxJob:
    """The worker diffs labels and exemplars against the index, so one pending request covers many changes."""
    pending = session.scalars(
        select(OutboxJob).where(OutboxJob.task == SYNC_INDEX, OutboxJob.sent_at.is_(None)).limit(1)
    ).first()
    return pending or enqueue(session, SYNC_INDEX, reason)


TASK_ID_PREFIX = "ctax-outbox-"


def task_id(job_id: int) -> str:
    """The id a job's message carries, so the worker that runs it can say so (`start`, `finish`)."""
    return f"{TASK_ID_PREFIX}{job_id}"


def job_id_of(task_id: str | None) -> int | None:
    """The outbox job a message was sent for; None for a message sent otherwise."""
    if not task_id or not task_id.startswith(TASK_ID_PREFIX):
        return None
    number = task_id.removeprefix(TASK_ID_PREFIX)
    return int(number) if number.isdigit() else None


Send = Callable[[str, list[Any], str, str], None]  # task, args, queue, task id


@dataclass(frozen=True)
class Flushed:
    sent: int
    resent: list[str]  # tasks of jobs a worker had started and that are sent again (`resend_lost`)


def flush(db: Database, send: Send, limit: int = 100, stale_s: float | None = None) -> Flushed:
    """Send every unsent job, oldest first; a job whose send fails stays unsent and is tried again later. With
    `stale_s`, first make unsent again the jobs that may run twice whose worker is gone (`resend_lost`)."""
    sent = 0
    with db.write() as session:
        resent = resend_lost(session, utcnow() - dt.timedelta(seconds=stale_s)) if stale_s is not None else []
        due = or_(OutboxJob.not_before.is_(None), OutboxJob.not_before <= utcnow())
        query = select(OutboxJob).where(OutboxJob.sent_at.is_(None), due).order_by(OutboxJob.id).limit(limit)
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for job in session.scalars(query):
            try:
                send(job.task, list(job.args), job.queue, task_id(job.id))
            except Exception as exc:  # the broker may be down: keep the job for the next flush
                job.attempts += 1
                job.last_error = repr(exc)[:2000]
                continue
            job.sent_at = utcnow()
            sent += 1
    return Flushed(sent, resent)


def resend_lost(session: Session, alive_since: dt.datetime) -> list[str]:
    """Jobs that may run twice (jobs.RESENT_WHEN_LOST), started by a worker that has not beaten since `alive_since`
    (or whose heartbeat is gone: the supervisor deletes a dead child's at once) and never finished: unsent again,
    for the next flush to send. Their tasks.

    Why: the SQLite broker forgets a message once delivered, and Redis gives a SIGKILLed worker's message back only
    after its visibility timeout (hours), so a killed index owner lost the deletion, sync or promotion it was
    running; only a restart's sweeps repaired some of it. Jobs sent but not yet started are left alone: they are
    still in the queue."""
    alive = select(WorkerHeartbeat.name).where(WorkerHeartbeat.name == OutboxJob.running_on,
                                               WorkerHeartbeat.last_seen_at >= alive_since)
    result = session.execute(
        update(OutboxJob)
        .where(OutboxJob.running_on.is_not(None), OutboxJob.done_at.is_(None),
               OutboxJob.task.in_(sorted(RESENT_WHEN_LOST)), ~alive.exists())
        .values(sent_at=None, running_on=None)
        .returning(OutboxJob.task)
        .execution_options(synchronize_session=False)
    )
    return [row[0] for row in result]


def state_of() -> ColumnElement[str]:
    """A job's JobState, as SQL: what /metrics counts and `ctax jobs` filters by."""
    return case(
        (OutboxJob.sent_at.is_(None), JobState.WAITING.value),
        (OutboxJob.done_at.is_not(None) & OutboxJob.last_error.is_not(None), JobState.FAILED.value),
        (OutboxJob.done_at.is_not(None), JobState.ENDED.value),
        (OutboxJob.running_on.is_not(None), JobState.RUNNING.value),
        else_=JobState.SENT.value,
    )


def count_by_state(session: Session) -> list[tuple[str, str, int]]:
    """(task, state, jobs). What /metrics shows: waiting jobs piling up mean the broker is away, a job running for
    long a stuck index owner, failed ones say why in their last_error (`ctax jobs --state failed`)."""
    state = state_of()
    rows = session.execute(select(OutboxJob.task, state, func.count()).group_by(OutboxJob.task, state))
    return [(str(task), str(named), int(count)) for task, named, count in rows]


def recent(session: Session, state: JobState | None = None, task: str | None = None,
           limit: int = 20) -> list[tuple[OutboxJob, JobState]]:
    """The newest jobs first, with their states, of one state and task if given."""
    query = select(OutboxJob, state_of()).order_by(OutboxJob.id.desc()).limit(limit)
    if state is not None:
        query = query.where(state_of() == state.value)
    if task is not None:
        query = query.where(OutboxJob.task == task)
    return [(job, JobState(named)) for job, named in session.execute(query)]


def newest_of_each_task(session: Session) -> list[int]:
    """The newest job of each task: `prune` keeps them, whatever their age."""
    return list(session.scalars(select(func.max(OutboxJob.id)).group_by(OutboxJob.task)))


def prune(session: Session, sent_before: dt.datetime, keep: Sequence[int], limit: int = 1000) -> int:
    """Delete at most `limit` jobs sent before `sent_before` that ended, or that are not tracked (jobs outside
    RESENT_WHEN_LOST never say they ended), except those in `keep` (`newest_of_each_task`). How many went.

    Why: a job is written per deletion's forget, per index sync, per erasure step, and nothing else ever deletes
    them; kept a while they say what ran and how it ended (last_error). A tracked job sent and never ended stays
    (still queued, or its message was lost before it started: worth looking into). The newest of each task stays
    because it is a clock: discovery asks "flagged since the last request?" (`proposals.last_discovery_request_at`).
    `keep` is read once per pass by the caller, not per batch: it groups the whole table."""
    ended = OutboxJob.done_at.is_not(None) | OutboxJob.task.not_in(sorted(RESENT_WHEN_LOST))
    doomed = (select(OutboxJob.id)
              .where(OutboxJob.sent_at < sent_before, ended, OutboxJob.id.not_in(list(keep)))
              .order_by(OutboxJob.id).limit(limit))
    result = session.execute(delete(OutboxJob).where(OutboxJob.id.in_(doomed))
                             .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


JobStart = Literal["run", "untracked", "ended", "given up"]


def start(session: Session, job_id: int, worker: str) -> JobStart:
    """`worker` starts the job: "run" it; "untracked" when no such job is stored (run it all the same); "ended"
    already (a repeated message: do nothing); or "given up": started MAX_JOB_STARTS times and never finished, it is
    not run again, and last_error says why."""
    job = session.get(OutboxJob, job_id, with_for_update=True)
    if job is None:
        return "untracked"
    if job.done_at is not None:
        return "ended"
    if job.starts >= MAX_JOB_STARTS:
        job.done_at, job.running_on = utcnow(), None
        job.last_error = (f"started {job.starts} times and never finished (the worker stopped each time: this job "
                          "may be what stops it); not run again")
        return "given up"
    job.running_on, job.started_at, job.starts = worker, utcnow(), job.starts + 1
    return "run"


# After a job's first and second failure it runs again this many seconds later; a third failure is final.
RETRY_AFTER_S = (10.0, 60.0)


def finish(session: Session, job_id: int, error: str | None = None) -> float | None:
    """The job ran to its end, or failed with `error`. A failed job runs again after RETRY_AFTER_S while it has
    started fewer than MAX_JOB_STARTS times; the delay, or None once it ended (failed for good: last_error says
    why). Why: these jobs may run twice, and most failures are a part that was away for a moment (the database
    locked, Qdrant restarting); a failed erasure step used to end its account's erasure until the next restart."""
    if error is not None:
        job = session.get(OutboxJob, job_id, with_for_update=True)
        if job is not None and job.starts < MAX_JOB_STARTS:
            delay = RETRY_AFTER_S[min(max(job.starts, 1), len(RETRY_AFTER_S)) - 1]
            job.sent_at, job.running_on = None, None
            job.not_before, job.last_error = utcnow() + dt.timedelta(seconds=delay), error[:2000]
            mark_queued_work(session)
            return delay
    values: dict[str, Any] = {"done_at": utcnow(), "running_on": None}
    if error is not None:
        values["last_error"] = error[:2000]
    session.execute(update(OutboxJob).where(OutboxJob.id == job_id).values(**values))
    return None


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
