"""Runs Alembic migrations: the only way the schema is created or changed."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from ctax.store.session import DEFAULT_LOCK_WAIT_S, unavailable_as_errors

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


def alembic_config(database_url: str, lock_wait_s: float = DEFAULT_LOCK_WAIT_S) -> Config:
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["lock_wait_s"] = lock_wait_s  # read by env.py
    return config


def upgrade(database_url: str, revision: str = "head", lock_wait_s: float = DEFAULT_LOCK_WAIT_S) -> None:
    # A schema change waiting on a lock a long transaction holds gives up after lock_wait_s, rather than queue
    # every later statement behind it; the database out of reach is one line, not a traceback.
    with unavailable_as_errors(lock_wait_s):
        command.upgrade(alembic_config(database_url, lock_wait_s), revision)


def downgrade(database_url: str, revision: str, lock_wait_s: float = DEFAULT_LOCK_WAIT_S) -> None:
    with unavailable_as_errors(lock_wait_s):
        command.downgrade(alembic_config(database_url, lock_wait_s), revision)
