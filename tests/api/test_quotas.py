"""Per-account quotas: the creatives an account may hold at once (CTAX_QUOTA_CREATIVES, or the account's own). A
post that would pass it is a 403 quota_exceeded that says how many fit and stores nothing; deleting makes room; a
replay of a stored post is not refused; two posts at once cannot both pass it (PostgreSQL, the account row locked)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from ctax.config import Settings
from ctax.creatives import intake
from ctax.creatives.erasure import erase_step
from ctax.creatives.validation import CreativeSubmission
from ctax.errors import QuotaExceeded
from ctax.store.blobs import BlobStore
from ctax.store.keys import create_account
from ctax.store.migrate import upgrade
from ctax.store.models import Account, Creative
from ctax.store.session import Database
from tests.api.conftest import api
from tests.conftest import headers, make_settings


def _held(db: Database, account_id: int | None = None) -> int:
    query = select(func.count()).select_from(Creative)
    if account_id is not None:
        query = query.where(Creative.account_id == account_id)
    with db.read() as session:
        return int(session.scalar(query) or 0)


def _post(client: TestClient, key: str, n: int = 1, idempotency_key: str | None = None):  # type: ignore[no-untyped-def]
    extra = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    if n == 1:
        return client.post("/v1/creatives", headers={**headers(key), **extra}, json={"ocr_text": "Snow chains"})
    items = [{"ocr_text": f"Snow chains, offer {i}"} for i in range(n)]
    return client.post("/v1/creatives/batch", headers={**headers(key), **extra}, json={"items": items})


def test_an_account_at_its_quota_is_refused_until_it_deletes(two_accounts, tmp_path) -> None:
    db, keys = two_accounts
    with api(tmp_path, rate_limit_creatives=None) as client:
        admin = headers(keys["admin"])
        changed = client.patch("/v1/accounts/1", headers=admin, json={"quotas": {"creatives": 3}})
        assert changed.status_code == 200, changed.text
        # held: counted by the first post under the new quota
        assert changed.json()["quotas"] == {"creatives": {"quota": 3, "own": True, "held": None}}

        first = _post(client, keys["a"], idempotency_key="first")
        assert first.status_code == 202
        assert _post(client, keys["a"]).status_code == 202
        refused = _post(client, keys["a"], 2)  # one more fits: the batch is refused whole
        assert refused.status_code == 403, refused.text
        body = refused.json()
        assert body["error"] == "quota_exceeded"
        assert "may hold 3 creatives and holds 2, so 1 more fit and this request sends 2" in body["message"]
        assert body["detail"] == {"quota": 3, "held": 2, "posting": 2}
        assert _held(db, 1) == 2
        assert _post(client, keys["a"]).status_code == 202
        assert _post(client, keys["a"]).status_code == 403
        replay = _post(client, keys["a"], idempotency_key="first")  # stores nothing new: not refused
        assert replay.status_code == 202 and replay.headers["Idempotent-Replayed"] == "true"
        assert _post(client, keys["b"], 4).status_code == 202  # another account: no quota

        gone = client.delete(f"/v1/creatives/{first.json()['id']}", headers=headers(keys["a"]))
        assert gone.status_code == 200 and gone.json()["deleted"], gone.text
        assert _post(client, keys["a"]).status_code == 202  # deleting made room
        assert _held(db, 1) == 3

        detail = client.get("/v1/accounts/1", headers=admin).json()
        assert detail["creatives"]["total"] == 3 and detail["quotas"]["creatives"] == {"quota": 3, "own": True,
                                                                                        "held": 3}
        lowered = client.patch("/v1/accounts/1", headers=admin, json={"quotas": {"creatives": 1}})
        assert lowered.status_code == 200
        assert _held(db, 1) == 3  # nothing stored is removed; posts wait until it holds less
        assert _post(client, keys["a"]).status_code == 403
        with db.read() as session:  # the refused post kept the count it took: the next refusal does not count again
            assert session.get(Account, 1).creatives_held == 3  # type: ignore[union-attr]


def test_the_service_quota_applies_unless_an_account_has_its_own(two_accounts, tmp_path) -> None:
    db, keys = two_accounts
    with api(tmp_path, quota_creatives=2, rate_limit_creatives=None) as client:
        admin = headers(keys["admin"])
        assert client.get("/v1/accounts/2", headers=admin).json()["quotas"] == {
            "creatives": {"quota": 2, "own": False, "held": None}}
        assert _post(client, keys["b"], 2).status_code == 202
        assert _post(client, keys["b"]).status_code == 403
        assert _post(client, keys["admin"], 3).status_code == 202  # a key without an account has no quota

        lifted = client.patch("/v1/accounts/2", headers=admin, json={"quotas": {"creatives": "none"}})
        assert lifted.json()["quotas"] == {"creatives": {"quota": "none", "own": True, "held": None}}
        assert _post(client, keys["b"], 5).status_code == 202  # at once: this process forgot the cached key
        back = client.patch("/v1/accounts/2", headers=admin, json={"quotas": {"creatives": "default"}})
        assert back.json()["quotas"] == {"creatives": {"quota": 2, "own": False, "held": None}}
        assert _post(client, keys["b"]).status_code == 403

        for bad in (0, -5, "lots", 2.5, True):
            answer = client.patch("/v1/accounts/2", headers=admin, json={"quotas": {"creatives": bad}})
            assert answer.status_code == 422, (bad, answer.text)
            assert "quotas.creatives" in answer.text and "not a quota" in answer.text
    assert _held(db, 2) == 7


def test_the_count_a_quota_is_checked_against_follows_what_the_account_holds(two_accounts, tmp_path) -> None:
    """The count is kept only under a quota; the first post under one counts what is there; then posts (single,
    batch, replayed, refused), deletions and an erasure's steps each move it exactly as they move the creatives."""
    db, keys = two_accounts

    def count(account_id: int) -> int | None:
        with db.read() as session:
            return session.get(Account, account_id).creatives_held  # type: ignore[union-attr]

    with api(tmp_path, rate_limit_creatives=None) as client:
        assert _post(client, keys["a"], 2).status_code == 202  # no quota: no count kept, its row left alone
        assert count(1) is None
    with db.write() as session:  # an earlier post, no longer there
        session.delete(session.scalars(select(Creative).where(Creative.account_id == 1)).first())
    with api(tmp_path, rate_limit_creatives=None, quota_creatives=13) as client:
        ids = [_post(client, keys["a"], idempotency_key="once").json()["id"]]
        assert count(1) == 2  # the first post under a quota counts what is there, itself included
        ids += [item["id"] for item in _post(client, keys["a"], 6).json()["items"]]
        assert _post(client, keys["a"], idempotency_key="once").status_code == 202  # a replay: counted once
        assert _post(client, keys["a"], 6).status_code == 403  # 8 + 6 > 13: refused, not counted
        assert _post(client, keys["b"], 2).status_code == 202
        assert (count(1), count(2)) == (_held(db, 1), _held(db, 2)) == (8, 2)
        for creative_id in ids[:3]:
            assert client.delete(f"/v1/creatives/{creative_id}", headers=headers(keys["a"])).status_code == 200
        assert count(1) == _held(db, 1) == 5
        assert client.delete("/v1/accounts/1", headers=headers(keys["admin"])).status_code == 202
    settings = make_settings(tmp_path / "var")
    step = erase_step(db, BlobStore(settings.blob_dir), 1, settings.lease_s, step=3)
    assert step.removed == 3 and count(1) == _held(db, 1) == 2


def _race(db: Database, settings: Settings, account_id: int, quota: int, posters: int) -> list[str]:
    """`posters` threads post one creative each at the same moment; what each was told."""
    blobs = BlobStore(settings.blob_dir)
    start = threading.Barrier(posters)
    outcomes: list[str] = []

    def post(n: int) -> None:
        sub = CreativeSubmission(texts=[f"Snow chains, racer {n}"])
        start.wait()
        try:
            intake.submit(db, blobs, settings, [sub], None, account_id, quota)
            outcomes.append("stored")
        except QuotaExceeded:
            outcomes.append("refused")

    threads = [threading.Thread(target=post, args=(n,)) for n in range(posters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(outcomes)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_posts_racing_for_the_last_places_never_pass_the_quota(backend: str, request: pytest.FixtureRequest,
                                                               tmp_path: Path) -> None:
    """And posts racing the first count under a quota are all judged on it: none is refused for having looked
    while the count was being taken (the bench once saw one 403 with room for ten million)."""
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    settings = make_settings(tmp_path / "var", **({"database_url": url} if url else {}))
    settings.ensure_dirs()
    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    try:
        with db.write() as session:
            account_id = create_account(session, "racing", "advertiser").id
        assert _race(db, settings, account_id, 10, 48) == ["refused"] * 38 + ["stored"] * 10
        assert _held(db, account_id) == 10
        for round_ in range(3):  # the count dropped (as a change of quota drops it), and room for all
            with db.write() as session:
                session.get(Account, account_id).creatives_held = None  # type: ignore[union-attr]
            assert _race(db, settings, account_id, 10**7, 48) == ["stored"] * 48, round_
        assert _held(db, account_id) == 10 + 3 * 48
    finally:
        db.dispose()
