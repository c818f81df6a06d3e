"""`ctax accounts`: an admin without the API at hand suspends and resumes an account, and its poster key follows."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctax.enums import CreativeStatus
from ctax.errors import AccountSuspended
from ctax.store.keys import authenticate
from ctax.store.models import Account, Creative
from ctax.store.session import Database
from tests.conftest import make_settings
from tests.support import run_ctax


def test_an_account_is_suspended_and_resumed_from_the_command_line(tmp_path: Path) -> None:
    assert run_ctax(tmp_path, "db", "upgrade").returncode == 0
    account = run_ctax(tmp_path, "accounts", "create", "Acme Ads").stdout.strip()
    key = run_ctax(tmp_path, "keys", "create", "ad server", "poster", "--account", account).stdout.strip()
    db = Database(make_settings(tmp_path / "var").sqlalchemy_url)
    try:
        suspended = run_ctax(tmp_path, "accounts", "suspend", account)
        assert suspended.returncode == 0 and suspended.stdout == f"account {account} (Acme Ads) is suspended\n"
        assert run_ctax(tmp_path, "accounts", "list").stdout == f"{account}\tadvertiser\tsuspended\tAcme Ads\n"
        with db.read() as session, pytest.raises(AccountSuspended):
            authenticate(session, key)
        refused = run_ctax(tmp_path, "keys", "create", "another", "poster", "--account", account)
        assert refused.returncode != 0 and "is suspended: resume it" in refused.stderr, refused.stderr

        assert run_ctax(tmp_path, "accounts", "resume", account).returncode == 0
        with db.read() as session:
            assert authenticate(session, key).account_id == int(account)
        missing = run_ctax(tmp_path, "accounts", "suspend", "999")
        assert missing.returncode == 2 and missing.stderr == "error: no account 999\n", missing.stderr
    finally:
        db.dispose()


def test_an_account_is_given_its_own_rate_limits_from_the_command_line(tmp_path: Path) -> None:
    assert run_ctax(tmp_path, "db", "upgrade").returncode == 0
    account = run_ctax(tmp_path, "accounts", "create", "Big Partner").stdout.strip()
    given = run_ctax(tmp_path, "accounts", "limit", account, "--creatives", "60000/minute")
    assert given.returncode == 0, given.stderr
    assert given.stdout == (f"account {account} (Big Partner): creatives 60000/minute (its own), "
                            "searches 600/minute (the service's)\n")
    lifted = run_ctax(tmp_path, "accounts", "limit", account, "--searches", "none", "--creatives", "default")
    assert lifted.stdout == (f"account {account} (Big Partner): creatives 6000/minute (the service's), "
                             "searches none (its own)\n"), lifted.stderr
    bad = run_ctax(tmp_path, "accounts", "limit", account, "--creatives", "lots")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --creatives lots: is not a rate limit"), bad.stderr
    assert run_ctax(tmp_path, "accounts", "limit", "999", "--creatives", "none").stderr == "error: no account 999\n"


def test_an_account_is_given_its_own_quota_from_the_command_line(tmp_path: Path) -> None:
    assert run_ctax(tmp_path, "db", "upgrade").returncode == 0
    account = run_ctax(tmp_path, "accounts", "create", "Small Shop").stdout.strip()
    given = run_ctax(tmp_path, "accounts", "quota", account, "--creatives", "5000")
    assert given.returncode == 0, given.stderr
    assert given.stdout == f"account {account} (Small Shop): creatives 5000 (its own); holds 0\n"
    lifted = run_ctax(tmp_path, "accounts", "quota", account, "--creatives", "none")
    assert lifted.stdout == f"account {account} (Small Shop): creatives none (its own); holds 0\n", lifted.stderr
    back = run_ctax(tmp_path, "accounts", "quota", account, "--creatives", "default", CTAX_QUOTA_CREATIVES="900")
    assert back.stdout == f"account {account} (Small Shop): creatives 900 (the service's); holds 0\n", back.stderr
    bad = run_ctax(tmp_path, "accounts", "quota", account, "--creatives", "0")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --creatives 0: is not a quota"), bad.stderr
    assert run_ctax(tmp_path, "accounts", "quota", "999", "--creatives", "7").stderr == "error: no account 999\n"


def test_an_account_is_erased_from_the_command_line_once_confirmed(tmp_path: Path) -> None:
    assert run_ctax(tmp_path, "db", "upgrade").returncode == 0
    account = run_ctax(tmp_path, "accounts", "create", "Gone Ads").stdout.strip()
    key = run_ctax(tmp_path, "keys", "create", "ad server", "poster", "--account", account).stdout.strip()
    kept = run_ctax(tmp_path, "accounts", "erase", account, input="n\n")
    assert kept.returncode != 0 and run_ctax(tmp_path, "accounts", "list").stdout.split("\t")[2] == "active"
    erased = run_ctax(tmp_path, "accounts", "erase", account, "--yes")
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout == f"account {account} (Gone Ads) is being erased: 0 creatives to remove\n"
    assert run_ctax(tmp_path, "accounts", "list").stdout == f"{account}\tadvertiser\terasing\tGone Ads\n"
    db = Database(make_settings(tmp_path / "var").sqlalchemy_url)
    try:
        with db.read() as session, pytest.raises(AccountSuspended, match="being erased"):
            authenticate(session, key)
    finally:
        db.dispose()


def test_the_counts_quotas_keep_are_recounted_from_the_command_line(tmp_path: Path) -> None:
    """A creative written other than through the API (by hand, a restore) is not in the count a quota keeps:
    `ctax accounts recount` corrects it, and says which counts were right."""
    assert run_ctax(tmp_path, "db", "upgrade").returncode == 0
    shop = int(run_ctax(tmp_path, "accounts", "create", "Small Shop").stdout)
    free = int(run_ctax(tmp_path, "accounts", "create", "No Quota").stdout)
    db = Database(make_settings(tmp_path / "var").sqlalchemy_url)
    try:
        with db.write() as session:
            session.add_all([Creative(account_id=account, texts=["restored ad"], status=CreativeStatus.FAILED)
                             for account in (shop, shop, shop, free)])
            session.get(Account, shop).creatives_held = 1  # type: ignore[union-attr]  (a quota counted 1)
        first = run_ctax(tmp_path, "accounts", "recount")
        assert first.returncode == 0, first.stderr
        assert first.stdout == (f"account {shop} (Small Shop): holds 3; was 1, corrected\n"
                                f"account {free} (No Quota): holds 1; no quota keeps a count\n")
        with db.read() as session:
            assert session.get(Account, shop).creatives_held == 3  # type: ignore[union-attr]
            assert session.get(Account, free).creatives_held is None  # type: ignore[union-attr]
        again = run_ctax(tmp_path, "accounts", "recount", str(shop))
        assert again.stdout == f"account {shop} (Small Shop): holds 3; right\n"
        missing = run_ctax(tmp_path, "accounts", "recount", "999")
        assert missing.returncode == 2 and missing.stderr == "error: no account 999\n", missing.stderr
    finally:
        db.dispose()
