"""How the API asks the index owner to search: a task on the search queue whose result it waits for.

The API never opens the index (local Qdrant lets one process hold it, and the API never imports torch), so the
worker that owns the index answers. Celery's own result machinery carries the answer back: a SQLAlchemy result
backend on SQLite (`results.sqlite`) in the embedded profile, Redis in production; Settings.celery_result_url.

Each API thread has its own Celery client: the Redis result backend waits on one pub/sub connection per app, and
redis-py's pub/sub is not safe to share between threads (celery#3761, celery#4670), while FastAPI runs this
route's waits in its thread pool.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout

from ctax.config import Settings
from ctax.errors import CtaxError, ServiceUnavailable
from ctax.jobs import SEARCH, SEARCH_QUEUE
from ctax.store.repos import workers
from ctax.store.session import Database
from ctax.store.types import utcnow

# How often the API looks for the answer in a database result backend (Redis pushes it): a SELECT by primary key.
RESULT_POLL_S = 0.02


class SearchUnavailable(ServiceUnavailable):
    """No answer in time (or nobody to ask): the client should try again shortly."""

    code = "search_unavailable"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}


class RemoteError(CtaxError):
    """An error the worker found in the request (an unknown creative, an image it cannot read), with its status."""

    def __init__(self, body: dict[str, Any], status: int) -> None:
        super().__init__(str(body.get("message", "search failed")), **(body.get("detail") or {}))
        self.code = str(body.get("error", "bad_request"))
        self.status_code = status


class SearchClient:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._local = threading.local()

    def _app(self) -> Celery:
        app: Celery | None = getattr(self._local, "app", None)
        if app is None:
            app = Celery("ctax-api-search", broker=self.settings.celery_broker_url,
                         backend=self.settings.celery_result_url, set_as_current=False)
            app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                            broker_connection_timeout=5, broker_connection_retry_on_startup=True,
                            task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5})
            self._local.app = app
        return app

    def has_worker(self) -> bool:
        """Whether a live, ready worker consumes the search queue (its heartbeat says so)."""
        fresh = utcnow() - dt.timedelta(seconds=self.settings.worker_stale_s)
        with self.db.read() as session:
            return any(beat.ready and beat.last_seen_at >= fresh and SEARCH_QUEUE in (beat.queues or [])
                       for beat in workers.heartbeats(session))

    def search(self, query: dict[str, Any]) -> dict[str, Any]:
        timeout = self.settings.search_timeout_s
        retry = max(1, round(timeout / 3))
        if not self.has_worker():
            raise SearchUnavailable(f"no live worker answers searches (queue {SEARCH_QUEUE}); start one with "
                                    "`ctax worker`", retry)
        started = time.perf_counter()
        try:
            # expires: a search its client gave up on is dropped by the worker, not run late for nobody.
            result = self._app().send_task(SEARCH, args=[query], queue=SEARCH_QUEUE, expires=timeout)
        except Exception as exc:  # the broker is down or refused: nothing was queued
            raise SearchUnavailable(f"the search could not be queued: {exc}", retry) from exc
        try:
            answer: dict[str, Any] = result.get(timeout=timeout, interval=RESULT_POLL_S)
        except CeleryTimeout as exc:
            raise SearchUnavailable(
                f"the index owner did not answer within {timeout:g} s (CTAX_SEARCH_TIMEOUT_S); it may be busy "
                "labelling a large batch or starting", retry) from exc
        finally:
            result.forget()
        if "error" in answer:
            raise RemoteError(answer["error"], int(answer.get("status", 400)))
        answer["took_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return answer
