"""What every command shares: the console, the settings, the database, sending queued work, failing cleanly."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from ctax.config import Settings
from ctax.errors import CtaxError
from ctax.store.session import Database

console = Console(stderr=True)


def settings() -> Settings:
    current = Settings()
    current.ensure_dirs()
    return current


def database(current: Settings) -> Database:
    return Database(current.sqlalchemy_url)


def flush(current: Settings, db: Database) -> None:
    """Send the jobs this command queued (the API's dispatcher would too, if it is running)."""
    # Imported here: the dispatcher loads Celery, which most commands never need.
    from ctax.api.dispatch import Dispatcher

    try:
        Dispatcher(current, db).flush()
    except Exception as exc:  # the outbox keeps them; the API sends them when the broker answers
        console.print(f"[yellow]queued jobs stay in the outbox for now: {exc}[/yellow]")


def fail(exc: Exception) -> NoReturn:
    message = exc.message if isinstance(exc, CtaxError) else str(exc)
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)
