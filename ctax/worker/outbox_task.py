"""The task class of jobs that may run twice (jobs.RESENT_WHEN_LOST): it records which worker runs the job and when
it ended, so that the dispatcher sends again a job whose worker was killed mid-way (store/outbox.py), and a second
message for a job that already ended does nothing."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from ctax.jobs import MAX_JOB_STARTS
from ctax.store import outbox
from ctax.worker.runtime import current

log = logging.getLogger(__name__)


class ResentWhenLost(Task):  # type: ignore[misc]  # celery ships no type hints
    # Celery runs a task's own __call__ when it defines one, with its request already pushed: the natural place to
    # wrap every run of these tasks, where a signal handler could not stop a duplicate from running.
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        job_id = outbox.job_id_of(getattr(self.request, "id", None))
        if job_id is None:  # called directly, or sent other than through the outbox
            return super().__call__(*args, **kwargs)
        rt = current()
        with rt.db.write() as session:
            started = outbox.start(session, job_id, rt.name)
        if started == "ended":
            log.info("%s (outbox job %s) ended already: a repeated message, nothing to do", self.name, job_id)
            return None
        if started == "given up":
            log.error("%s (outbox job %s) started %d times by workers that never finished it: not run again",
                      self.name, job_id, MAX_JOB_STARTS)
            return None
        try:
            result = super().__call__(*args, **kwargs)
        except Exception as exc:
            self._finish(job_id, repr(exc))
            raise
        self._finish(job_id, None)
        return result

    def _finish(self, job_id: int, error: str | None) -> None:
        rt = current()
        with rt.db.write() as session:
            again_in = outbox.finish(session, job_id, error)
        if again_in is not None:
            log.warning("%s (outbox job %s) failed: %s; it runs again in %.0f s", self.name, job_id, error, again_in)
