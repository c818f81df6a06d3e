"""A worker's claim that lands between removal's read of a creative and its DELETE refuses the delete (409), as a
claim seen at the read does; within an erasure step only that creative's changes roll back (a savepoint). PostgreSQL
only: there two writers overlap, while SQLite's write lock (BEGIN IMMEDIATE) serialises them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text, update

from ctax.creatives import removal
from ctax.errors import Conflict
from ctax.store import leases
from ctax.store.migrate import upgrade
from ctax.store.models import Creative, ReviewItem
from ctax.store.session import Database

LEASE_S = 60.0


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    upgrade(postgres_url)
    database = Database(postgres_url)
    yield database
    database.dispose()


def _creatives(db: Database, n: int) -> list[str]:
    with db.write() as session:
        rows = [Creative(texts=[f"Winter tyres, offer {i}"]) for i in range(n)]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def _claim_elsewhere(db: Database, creative_id: str) -> None:
    with db.write() as other:  # a worker's own transaction, committed while the remover's is open
        assert leases.claim(other, [creative_id], "worker-1", LEASE_S) == [creative_id]


def test_a_claim_after_the_read_refuses_the_delete_and_keeps_the_row(pg: Database) -> None:
    """The removal reads the creative (queued), then waits for its review item's row, which another transaction
    holds (as a reviewer's decision does); meanwhile a worker claims the creative and commits. Once the item is free
    the removal goes on: its DELETE must see the claim."""
    [creative_id] = _creatives(pg, 1)
    with pg.write() as session:
        session.add(ReviewItem(creative_id=creative_id, flag="new_label"))
    outcome: list[BaseException | None] = []

    def remove() -> None:
        try:
            with pg.write() as session:
                removal.remove(session, creative_id, None, LEASE_S)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    holder = pg.engine.connect()
    try:
        holder.execute(update(ReviewItem).where(ReviewItem.creative_id == creative_id).values(priority=1.0))
        remover = threading.Thread(target=remove)
        remover.start()
        _wait_until_blocked(pg)  # the removal read the creative and waits for the item's row
        _claim_elsewhere(pg, creative_id)
        holder.commit()
    finally:
        holder.close()
    remover.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], Conflict), outcome
    with pg.read() as session:
        row = session.get(Creative, creative_id)
        assert row is not None and (row.status, row.claimed_by) == ("processing", "worker-1")
        assert session.scalar(select(ReviewItem.members).where(ReviewItem.creative_id == creative_id)) == 1


def _wait_until_blocked(db: Database, timeout: float = 10.0) -> None:
    """Until a session of this database waits for a lock another holds (pg_stat_activity)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.engine.connect() as conn:
            if conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND wait_event_type = 'Lock'")).scalar():
                return
        time.sleep(0.05)
    raise AssertionError("the removal never waited for the review item's row")


def test_in_a_savepoint_only_the_claimed_creative_is_kept(pg: Database) -> None:
    claimed, free = _creatives(pg, 2)
    removed, busy = [], []
    with pg.write() as session:
        for creative_id in (claimed, free):
            session.get(Creative, creative_id)
        _claim_elsewhere(pg, claimed)
        for creative_id in (claimed, free):
            try:
                with session.begin_nested():
                    removed.append(removal.remove(session, creative_id, None, LEASE_S, one_of_many=True).creative_id)
            except Conflict:
                busy.append(creative_id)
    assert (removed, busy) == ([free], [claimed])
    with pg.read() as session:
        assert list(session.scalars(select(Creative.id))) == [claimed]
