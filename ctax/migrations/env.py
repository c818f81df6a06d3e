"""Alembic environment: the URL comes from the caller (ctax.store.migrate) or CTAX_ settings."""

from __future__ import annotations

from alembic import context

from ctax.store import models  # noqa: F401  (its tables join Base.metadata)
from ctax.store.session import DEFAULT_LOCK_WAIT_S, make_engine
from ctax.store.types import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from ctax.config import Settings

    return Settings().sqlalchemy_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url(), config.attributes.get("lock_wait_s", DEFAULT_LOCK_WAIT_S))
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch mode rebuilds a table by copying it and dropping the old one; with foreign keys on, SQLite
            # would refuse the drop or cascade it into every row that refers to the table. The pragma is a no-op
            # inside a transaction, so it goes to the driver before the first statement begins one.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        # render_as_batch: SQLite cannot ALTER most constraints in place; batch mode rebuilds the table.
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                          compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:  # what the pragma let through must still hold
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise RuntimeError(f"the migration left rows whose foreign keys point nowhere: {broken[:5]}")
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
