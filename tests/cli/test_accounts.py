"""`ctax accounts`: an admin without the API at hand suspends and resumes an account, and its poster key follows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ctax.errors import AccountSuspended
from ctax.store.keys import authenticate
from ctax.store.session import Database
from tests.conftest import make_settings


def _ctax(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTAX_")}
    return subprocess.run([sys.executable, "-m", "ctax", *args], cwd=tmp_path, capture_output=True, text=True,
                          env={**env, "CTAX_DATA_DIR": str(tmp_path / "var")}, timeout=120)


def test_an_account_is_suspended_and_resumed_from_the_command_line(tmp_path: Path) -> None:
    assert _ctax(tmp_path, "db", "upgrade").returncode == 0
    account = _ctax(tmp_path, "accounts", "create", "Acme Ads").stdout.strip()
    key = _ctax(tmp_path, "keys", "create", "ad server", "poster", "--account", account).stdout.strip()
    db = Database(make_settings(tmp_path / "var").sqlalchemy_url)
    try:
        suspended = _ctax(tmp_path, "accounts", "suspend", account)
        assert suspended.returncode == 0 and suspended.stdout == f"account {account} (Acme Ads) is suspended\n"
        assert _ctax(tmp_path, "accounts", "list").stdout == f"{account}\tadvertiser\tsuspended\tAcme Ads\n"
        with db.read() as session, pytest.raises(AccountSuspended):
            authenticate(session, key)
        refused = _ctax(tmp_path, "keys", "create", "another", "poster", "--account", account)
        assert refused.returncode != 0 and "is suspended: resume it" in refused.stderr, refused.stderr

        assert _ctax(tmp_path, "accounts", "resume", account).returncode == 0
        with db.read() as session:
            assert authenticate(session, key).account_id == int(account)
        missing = _ctax(tmp_path, "accounts", "suspend", "999")
        assert missing.returncode == 2 and missing.stderr == "error: no account 999\n", missing.stderr
    finally:
        db.dispose()
