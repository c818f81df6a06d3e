"""Sends committed work to the queue: waiting creatives (many ids per message) and outbox jobs.

A background thread wakes when a request commits work (nudge) and once a second regardless, so work left by
a crash or a broker outage is sent as soon as the broker answers again.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

from celery import Celery
from kombu.exceptions import OperationalError

from ctax.config import Settings
from ctax.creatives import intake as creatives
from ctax.errors import CtaxError
from ctax.store import outbox
from ctax.store.repos import workers
from ctax.store.session import Database
from ctax.store.types import utcnow

log = logging.getLogger(__name__)

BATCHES_PER_FLUSH = 8  # labelling messages (of label_batch_size ids each) sent per flush
JOBS_PER_FLUSH = 100  # outbox jobs sent per flush
PRUNE_EVERY_S = 3600.0  # how often ended outbox jobs older than CTAX_OUTBOX_KEEP_DAYS are deleted
PRUNE_BATCH = 1000  # deleted per transaction, so a first prune of a large outbox never holds a long write lock
# A worker silent this long is gone for good: its heartbeat row goes with the prune (until then /readyz shows it
# dead, which tells an operator that it died and when).
SILENT_WORKERS_KEPT = dt.timedelta(days=1)


class Dispatcher:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.producer = Celery("ctax-api", broker=settings.celery_broker_url, set_as_current=False)
        self.producer.conf.update(
            task_serializer="json",
            broker_connection_timeout=5,
            broker_connection_retry_on_startup=True,
            task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
        self.backlog = False
        self.held = False  # creatives wait for room ahead of the workers: look again soon
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiting_on: str | None = None  # what stopped the last flush, said once
        self._pruned_at: float | None = None  # monotonic time of the last prune; None: prune at the first tick

    def send(self, task: str, args: list[object], queue: str, task_id: str | None = None) -> None:
        self.producer.send_task(task, args=args, queue=queue, task_id=task_id)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="ctax-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def nudge(self) -> None:
        self._wake.set()

    def flush(self) -> int:
        """Send what is waiting, up to a limit per flush; returns how many were sent and notes whether more is left."""
        batches = self.settings.label_batch_size * BATCHES_PER_FLUSH
        sent_creatives = creatives.dispatch(self.db, self.send, self.settings, limit_batches=BATCHES_PER_FLUSH)
        jobs = outbox.flush(self.db, self.send, limit=JOBS_PER_FLUSH, stale_s=self.settings.worker_stale_s)
        if jobs.resent:
            log.warning("sending again %d jobs a stopped worker had started and not finished: %s", len(jobs.resent),
                        ", ".join(sorted(set(jobs.resent))))
        sent_jobs = jobs.sent
        self.backlog = sent_creatives >= batches or sent_jobs >= JOBS_PER_FLUSH
        # Workers free room by taking messages, and nothing tells this process when: while creatives wait for room
        # it looks every CTAX_DISPATCH_INTERVAL_S, not every second, or a fast (GPU) worker would idle between looks.
        self.held = bool(self.settings.dispatch_ahead_batches) and not self.backlog and creatives.held_back(self.db)
        return sent_creatives + sent_jobs

    def _loop(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(timeout=self.settings.dispatch_interval_s if self.held else 1.0)
            self._wake.clear()
            if woken:
                # Let concurrent requests commit too, so they leave in one message: under load a flush per interval
                # sends everything that arrived meanwhile, instead of a message and a database write per request.
                self._stop.wait(self.settings.dispatch_interval_s)
            self.tick()

    def tick(self) -> None:
        """Flush, and again at once only while a backlog is left (a flush sends a bounded amount). A failure keeps
        the work for the next tick."""
        try:
            while self.flush() and self.backlog and not self._stop.is_set():
                pass
            self.prune()
        except (CtaxError, OperationalError) as exc:
            # The database or the broker said why (not migrated, unreachable): one line when the reason changes,
            # not a traceback a second beside the requests' own clear 503s.
            if str(exc) != self._waiting_on:
                log.warning("dispatch waits: %s", exc)
            self._waiting_on = str(exc)
        except Exception:  # a fault of ours: keep the work, try again on the next tick
            log.warning("dispatch failed; will retry", exc_info=True)
        else:
            if self._waiting_on is not None:
                log.info("dispatch resumed")
            self._waiting_on = None

    def prune(self) -> int:
        """Delete the outbox jobs that ended more than CTAX_OUTBOX_KEEP_DAYS ago, and the heartbeats of workers
        silent for SILENT_WORKERS_KEPT, at most once per PRUNE_EVERY_S (every API process does it: a repeated delete
        finds nothing). How many jobs went."""
        if self._pruned_at is not None and time.monotonic() - self._pruned_at < PRUNE_EVERY_S:
            return 0
        cutoff = utcnow() - dt.timedelta(days=self.settings.outbox_keep_days)
        with self.db.write() as session:
            silent = workers.forget_silent(session, utcnow() - SILENT_WORKERS_KEPT)
        if silent:
            log.info("forgot %d workers silent for more than %s", silent, SILENT_WORKERS_KEPT)
        with self.db.read() as session:
            keep = outbox.newest_of_each_task(session)
        pruned = 0
        while not self._stop.is_set():
            with self.db.write() as session:
                step = outbox.prune(session, cutoff, keep, limit=PRUNE_BATCH)
            pruned += step
            if step < PRUNE_BATCH:
                break
        self._pruned_at = time.monotonic()
        if pruned:
            log.info("deleted %d background jobs that ended more than %g days ago", pruned,
                     self.settings.outbox_keep_days)
        return pruned
