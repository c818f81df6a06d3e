"""Process hooks: models load once per worker process, after fork, on the device the settings name; and which task
runs now, for the heartbeat's watch on hung tasks (runtime.Runtime.hung)."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import current_app
from celery.signals import task_postrun, task_prerun, worker_process_init, worker_process_shutdown, worker_shutdown

from ctax.worker.runtime import current, init_runtime, running

log = logging.getLogger(__name__)


@worker_process_init.connect
def _load_models(**_: Any) -> None:
    conf = current_app.conf
    try:
        init_runtime(conf.ctax_settings, list(conf.ctax_queues), bool(conf.ctax_owns_index))
    except BaseException:
        # Celery logs and swallows a signal handler's exception; a worker that cannot label must not look alive.
        log.critical("worker start-up failed; exiting", exc_info=True)
        logging.shutdown()
        os._exit(3)


@worker_process_shutdown.connect
@worker_shutdown.connect  # the solo pool (every `ctax worker`) sends only this one, from its one process
def _unregister(**_: Any) -> None:
    try:
        current().stop()
    except Exception:  # shutting down: nothing left to report to
        log.debug("heartbeat removal failed", exc_info=True)


@task_prerun.connect
def _task_began(sender: Any = None, **_: Any) -> None:
    if (rt := running()) is not None:
        rt.task_began(getattr(sender, "name", str(sender)))


@task_postrun.connect
def _task_ended(**_: Any) -> None:
    if (rt := running()) is not None:
        rt.task_ended()
