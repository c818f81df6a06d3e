"""The unit of work: reads never wait for SQLite's write lock, writes queue on it, no wait is endless (a lock held
elsewhere, a server that never answers), and database errors come out as domain errors."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from ctax.errors import ConcurrentChange, StoreUnavailable
from ctax.store.migrate import upgrade
from ctax.store.models import ApiKey
from ctax.store.session import Database

INSERT_LABEL = ("INSERT INTO labels (path, name, depth, status, source, created_at, updated_at) "
                "VALUES (:path, :path, 1, 'active', 'api', '2026-01-01', '2026-01-01')")


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


@pytest.fixture(params=["sqlite", "postgresql"])
def impatient_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database of each backend whose statements wait at most 1 s for a lock, holding label 'A'."""
    url = f"sqlite:///{tmp_path / 'ctax.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    upgrade(url)
    database = Database(url, lock_wait_s=1)
    with database.write() as session:
        session.execute(text(INSERT_LABEL), {"path": "A"})
    yield database
    database.dispose()


def _hold_the_lock(url: str) -> sqlite3.Connection | psycopg.Connection:
    """Another process's transaction holding the lock a write to label 'A' needs (SQLite: the one write lock;
    PostgreSQL: the row's), opened outside our engine so that our own queue of writers does not come into it."""
    if url.startswith("sqlite"):
        holder: sqlite3.Connection | psycopg.Connection = sqlite3.connect(url.removeprefix("sqlite:///"),
                                                                          isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        return holder
    holder = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
    holder.execute("SELECT * FROM labels WHERE path = 'A' FOR UPDATE")
    return holder


def test_a_write_waits_for_a_lock_held_elsewhere_at_most_the_lock_wait_and_changes_nothing(
        impatient_db: Database) -> None:
    holder = _hold_the_lock(impatient_db.url)
    began = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable, match=r"lock .* not granted within 1 s \(CTAX_DATABASE_LOCK_WAIT_S\)"), \
                impatient_db.write() as session:
            session.execute(text(INSERT_LABEL), {"path": "B"})  # written before the wait: must go with it
            session.execute(text("UPDATE labels SET name = 'changed' WHERE path = 'A'"))
    finally:
        waited = time.monotonic() - began
        holder.rollback()
        holder.close()
    assert 0.9 <= waited < 10  # without a bound PostgreSQL waits for ever, SQLite for 30 s
    with impatient_db.read() as session:
        assert session.execute(text("SELECT path, name FROM labels")).all() == [("A", "A")]
    with impatient_db.write() as session:  # the lock gone, the same write goes through
        session.execute(text("UPDATE labels SET name = 'changed' WHERE path = 'A'"))


def test_postgres_connections_bound_every_wait_and_keep_what_the_url_sets(postgres_url: str) -> None:
    """lock_timeout stays set on a pooled connection after a transaction rolled back (a read session ends so)."""
    def parameters(url: str) -> tuple[str, dict[str, str]]:
        database = Database(url, lock_wait_s=2.5)
        try:
            with database.read() as session:  # the pool's connection made, used, and rolled back
                session.execute(text("SELECT 1"))
            with database.read() as session:
                lock_timeout = session.execute(text("SHOW lock_timeout")).scalar_one()
                raw = session.connection().connection.dbapi_connection
                return lock_timeout, dict(raw.info.get_parameters())  # type: ignore[union-attr]
        finally:
            database.dispose()

    lock_timeout, given = parameters(postgres_url)
    assert lock_timeout == "2500ms"
    assert {name: given.get(name) for name in ("connect_timeout", "keepalives", "keepalives_idle",
                                               "keepalives_interval", "keepalives_count", "tcp_user_timeout")} == {
        "connect_timeout": "10", "keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10",
        "keepalives_count": "3", "tcp_user_timeout": "60000"}
    assert "options" not in given  # PgBouncer refuses a connection whose startup packet sets options
    lock_timeout, given = parameters(f"{postgres_url}?connect_timeout=4&options=-c%20lock_timeout%3D7s")
    assert (lock_timeout, given["connect_timeout"]) == ("7s", "4")


def test_a_database_server_that_never_answers_is_unavailable_after_the_connect_timeout() -> None:
    """A host that accepts the connection and says nothing (a server hung, a proxy whose backend is gone): libpq
    alone waits for ever."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    database = Database(f"postgresql+psycopg://postgres@127.0.0.1:{port}/ctax?connect_timeout=1")
    began = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable, match="unavailable"), database.read() as session:
            session.execute(text("SELECT 1"))
    finally:
        database.dispose()
        silent.close()
    assert time.monotonic() - began < 8
