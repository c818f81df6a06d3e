"""Accounts in the store, on SQLite and PostgreSQL: a creative takes its key's account in the INSERT itself, and an
Idempotency-Key is the account's even when two keys of one account race with it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from ctax.creatives import intake
from ctax.creatives.validation import CreativeSubmission
from ctax.enums import CreativeStatus
from ctax.store.blobs import BlobStore
from ctax.store.keys import create_account, create_key
from ctax.store.models import Account, Creative
from ctax.store.repos import accounts
from ctax.store.repos import creatives as creative_rows
from ctax.store.session import Database
from tests.conftest import make_settings

RACERS = 8


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path: Path):
    from ctax.store.migrate import upgrade

    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings = make_settings(tmp_path / "var", **({"database_url": url} if url else {}))
    settings.ensure_dirs()
    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    yield db, settings
    db.dispose()


def _keys(db: Database) -> dict[str, tuple[int, int | None]]:
    """Keys by name, as (key id, its account id): a1 and a2 of account a, b1 of account b, an admin of none."""
    with db.write() as session:
        a, b = create_account(session, "a", "advertiser"), create_account(session, "b", "partner")
        made = {name: create_key(session, name, "poster", account_id=account.id)[0]
                for name, account in [("a1", a), ("a2", a), ("b1", b)]}
        made["admin"] = create_key(session, "admin", "admin")[0]
        return {name: (key.id, key.account_id) for name, key in made.items()}


def test_creatives_take_their_keys_account_and_idempotency_keys_are_the_accounts(database) -> None:
    db, settings = database
    ids = _keys(db)
    blobs = BlobStore(settings.blob_dir)

    def post(key: str, text: str = "Cheap flights to Rome") -> tuple[Creative, bool]:
        [(creative, created)] = intake.submit(db, blobs, settings, [
            CreativeSubmission(texts=[text], idempotency_key="order-1")], *ids[key])
        return creative, created

    first, created = post("a1")
    with db.read() as session:
        assert created and session.get(Creative, first.id).account_id == ids["a1"][1]
    again, created = post("a2")  # another key of the same account: a replay
    assert again.id == first.id and not created
    other, created = post("b1")  # another account: its own creative
    with db.read() as session:
        assert created and other.id != first.id and session.get(Creative, other.id).account_id == ids["b1"][1]
    staff, created = post("admin")  # no account: the key's own
    assert created and staff.account_id is None
    with db.read() as session:
        assert creative_rows.by_idempotency_key(session, ids["admin"][0], "order-1").id == staff.id
        assert creative_rows.by_idempotency_key(session, ids["a2"][0], "order-1").id == first.id
        assert creative_rows.by_idempotency_key(session, None, "order-1") is None  # `ctax eval`'s rows have no key


def test_two_keys_of_one_account_racing_with_one_idempotency_key_make_one_creative(database) -> None:
    db, settings = database
    ids = _keys(db)
    blobs = BlobStore(settings.blob_dir)
    barrier = threading.Barrier(RACERS)
    answers: list[str] = []
    errors: list[BaseException] = []

    def post(key: tuple[int, int | None]) -> None:
        barrier.wait()
        try:
            [(creative, _)] = intake.submit(db, blobs, settings, [
                CreativeSubmission(texts=["Fresh bread daily"], idempotency_key="race")], *key)
            answers.append(creative.id)
        except BaseException as exc:  # every outcome is asserted below
            errors.append(exc)

    threads = [threading.Thread(target=post, args=(ids["a1" if n % 2 else "a2"],)) for n in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(answers) == RACERS
    with db.read() as session:
        stored = session.scalars(select(Creative.id)).all()
    assert stored == [answers[0]] and set(answers) == {answers[0]}


def test_a_recount_waits_for_a_post_that_took_a_place_and_counts_its_creative(database) -> None:
    """A post raised the account's count and inserted its creative, uncommitted, when a recount starts: the
    recount waits for the row and counts the creative (read before the post's commit, the count would be one short
    and the quota would let one creative too many in)."""
    db, _ = database
    with db.write() as session:
        account_id = create_account(session, "counted", "advertiser").id
        session.add_all([Creative(account_id=account_id, texts=[f"ad {i}"], status=CreativeStatus.FAILED)
                         for i in range(3)])
        session.flush()
        session.get(Account, account_id).creatives_held = 1  # type: ignore[union-attr]  (drifted: holds 3)
    took, recounted = threading.Event(), []

    def recount() -> None:
        took.wait(10)
        with db.write() as session:
            recounted.append(accounts.recount(session, account_id))

    thread = threading.Thread(target=recount)
    thread.start()
    with db.write() as session:
        assert accounts.take_places(session, account_id, 1, quota=100)
        session.add(Creative(account_id=account_id, texts=["the post's ad"], status=CreativeStatus.FAILED))
        session.flush()
        took.set()
        time.sleep(0.5)  # the recount is waiting on the account's row now
        assert not recounted
    thread.join(30)
    assert recounted == [(2, 4)]  # the kept count after the post (1 + 1), and what it holds
    with db.read() as session:
        assert session.get(Account, account_id).creatives_held == 4  # type: ignore[union-attr]
