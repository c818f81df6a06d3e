"""POST /v1/search as the API checks it, before any worker is asked: what to search for, the image, the filters,
who may see which creatives, and a 503 with Retry-After when no worker answers in time. The answers themselves
come from the index owner: tests/search (the service) and tests/e2e/test_search.py (through a real worker)."""

from __future__ import annotations

import base64
import itertools
import threading
import time
import uuid
from pathlib import Path

import pytest
from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout

from ctax.api.search_client import RESULT_POLL_GROWTH, RESULT_POLL_MAX_S, wait_for_answer
from ctax.config import Settings
from ctax.jobs import SEARCH_QUEUE
from ctax.store.repos import workers
from tests.conftest import headers, make_settings, png_bytes


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "var", search_timeout_s=2.0, search_max_waiting=1)


@pytest.fixture
def posters(client, keys) -> dict[str, dict]:
    """Two accounts, each with a poster key and one creative."""
    admin = headers(keys["admin"])
    out = {}
    for name in ("a", "b"):
        account = client.post("/v1/accounts", headers=admin, json={"name": name, "kind": "advertiser"}).json()["id"]
        key = client.post("/v1/api-keys", headers=admin,
                          json={"name": name, "role": "poster", "account_id": account}).json()["key"]
        creative = client.post("/v1/creatives", headers=headers(key), json={"ocr_text": f"ad of {name}"}).json()["id"]
        out[name] = {"account": account, "key": key, "creative": creative}
    return out


def search(client, key: str, **body):
    return client.post("/v1/search", headers=headers(key), json=body)


@pytest.mark.parametrize(("body", "problem"), [
    ({}, "nothing to search for"),
    ({"text": "   "}, "text is empty"),
    ({"text": ""}, "text is empty"),
    ({"text": "cars", "creative_id": "0" * 32}, "give it alone"),
    ({"text": "cars", "limit": 0}, "limit"),
    ({"text": "cars", "limit": 101}, "limit"),
    ({"text": "cars", "labels_limit": 51}, "labels_limit"),
    ({"text": "cars", "filters": {"flag": ["sometimes"]}}, "flag"),
    ({"text": "cars", "filters": {"colour": "red"}}, "colour"),
    ({"text": "cars", "image_base64": "not base64!"}, "not valid base64"),
])
def test_bad_requests_are_refused_naming_the_problem(client, keys, body: dict, problem: str) -> None:
    response = search(client, keys["reviewer"], **body)
    assert response.status_code == 422, response.text
    assert problem in response.text


def test_an_image_that_is_not_an_image_is_refused(client, keys) -> None:
    response = search(client, keys["reviewer"], image_base64=base64.b64encode(b"%PDF-1.4 not an image").decode())
    assert response.status_code == 415 and response.json()["detail"]["field"] == "image"


def test_a_filter_on_an_unknown_label_is_refused_naming_it(client, keys, pitt_labels) -> None:
    response = search(client, keys["reviewer"], text="cars", filters={"label": "Product/Spaceships"})
    assert response.status_code == 422 and "Product/Spaceships" in response.json()["message"]
    assert response.json()["detail"]["field"] == "filters.label"
    assert search(client, keys["reviewer"], text="cars", filters={"label": 999999}).status_code == 422


def test_an_unknown_creative_or_another_accounts_answers_404(client, keys, posters) -> None:
    a, b = posters["a"], posters["b"]
    assert search(client, a["key"], creative_id="0" * 32).status_code == 404
    # Another account's creative is as absent to a poster as an id that does not exist.
    theirs = search(client, a["key"], creative_id=b["creative"])
    assert theirs.status_code == 404 and theirs.json()["error"] == "not_found"
    forbidden = search(client, a["key"], text="ad", filters={"account_id": b["account"]})
    assert forbidden.status_code == 403
    assert search(client, keys["reviewer"], text="ad", filters={"account_id": 999999}).status_code == 422


def test_without_a_worker_the_answer_is_503_with_retry_after(client, keys, posters, db) -> None:
    # Nobody consumes the search queue: refused at once.
    response = search(client, keys["reviewer"], creative_id=posters["b"]["creative"])
    assert response.status_code == 503 and SEARCH_QUEUE in response.json()["message"]
    assert int(response.headers["Retry-After"]) >= 1
    # A worker that says it consumes the queue but does not answer: refused after CTAX_SEARCH_TIMEOUT_S.
    with db.write() as session:
        workers.beat(session, "silent", pid=1, queues=[SEARCH_QUEUE], device="cpu", ready=True, info={})
    response = search(client, posters["a"]["key"], image_base64=base64.b64encode(png_bytes("SALE")).decode())
    assert response.status_code == 503 and "CTAX_SEARCH_TIMEOUT_S" in response.json()["message"]
    assert response.headers["Retry-After"] == "1"


def test_searches_past_the_waiting_cap_are_refused_at_once(client, keys, db) -> None:
    """CTAX_SEARCH_MAX_WAITING = 1 here: while one search waits for a silent worker, the next is refused at once
    instead of holding another of the API's threads; the slot is free again when the first gives up."""
    with db.write() as session:
        workers.beat(session, "silent", pid=1, queues=[SEARCH_QUEUE], device="cpu", ready=True, info={})
    reviewer = keys["reviewer"]
    first: dict[str, object] = {}
    waiting = threading.Thread(target=lambda: first.update(response=search(client, reviewer, text="cars")))
    waiting.start()
    metrics = ""
    deadline = time.monotonic() + 10
    while "ctax_searches_waiting 1.0" not in metrics and time.monotonic() < deadline:
        metrics = client.get("/metrics", headers=headers(reviewer)).text
    assert "ctax_searches_waiting 1.0" in metrics
    refused = search(client, reviewer, text="boats")
    # Refused at once: a search that had waited out its 2 s would name CTAX_SEARCH_TIMEOUT_S (below), not the cap.
    assert refused.status_code == 503 and "CTAX_SEARCH_MAX_WAITING" in refused.json()["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    waiting.join(10)
    timed_out = first["response"]
    assert timed_out.status_code == 503 and "CTAX_SEARCH_TIMEOUT_S" in timed_out.json()["message"]  # type: ignore[attr-defined]
    assert "ctax_searches_waiting 0.0" in client.get("/metrics", headers=headers(reviewer)).text
    again = search(client, reviewer, text="boats")  # the slot is free again: this one waits its turn
    assert again.status_code == 503 and "CTAX_SEARCH_TIMEOUT_S" in again.json()["message"]


def test_a_long_wait_asks_the_database_result_backend_less_and_less_often(settings, db, monkeypatch) -> None:
    """Waiting on the embedded profile's result backend polls SQLite: every 20 ms at first (a quick answer is seen
    quickly), then ever less often, up to every RESULT_POLL_MAX_S (16 waiting searches polling every 20 ms took
    80% of the API's CPU). The waiter's clock is the test's, moved only by the pauses it asks for: on a loaded
    machine one look at SQLite took 0.5 s, so a wall clock ran out before the pauses had grown to their cap."""
    app = Celery("poll-test", backend=settings.celery_result_url, set_as_current=False)
    result = app.AsyncResult(uuid.uuid4().hex)  # a task nobody answers
    looks = 0
    ask = result.backend.get_task_meta

    def counted(*args: object, **kwargs: object) -> object:
        nonlocal looks
        looks += 1
        return ask(*args, **kwargs)

    pauses: list[float] = []
    clock, sleep, waiter = [1000.0], time.sleep, threading.current_thread()

    def paused(seconds: float) -> None:
        if threading.current_thread() is not waiter:
            sleep(seconds)
            return
        pauses.append(seconds)
        clock[0] += seconds

    result.backend.get_task_meta = counted
    monkeypatch.setattr(time, "sleep", paused)
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    with pytest.raises(CeleryTimeout):
        wait_for_answer(result, 3.0)
    assert sum(pauses) == pytest.approx(3.0), pauses  # never past the deadline: the last pause is cut to it
    assert looks == len(pauses) + 1 and looks < 30, looks  # every 20 ms throughout: 150
    asked = pauses[:-1]
    assert asked[0] == pytest.approx(0.02), pauses
    for before, after in itertools.pairwise(asked):
        assert after == pytest.approx(min(before * RESULT_POLL_GROWTH, RESULT_POLL_MAX_S)), pauses
    assert asked[-1] == pytest.approx(RESULT_POLL_MAX_S), pauses


def test_the_operation_is_documented(client) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/search"]["post"]
    assert {"200", "404", "415", "422", "503"} <= set(operation["responses"])
    assert "SearchIn" in str(operation["requestBody"])
