"""`ctax jobs`: an operator sees the background jobs newest first, by state and task, and why one failed, without
SQL; a state that does not exist is refused naming the ones that do."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from ctax.jobs import BACKFILL_CREATIVES, ERASE_ACCOUNT, FORGET_CREATIVES, INDEX_QUEUE, SYNC_INDEX
from ctax.store.models import OutboxJob
from ctax.store.session import Database
from ctax.store.types import utcnow
from tests.conftest import make_settings
from tests.support import run_ctax


def test_jobs_are_listed_newest_first_by_state_and_task_with_their_errors(tmp_path: Path) -> None:
    assert run_ctax(tmp_path, "db", "upgrade").returncode == 0
    db = Database(make_settings(tmp_path / "var").sqlalchemy_url)
    at = utcnow().replace(microsecond=0) - dt.timedelta(minutes=5)
    rows = [dict(task=SYNC_INDEX, sent_at=at, starts=1, done_at=at),
            dict(task=FORGET_CREATIVES, sent_at=at, starts=1, running_on="host:1:ctax.index", started_at=at),
            dict(task=ERASE_ACCOUNT, sent_at=at, starts=3, done_at=at,
                 last_error="started 3 times and never finished\n(the worker stopped each time)"),
            dict(task=SYNC_INDEX),
            # Sent and never heard of again by the outbox: a task that does not record its start or end
            dict(task=BACKFILL_CREATIVES, sent_at=at), dict(task=SYNC_INDEX, sent_at=at)]
    try:
        with db.write() as session:
            for row in rows:
                session.add(OutboxJob(args=[], queue=INDEX_QUEUE, created_at=at, **row))
    finally:
        db.dispose()

    listed = run_ctax(tmp_path, "jobs")
    assert listed.returncode == 0, listed.stderr
    header, *lines = listed.stdout.splitlines()
    assert header.split("\t") == ["id", "task", "state", "queued", "sent", "started", "ended", "starts", "error"]
    assert [line.split("\t")[:3] for line in lines] == [
        ["6", SYNC_INDEX, "sent"], ["5", BACKFILL_CREATIVES, "sent, not tracked"],
        ["4", SYNC_INDEX, "waiting"], ["3", ERASE_ACCOUNT, "failed"], ["2", FORGET_CREATIVES, "running"],
        ["1", SYNC_INDEX, "ended"]]
    stamp = at.strftime("%Y-%m-%d %H:%M:%S")
    assert lines[4].split("\t")[3:8] == [stamp, stamp, stamp, "-", "1"]
    assert [line.split("\t")[0] for line in run_ctax(tmp_path, "jobs", "--state", "sent").stdout.splitlines()[1:]] \
        == ["6", "5"]

    failed = run_ctax(tmp_path, "jobs", "--state", "failed").stdout.splitlines()[1:]
    assert len(failed) == 1 and failed[0].endswith(
        "\tstarted 3 times and never finished (the worker stopped each time)")  # one line, whatever the error
    syncs = run_ctax(tmp_path, "jobs", "--task", SYNC_INDEX, "--limit", "1").stdout.splitlines()[1:]
    assert [line.split("\t")[0] for line in syncs] == ["6"]

    wrong = run_ctax(tmp_path, "jobs", "--state", "lost")
    assert wrong.returncode == 2 and "'lost' is not one of" in wrong.stderr and "failed" in wrong.stderr, wrong.stderr
