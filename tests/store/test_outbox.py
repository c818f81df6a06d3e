"""Outbox jobs a killed worker had started: a job that may run twice is sent again once its worker is gone (its
heartbeat deleted or stale), and only then; a job that ended is not run again; one that kept its workers from
finishing is given up, saying why. On both databases (the resend is one UPDATE with a correlated NOT EXISTS)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ctax.enums import JobState
from ctax.jobs import FORGET_CREATIVES, INDEX_QUEUE, MAX_JOB_STARTS, SYNC_INDEX, TRAIN
from ctax.store import outbox
from ctax.store.migrate import upgrade
from ctax.store.models import OutboxJob, WorkerHeartbeat
from ctax.store.repos import workers
from ctax.store.session import Database
from ctax.store.types import utcnow
from tests.conftest import make_settings
from tests.support import stored

LIVE, STALE, GONE = "host:1:ctax.label+ctax.index", "host:2:ctax.label+ctax.index", "host:3:ctax.label+ctax.index"
STALE_S = 15.0


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings = make_settings(tmp_path / "var", **({"database_url": url} if url else {}))
    settings.ensure_dirs()
    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    yield db
    db.dispose()


class Broker:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[Any], str, str]] = []

    def send(self, task: str, args: list[Any], queue: str, task_id: str) -> None:
        self.messages.append((task, args, queue, task_id))


def job(db: Database, task: str, **values: Any) -> int:
    with db.write() as session:
        row = OutboxJob(task=task, args=[["c1"]], queue=INDEX_QUEUE, **values)
        session.add(row)
        session.flush()
        return row.id


def load(db: Database, job_id: int) -> OutboxJob:
    return stored(db, OutboxJob, job_id)


def test_a_job_whose_worker_is_gone_is_sent_again_and_only_that(database: Database) -> None:
    db = database
    now = utcnow()
    with db.write() as session:
        workers.beat(session, LIVE, pid=1, queues=[INDEX_QUEUE], device="cpu", ready=True, info={})
        workers.beat(session, STALE, pid=2, queues=[INDEX_QUEUE], device="cpu", ready=True, info={})
        session.flush()
        stale = session.get(WorkerHeartbeat, STALE)
        assert stale is not None
        stale.last_seen_at = now - dt.timedelta(seconds=STALE_S + 5)
    sent = now - dt.timedelta(seconds=30)
    started = {"sent_at": sent, "started_at": sent, "starts": 1}
    ids = {
        "on a live worker": job(db, FORGET_CREATIVES, running_on=LIVE, **started),
        "on a stale worker": job(db, FORGET_CREATIVES, running_on=STALE, **started),
        "on a gone worker": job(db, SYNC_INDEX, running_on=GONE, **started),
        "ended": job(db, FORGET_CREATIVES, sent_at=sent, started_at=sent, starts=1, done_at=now),
        "sent, not started": job(db, FORGET_CREATIVES, sent_at=sent),
        "training, on a gone worker": job(db, TRAIN, running_on=GONE, **started),
    }

    broker = Broker()
    flushed = outbox.flush(db, broker.send, stale_s=STALE_S)

    assert sorted(flushed.resent) == [FORGET_CREATIVES, SYNC_INDEX]
    assert flushed.sent == 2
    resent = {ids["on a stale worker"], ids["on a gone worker"]}
    assert sorted(m[3] for m in broker.messages) == sorted(outbox.task_id(i) for i in resent)
    for role, job_id in ids.items():
        row = load(db, job_id)
        if job_id in resent:
            assert row.running_on is None and row.sent_at is not None and row.sent_at > sent, role
        else:
            assert row.sent_at == sent, role  # untouched: still running, ended, still queued, or not safe twice
    assert load(db, ids["training, on a gone worker"]).running_on == GONE

    again = outbox.flush(db, broker.send, stale_s=STALE_S)
    assert (again.sent, again.resent) == (0, [])  # sent once: not again until a worker starts it and dies


def test_a_job_runs_until_it_ends_and_a_repeated_message_does_nothing(database: Database) -> None:
    db = database
    job_id = job(db, FORGET_CREATIVES, sent_at=utcnow())
    with db.write() as session:
        assert outbox.start(session, job_id, LIVE) == "run"
    row = load(db, job_id)
    assert (row.running_on, row.starts) == (LIVE, 1) and row.started_at is not None
    with db.write() as session:
        outbox.finish(session, job_id)
    row = load(db, job_id)
    assert row.running_on is None and row.done_at is not None and row.last_error is None
    with db.write() as session:
        assert outbox.start(session, job_id, LIVE) == "ended"
        assert outbox.start(session, job_id + 1000, LIVE) == "untracked"
    assert load(db, job_id).starts == 1



def test_a_failed_job_runs_again_later_until_its_last_start_then_it_has_failed(database: Database) -> None:
    db = database
    failed = job(db, SYNC_INDEX, sent_at=utcnow())
    broker = Broker()
    for n, delay in enumerate(outbox.RETRY_AFTER_S, start=1):
        with db.write() as session:
            assert outbox.start(session, failed, LIVE) == "run"
            before = utcnow()
            assert outbox.finish(session, failed, f"RuntimeError('qdrant went away {n}')") == delay
        row = load(db, failed)
        assert row.sent_at is None and row.running_on is None and row.done_at is None and row.starts == n
        assert row.not_before is not None and row.not_before >= before + dt.timedelta(seconds=delay)
        assert row.last_error == f"RuntimeError('qdrant went away {n}')"
        assert outbox.flush(db, broker.send).sent == 0  # not before its time
        with db.write() as session:  # its time has come
            session.get(OutboxJob, failed).not_before = utcnow() - dt.timedelta(seconds=1)
        assert outbox.flush(db, broker.send).sent == 1
    with db.write() as session:
        assert outbox.start(session, failed, LIVE) == "run"
        assert outbox.finish(session, failed, "RuntimeError('qdrant is gone')") is None  # the last start
    row = load(db, failed)
    assert row.done_at is not None and row.starts == MAX_JOB_STARTS == len(outbox.RETRY_AFTER_S) + 1
    assert row.last_error == "RuntimeError('qdrant is gone')"
    with db.read() as session:
        assert [s for j, s in outbox.recent(session) if j.id == failed] == [JobState.FAILED]


def test_a_job_its_workers_never_finish_is_given_up_after_max_starts(database: Database) -> None:
    db = database
    job_id = job(db, FORGET_CREATIVES, sent_at=utcnow())
    for n in range(MAX_JOB_STARTS):
        with db.write() as session:
            assert outbox.start(session, job_id, f"host:{n}:ctax.index") == "run"
        # its worker dies: nobody finishes it, and the dispatcher sends it again
        assert outbox.flush(db, Broker().send, stale_s=STALE_S).resent == [FORGET_CREATIVES]
    with db.write() as session:
        assert outbox.start(session, job_id, "host:9:ctax.index") == "given up"
    row = load(db, job_id)
    assert row.done_at is not None and row.running_on is None and row.starts == MAX_JOB_STARTS
    assert row.last_error is not None and f"started {MAX_JOB_STARTS} times and never finished" in row.last_error
    assert outbox.flush(db, Broker().send, stale_s=STALE_S).resent == []


def test_task_ids_name_their_job() -> None:
    assert outbox.job_id_of(outbox.task_id(42)) == 42
    assert outbox.job_id_of("3f2c9a1e-uuid-of-a-search") is None
    assert outbox.job_id_of(None) is None
    assert outbox.job_id_of("ctax-outbox-x") is None


def test_a_delayed_job_is_sent_once_its_time_has_come(database: Database) -> None:
    db = database
    with db.write() as session:
        later = outbox.enqueue(session, FORGET_CREATIVES, ["c1"], after_s=3600)
        now = outbox.enqueue(session, FORGET_CREATIVES, ["c2"])
        due = outbox.enqueue(session, FORGET_CREATIVES, ["c3"], after_s=3600)
        session.flush()
        due.not_before = utcnow() - dt.timedelta(seconds=1)  # its hour has passed
        ids = later.id, now.id, due.id
    broker = Broker()
    assert outbox.flush(db, broker.send).sent == 2
    assert [m[3] for m in broker.messages] == [outbox.task_id(ids[1]), outbox.task_id(ids[2])]
    assert load(db, ids[0]).sent_at is None



def test_jobs_that_ended_long_ago_are_pruned_and_nothing_else(database: Database) -> None:
    db = database
    now = utcnow()
    old, recent = now - dt.timedelta(days=8), now - dt.timedelta(days=1)
    cutoff = now - dt.timedelta(days=7)
    pruned = {
        "ended long ago": job(db, FORGET_CREATIVES, sent_at=old, starts=1, done_at=old),
        "given up long ago": job(db, SYNC_INDEX, sent_at=old, starts=MAX_JOB_STARTS, done_at=old),
        "untracked (training), long ago": job(db, TRAIN, sent_at=old),
    }
    kept = {
        "ended recently": job(db, FORGET_CREATIVES, sent_at=recent, starts=1, done_at=recent),
        "sent long ago, never ended": job(db, FORGET_CREATIVES, sent_at=old),
        "running since long ago": job(db, SYNC_INDEX, sent_at=old, starts=1, running_on=LIVE),
        "never sent": job(db, SYNC_INDEX),
        "the newest training run, long ago": job(db, TRAIN, sent_at=old),
    }

    with db.read() as session:
        keep = outbox.newest_of_each_task(session)
    assert kept["the newest training run, long ago"] in keep
    with db.write() as session:
        assert outbox.prune(session, cutoff, keep, limit=2) == 2  # bounded per call
    with db.write() as session:
        assert outbox.prune(session, cutoff, keep, limit=2) == 1
    with db.write() as session:
        assert outbox.prune(session, cutoff, keep) == 0
    with db.read() as session:
        left = set(session.scalars(select(OutboxJob.id)))
    wrong = {role for role, i in {**kept, **pruned}.items() if (i in left) != (role in kept)}
    assert left == set(kept.values()), wrong


def test_the_newest_job_of_a_task_is_kept_however_old(database: Database) -> None:
    db = database
    long_ago = utcnow() - dt.timedelta(days=30)
    only = job(db, TRAIN, sent_at=long_ago)
    with db.write() as session:
        assert outbox.prune(session, utcnow(), outbox.newest_of_each_task(session)) == 0
        assert session.get(OutboxJob, only) is not None


def test_jobs_are_counted_by_task_and_state(database: Database) -> None:
    db = database
    now = utcnow()
    job(db, SYNC_INDEX)
    job(db, SYNC_INDEX, sent_at=now, not_before=now)
    job(db, FORGET_CREATIVES, sent_at=now)
    job(db, FORGET_CREATIVES, sent_at=now, running_on=LIVE, starts=1)
    job(db, FORGET_CREATIVES, sent_at=now, done_at=now, starts=1)
    job(db, FORGET_CREATIVES, sent_at=now, done_at=now, starts=1, last_error="RuntimeError('qdrant went away')")
    job(db, TRAIN)
    with db.read() as session:
        counted = sorted(outbox.count_by_state(session))
    assert counted == [(FORGET_CREATIVES, "ended", 1), (FORGET_CREATIVES, "failed", 1),
                       (FORGET_CREATIVES, "running", 1), (FORGET_CREATIVES, "sent", 1),
                       (SYNC_INDEX, "sent", 1), (SYNC_INDEX, "waiting", 1), (TRAIN, "waiting", 1)]


def test_recent_jobs_are_listed_newest_first_by_state_and_task(database: Database) -> None:
    db = database
    now = utcnow()
    ended = job(db, SYNC_INDEX, sent_at=now, done_at=now)
    failed = job(db, FORGET_CREATIVES, sent_at=now, done_at=now, last_error="boom")
    waiting = job(db, SYNC_INDEX)
    with db.read() as session:
        assert [(j.id, s) for j, s in outbox.recent(session)] == [
            (waiting, JobState.WAITING), (failed, JobState.FAILED), (ended, JobState.ENDED)]
        assert [j.id for j, _ in outbox.recent(session, state=JobState.FAILED)] == [failed]
        assert [j.id for j, _ in outbox.recent(session, task=SYNC_INDEX, limit=1)] == [waiting]
        assert outbox.recent(session, state=JobState.RUNNING) == []
