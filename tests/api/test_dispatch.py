"""The API's dispatcher when the database cannot serve it: it keeps trying, and says why in one line (once per
reason), not with a traceback every second beside the requests' own clear 503s. And its housekeeping: jobs that
ended long ago are deleted."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from ctax.api import dispatch
from ctax.api.dispatch import Dispatcher
from ctax.jobs import FORGET_CREATIVES, INDEX_QUEUE, LABEL_QUEUE
from ctax.store.migrate import upgrade
from ctax.store.models import OutboxJob, WorkerHeartbeat
from ctax.store.repos import workers
from ctax.store.session import Database
from ctax.store.types import utcnow
from tests.conftest import make_settings


def test_an_unmigrated_database_is_one_line_until_it_is_migrated(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path / "var")
    settings.ensure_dirs()
    db = Database(settings.sqlalchemy_url)
    dispatcher = Dispatcher(settings, db)
    try:
        with caplog.at_level(logging.INFO, logger="ctax.api.dispatch"):
            for _ in range(3):
                dispatcher.tick()
            waits = [r for r in caplog.records if r.name == "ctax.api.dispatch"]
            assert len(waits) == 1, [r.getMessage() for r in waits]
            assert waits[0].exc_info is None
            assert "ctax db upgrade" in waits[0].getMessage()

            upgrade(settings.sqlalchemy_url)
            dispatcher.tick()
            dispatcher.tick()
            said = [r.getMessage() for r in caplog.records if r.name == "ctax.api.dispatch"]
            assert said[1:] == ["dispatch resumed"]
    finally:
        db.dispose()


def test_the_dispatcher_prunes_jobs_ended_before_the_kept_days_at_most_once_an_interval(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path / "var", outbox_keep_days=2)
    settings.ensure_dirs()
    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    dispatcher = Dispatcher(settings, db)
    now = utcnow()

    def ended(days_ago: float) -> int:
        at = now - dt.timedelta(days=days_ago)
        with db.write() as session:
            row = OutboxJob(task=FORGET_CREATIVES, args=[["c1"]], queue=INDEX_QUEUE, sent_at=at, starts=1, done_at=at)
            session.add(row)
            session.flush()
            return row.id

    try:
        doomed = [ended(3) for _ in range(dispatch.PRUNE_BATCH + 5)]  # more than one batch
        young = ended(1)
        newest = ended(3)
        with caplog.at_level(logging.INFO, logger="ctax.api.dispatch"):
            dispatcher.tick()
        with db.read() as session:
            left = set(session.scalars(select(OutboxJob.id)))
        assert left == {young, newest}
        assert f"deleted {len(doomed)} background jobs that ended more than 2 days ago" in caplog.text

        later = ended(3)
        dispatcher.tick()  # within the interval: not pruned again yet
        with db.read() as session:
            assert session.get(OutboxJob, newest) is not None and session.get(OutboxJob, later) is not None
        dispatcher._pruned_at = time.monotonic() - dispatch.PRUNE_EVERY_S - 1
        assert dispatcher.prune() == 1  # `newest` is no longer the newest of its task
    finally:
        dispatcher.producer.close()
        db.dispose()


def test_the_prune_forgets_workers_silent_for_a_day_and_no_others(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "var")
    settings.ensure_dirs()
    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    dispatcher = Dispatcher(settings, db)
    ages = {"host:1:ctax.label": dt.timedelta(0), "host:2:ctax.label": dt.timedelta(hours=23),
            "host:3:ctax.label": dispatch.SILENT_WORKERS_KEPT + dt.timedelta(minutes=1)}
    try:
        with db.write() as session:
            for name, age in ages.items():
                workers.beat(session, name, pid=1, queues=[LABEL_QUEUE], device="cpu", ready=True, info={})
                session.flush()
                row = session.get(WorkerHeartbeat, name)
                assert row is not None
                row.last_seen_at = utcnow() - age
        dispatcher.prune()
        with db.read() as session:
            assert sorted(b.name for b in workers.heartbeats(session)) == ["host:1:ctax.label", "host:2:ctax.label"]
    finally:
        dispatcher.producer.close()
        db.dispose()
