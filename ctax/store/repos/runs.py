"""Training runs: queued -> running -> succeeded | failed. A run is queued with its TRAIN job in one transaction,
and only a queued run starts, so a redelivered message never trains twice."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ctax.enums import RunStatus
from ctax.jobs import TRAIN
from ctax.store.models import TrainingRun
from ctax.store.outbox import enqueue
from ctax.store.types import utcnow

INTERRUPTED = "interrupted: the training worker stopped while this run was in progress; start a new run"
ERROR_CHARS = 4000


def get(session: Session, run_id: int) -> TrainingRun | None:
    return session.get(TrainingRun, run_id)


def newest_first(session: Session, limit: int) -> list[TrainingRun]:
    return list(session.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit)))


def queue(session: Session, params: dict[str, Any], requested_by: int | None = None) -> TrainingRun:
    """A new queued run and the job that starts it, sent once the caller's transaction commits."""
    run = TrainingRun(status=RunStatus.QUEUED, params=params, requested_by=requested_by)
    session.add(run)
    session.flush()
    enqueue(session, TRAIN, run.id)
    return run


def start(session: Session, run_id: int) -> TrainingRun | None:
    """queued -> running; None when the run is missing or no longer queued (nothing to do)."""
    run = session.get(TrainingRun, run_id)
    if run is None or run.status != RunStatus.QUEUED:
        return None
    run.status = RunStatus.RUNNING
    run.started_at = run.heartbeat_at = utcnow()
    run.stage = "starting"
    return run


def fail(session: Session, run_id: int, message: str) -> None:
    run = session.get(TrainingRun, run_id)
    if run is not None:
        run.status, run.error, run.finished_at = RunStatus.FAILED, message[:ERROR_CHARS], utcnow()


def succeed(session: Session, run_id: int) -> None:
    run = session.get(TrainingRun, run_id)
    if run is not None:
        run.status, run.finished_at, run.progress = RunStatus.SUCCEEDED, utcnow(), 1.0


def fail_interrupted(session: Session) -> int:
    """Runs left running by a training worker that died cannot resume: they fail, saying so, instead of hanging.
    Called by a training worker as it starts; returns how many it failed."""
    interrupted = list(session.scalars(select(TrainingRun).where(TrainingRun.status == RunStatus.RUNNING)))
    for run in interrupted:
        run.status, run.error, run.finished_at = RunStatus.FAILED, INTERRUPTED, utcnow()
    return len(interrupted)
