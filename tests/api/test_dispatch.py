"""The API's dispatcher when the database cannot serve it: it keeps trying, and says why in one line (once per
reason), not with a traceback every second beside the requests' own clear 503s."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ctax.api.dispatch import Dispatcher
from ctax.store.migrate import upgrade
from ctax.store.session import Database
from tests.conftest import make_settings


def test_an_unmigrated_database_is_one_line_until_it_is_migrated(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path / "var")
    settings.ensure_dirs()
    db = Database(settings.sqlalchemy_url)
    dispatcher = Dispatcher(settings, db)
    try:
        with caplog.at_level(logging.INFO, logger="ctax.api.dispatch"):
            for _ in range(3):
                dispatcher.tick()
            waits = [r for r in caplog.records if r.name == "ctax.api.dispatch"]
            assert len(waits) == 1, [r.getMessage() for r in waits]
            assert waits[0].exc_info is None
            assert "ctax db upgrade" in waits[0].getMessage()

            upgrade(settings.sqlalchemy_url)
            dispatcher.tick()
            dispatcher.tick()
            said = [r.getMessage() for r in caplog.records if r.name == "ctax.api.dispatch"]
            assert said[1:] == ["dispatch resumed"]
    finally:
        db.dispose()
