"""A worker reports itself alive, keeps doing so when one beat fails, and leaves no heartbeat when it stops."""

from __future__ import annotations

import datetime as dt
import time

from ctax.jobs import TRAIN_QUEUE
from ctax.store.models import WorkerHeartbeat
from ctax.store.types import utcnow
from ctax.worker.runtime import Runtime


def test_heartbeats_go_on_after_a_failed_beat_and_stop_removes_the_worker(settings, db) -> None:
    rt = Runtime(settings.model_copy(update={"worker_heartbeat_s": 0.05}), [TRAIN_QUEUE], owns_index=False)
    beat, failed_at = rt._beat, []

    def flaky_beat() -> None:
        if not failed_at:
            failed_at.append(utcnow())
            raise RuntimeError("the database was away")
        beat()

    rt.start()  # beats once itself, then the loop beats
    rt._beat = flaky_beat  # type: ignore[method-assign]
    deadline = time.monotonic() + 10
    seen: dt.datetime | None = None
    while time.monotonic() < deadline:
        with rt.db.read() as session:
            row = session.get(WorkerHeartbeat, rt.name)
            assert row is not None and row.ready
            seen = row.last_seen_at
        if failed_at and seen > failed_at[0]:
            break
        time.sleep(0.05)
    assert failed_at and seen is not None and seen > failed_at[0], "the heartbeat loop stopped after a failed beat"
    rt.stop()
    with rt.db.read() as session:
        assert session.get(WorkerHeartbeat, rt.name) is None
