"""`ctax settings`: every setting with the value in effect, its default and what it does, secrets hidden; and
every setting is described in the code and in README.md."""

from __future__ import annotations

import json
from pathlib import Path

from ctax.config import Settings
from tests.support import ROOT, run_ctax


def test_settings_lists_every_setting_with_its_value_and_hides_secrets(tmp_path: Path) -> None:
    done = run_ctax(tmp_path, "settings", "--json", CTAX_PORT="9001",
                    CTAX_DATABASE_URL="postgresql+psycopg://ctax:hunter2-secret@db.internal:5432/ctax",
                    CTAX_QDRANT_API_KEY="qdrant-secret-key", CTAX_RATE_LIMIT_CREATIVES="none")
    assert done.returncode == 0, done.stderr
    assert "secret" not in done.stdout
    rows = {row["setting"]: row for row in json.loads(done.stdout)}
    assert list(rows) == list(Settings.model_fields)
    assert rows["port"] == {**rows["port"], "variable": "CTAX_PORT", "value": 9001, "default": 8000, "given": True}
    assert rows["database_url"]["value"] == "postgresql+psycopg://ctax:***@db.internal:5432/ctax"
    assert rows["qdrant_api_key"]["value"] == "(set)" and rows["bootstrap_admin_key"]["value"] is None
    assert rows["rate_limit_creatives"]["value"] is None and rows["rate_limit_creatives"]["default"] == "6000/minute"
    assert rows["host"]["given"] is False and rows["host"]["description"]

    only = run_ctax(tmp_path, "settings", "--given", "--json", CTAX_PORT="9001")
    assert only.returncode == 0, only.stderr
    assert {row["variable"] for row in json.loads(only.stdout)} == {"CTAX_PORT", "CTAX_DATA_DIR"}

    table = run_ctax(tmp_path, "settings", CTAX_PORT="9001", COLUMNS="200")
    assert table.returncode == 0, table.stderr
    assert "CTAX_PORT" in table.stdout and "9001" in table.stdout and "CTAX_LABEL_BATCH_SIZE" in table.stdout


def test_a_bad_setting_stops_the_listing_with_one_line(tmp_path: Path) -> None:
    done = run_ctax(tmp_path, "settings", CTAX_PORT="not-a-port")
    assert done.returncode == 2 and done.stderr.startswith("error: CTAX_PORT:"), done.stderr


def test_every_setting_is_described_in_the_code_and_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    undescribed = [name for name, field in Settings.model_fields.items() if not field.description]
    unlisted = [f"CTAX_{name.upper()}" for name in Settings.model_fields if f"`CTAX_{name.upper()}`" not in readme]
    assert undescribed == [] and unlisted == []
