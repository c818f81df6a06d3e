"""Training runs, on the training queue (their own worker process on the embedded profile)."""

from __future__ import annotations

import logging
from pathlib import Path

from celery import shared_task
from sqlalchemy import select

from ctax.embedding.space import SharedSpace
from ctax.errors import CtaxError
from ctax.jobs import TRAIN
from ctax.store.models import TrainingRun, utcnow
from ctax.training.pipeline import run_training
from ctax.worker.runtime import Runtime, current

log = logging.getLogger(__name__)


def fail_interrupted(rt: Runtime) -> None:
    """Runs left `running` by a worker that died cannot resume: say so instead of leaving them hanging."""
    with rt.db.write() as session:
        for run in session.scalars(select(TrainingRun).where(TrainingRun.status == "running")):
            run.status = "failed"
            run.error = "interrupted: the training worker stopped while this run was in progress; start a new run"
            run.finished_at = utcnow()


@shared_task(name=TRAIN, acks_late=True, reject_on_worker_lost=False, ignore_result=True)
def train(run_id: int) -> str | None:
    rt = current()
    with rt.db.write() as session:
        run = session.get(TrainingRun, run_id)
        if run is None or run.status != "queued":  # a redelivered message must not train twice
            log.info("training run %s is %s; nothing to do", run_id, run.status if run else "missing")
            return None
        run.status = "running"
        run.started_at = run.heartbeat_at = utcnow()
        run.stage = "starting"
    try:
        version_id = run_training(rt.db, rt.settings, rt.blobs, run_id,
                                  lambda directory: SharedSpace.load(Path(directory), rt.device), rt.device)
    except Exception as exc:
        log.exception("training run %s failed", run_id)
        message = exc.message if isinstance(exc, CtaxError) else f"{type(exc).__name__}: {exc}"
        with rt.db.write() as session:
            run = session.get(TrainingRun, run_id)
            run.status, run.error, run.finished_at = "failed", message[:4000], utcnow()  # type: ignore[union-attr]
        return None
    with rt.db.write() as session:
        run = session.get(TrainingRun, run_id)
        run.status, run.finished_at, run.progress = "succeeded", utcnow(), 1.0  # type: ignore[union-attr]
    return version_id
