"""What the account tests share (rate limits, quotas): two accounts' keys on a migrated database, and the API over
it, made with settings the test chooses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ctax.api.app import create_app
from ctax.store.keys import create_account, create_key
from ctax.store.migrate import upgrade
from ctax.store.session import Database
from tests.conftest import make_settings


@pytest.fixture
def two_accounts(tmp_path: Path) -> Iterator[tuple[Database, dict[str, str]]]:
    """A migrated database with two accounts' poster keys ("a", a second one of a's, "a2", and "b") and an admin
    key (no account)."""
    settings = make_settings(tmp_path / "var")
    settings.ensure_dirs()
    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    keys = {}
    with db.write() as session:
        for name in ("a", "b"):
            account = create_account(session, f"Account {name}", "advertiser")
            _, keys[name] = create_key(session, f"poster {name}", "poster", account_id=account.id)
        _, keys["a2"] = create_key(session, "second poster a", "poster", account_id=1)
        _, keys["admin"] = create_key(session, "admin", "admin")
    yield db, keys
    db.dispose()


def api(tmp_path: Path, **overrides: object) -> TestClient:
    """The API on `two_accounts`' database, with these settings, without a dispatcher (nothing is sent)."""
    return TestClient(create_app(make_settings(tmp_path / "var", **overrides), start_dispatcher=False))
