"""Per-account rate limits (ctax/api/throttle.py): creatives posted and searches, counted per account in the API's
memory or in Redis, where every API process shares one count; a refusal is a 429 with Retry-After that stores
nothing."""

from __future__ import annotations

import logging

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from ctax.store.models import Creative
from ctax.store.session import Database
from tests.api.conftest import api
from tests.conftest import headers


def _stored(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(Creative)) or 0)


def _post(client: TestClient, key: str, n: int = 1):  # type: ignore[no-untyped-def]
    if n == 1:
        return client.post("/v1/creatives", headers=headers(key), json={"ocr_text": "Winter tyres fitted today"})
    items = [{"ocr_text": f"Winter tyres, offer {i}"} for i in range(n)]
    return client.post("/v1/creatives/batch", headers=headers(key), json={"items": items})


def test_an_account_over_its_limit_is_refused_with_retry_after_and_nothing_is_stored(two_accounts, tmp_path) -> None:
    db, keys = two_accounts
    with api(tmp_path, rate_limit_creatives="5/minute") as client:
        first = _post(client, keys["a"])
        assert first.status_code == 202, first.text
        assert (first.headers["RateLimit-Limit"], first.headers["RateLimit-Remaining"]) == ("5", "4")
        assert 0 < int(first.headers["RateLimit-Reset"]) <= 60

        batch = _post(client, keys["a"], 3)  # a batch costs one per creative
        assert batch.status_code == 202, batch.text
        assert batch.headers["RateLimit-Remaining"] == "1"
        assert _stored(db) == 4

        too_many = _post(client, keys["a"], 2)  # one left: the batch is refused whole
        assert too_many.status_code == 429, too_many.text
        body = too_many.json()
        assert body["error"] == "rate_limited"
        assert "5 creatives a minute" in body["message"] and "1 left" in body["message"]
        assert "this request has 2" in body["message"]
        assert 1 <= int(too_many.headers["Retry-After"]) <= 60
        assert body["detail"]["retry_after_s"] == int(too_many.headers["Retry-After"])
        assert _stored(db) == 4

        assert _post(client, keys["a2"]).status_code == 202  # the account's other key shares its budget
        assert _post(client, keys["a"]).status_code == 429
        assert _stored(db) == 5

        other = _post(client, keys["b"], 5)  # another account has its own
        assert other.status_code == 202, other.text
        assert other.headers["RateLimit-Remaining"] == "0"
        assert _post(client, keys["admin"]).status_code == 202  # a key without an account counts on its own
        assert _stored(db) == 11


def test_an_account_out_of_budget_is_refused_before_its_body_is_read(two_accounts, tmp_path) -> None:
    db, keys = two_accounts
    with api(tmp_path, rate_limit_creatives="1/minute") as client:
        assert _post(client, keys["a"]).status_code == 202
        garbage = client.post("/v1/creatives", headers={**headers(keys["a"]), "Content-Type": "application/json"},
                              content=b"{not json")
        assert garbage.status_code == 429, garbage.text  # not the 422 its body would earn

        # A request refused for its body is not charged: b's one creative still goes through after it.
        bad = client.post("/v1/creatives", headers={**headers(keys["b"]), "Content-Type": "application/json"},
                          content=b"{not json")
        assert bad.status_code == 422
        assert _post(client, keys["b"]).status_code == 202
        assert _stored(db) == 2


def test_a_batch_larger_than_the_whole_limit_is_told_to_split(two_accounts, tmp_path) -> None:
    db, keys = two_accounts
    with api(tmp_path, rate_limit_creatives="4/minute") as client:
        response = _post(client, keys["a"], 5)
        assert response.status_code == 422, response.text
        assert "send at most 4 at once" in response.json()["message"]
        assert _post(client, keys["a"], 4).status_code == 202  # nothing was taken by the refusal
        assert _stored(db) == 4


def test_searches_have_their_own_limit(two_accounts, tmp_path) -> None:
    _, keys = two_accounts
    with api(tmp_path, rate_limit_searches="2/minute", rate_limit_creatives="1/minute") as client:
        assert _post(client, keys["a"]).status_code == 202
        unknown = {"creative_id": "0" * 32}  # answered by the API (404) without a worker
        for _ in range(2):
            response = client.post("/v1/search", headers=headers(keys["a"]), json=unknown)
            assert response.status_code == 404, response.text
        refused = client.post("/v1/search", headers=headers(keys["a"]), json=unknown)
        assert refused.status_code == 429, refused.text
        assert "2 searches a minute" in refused.json()["message"]
        assert client.post("/v1/search", headers=headers(keys["b"]), json=unknown).status_code == 404


def test_no_limit_when_it_is_lifted(two_accounts, tmp_path) -> None:
    _, keys = two_accounts
    with api(tmp_path, rate_limit_creatives="none") as client:
        response = _post(client, keys["a"], 50)
        assert response.status_code == 202
        assert "RateLimit-Limit" not in response.headers


def test_api_processes_share_the_count_in_redis_and_not_in_memory(two_accounts, tmp_path, redis_url) -> None:
    _, keys = two_accounts
    for storage, refused in (("memory://", 202), (redis_url, 429)):
        one = api(tmp_path, rate_limit_creatives="2/minute", rate_limit_storage=storage)
        other = api(tmp_path, rate_limit_creatives="2/minute", rate_limit_storage=storage)
        with one, other:
            assert _post(one, keys["b" if storage == redis_url else "a"], 2).status_code == 202
            assert _post(other, keys["b" if storage == redis_url else "a"]).status_code == refused


def test_the_production_profile_counts_in_the_brokers_redis(two_accounts, tmp_path, redis_url) -> None:
    import redis

    _, keys = two_accounts
    with api(tmp_path, rate_limit_creatives="3/minute", broker_url=redis_url) as client:
        assert _post(client, keys["a"], 3).status_code == 202
        assert _post(client, keys["a"]).status_code == 429
    assert any(b"limits" in key for key in redis.Redis.from_url(redis_url).keys("*"))


def test_an_unreachable_redis_lets_requests_pass_and_says_so_once(two_accounts, tmp_path, caplog) -> None:
    db, keys = two_accounts
    with api(tmp_path, rate_limit_creatives="1/minute", rate_limit_storage="redis://127.0.0.1:1/0") as client, \
            caplog.at_level(logging.WARNING, logger="ctax.api.throttle"):
        for _ in range(3):
            assert _post(client, keys["a"]).status_code == 202
    warnings = [r.getMessage() for r in caplog.records if "rate limits not counted" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert _stored(db) == 3


def test_an_account_gets_its_own_limits_and_back_the_services(two_accounts, tmp_path) -> None:
    _, keys = two_accounts
    admin = headers(keys["admin"])
    with api(tmp_path, rate_limit_creatives="2/minute") as client:
        assert _post(client, keys["a"]).status_code == 202  # the key (and its account) is now in the key cache
        shown = client.get("/v1/accounts/1", headers=admin).json()["rate_limits"]
        assert shown == {"creatives": {"limit": "2/minute", "own": False},
                         "searches": {"limit": "600/minute", "own": False}}

        changed = client.patch("/v1/accounts/1", headers=admin, json={"rate_limits": {"creatives": "4/minute"}})
        assert changed.status_code == 200, changed.text
        assert changed.json()["rate_limits"]["creatives"] == {"limit": "4/minute", "own": True}
        assert changed.json()["rate_limits"]["searches"]["own"] is False  # left out: left as it was
        accepted = _post(client, keys["a"], 3)  # at once, although the key was cached under the old limit
        assert accepted.status_code == 202, accepted.text
        assert (accepted.headers["RateLimit-Limit"], accepted.headers["RateLimit-Remaining"]) == ("4", "1")
        assert _post(client, keys["a2"]).status_code == 202  # the account's every key counts against it
        assert _post(client, keys["a"]).status_code == 429

        b = client.patch("/v1/accounts/2", headers=admin, json={"rate_limits": {"creatives": "none"}})
        assert b.json()["rate_limits"]["creatives"] == {"limit": "none", "own": True}
        assert _post(client, keys["b"], 10).status_code == 202

        back = client.patch("/v1/accounts/2", headers=admin, json={"rate_limits": {"creatives": "default"}})
        assert back.json()["rate_limits"]["creatives"] == {"limit": "2/minute", "own": False}
        assert _post(client, keys["b"], 3).status_code == 422  # over the service's whole limit again

        bad = client.patch("/v1/accounts/1", headers=admin, json={"rate_limits": {"searches": "lots"}})
        assert bad.status_code == 422
        assert bad.json()["detail"]["field"] == "rate_limits.searches"
        assert "not a rate limit" in bad.json()["message"]
        poster = client.patch("/v1/accounts/1", headers=headers(keys["a"]), json={"rate_limits": {"creatives": "none"}})
        assert poster.status_code == 403
        assert client.get("/v1/accounts/1", headers=admin).json()["rate_limits"]["creatives"]["limit"] == "4/minute"


def _left(response) -> int:  # type: ignore[no-untyped-def]
    assert response.status_code == 202, response.text
    return int(response.headers["RateLimit-Remaining"])


def test_a_post_pays_only_for_the_creatives_it_adds(two_accounts, tmp_path) -> None:
    """A replay (same Idempotency-Key) stores nothing new and pays nothing, so a client retrying after a lost answer
    is not charged twice; a post refused for its content (an unknown label, an image that is not one) pays for what
    it sent, with an Idempotency-Key (charged after the post is read) as without (charged before)."""
    db, keys = two_accounts
    once = {**headers(keys["a"]), "Idempotency-Key": "once"}
    with api(tmp_path, rate_limit_creatives="10/minute") as client:
        assert _left(client.post("/v1/creatives", headers=once, json={"ocr_text": "Snow chains"})) == 9
        replay = client.post("/v1/creatives", headers=once, json={"ocr_text": "Snow chains"})
        assert replay.status_code == 202 and replay.headers["Idempotent-Replayed"] == "true"
        assert replay.headers["RateLimit-Remaining"] == "9"  # told what is left, as any accepted post
        assert _left(_post(client, keys["a"])) == 8

        batch = {**headers(keys["a"]), "Idempotency-Key": "batch"}
        items = {"items": [{"ocr_text": f"Roof racks {i}"} for i in range(2)]}
        assert _left(client.post("/v1/creatives/batch", headers=batch, json=items)) == 6
        assert _left(client.post("/v1/creatives/batch", headers=batch, json=items)) == 6  # replayed whole
        grown = {"items": [*items["items"], {"ocr_text": "Roof racks 2"}]}  # the same key: two replayed, one new
        assert _left(client.post("/v1/creatives/batch", headers=batch, json=grown)) == 5

        unknown = client.post("/v1/creatives", headers=headers(keys["a"]),
                              json={"ocr_text": "Tow bars", "asserted_label": "No/Such/Label"})
        assert unknown.status_code == 422, unknown.text
        broken = client.post("/v1/creatives", headers={**headers(keys["a"]), "Idempotency-Key": "broken"},
                             json={"image_base64": "bm90IGFuIGltYWdl"})
        assert broken.status_code == 415, broken.text
        assert _left(_post(client, keys["a"])) == 2
        assert _stored(db) == 6


def test_a_keyed_post_the_quota_refuses_pays_nothing(two_accounts, tmp_path) -> None:
    """A post with an Idempotency-Key pays after its replays and the quota's count are read: one the quota refuses
    pays nothing, so an account at its quota that deletes to make room finds its budget as it left it. A post
    without a key pays before (as it always did), and so does the first post under a changed quota, which counts
    what the account holds in its own transaction."""
    db, keys = two_accounts
    n = iter(range(100))

    def keyed():  # type: ignore[no-untyped-def]
        return client.post("/v1/creatives", headers={**headers(keys["a"]), "Idempotency-Key": f"k{next(n)}"},
                           json={"ocr_text": f"Snow chains {next(n)}"})

    def refused(response) -> None:  # type: ignore[no-untyped-def]
        assert response.status_code == 403 and response.json()["error"] == "quota_exceeded", response.text

    with api(tmp_path, rate_limit_creatives="10/minute") as client:
        admin = headers(keys["admin"])
        assert client.patch("/v1/accounts/1", headers=admin, json={"quotas": {"creatives": 2}}).status_code == 200
        first = keyed()
        assert _left(first) == 9
        assert _left(keyed()) == 8
        for _ in range(3):
            refused(keyed())
        refused(_post(client, keys["a"]))  # without a key: paid before the quota was judged
        gone = client.delete(f"/v1/creatives/{first.json()['id']}", headers=headers(keys["a"]))
        assert gone.status_code == 200, gone.text
        assert _left(keyed()) == 6

        assert client.patch("/v1/accounts/1", headers=admin, json={"quotas": {"creatives": 1}}).status_code == 200
        for _ in range(3):
            refused(keyed())  # the first pays (it counts), the next two read the count and pay nothing
        assert client.patch("/v1/accounts/1", headers=admin, json={"quotas": {"creatives": 3}}).status_code == 200
        assert _left(keyed()) == 4
        assert _stored(db) == 3
