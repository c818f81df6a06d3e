"""When `ctax run` sees a worker die, what it held goes back at once: its claimed creatives are queued again and
resent, creatives dispatched but never claimed are resent, and its heartbeat row is gone (so /readyz stops counting
it). A real process is killed under a real supervisor; the dispatcher then sends the work through the real broker."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import sys
import time
from functools import partial

from sqlalchemy import select

from ctax.api.dispatch import Dispatcher
from ctax.cli.service import LABEL_WORKER, hand_back
from ctax.cli.supervisor import Child, Policy, Supervisor
from ctax.config import Settings
from ctax.enums import CreativeStatus
from ctax.jobs import FORGET_CREATIVES, INDEX_QUEUE, TRAIN
from ctax.store.models import Creative, OutboxJob, WorkerHeartbeat
from ctax.store.repos import workers
from ctax.store.session import Database
from ctax.store.types import utcnow

OTHER = "otherhost:4242:ctax.label+ctax.index"


def seed(db: Database, dead: str) -> dict[str, str]:
    """One creative in each state that matters, by role; and the two workers' heartbeats."""
    now = utcnow()
    long_ago = now - dt.timedelta(seconds=5)
    states = {
        "held by the dead": dict(status=CreativeStatus.PROCESSING, claimed_by=dead, claimed_at=now,
                                 dispatched_at=long_ago),
        "held by a live one": dict(status=CreativeStatus.PROCESSING, claimed_by=OTHER, claimed_at=now,
                                   dispatched_at=long_ago),
        "dispatched, unclaimed": dict(status=CreativeStatus.QUEUED, dispatched_at=long_ago),
        "labelled": dict(status=CreativeStatus.LABELLED, dispatched_at=long_ago, labelled_at=now),
    }
    ids = {}
    jobs = {
        "job started by the dead": dict(task=FORGET_CREATIVES, running_on=dead),
        "job started by a live one": dict(task=FORGET_CREATIVES, running_on=OTHER),
        "training started by the dead": dict(task=TRAIN, running_on=dead),
    }
    with db.write() as session:
        for role, values in jobs.items():
            job = OutboxJob(args=[["c1"]], queue=INDEX_QUEUE, sent_at=long_ago, started_at=long_ago, starts=1,
                            **values)
            session.add(job)
            session.flush()
            ids[role] = str(job.id)
        for role, values in states.items():
            creative = Creative(texts=[f"an ad {role}"], **values)
            session.add(creative)
            session.flush()
            ids[role] = creative.id
        for name in (dead, OTHER):
            workers.beat(session, name, pid=1, queues=["ctax.label"], device="cpu", ready=True, info={})
    return ids


def rows(db: Database) -> dict[str, Creative]:
    with db.read() as session:
        found = {c.id: c for c in session.scalars(select(Creative))}
        session.expunge_all()
        return found


def test_a_dead_labelling_workers_work_goes_back_at_once_and_is_resent(settings: Settings, db: Database) -> None:
    child = Child(LABEL_WORKER, [sys.executable, "-c", "import time; time.sleep(60)"])
    supervisor = Supervisor([child], on_exit=partial(hand_back, db), policy=Policy(backoff_start_s=30))
    supervisor.start()
    try:
        assert child.pid is not None
        dead = workers.name_prefix(socket.gethostname(), child.pid) + "ctax.label+ctax.index"
        ids = seed(db, dead)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not child.exits and time.monotonic() < deadline:
            supervisor.tick(time.monotonic())
            time.sleep(0.01)
    finally:
        supervisor.stop()
    after = rows(db)
    released = after[ids["held by the dead"]]
    assert (released.status, released.claimed_by, released.claimed_at, released.dispatched_at) == (
        CreativeStatus.QUEUED, None, None, None)
    assert after[ids["dispatched, unclaimed"]].dispatched_at is None
    kept = after[ids["held by a live one"]]
    assert (kept.status, kept.claimed_by) == (CreativeStatus.PROCESSING, OTHER)
    assert after[ids["labelled"]].status == CreativeStatus.LABELLED
    with db.read() as session:
        assert [w.name for w in session.scalars(select(WorkerHeartbeat))] == [OTHER]

    # The API's dispatcher sends them now, not after requeue_after_s or the lease: through the SQLite broker. And
    # the index job the dead worker was running (a deletion's FORGET_CREATIVES, say), which its message took with it.
    sent = Dispatcher(settings, db).flush()
    assert sent == 3
    resent = rows(db)
    assert all(resent[ids[role]].dispatched_at is not None
               for role in ("held by the dead", "dispatched, unclaimed"))
    with db.read() as session:
        jobs = {role: session.get(OutboxJob, int(ids[role])) for role in ids if role.startswith(("job", "training"))}
    again = jobs["job started by the dead"]
    assert again is not None and again.running_on is None and again.sent_at is not None
    assert again.sent_at > utcnow() - dt.timedelta(seconds=5)
    assert [(j.running_on if j else None) for j in (jobs["job started by a live one"],
                                                    jobs["training started by the dead"])] == [OTHER, dead]


def test_a_worker_that_stopped_cleanly_had_its_messages_given_back_by_celery(db: Database) -> None:
    """A clean exit (code 0) restored its unacknowledged messages itself: nothing is sent twice for it."""
    dead = workers.name_prefix(socket.gethostname(), 999_999) + "ctax.label+ctax.index"
    ids = seed(db, dead)
    hand_back(db, Child(LABEL_WORKER, [], pid=999_999), 0)
    after = rows(db)
    assert after[ids["dispatched, unclaimed"]].dispatched_at is not None
    assert after[ids["held by the dead"]].status == CreativeStatus.QUEUED  # a claim left behind is still freed
