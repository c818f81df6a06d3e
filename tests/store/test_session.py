"""The unit of work: reads never wait for SQLite's write lock, writes queue on it, and database errors come out as
domain errors."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from ctax.errors import ConcurrentChange
from ctax.store.models import ApiKey
from ctax.store.session import Database


def test_a_read_does_not_wait_for_a_writer_holding_the_lock(db: Database) -> None:
    read_done = threading.Event()
    counts: list[int] = []

    def reader() -> None:
        with db.read() as session:
            counts.append(int(session.execute(text("SELECT count(*) FROM labels")).scalar_one()))
        read_done.set()

    with db.write() as session:
        session.execute(text("INSERT INTO labels (path, name, depth, status, source, created_at, updated_at) "
                             "VALUES ('A', 'A', 1, 'active', 'api', '2026-01-01', '2026-01-01')"))
        thread = threading.Thread(target=reader)
        thread.start()
        # The write transaction is still open (and holds the lock): the reader must finish anyway, on a snapshot
        # from before the insert. Were reads to take the lock too, this would wait for busy_timeout (30 s).
        assert read_done.wait(timeout=10), "a read waited for the writer's lock"
    thread.join()
    assert counts == [0]


def test_two_writers_queue_instead_of_failing(db: Database) -> None:
    entered = threading.Event()
    errors: list[BaseException] = []

    def second_writer() -> None:
        try:
            entered.wait(5)
            with db.write() as session:
                session.execute(text("INSERT INTO labels (path, name, depth, status, source, created_at, "
                                     "updated_at) VALUES ('B', 'B', 1, 'active', 'api', '2026-01-01', '2026-01-01')"))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=second_writer)
    thread.start()
    with db.write() as session:
        session.execute(text("INSERT INTO labels (path, name, depth, status, source, created_at, updated_at) "
                             "VALUES ('A', 'A', 1, 'active', 'api', '2026-01-01', '2026-01-01')"))
        entered.set()
        thread.join(timeout=0.5)  # the second writer is waiting on the lock, not failed
        assert thread.is_alive() and not errors
    thread.join(timeout=30)
    assert not errors
    with db.read() as session:
        assert session.execute(text("SELECT count(*) FROM labels")).scalar_one() == 2


def test_a_broken_unique_key_is_a_concurrent_change_and_nothing_is_kept(db: Database) -> None:
    with db.write() as session:
        session.add(ApiKey(name="a", role="poster", key_hash="h" * 64, prefix="ctax_x"))
    with pytest.raises(ConcurrentChange), db.write() as session:
        session.add(ApiKey(name="b", role="poster", key_hash="i" * 64, prefix="ctax_y"))
        session.flush()
        session.add(ApiKey(name="c", role="poster", key_hash="h" * 64, prefix="ctax_z"))
    with db.read() as session:
        assert session.execute(text("SELECT name FROM api_keys")).scalars().all() == ["a"]
