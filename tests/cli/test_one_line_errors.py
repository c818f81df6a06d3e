"""A domain error a command meets (the database unmigrated or out of reach, a version that does not exist) ends
it with one line and exit status 2, as a bad setting does, not a page of traceback."""

from __future__ import annotations

from pathlib import Path

from tests.support import run_ctax


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
