"""The database: engines for SQLite (embedded) and PostgreSQL (production), and the unit of work.

`Database.write()` is the one place anything is committed: a request or a task opens a write transaction where it
changes data, and it commits when the block ends (or rolls back on any error). `Database.read()` gives a session
for reading that never commits. Errors of the database itself become domain errors here, so callers above the
store never handle SQLAlchemy's: a unique key or an optimistic version lost to a concurrent writer is
`ConcurrentChange` (409), a database that cannot be reached or stays locked is `StoreUnavailable` (503), and one
without the tables or columns this code reads is `SchemaOutOfDate` (503, saying to run `ctax db upgrade`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from ctax.errors import ConcurrentChange, SchemaOutOfDate, StoreBusy, StoreUnavailable

# Set on a session by whatever adds work for the queue (a creative, an outbox job), so that the work is sent as
# soon as its transaction commits (Database.on_queued_work).
QUEUED_WORK = "ctax_queued_work"
# Execution option on the engine behind write sessions: SQLite begins their transactions with the write lock.
WRITE_OPTION = "ctax_write"

# What a database used outside our sessions raises when it is busy or away (Celery's SQLAlchemy result backend,
# which the API reads search answers from): for code above the store, which imports no SQLAlchemy.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError,)

__all__ = ["DATABASE_UNAVAILABLE", "Database", "Session", "make_engine", "mark_queued_work",  # Session: for hints
           "unavailable_as_errors"]

# How long a statement waits for a lock another transaction holds before it fails (SQLite's busy_timeout,
# PostgreSQL's lock_timeout): a request answers 503, a worker's job fails and is run again (CTAX_DATABASE_LOCK_WAIT_S).
DEFAULT_LOCK_WAIT_S = 30.0
# libpq leaves these to the kernel, which waits for ever for a server that accepts and never answers, two hours
# before it probes a link that went quiet under a query, and about fifteen minutes for data nobody acknowledges:
# a request thread or a worker's job waited that long on a database host that was gone. Values the URL gives win.
POSTGRES_CONNECTION = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                       "keepalives_count": 3, "tcp_user_timeout": 60_000}
# SQLSTATE lock_not_available: lock_timeout ran out.
_LOCK_NOT_GRANTED = "55P03"


def make_engine(url: str, lock_wait_s: float = DEFAULT_LOCK_WAIT_S, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Every request thread may hold a connection at once (the API's thread pool has 40): they queue on SQLite's
        # lock, which is short, rather than on the pool, whose timeout would turn a burst into errors.
        kwargs = {"pool_size": 40, "max_overflow": 20, "pool_timeout": 60, **kwargs}
        engine = create_engine(url, connect_args={"timeout": lock_wait_s, "check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the API read while the worker writes; foreign keys are off by default in SQLite.
            # isolation_level=None hands transaction control to the BEGIN below.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={round(lock_wait_s * 1000)}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            # A write transaction takes the write lock up front (BEGIN IMMEDIATE), so two writers queue on
            # busy_timeout instead of failing with "database is locked" when a read transaction tries to upgrade.
            # A read transaction never takes it: in WAL mode it reads a snapshot beside the one writer.
            write = connection.get_execution_options().get(WRITE_OPTION, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    engine = create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=30, pool_timeout=60,
                           connect_args={k: v for k, v in POSTGRES_CONNECTION.items() if k not in parsed.query},
                           **kwargs)
    if "lock_timeout" not in str(parsed.query.get("options", "")):  # the URL's own wins

        @event.listens_for(engine, "connect")
        def _bounded_lock_waits(dbapi_connection: Any, _record: Any) -> None:
            # A SET on each new connection, not `options=-c lock_timeout=...` in the startup packet: PgBouncer
            # refuses a connection that sends it ("unsupported startup parameter"). Outside any transaction, so
            # that no rollback undoes it.
            autocommit, dbapi_connection.autocommit = dbapi_connection.autocommit, True
            cursor = dbapi_connection.cursor()
            cursor.execute(f"SET lock_timeout = {round(lock_wait_s * 1000)}")
            cursor.close()
            dbapi_connection.autocommit = autocommit

    return engine


class Database:
    """One database: sessions to read with and write transactions, over one engine (one pool) per process."""

    def __init__(self, url: str, *, on_queued_work: Callable[[], None] | None = None,
                 lock_wait_s: float = DEFAULT_LOCK_WAIT_S) -> None:
        self.url = url
        self.lock_wait_s = lock_wait_s
        self.engine = make_engine(url, lock_wait_s)
        self._readers = sessionmaker(self.engine, expire_on_commit=False)
        self._writers = sessionmaker(self.engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False)
        self.on_queued_work = on_queued_work
        # SQLite has one write lock, and a connection waiting for it sleeps in SQLite's busy handler in steps of up
        # to 100 ms, however soon the lock frees: under 50 concurrent writers that made latency balloon and
        # throughput fall. Writers of this process queue on a Python lock instead, handed over the moment the
        # previous transaction ends; only writers of other processes meet the busy handler.
        self._write_turn: threading.RLock | None = threading.RLock() if self.dialect == "sqlite" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session to read with; whatever it loaded stays usable after the block, nothing it did is kept.
        On SQLite it never takes the write lock, so reads go on while a writer holds it."""
        session = self._readers()
        try:
            with _translated(self.lock_wait_s):
                yield session
        finally:
            session.close()  # ends the transaction without expiring what was loaded

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises. Keep it short: on SQLite it
        holds the one write lock from its first statement to its commit."""
        with self._turn():
            session = self._writers()
            try:
                with _translated(self.lock_wait_s):
                    yield session
                    session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                queued = session.info.pop(QUEUED_WORK, False)
                session.close()
        if queued and self.on_queued_work is not None:
            self.on_queued_work()

    @contextmanager
    def _turn(self) -> Iterator[None]:
        if self._write_turn is None:
            yield
            return
        with self._write_turn:
            yield

    def dispose(self) -> None:
        self.engine.dispose()


def mark_queued_work(session: Session) -> None:
    session.info[QUEUED_WORK] = True


@contextmanager
def _translated(lock_wait_s: float) -> Iterator[None]:
    try:
        yield
    except (IntegrityError, StaleDataError) as exc:
        raise ConcurrentChange(
            "a concurrent change to the same data won; reload and try again. Nothing was changed"
        ) from exc
    except (OperationalError, ProgrammingError) as exc:
        if _schema_out_of_date(exc):
            # `ctax api` or a worker started on a database nobody migrated (only `ctax run` migrates at start) said
            # "unavailable or busy", which sent people looking at the server, not at the schema.
            first_line = str(exc.orig).strip().splitlines()[0]  # PostgreSQL goes on with the statement
            raise SchemaOutOfDate(f"the database has no ctax schema, or an older one ({first_line}): run `ctax db "
                                  "upgrade` (`ctax run` migrates as it starts)") from exc
        if isinstance(exc, ProgrammingError):
            raise
        raise _unavailable(exc, lock_wait_s) from exc


@contextmanager
def unavailable_as_errors(lock_wait_s: float = DEFAULT_LOCK_WAIT_S) -> Iterator[None]:
    """A database out of reach, or a lock not granted, as the domain's errors, for work done outside our sessions
    (migrations): one line saying so, not SQLAlchemy's traceback."""
    try:
        yield
    except OperationalError as exc:
        raise _unavailable(exc, lock_wait_s) from exc


def _unavailable(exc: OperationalError, lock_wait_s: float) -> StoreUnavailable:
    if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_GRANTED or str(exc.orig) == "database is locked":
        return StoreBusy(f"the database is busy: a lock another transaction holds was not granted within "
                         f"{lock_wait_s:g} s (CTAX_DATABASE_LOCK_WAIT_S); nothing was changed, try again")
    reason = " ".join(str(exc.orig).split())  # libpq's message runs over several lines
    return StoreUnavailable(f"the database is unavailable or busy: {reason}")


# PostgreSQL's SQLSTATEs for a table or a column that does not exist.
_UNDEFINED = {"42P01", "42703"}


def _schema_out_of_date(exc: OperationalError | ProgrammingError) -> bool:
    if getattr(exc.orig, "sqlstate", None) in _UNDEFINED:
        return True
    message = str(exc.orig)  # SQLite's words: it has no codes for these
    return message.startswith(("no such table", "no such column")) or " has no column named " in message
