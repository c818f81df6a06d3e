"""The tasks that may run twice, as Celery's tracer runs them (apply: a request with the message's task id): each
run says which worker runs its outbox job and when it ended; a second message for an ended job does nothing; a job
started too often by workers that never finished it is not run. The erasure task shows which ran: it deletes an
account."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from celery import Celery

from ctax.config import Settings
from ctax.enums import AccountKind
from ctax.jobs import ERASE_ACCOUNT, INDEX_QUEUE, LABEL_QUEUE, MAX_JOB_STARTS, RESENT_WHEN_LOST, SYNC_INDEX
from ctax.store import keys, outbox
from ctax.store.migrate import upgrade
from ctax.store.models import Account, OutboxJob
from ctax.store.repos import accounts
from ctax.store.session import Database
from ctax.worker import runtime as runtime_module
from ctax.worker.app import create_celery
from ctax.worker.outbox_task import ResentWhenLost
from ctax.worker.runtime import Runtime
from tests.conftest import make_settings
from tests.support import stored


@contextmanager
def index_owner(settings: Settings) -> Iterator[Celery]:
    """The worker's Celery app and an index owner's runtime in this process (no models: the erasure needs none)."""
    rt = Runtime(settings, [LABEL_QUEUE, INDEX_QUEUE], owns_index=True)
    runtime_module._runtime = rt
    try:
        celery = create_celery(settings, owns_index=True)
        celery.loader.import_default_modules()  # the task modules, as a worker imports them when it starts
        yield celery
    finally:
        runtime_module._runtime = None
        rt.db.dispose()


@pytest.fixture
def app(settings: Settings, db: Database) -> Iterator[Celery]:
    with index_owner(settings) as celery:
        yield celery


def erasing_account(db: Database) -> int:
    with db.write() as session:
        account = accounts.add(session, "Leaving", AccountKind.PARTNER)
        session.flush()
        keys.start_erasure(session, account.id)
        return account.id


def outbox_job(db: Database, account_id: int, starts: int = 0) -> int:
    with db.write() as session:
        job = outbox.enqueue(session, ERASE_ACCOUNT, account_id, 0.0)
        job.starts = starts
        session.flush()
        return job.id


def exists(db: Database, account_id: int) -> bool:
    with db.read() as session:
        return session.get(Account, account_id) is not None


def test_every_task_that_may_run_twice_records_its_runs(app: Celery) -> None:
    assert {name for name, task in app.tasks.items() if isinstance(task, ResentWhenLost)} == RESENT_WHEN_LOST


def test_a_run_is_recorded_and_a_repeated_message_does_nothing(app: Celery, db: Database) -> None:
    erase = app.tasks[ERASE_ACCOUNT]
    first = erasing_account(db)
    job_id = outbox_job(db, first)
    erase.apply(args=[first, 0.0], task_id=outbox.task_id(job_id))
    assert not exists(db, first)  # it ran: an account with no creatives is erased in one step
    job = stored(db, OutboxJob, job_id)
    assert (job.starts, job.running_on) == (1, None) and job.done_at is not None

    # The same message again (Redis gives a killed worker's message back hours later): the job ended, nothing runs,
    # even for an account that is being erased now.
    second = erasing_account(db)
    erase.apply(args=[second, 0.0], task_id=outbox.task_id(job_id))
    assert exists(db, second)
    assert stored(db, OutboxJob, job_id).starts == 1

    # A message sent other than through the outbox runs untracked.
    erase.apply(args=[second, 0.0])
    assert not exists(db, second)


def test_a_job_that_kept_killing_its_workers_is_not_run_again(app: Celery, db: Database) -> None:
    account = erasing_account(db)
    job_id = outbox_job(db, account, starts=MAX_JOB_STARTS)
    app.tasks[ERASE_ACCOUNT].apply(args=[account, 0.0], task_id=outbox.task_id(job_id))
    assert exists(db, account)
    job = stored(db, OutboxJob, job_id)
    assert job.done_at is not None and job.last_error is not None and "never finished" in job.last_error


def test_a_job_that_fails_is_held_back_and_runs_again_then_fails_for_good(app: Celery, db: Database,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    """An index sync with no model version to sync fails (a real failure, from the real task): it waits in the
    outbox to run again, RETRY_AFTER_S later, until its last start."""
    with db.write() as session:
        queued = outbox.enqueue(session, SYNC_INDEX, "a label changed")
        session.flush()
        job_id = queued.id
    sync = app.tasks[SYNC_INDEX]
    for n in range(1, MAX_JOB_STARTS + 1):
        with caplog.at_level(logging.WARNING, logger="ctax.worker.outbox_task"):
            result = sync.apply(args=["a label changed"], task_id=outbox.task_id(job_id))
        assert result.failed() and "no active model version" in str(result.result)
        job = stored(db, OutboxJob, job_id)
        assert job.starts == n and job.last_error is not None and "no active model version" in job.last_error
        if n < MAX_JOB_STARTS:
            assert job.sent_at is None and job.done_at is None and job.not_before is not None
            assert f"it runs again in {outbox.RETRY_AFTER_S[n - 1]:.0f} s" in caplog.text
        else:
            assert job.done_at is not None  # failed for good: `ctax jobs --state failed` shows why
        caplog.clear()


def test_a_job_stuck_on_a_lock_fails_busy_and_runs_again_once_the_lock_is_gone(tmp_path: Path,
                                                                               postgres_url: str) -> None:
    """PostgreSQL: a row lock held elsewhere (an admin's open transaction, a process stopped in one) used to hold
    the index owner's queue for ever; the job now gives up after CTAX_DATABASE_LOCK_WAIT_S and runs again later."""
    settings = make_settings(tmp_path / "var", database_url=postgres_url, database_lock_wait_s=1)
    settings.ensure_dirs()
    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    try:
        account = erasing_account(db)
        job_id = outbox_job(db, account)
        with index_owner(settings) as celery, \
                psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://")) as holder:
            holder.execute("SELECT * FROM accounts WHERE id = %s FOR UPDATE", (account,))
            result = celery.tasks[ERASE_ACCOUNT].apply(args=[account, 0.0], task_id=outbox.task_id(job_id))
            holder.rollback()
            assert result.failed() and "CTAX_DATABASE_LOCK_WAIT_S" in str(result.result)
            assert exists(db, account)
            job = stored(db, OutboxJob, job_id)
            assert job.sent_at is None and job.done_at is None and job.not_before is not None
            assert job.last_error is not None and "not granted within 1 s" in job.last_error
            celery.tasks[ERASE_ACCOUNT].apply(args=[account, 0.0], task_id=outbox.task_id(job_id))
        assert not exists(db, account)
        assert stored(db, OutboxJob, job_id).done_at is not None
    finally:
        db.dispose()
