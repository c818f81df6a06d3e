"""What every command shares: the console, the settings, the database, sending queued work, failing cleanly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import typer
from dotenv import dotenv_values
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from ctax.config import Settings
from ctax.errors import CtaxError
from ctax.settings_checks import misspelt_variables
from ctax.store.session import Database

console = Console(stderr=True)


def settings() -> Settings:
    """The settings, checked: a bad value ends the command with one line per problem and exit status 2."""
    try:
        current = Settings()
    except ValidationError as exc:
        fail(exc)
    for warning in misspelt_variables([*os.environ, *_dotenv_names()], Settings.model_fields,
                                      str(Settings.model_config.get("env_prefix", ""))):
        console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    try:
        current.ensure_dirs()
    except OSError as exc:
        fail(ValueError(f"CTAX_DATA_DIR: cannot create {exc.filename or current.data_dir}: {exc.strerror or exc}"))
    return current


def _dotenv_names() -> list[str]:
    """The names a `.env` file in the working directory sets (the settings read it too)."""
    env_file = Settings.model_config.get("env_file")
    if not isinstance(env_file, str) or not Path(env_file).is_file():
        return []
    return list(dotenv_values(env_file))


def setting_errors(exc: ValidationError) -> list[str]:
    """pydantic's errors as the user wrote them: `CTAX_<NAME>: <rule>`, one per bad setting."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    lines = []
    for error in exc.errors(include_url=False):
        name = "_".join(str(part) for part in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{prefix}{name}: {message}" if name else message)
    return lines


def database(current: Settings) -> Database:
    return Database(current.sqlalchemy_url, lock_wait_s=current.database_lock_wait_s)


def flush(current: Settings, db: Database) -> None:
    """Send the jobs this command queued (the API's dispatcher would too, if it is running)."""
    # Imported here: the dispatcher loads Celery, which most commands never need.
    from ctax.api.dispatch import Dispatcher

    try:
        Dispatcher(current, db).flush()
    except Exception as exc:  # the outbox keeps them; the API sends them when the broker answers
        console.print(f"[yellow]queued jobs stay in the outbox for now: {exc}[/yellow]")


def fail(exc: Exception) -> NoReturn:
    if isinstance(exc, ValidationError) and exc.title == Settings.__name__:
        messages = setting_errors(exc)
    else:
        messages = [exc.message if isinstance(exc, CtaxError) else str(exc)]
    say_errors(messages)
    raise typer.Exit(2)


def say_errors(messages: list[str]) -> None:
    for message in messages:
        # escape(): a message quoting the user's value is not rich markup; soft_wrap: one line, whatever the width.
        console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
