"""Writes may take most of the API's request threads, never all: reads always find one.

Every route runs in one thread pool (anyio's, 40 threads). A write can wait long in its thread: on a row lock
another transaction holds (up to CTAX_DATABASE_LOCK_WAIT_S), on SQLite's one write lock under a burst. Enough
such writes held every thread, and a read, which waits on nothing, queued behind them for a thread: a status poll
or the review page waited the whole 20 s a row lock was held (bench.lock_wait, docs/reliability.md). Here a write
is admitted to the pool only while fewer than all but READ_THREADS threads run writes; the rest wait for their turn
in the event loop, where waiting costs no thread.

A write is admitted once its body has arrived (when the app reads the last of it), not when it begins: a client
uploading slowly must not hold a place. A write without a body is admitted at once. Searches (`POST /v1/search`)
are left out: they have their own bound (CTAX_SEARCH_MAX_WAITING).

Plain ASGI, as limits.BodyLimit, inside which it sits (api/app.py says why): it wraps `receive` without buffering
anything.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread

from ctax.api.limits import ASGIApp, Message, Receive, Scope, Send

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
READ_THREADS = 8  # threads of the pool writes leave to reads
UNADMITTED_PATHS = frozenset({"/v1/search"})


class WriteAdmission:
    def __init__(self, app: ASGIApp, read_threads: int = READ_THREADS) -> None:
        self.app = app
        self.read_threads = read_threads
        self._limiter: anyio.CapacityLimiter | None = None

    def limiter(self) -> anyio.CapacityLimiter:
        # Made on the first request: a limiter belongs to the running event loop, and the pool's size is known then.
        if self._limiter is None:
            threads = int(anyio.to_thread.current_default_thread_limiter().total_tokens)
            self._limiter = anyio.CapacityLimiter(max(1, threads - self.read_threads))
        return self._limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] not in WRITE_METHODS
                or scope["path"].rstrip("/") in UNADMITTED_PATHS):
            await self.app(scope, receive, send)
            return
        limiter, place = self.limiter(), object()
        admitted = False

        async def admit() -> None:
            nonlocal admitted
            if not admitted:
                await limiter.acquire_on_behalf_of(place)
                admitted = True

        async def receive_then_admit() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                await admit()
            return message

        try:
            if not _has_body(scope):
                await admit()
            await self.app(scope, receive_then_admit, send)
        finally:
            if admitted:
                limiter.release_on_behalf_of(place)


def _has_body(scope: Scope) -> bool:
    headers: dict[bytes, Any] = dict(scope.get("headers") or [])
    return b"transfer-encoding" in headers or headers.get(b"content-length", b"0").strip() not in (b"", b"0")
