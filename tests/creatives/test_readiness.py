"""Readiness counts only live workers: a heartbeat older than three beats is a dead worker's, whatever its row says,
and a worker the supervisor saw die has no row at all."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient

from ctax.config import Settings
from ctax.creatives.readiness import readiness
from ctax.enums import VersionKind, VersionStatus
from ctax.store.models import ModelVersion, WorkerHeartbeat
from ctax.store.repos import workers
from ctax.store.session import Database
from ctax.store.types import utcnow

NAME = workers.name_prefix("host", 1234) + "ctax.label+ctax.index"


def last_seen(db: Database, seconds_ago: float) -> None:
    with db.write() as session:
        row = session.get(WorkerHeartbeat, NAME) or workers.beat(
            session, NAME, pid=1234, queues=["ctax.label", "ctax.index"], device="cpu", ready=True, info={})
        row.last_seen_at = utcnow() - dt.timedelta(seconds=seconds_ago)


def test_a_worker_is_counted_until_it_missed_three_beats(settings: Settings, db: Database, client: TestClient) -> None:
    with db.write() as session:
        session.add(ModelVersion(id="v1-pretrained", seq=1, kind=VersionKind.PRETRAINED, status=VersionStatus.ACTIVE,
                                 artefact_dir="unused"))
    last_seen(db, 2 * settings.worker_heartbeat_s)  # late by a beat or two: still alive
    assert readiness(db, settings)["status"] == "ready"
    assert client.get("/readyz").status_code == 200

    last_seen(db, 3 * settings.worker_heartbeat_s + 1)  # three missed beats (the defaults: 5 s, stale after 15 s)
    answer = readiness(db, settings)
    assert answer["status"] == "unavailable" and answer["problems"][0].startswith("no live worker")
    assert [(w["name"], w["alive"]) for w in answer["workers"]] == [(NAME, False)]
    assert client.get("/readyz").status_code == 503

    last_seen(db, 0)
    assert client.get("/readyz").status_code == 200
    with db.write() as session:  # what `ctax run` does the moment it sees the process die
        assert workers.remove_process(session, workers.name_prefix("host", 1234)) == 1
    assert readiness(db, settings)["workers"] == []
    assert client.get("/readyz").status_code == 503


def test_removing_a_dead_process_leaves_other_processes_rows(db: Database) -> None:
    """A prefix is a whole pid: removing host:12 keeps host:123's row."""
    with db.write() as session:
        for pid in (12, 123):
            workers.beat(session, workers.name_prefix("host", pid) + "q", pid=pid, queues=["q"], device=None,
                         ready=True, info={})
        assert workers.remove_process(session, workers.name_prefix("host", 12)) == 1
    with db.read() as session:
        assert [row.name for row in workers.heartbeats(session)] == ["host:123:q"]
