"""Training runs, on the training queue (their own worker process on the embedded profile)."""

from __future__ import annotations

import logging
from pathlib import Path

from celery import shared_task

from ctax.embedding.space import SharedSpace
from ctax.errors import CtaxError
from ctax.jobs import TRAIN
from ctax.store.repos import runs
from ctax.training.pipeline import run_training
from ctax.worker.runtime import current

log = logging.getLogger(__name__)


@shared_task(
    name=TRAIN, acks_late=True, reject_on_worker_lost=False, ignore_result=True
)
def train(run_id: int) -> str | None:
    rt = current()
    with rt.db.write() as session:
        started = runs.start(session, run_id) is not None
    if not started:  # missing, or a redelivered message of a run that already ran: it must not train twice
        log.info("training run %s is not queued; nothing to do", run_id)
        return None
    try:
        version_id = run_training(rt.db, rt.settings, rt.blobs, run_id,
                                  lambda directory: SharedSpace.load(Path(directory), rt.device), rt.device)
    except Exception as exc:
        log.exception("training run %s failed", run_id)
        message = exc.message if isinstance(exc, CtaxError) else f"{type(exc).__name__}: {exc}"
        with rt.db.write() as session:
            runs.fail(session, run_id, message)
        return None
    with rt.db.write() as session:
        runs.succeed(session, run_id)
    return version_id
