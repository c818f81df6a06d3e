"""A domain error a command meets (the database unmigrated or out of reach, a version that does not exist) ends
it with one line and exit status 2, as a bad setting does, not a page of traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _ctax(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTAX_")}
    return subprocess.run([sys.executable, "-m", "ctax", *args], cwd=tmp_path, capture_output=True, text=True,
                          env={**env, "CTAX_DATA_DIR": str(tmp_path / "var")}, timeout=120)


def test_a_command_on_a_database_nobody_migrated_says_to_migrate_it(tmp_path: Path) -> None:
    done = _ctax(tmp_path, "models", "list")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: the database has no ctax schema, or an older one (no such table: "), (
        done.stderr)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    migrated = _ctax(tmp_path, "db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    listed = _ctax(tmp_path, "models", "list")
    assert listed.returncode == 0 and "version" in listed.stdout, listed.stderr


def test_a_version_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    assert _ctax(tmp_path, "db", "upgrade").returncode == 0
    done = _ctax(tmp_path, "models", "promote", "v9-nope")
    assert done.returncode == 2 and done.stderr == "error: no model version 'v9-nope'\n", done.stderr
