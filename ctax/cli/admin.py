"""Administration: the database schema and API keys."""

from __future__ import annotations

import typer

from ctax.cli.common import console, database, fail, settings
from ctax.store import migrate
from ctax.store.keys import create_key

db_app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the schema."""
    current = settings()
    migrate.upgrade(current.sqlalchemy_url, revision)
    console.print(f"database at {current.sqlalchemy_url.split('@')[-1]} is at {revision}")


@keys_app.command("create")
def keys_create(name: str, role: str) -> None:
    """Create an API key (printed once)."""
    current = settings()
    try:
        with database(current).write() as session:
            _, key = create_key(session, name, role)
    except Exception as exc:
        fail(exc)
    typer.echo(key)
