"""How the API asks the index owner to search: a task on the search queue whose result it waits for.

The API never opens the index (local Qdrant lets one process hold it, and the API never imports torch), so the
worker that owns the index answers. Celery's own result machinery carries the answer back: a SQLAlchemy result
backend on SQLite (`results.sqlite`) in the embedded profile, Redis in production; Settings.celery_result_url.

Each API thread has its own Celery client: the Redis result backend waits on one pub/sub connection per app, and
redis-py's pub/sub is not safe to share between threads (celery#3761, celery#4670), while FastAPI runs this
route's waits in its thread pool.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from typing import Any

from celery import Celery
from celery.exceptions import TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

from ctax.config import Settings
from ctax.errors import CtaxError, ServiceUnavailable
from ctax.jobs import SEARCH, SEARCH_QUEUE
from ctax.store.repos import workers
from ctax.store.session import DATABASE_UNAVAILABLE, Database
from ctax.store.types import utcnow

# How often the API looks for the answer in a database result backend (Redis pushes it): a SELECT by primary key,
# on a new SQLite connection each time (Celery's backend uses no pool there). First every RESULT_POLL_S, then less
# often the longer the wait, up to RESULT_POLL_MAX_S: polling every 20 ms throughout cost the API 80% of its CPU
# while 16 searches waited on a busy worker (py-spy, bench.load --during-backfill), and starved its other routes.
RESULT_POLL_S = 0.02
RESULT_POLL_GROWTH = 1.5
RESULT_POLL_MAX_S = 0.25
# A search still queued this close to its client's deadline is dropped by the worker (a fifth of the timeout, at
# least ANSWER_MARGIN_S): under load its answer would come too late, and the client hears "busy" at once instead.
ANSWER_MARGIN_S = 1.0
ANSWER_MARGIN_SHARE = 0.2
# The result backend failing the wait: SQLite locked or unreadable (embedded), Redis away (production).
BACKEND_ERRORS: tuple[type[Exception], ...] = (*DATABASE_UNAVAILABLE, OSError)


def queue_expiry_s(timeout_s: float) -> float:
    """How long a search may wait in the queue before the worker drops it: its client's timeout less the time an
    answer may take, but never under half the timeout, so short timeouts still leave a worker time."""
    return max(timeout_s - max(ANSWER_MARGIN_S, ANSWER_MARGIN_SHARE * timeout_s), timeout_s / 2)


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
        self._waiting = 0
        self._waiting_lock = threading.Lock()

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
        retry = max(1, round(self.settings.search_timeout_s / 3))
        if not self.has_worker():
            raise SearchUnavailable(f"no live worker answers searches (queue {SEARCH_QUEUE}); start one with "
                                    "`ctax worker`", retry)
        with self._waiting_lock:
            if self._waiting >= self.settings.search_max_waiting:
                raise SearchUnavailable(
                    f"{self._waiting} searches are already waiting for the index owner (CTAX_SEARCH_MAX_WAITING); "
                    "it is busy", retry)
            self._waiting += 1
        try:
            return self._ask(query, retry)
        finally:
            with self._waiting_lock:
                self._waiting -= 1

    @property
    def waiting(self) -> int:
        """Searches of this API process waiting for the index owner now (the ctax_searches_waiting gauge)."""
        return self._waiting

    def _ask(self, query: dict[str, Any], retry: int) -> dict[str, Any]:
        timeout = self.settings.search_timeout_s
        started = time.perf_counter()
        expires = queue_expiry_s(timeout)
        try:
            # expires: a search that cannot be answered in time is dropped by the worker, not run late for nobody.
            result = self._app().send_task(SEARCH, args=[query], queue=SEARCH_QUEUE, expires=expires)
        except Exception as exc:  # the broker is down or refused: nothing was queued
            raise SearchUnavailable(f"the search could not be queued: {exc}", retry) from exc
        try:
            answer = wait_for_answer(result, timeout)
        except CeleryTimeout as exc:
            raise SearchUnavailable(
                f"the index owner did not answer within {timeout:g} s (CTAX_SEARCH_TIMEOUT_S); it may be busy "
                "labelling a large batch or starting", retry) from exc
        except TaskRevokedError as exc:  # the worker reached it after `expires` and dropped it unanswered
            raise SearchUnavailable(
                f"the search waited in the queue for more than {expires:g} s and was dropped unanswered; the index "
                "owner is busy", retry) from exc
        except BACKEND_ERRORS as exc:  # the result backend (SQLite locked, Redis away) failed us
            raise SearchUnavailable(f"the answer could not be read from the result backend: {exc}", retry) from exc
        finally:
            # A backend that failed the wait may fail this too; result_expires removes the row later.
            with contextlib.suppress(*BACKEND_ERRORS):
                result.forget()
        if "error" in answer:
            raise RemoteError(answer["error"], int(answer.get("status", 400)))
        answer["took_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return answer


def wait_for_answer(result: AsyncResult, timeout: float) -> dict[str, Any]:
    """The task's answer, raising celery's TimeoutError after `timeout`. A backend that pushes answers (Redis) is
    simply waited on; a polling one (the database) is asked less and less often (RESULT_POLL_GROWTH)."""
    if result.backend.is_async:
        answer: dict[str, Any] = result.get(timeout=timeout)
        return answer
    deadline = time.monotonic() + timeout
    interval = RESULT_POLL_S
    while True:
        with contextlib.suppress(CeleryTimeout):
            answer = result.get(timeout=0)  # one look: Celery's wait raises at once when the time is up
            return answer
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CeleryTimeout(f"no answer within {timeout:g} s")
        time.sleep(min(interval, remaining))
        interval = min(interval * RESULT_POLL_GROWTH, RESULT_POLL_MAX_S)
