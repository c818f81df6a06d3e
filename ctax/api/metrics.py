"""Prometheus metrics: request counts and latency per route, and queue depths read from the database (creatives
by status, review items, background jobs by task and state).

Requests are measured by a plain ASGI middleware rather than `@app.middleware("http")`: Starlette's
BaseHTTPMiddleware runs the rest of the app in a task group and re-streams every response through a memory
channel, which costs more per request than the measuring itself. Here the middleware only wraps `send` to see the
status and the last body message. `/metrics` needs a reviewer or admin key (X-API-Key or `Authorization: Bearer`,
which a Prometheus scrape config can send): the queue depths and the routes' traffic are not for the public.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ctax.api.deps import Reviewer
from ctax.store import outbox
from ctax.store.repos import creatives as creative_rows
from ctax.store.repos import review_counts

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED = "unmatched"


class _DatabaseCollector(Collector):
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        search = getattr(self.app.state, "search", None)
        if search is not None:
            yield GaugeMetricFamily("ctax_searches_waiting", "Searches waiting for the index owner (this process)",
                                    value=search.waiting)
        db = getattr(self.app.state, "db", None)
        if db is None:
            return
        creatives = GaugeMetricFamily("ctax_creatives", "Creatives by status", labels=["status"])
        review = GaugeMetricFamily("ctax_review_items", "Review items by status and flag", labels=["status", "flag"])
        jobs = GaugeMetricFamily("ctax_background_jobs", "Outbox jobs (index syncs, deletions' forgets, erasure "
                                 "steps, builds, training requests) by task and state; ended ones are pruned after "
                                 "CTAX_OUTBOX_KEEP_DAYS", labels=["task", "state"])
        with db.read() as session:
            for status, count in creative_rows.count_by_status(session):
                creatives.add_metric([status], count)
            for status, flag, count in review_counts.count_by_status_and_flag(session):
                review.add_metric([status, flag], count)
            for task, state, count in outbox.count_by_state(session):
                jobs.add_metric([task, state], count)
        yield creatives
        yield review
        yield jobs


class RequestMetrics:
    """Counts every HTTP request by method, route template (`/v1/creatives/{creative_id}`, never the raw path, so
    ids do not explode the label set) and status, and observes its latency until the last body byte is sent."""

    def __init__(self, app: ASGIApp, requests: Counter, latency: Histogram) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering
        observed = False

        def observe() -> None:
            nonlocal observed
            if observed:  # the last body byte sent, then an exception: one request, counted once
                return
            observed = True
            # The router writes the matched route into this same scope dict, so it is known once the app has run.
            route = getattr(scope.get("route"), "path", UNMATCHED)
            self.requests.labels(scope["method"], route, str(status)).inc()
            self.latency.labels(scope["method"], route).observe(time.perf_counter() - start)

        async def measured_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                observe()

        try:
            await self.app(scope, receive, measured_send)
        except BaseException:
            observe()
            raise


def install(app: FastAPI) -> None:
    registry = CollectorRegistry()
    requests = Counter("ctax_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry)
    latency = Histogram("ctax_http_request_seconds", "HTTP request latency", ["method", "route"], registry=registry)
    registry.register(_DatabaseCollector(app))
    app.state.metrics_registry = registry
    app.add_middleware(RequestMetrics, requests=requests, latency=latency)

    @app.get("/metrics", tags=["health"], response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"}})
    def metrics(_: Reviewer) -> Response:
        """Request counts and latencies per route, creatives by status, review items by status and flag, background
        jobs by task and state."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
