"""Prometheus metrics: request counts and latency per route, and queue depths read from the database."""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ctax.store.repos import creatives as creative_rows
from ctax.store.repos import review as review_rows


class _DatabaseCollector(Collector):
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        db = getattr(self.app.state, "db", None)
        if db is None:
            return
        creatives = GaugeMetricFamily("ctax_creatives", "Creatives by status", labels=["status"])
        review = GaugeMetricFamily("ctax_review_items", "Review items by status and flag", labels=["status", "flag"])
        with db.read() as session:
            for status, count in creative_rows.count_by_status(session):
                creatives.add_metric([status], count)
            for status, flag, count in review_rows.count_by_status_and_flag(session):
                review.add_metric([status, flag], count)
        yield creatives
        yield review


def install(app: FastAPI) -> None:
    registry = CollectorRegistry()
    requests = Counter("ctax_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry)
    latency = Histogram("ctax_http_request_seconds", "HTTP request latency", ["method", "route"], registry=registry)
    registry.register(_DatabaseCollector(app))
    app.state.metrics_registry = registry

    @app.middleware("http")
    async def _measure(request: Request, call_next):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        requests.labels(request.method, name, str(response.status_code)).inc()
        latency.labels(request.method, name).observe(time.perf_counter() - start)
        return response

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
