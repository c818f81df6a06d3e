"""Checked API keys are trusted for CTAX_KEY_CACHE_S seconds: a revocation is seen at once by the API process that
made it, and by the others once their entry expires (or at once with the cache off)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ctax.api.app import create_app
from tests.conftest import headers, make_settings


def _two_apis(settings, **overrides):  # type: ignore[no-untyped-def]
    other = make_settings(settings.data_dir, **overrides)
    return TestClient(create_app(settings)), TestClient(create_app(other))


def test_a_key_revoked_elsewhere_works_here_until_its_cache_entry_expires(settings, db, keys) -> None:
    first, second = _two_apis(settings, key_cache_s=300)
    with first, second:
        made = first.post("/v1/api-keys", headers=headers(keys["admin"]), json={"name": "r", "role": "reviewer"})
        key = made.json()["key"]
        assert second.get("/v1/labels", headers=headers(key)).status_code == 200  # now in the second's cache
        assert first.delete(f"/v1/api-keys/{made.json()['id']}", headers=headers(keys["admin"])).status_code == 200
        assert first.get("/v1/labels", headers=headers(key)).status_code == 401  # the revoking process: at once
        assert second.get("/v1/labels", headers=headers(key)).status_code == 200  # the other: not yet


def test_with_the_cache_off_every_request_reads_the_key(settings, db, keys) -> None:
    first, second = _two_apis(settings, key_cache_s=0)
    with first, second:
        made = first.post("/v1/api-keys", headers=headers(keys["admin"]), json={"name": "r", "role": "reviewer"})
        key = made.json()["key"]
        assert second.get("/v1/labels", headers=headers(key)).status_code == 200
        first.delete(f"/v1/api-keys/{made.json()['id']}", headers=headers(keys["admin"]))
        assert second.get("/v1/labels", headers=headers(key)).status_code == 401
