"""Account tasks: an account's erasure, one step a message (creatives/erasure.py)."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task
from celery.signals import worker_ready

from ctax.creatives import erasure
from ctax.jobs import ERASE_ACCOUNT
from ctax.worker.outbox_task import ResentWhenLost
from ctax.worker.runtime import current

log = logging.getLogger(__name__)


@shared_task(
    name=ERASE_ACCOUNT, base=ResentWhenLost, acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def erase_account(account_id: int, pause_s: float = 0.0) -> None:
    """One step. `pause_s` is for messages queued before the outbox could hold a step back (`after_s`)."""
    time.sleep(min(pause_s, 5.0))
    rt = current()
    step = erasure.erase_step(rt.db, rt.blobs, account_id, rt.settings.lease_s)
    if step.done:
        log.info("account %s erased", account_id)
    else:
        log.info("erasing account %s: %d creatives removed, %d being labelled left for later", account_id,
                 step.removed, step.busy)


@worker_ready.connect
def _resume_erasures(**_: Any) -> None:
    """The index owner's start picks up erasures whose step was lost with a killed worker."""
    try:
        rt = current()
        if rt.owns_index and (resumed := erasure.resume(rt.db)):
            log.info("erasing accounts %s: resumed", ", ".join(map(str, resumed)))
    except Exception:  # queued again at the next start
        log.warning("could not resume the erasures of accounts", exc_info=True)
