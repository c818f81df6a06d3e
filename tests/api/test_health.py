"""Liveness, readiness and metrics through HTTP: what anyone may see, what needs a reviewer's key, and the
request metrics measured per route template and status."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from starlette.middleware.base import BaseHTTPMiddleware

from ctax.api.app import create_app
from ctax.api.metrics import RequestMetrics
from ctax.config import Settings
from ctax.jobs import ERASE_ACCOUNT, FORGET_CREATIVES, INDEX_QUEUE, SYNC_INDEX
from ctax.store.models import OutboxJob
from ctax.store.types import utcnow
from tests.conftest import headers


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one Prometheus sample, whatever the order of its labels."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and dict(re.findall(r'(\w+)="([^"]*)"', match.group(1))) == labels:
            return float(match.group(2))
    return None


def test_liveness_is_open_and_bare_readiness_says_only_its_status(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    bare = client.get("/readyz")  # no worker runs in these tests: not ready
    assert bare.status_code == 503 and bare.json() == {"status": "unavailable"}


def test_detailed_readiness_needs_a_reviewer_key(client, keys) -> None:
    for sent in (headers(keys["reviewer"]), headers(keys["admin"]), bearer(keys["reviewer"])):
        detail = client.get("/readyz", headers=sent)
        assert detail.status_code == 503, detail.text  # the same status the bare answer gives
        body = detail.json()
        assert body["status"] == "unavailable" and "no live worker" in body["problems"][0]
        assert set(body) == {"status", "problems", "workers", "model_version"}
    poster = client.get("/readyz", headers=headers(keys["poster"]))
    assert poster.status_code == 403 and "reviewer" in poster.json()["message"]
    invalid = client.get("/readyz", headers=bearer("ctax_not_a_real_key_at_all"))
    assert invalid.status_code == 401 and invalid.json()["error"] == "unauthorized"


def test_metrics_need_a_reviewer_key_in_either_header(client, keys) -> None:
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing.json() == {"error": "unauthorized", "message": "missing API key: send it in the X-API-Key header"}
    assert client.get("/metrics", headers=headers(keys["poster"])).status_code == 403
    assert client.get("/metrics", headers=bearer(keys["poster"])).status_code == 403
    assert client.get("/metrics", headers={"Authorization": f"Basic {keys['reviewer']}"}).status_code == 401
    for sent in (headers(keys["reviewer"]), bearer(keys["admin"])):
        scraped = client.get("/metrics", headers=sent)
        assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
        assert "ctax_creatives" in scraped.text and "ctax_http_requests_total" in scraped.text


def test_requests_are_counted_by_route_template_and_status(client, keys) -> None:
    h = headers(keys["poster"])
    for creative_id in ("00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"):
        assert client.get(f"/v1/creatives/{creative_id}", headers=h).status_code == 404
    created = client.post("/v1/creatives", headers=h, json={"ocr_text": "Fresh bread every morning"})
    assert created.status_code == 202, created.text
    assert client.get("/no/such/route").status_code == 404
    client.get("/metrics")  # a 401, counted too

    text = client.get("/metrics", headers=headers(keys["reviewer"])).text
    count = "ctax_http_requests_total"
    # The route's template, never the raw path: ids would make a label value per creative.
    assert _sample(text, count, method="GET", route="/v1/creatives/{creative_id}", status="404") == 2.0
    assert _sample(text, count, method="POST", route="/v1/creatives", status="202") == 1.0
    assert _sample(text, count, method="GET", route="unmatched", status="404") == 1.0
    assert _sample(text, count, method="GET", route="/metrics", status="401") == 1.0
    assert "/v1/creatives/00000000" not in text
    latency = "ctax_http_request_seconds_count"
    assert _sample(text, latency, method="GET", route="/v1/creatives/{creative_id}") == 2.0
    assert _sample(text, "ctax_http_request_seconds_bucket", method="POST", route="/v1/creatives", le="+Inf") == 1.0


def test_a_request_that_raises_is_counted_as_a_500(settings: Settings, db, keys) -> None:
    app = create_app(settings, start_dispatcher=False)

    @app.get("/boom/{n}")
    def boom(n: int) -> None:
        raise RuntimeError(f"boom {n}")

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/boom/1").status_code == 500
        text = client.get("/metrics", headers=headers(keys["reviewer"])).text
    assert _sample(text, "ctax_http_requests_total", method="GET", route="/boom/{n}", status="500") == 1.0


def test_requests_are_measured_by_plain_asgi_middleware(client) -> None:
    """Starlette's BaseHTTPMiddleware (what `@app.middleware("http")` installs) runs each request in a task group
    and re-streams its response; the metrics middleware must not cost that on every request."""
    measuring = [m for m in client.app.user_middleware if m.cls is RequestMetrics]
    assert len(measuring) == 1 and not issubclass(RequestMetrics, BaseHTTPMiddleware)
    dispatchers = [m.kwargs.get("dispatch") for m in client.app.user_middleware if m.cls is BaseHTTPMiddleware]
    assert not [d for d in dispatchers if getattr(d, "__module__", "") == "ctax.api.metrics"]


def test_background_jobs_are_counted_by_task_and_state(settings: Settings, db, keys) -> None:
    now = utcnow()
    rows = [dict(task=SYNC_INDEX), dict(task=SYNC_INDEX),  # waiting: the broker has not taken them
            dict(task=FORGET_CREATIVES, sent_at=now),  # sent, queued
            dict(task=FORGET_CREATIVES, sent_at=now, running_on="host:1:ctax.index", starts=1),
            dict(task=FORGET_CREATIVES, sent_at=now, done_at=now, starts=1),
            dict(task=ERASE_ACCOUNT, sent_at=now, done_at=now, starts=3, last_error="started 3 times ...")]
    with db.write() as session:
        for row in rows:
            session.add(OutboxJob(args=[], queue=INDEX_QUEUE, **row))
    with TestClient(create_app(settings, start_dispatcher=False)) as client:  # a dispatcher would send the waiting
        text = client.get("/metrics", headers=headers(keys["reviewer"])).text
    jobs = "ctax_background_jobs"
    assert _sample(text, jobs, task=SYNC_INDEX, state="waiting") == 2.0
    for state in ("sent", "running", "ended"):
        assert _sample(text, jobs, task=FORGET_CREATIVES, state=state) == 1.0, state
    assert _sample(text, jobs, task=ERASE_ACCOUNT, state="failed") == 1.0
