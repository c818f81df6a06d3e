"""A request that needs a row another transaction holds locked waits at most CTAX_DATABASE_LOCK_WAIT_S, then
answers 503 `database_busy` with Retry-After, having changed nothing (PostgreSQL: left to itself it waits for ever,
and every such request holds one of the API's threads)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from ctax.config import Settings
from tests.conftest import headers, make_settings


@pytest.fixture
def settings(tmp_path: Path, postgres_url: str) -> Settings:
    return make_settings(tmp_path / "var", database_url=postgres_url, database_lock_wait_s=1)


def test_a_request_waiting_on_a_held_lock_answers_503_busy_and_changes_nothing(
        quiet_client, keys: dict[str, str], postgres_url: str) -> None:
    admin = headers(keys["admin"])
    created = quiet_client.post("/v1/labels", json={"path": "Bakery"}, headers=admin)
    assert created.status_code == 201, created.text
    label = created.json()
    with psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://")) as holder:
        holder.execute("SELECT * FROM labels WHERE id = %s FOR UPDATE", (label["id"],))
        began = time.monotonic()
        busy = quiet_client.patch(f"/v1/labels/{label['id']}", json={"name": "Bread"}, headers=admin)
        waited = time.monotonic() - began
        holder.rollback()
    assert busy.status_code == 503, busy.text
    assert busy.json()["error"] == "database_busy"
    assert "not granted within 1 s (CTAX_DATABASE_LOCK_WAIT_S)" in busy.json()["message"]
    assert busy.headers["Retry-After"] == "1"
    assert 0.9 <= waited < 10
    assert quiet_client.get(f"/v1/labels/{label['id']}", headers=admin).json()["name"] == label["name"]
    again = quiet_client.patch(f"/v1/labels/{label['id']}", json={"name": "Bread"}, headers=admin)
    assert again.status_code == 200 and again.json()["name"] == "Bread"
