"""`ctax run`'s watch on its workers' heartbeats: a worker whose process runs but whose heartbeat went silent
(stopped, or stuck where not even its heartbeat thread runs) is killed and restarted, what it held handed back; a
worker that beats, one that has not started beating, the API, and every worker while the database is away are left
alone. Real processes (one stopped with SIGSTOP), real heartbeat rows."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import select

from ctax.cli.service import HUNG_AFTER_STALE, LABEL_WORKER, SilentWorkers, hand_back
from ctax.cli.supervisor import Child, Policy, Supervisor
from ctax.config import Settings
from ctax.store.models import WorkerHeartbeat
from ctax.store.repos import workers
from ctax.store.session import Database
from ctax.store.types import utcnow
from tests.conftest import make_settings

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def quick(tmp_path: Path) -> Settings:
    """Staleness in a second, so that a silence is judged in HUNG_AFTER_STALE seconds (the watch reads only that
    from its settings; the database is the `db` fixture's)."""
    return make_settings(tmp_path / "quick", worker_heartbeat_s=0.5, worker_stale_s=1.0)


def beat(db: Database, pid: int, seconds_ago: float) -> str:
    name = workers.name_prefix(socket.gethostname(), pid) + "ctax.label+ctax.index"
    with db.write() as session:
        workers.beat(session, name, pid=pid, queues=["ctax.label"], device="cpu", ready=True, info={})
        session.flush()
        row = session.get(WorkerHeartbeat, name)
        assert row is not None
        row.last_seen_at = utcnow() - dt.timedelta(seconds=seconds_ago)
    return name


def test_only_a_running_worker_silent_for_longer_than_the_bound_is_hung(quick: Settings, db: Database) -> None:
    watch = SilentWorkers(db, quick)
    silent_s = HUNG_AFTER_STALE * quick.worker_stale_s
    silent = Child(LABEL_WORKER, SLEEPER, pid=1001)
    beating = Child(LABEL_WORKER, SLEEPER, pid=1002)
    starting = Child(LABEL_WORKER, SLEEPER, pid=1003)  # no row yet: loading, it beats first thing
    api = Child("API", SLEEPER, pid=1004)
    beat(db, 1001, seconds_ago=silent_s + 5)
    beat(db, 1002, seconds_ago=0)
    beat(db, 1004, seconds_ago=silent_s + 5)
    # The database has just begun answering: a live worker may not have had the time to beat since it came back.
    assert watch(silent) is None
    time.sleep(silent_s + 0.1)
    beat(db, 1002, seconds_ago=0)
    hung = watch(silent)
    assert hung is not None and "has not beaten for" in hung, hung
    assert [watch(c) for c in (beating, starting, api)] == [None, None, None]


def test_while_the_database_is_away_no_worker_is_hung(quick: Settings, db: Database) -> None:
    silent_s = HUNG_AFTER_STALE * quick.worker_stale_s
    beat(db, 1001, seconds_ago=silent_s + 5)
    away = Database("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    try:
        watch = SilentWorkers(away, quick)
        assert watch(Child(LABEL_WORKER, SLEEPER, pid=1001)) is None
        watch.db = db  # it answers again: the silence is judged once it has answered for the whole bound
        assert watch(Child(LABEL_WORKER, SLEEPER, pid=1001)) is None
        time.sleep(silent_s + 0.1)
        assert watch(Child(LABEL_WORKER, SLEEPER, pid=1001)) is not None
    finally:
        away.dispose()


def test_a_stopped_worker_is_killed_handed_back_and_restarted(quick: Settings, db: Database) -> None:
    child = Child(LABEL_WORKER, SLEEPER)
    supervisor = Supervisor([child], on_exit=partial(hand_back, db), watch=SilentWorkers(db, quick),
                            policy=Policy(backoff_start_s=0.1))
    supervisor.start()
    try:
        first = child.pid
        assert first is not None
        name = beat(db, first, seconds_ago=0)
        os.kill(first, signal.SIGSTOP)  # as a debugger or a stuck GIL would: no beat from now on
        deadline = time.monotonic() + 30
        while child.pid == first or child.process is None:
            assert time.monotonic() < deadline, "the stopped worker was not restarted"
            supervisor.watch_once()
            supervisor.tick(time.monotonic())
            time.sleep(0.05)
        assert child.exits == [-signal.SIGKILL] and child.restarts == 1
        with db.read() as session:  # handed back: its heartbeat is gone
            assert session.scalar(select(WorkerHeartbeat.name).where(WorkerHeartbeat.name == name)) is None
    finally:
        supervisor.stop()
