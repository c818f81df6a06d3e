"""Bodies are bounded while they stream in, per route and per batch in total, chunked ones included: an oversized
request is a JSON 413 naming the limit, read no further than the limit, and nothing of it is stored."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from ctax.api.app import create_app
from ctax.api.limits import single_creative_bytes
from ctax.config import Settings
from ctax.store.keys import create_key
from ctax.store.migrate import upgrade
from ctax.store.models import Creative
from ctax.store.session import Database
from tests.conftest import headers, make_settings
from tests.support import free_port

BATCH_LIMIT = 256 * 1024
REQUEST_LIMIT = 64 * 1024
CHUNK = 64 * 1024


@pytest.fixture
def small(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path / "var", max_batch_bytes=BATCH_LIMIT, max_request_bytes=REQUEST_LIMIT)
    settings.ensure_dirs()
    upgrade(settings.sqlalchemy_url)
    return settings


@pytest.fixture
def poster(small: Settings) -> str:
    db = Database(small.sqlalchemy_url)
    with db.write() as session:
        _, key = create_key(session, "poster", "admin")
    db.dispose()
    return key


@pytest.fixture
def server(small: Settings) -> Iterator[str]:
    """The app behind a real HTTP server (uvicorn, as `ctax api` runs it), so bodies arrive as a client sends them."""
    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(create_app(small, start_dispatcher=False), host="127.0.0.1", port=port,
                                             log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=30)


def _count(settings: Settings) -> int:
    db = Database(settings.sqlalchemy_url)
    with db.read() as session:
        count = session.scalar(select(func.count(Creative.id)))
    db.dispose()
    return int(count or 0)


class Chunks:
    """A body of `total` bytes sent chunked (no Content-Length), counting how much of it the client produced."""

    def __init__(self, head: bytes, total: int) -> None:
        self.head = head
        self.total = total
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        self.sent = len(self.head)
        while self.sent < self.total:
            self.sent += CHUNK
            yield b" " * CHUNK


@pytest.mark.parametrize("path,limit", [("/v1/creatives/batch", BATCH_LIMIT), ("/v1/review/next", REQUEST_LIMIT),
                                        ("/v1/labels", REQUEST_LIMIT)])
def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(server, small, poster, path, limit) -> None:
    body = Chunks(b'{"items": [{"ocr_text": "Fresh pizza"}], "padding": "', 60 * 1024 * 1024)
    with httpx.Client(base_url=server, timeout=60) as http:
        response = http.post(path, headers={**headers(poster), "Content-Type": "application/json"}, content=body)
    assert response.status_code == 413, response.text
    assert response.json() == {"error": "payload_too_large",
                               "message": f"request body is larger than the limit here, {limit} bytes",
                               "detail": {"limit": limit}}
    # The server stopped reading at the limit: the client got its answer long before sending 60 MB.
    assert body.sent < 16 * 1024 * 1024, body.sent
    assert _count(small) == 0


def test_a_chunked_body_within_the_limit_is_read_whole(server, small, poster) -> None:
    items = b'{"items": [{"ocr_text": "Fresh pizza delivered"}, {"ocr_text": "Cheap flights to Rome"}]}'
    with httpx.Client(base_url=server, timeout=60) as http:
        response = http.post("/v1/creatives/batch", content=iter([items[:20], items[20:]]),
                             headers={**headers(poster), "Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    assert _count(small) == 2


def test_a_declared_length_over_the_limit_is_refused_before_reading(server, small, poster) -> None:
    body = b'{"items": [{"ocr_text": "Fresh pizza"}], "padding": "' + b" " * BATCH_LIMIT + b'"}'
    with httpx.Client(base_url=server, timeout=60) as http:
        response = http.post("/v1/creatives/batch", content=body,
                             headers={**headers(poster), "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["message"] == f"request body is {len(body)} bytes; the limit here is {BATCH_LIMIT} bytes"
    assert _count(small) == 0


def test_one_creative_may_carry_its_largest_image_and_texts(small) -> None:
    """The single-creative limit follows from the field limits, so they answer first with the precise reason."""
    assert single_creative_bytes(small) > small.max_image_bytes * 4 // 3 + small.max_text_chars
    assert single_creative_bytes(small) < 2 * small.max_image_bytes
