"""Settings are checked when read: a bad value stops every `ctax` command at once with one line naming the
variable and the rule (exit status 2), not a traceback from the process that first uses it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from ctax.cli import app
from ctax.config import LABEL_TEMPLATE_PLACEHOLDERS, Settings
from ctax.taxonomy.paths import LabelPath


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _errors(**values: object) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        _settings(**values)
    return {".".join(map(str, e["loc"])): e["msg"] for e in caught.value.errors()}


def test_the_bootstrap_admin_key_must_be_as_long_as_any_key() -> None:
    assert "at least 16 characters" in _errors(bootstrap_admin_key="k" * 15)["bootstrap_admin_key"]
    assert _settings(bootstrap_admin_key="k" * 16).bootstrap_admin_key == "k" * 16
    assert _settings(bootstrap_admin_key="").bootstrap_admin_key is None  # unset by an empty variable


@pytest.mark.parametrize(("values", "field", "words"), [
    ({"database_url": "mysql://u@h/db"}, "database_url", "sqlite or postgresql"),
    ({"database_url": "not a url"}, "database_url", "not a database URL"),
    ({"qdrant_url": "qdrant:6333"}, "qdrant_url", "http://"),
    ({"label_template": "an ad for {leef}"}, "label_template", "unknown: leef"),
    ({"train_label_template": "no placeholder"}, "train_label_template", "at least one"),
    ({"worker_heartbeat_s": 5, "worker_stale_s": 5}, "worker_stale_s", "more than CTAX_WORKER_HEARTBEAT_S"),
    ({"novelty_sweep_every": 1000, "novelty_sweep_young": 999}, "novelty_sweep_young", "never swept"),
    ({"port": 70000}, "port", "65535"),
    ({"worker_heartbeat_s": 20, "lease_s": 45}, "worker_heartbeat_s", "a third of CTAX_LEASE_S"),
    ({"rate_limit_creatives": "lots"}, "rate_limit_creatives", "e.g. 6000/minute"),
    ({"rate_limit_searches": "10/fortnight"}, "rate_limit_searches", "not a rate limit"),
    ({"rate_limit_storage": "mongodb://m:27017"}, "rate_limit_storage", "memory:// or a redis://"),
    ({"quota_creatives": 0}, "quota_creatives", "greater than or equal to 1"),
    ({"quota_creatives": "lots"}, "quota_creatives", "valid integer"),
])
def test_values_that_would_fail_later_are_refused_when_read(values: dict[str, object], field: str,
                                                              words: str) -> None:
    assert words in _errors(**values)[field]


def test_sound_values_are_accepted() -> None:
    current = _settings(database_url="postgresql+psycopg://u@127.0.0.1:5432/db", qdrant_url="http://q:6333",
                        label_template="{leaf} in {pretty_path}", worker_heartbeat_s=1, worker_stale_s=6)
    assert current.sqlalchemy_url.startswith("postgresql") and current.worker_stale_s == 6


def test_rate_limits_count_in_the_brokers_redis_unless_told_otherwise() -> None:
    assert _settings().rate_limit_store == "memory://"
    assert _settings(broker_url="redis://r:6379/0").rate_limit_store == "redis://r:6379/0"
    assert _settings(broker_url="redis://r:6379/0", rate_limit_storage="memory://").rate_limit_store == "memory://"
    lifted = _settings(rate_limit_creatives="none", rate_limit_searches="")
    assert lifted.rate_limit_creatives is None and lifted.rate_limit_searches is None
    assert _settings(rate_limit_creatives="100/second; 6000/minute").rate_limit_creatives


def test_an_account_sees_the_service_setting_unless_it_has_its_own() -> None:
    current = _settings(quota_creatives="none", rate_limit_creatives="50/minute")
    assert current.quota_creatives is None
    assert current.for_account("quota", "creatives", None) == (None, False)
    assert current.for_account("quota", "creatives", {"creatives": 7}) == (7, True)
    assert current.for_account("rate_limit", "creatives", {"searches": "none"}) == ("50/minute", False)
    assert current.for_account("rate_limit", "creatives", {"creatives": "none"}) == (None, True)


def test_the_label_pipeline_reads_its_old_true_and_false_as_on_and_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _settings().label_pipeline == "auto"
    for spelled, meant in (("true", "on"), ("1", "on"), ("False", "off"), ("0", "off"), ("on", "on"), ("auto", "auto")):
        monkeypatch.setenv("CTAX_LABEL_PIPELINE", spelled)
        assert _settings().label_pipeline == meant, spelled
    monkeypatch.delenv("CTAX_LABEL_PIPELINE")
    assert _settings(label_pipeline=True).label_pipeline == "on"
    assert "'auto', 'on' or 'off'" in _errors(label_pipeline="sometimes")["label_pipeline"]


def test_the_template_placeholders_are_the_ones_label_paths_fill() -> None:
    path = LabelPath.parse("Product/Vehicles/Cars")
    for name in LABEL_TEMPLATE_PLACEHOLDERS:
        assert path.phrase("{" + name + "}")  # an unknown placeholder would raise InvalidInput
        _settings(label_template="{" + name + "}")


def _clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTAX_")}
    return {**env, "CTAX_DATA_DIR": str(tmp_path / "var"), **values}


def test_ctax_run_stops_on_a_short_bootstrap_key_with_one_line(tmp_path: Path) -> None:
    """What `make run` does with CTAX_BOOTSTRAP_ADMIN_KEY of 14 characters: one line, exit 2, nothing started."""
    done = subprocess.run([sys.executable, "-m", "ctax", "run"], cwd=tmp_path, capture_output=True, text=True,
                          env=_clean_env(tmp_path, CTAX_BOOTSTRAP_ADMIN_KEY="admin-key-0123"), timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "error: CTAX_BOOTSTRAP_ADMIN_KEY: must be at least 16 characters (it has 14)"
    assert done.stdout == "" and not (tmp_path / "var").exists()  # no process, no database, no folder


def test_every_bad_setting_is_one_line_naming_its_variable(tmp_path: Path) -> None:
    env = {"CTAX_PORT": "0", "CTAX_TOP_K": "many", "CTAX_LABEL_TEMPLATE": "{leef} [red]x[/red]"}
    result = CliRunner().invoke(app, ["api"], env=_clean_env(tmp_path, **env))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: CTAX_") for line in lines), lines
    by_name = {line.split(":")[1].strip(): line for line in lines}
    assert "greater than or equal to 1" in by_name["CTAX_PORT"]
    assert "valid integer" in by_name["CTAX_TOP_K"]
    assert "unknown: leef" in by_name["CTAX_LABEL_TEMPLATE"]
    assert "Traceback" not in result.output


def test_a_data_dir_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(app, ["models", "list"], env=_clean_env(tmp_path, CTAX_DATA_DIR=str(blocker / "var")))
    assert result.exit_code == 2
    assert result.output.strip().startswith(f"error: CTAX_DATA_DIR: cannot create {blocker / 'var'}")


def test_a_misspelt_setting_is_a_warning_naming_the_one_meant(tmp_path: Path) -> None:
    """pydantic-settings ignores a variable that names no setting: CTAX_DATABSE_URL left the service on SQLite."""
    (tmp_path / ".env").write_text("CTAX_BACKNED=onnx\nCTAX_SHARED_DATA=/data\n")
    env = _clean_env(tmp_path, CTAX_DATABSE_URL="postgresql+psycopg://db/ctax", ctax_top_kk="3",
                     CTAX_TEST_REDIS_URL="redis://127.0.0.1:6379/9", CTAX_TOP_K="4")
    done = subprocess.run([sys.executable, "-m", "ctax", "db", "upgrade"], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: CTAX_BACKNED is not a setting and is ignored: did you mean CTAX_BACKEND?",
        "warning: CTAX_DATABSE_URL is not a setting and is ignored: did you mean CTAX_DATABASE_URL?",
        "warning: ctax_top_kk is not a setting and is ignored: did you mean CTAX_TOP_K?",
    ], done.stderr
