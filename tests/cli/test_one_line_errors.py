"""A domain error a command meets (the database unmigrated or out of reach, a version that does not exist) ends
it with one line and exit status 2, as a bad setting does, not a page of traceback."""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.support import free_port, run_ctax


def test_a_command_on_a_database_nobody_migrated_says_to_migrate_it(tmp_path: Path) -> None:
    done = run_ctax(tmp_path, "models", "list")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: the database has no ctax schema, or an older one (no such table: "), (
        done.stderr)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    migrated = run_ctax(tmp_path, "db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    listed = run_ctax(tmp_path, "models", "list")
    assert listed.returncode == 0 and "version" in listed.stdout, listed.stderr


def test_a_version_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    assert run_ctax(tmp_path, "db", "upgrade").returncode == 0
    done = run_ctax(tmp_path, "models", "promote", "v9-nope")
    assert done.returncode == 2 and done.stderr == "error: no model version 'v9-nope'\n", done.stderr


def test_migrating_a_database_out_of_reach_is_one_line(tmp_path: Path) -> None:
    done = run_ctax(tmp_path, "db", "upgrade",
                    CTAX_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/ctax")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: the database is unavailable or busy: connection failed:"), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_a_migration_waiting_on_a_lock_gives_up_after_the_lock_wait(tmp_path: Path, postgres_url: str) -> None:
    """A schema change queued behind a long transaction would hold every later statement on its table behind it:
    it gives up after CTAX_DATABASE_LOCK_WAIT_S, in one line, and passes once the transaction ends."""
    assert run_ctax(tmp_path, "db", "upgrade", CTAX_DATABASE_URL=postgres_url).returncode == 0
    with psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://")) as holder:
        holder.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
        done = run_ctax(tmp_path, "db", "upgrade", CTAX_DATABASE_URL=postgres_url, CTAX_DATABASE_LOCK_WAIT_S="1")
        holder.rollback()
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("error: the database is busy: a lock another transaction holds was not granted within "
                           "1 s (CTAX_DATABASE_LOCK_WAIT_S); nothing was changed, try again\n"), done.stderr
    assert run_ctax(tmp_path, "db", "upgrade", CTAX_DATABASE_URL=postgres_url,
                    CTAX_DATABASE_LOCK_WAIT_S="1").returncode == 0
