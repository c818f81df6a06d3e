"""`ctax settings`: every setting, the value in effect here, its default and what it does.

Read from the one settings object (ctax/config.py) and its field descriptions, so the list cannot fall behind the
code as a hand-kept table can; secrets are shown only as set or not, and a URL's password as ***.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ctax.cli.common import settings
from ctax.config import Settings

# Values that are secrets whole; in the others, what a URL carries as its password is one. A pattern, not
# SQLAlchemy's URL.render_as_string(hide_password=True): the settings' URLs are also Redis, AMQP and Qdrant ones.
SECRETS = frozenset({"qdrant_api_key", "bootstrap_admin_key"})
URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]*@")


def shown(name: str, value: Any) -> Any:
    """The value as it may be printed or written to JSON."""
    if value is None:
        return None
    if name in SECRETS:
        return "(set)"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return URL_PASSWORD.sub(r"\1***@", value)
    return value


def describe(current: Settings) -> list[dict[str, Any]]:
    """One row per setting, in the settings object's order; `given`: set in the environment or .env (a value
    that differs from its default without being given, such as data_dir made absolute, is not)."""
    rows = []
    for name, field in Settings.model_fields.items():
        value, default = getattr(current, name), field.get_default(call_default_factory=True)
        rows.append({"setting": name, "variable": f"CTAX_{name.upper()}", "value": shown(name, value),
                     "default": shown(name, default), "given": name in current.model_fields_set,
                     "description": field.description or ""})
    return rows


def show(
    as_json: Annotated[bool, typer.Option("--json", help="write the rows as JSON instead of a table")] = False,
    given: Annotated[bool, typer.Option("--given", help="only the settings given in the environment or .env")] = False,
) -> None:
    """Every setting: its environment variable, the value in effect (from the environment and .env, checked as
    every command checks them; bold where given there), its default and what it does. Secrets show as "(set)",
    URLs without their password."""
    rows = [row for row in describe(settings()) if row["given"] or not given]
    if given and not rows and not as_json:
        typer.echo("no setting is given in the environment or .env: every one is at its default (ctax settings)")
        return
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table("variable", "value", "default", "what it does", show_lines=False, expand=True)
    for row in rows:
        value = "-" if row["value"] is None else str(row["value"])
        default = "-" if row["default"] is None else str(row["default"])
        table.add_row(row["variable"], f"[bold]{value}[/bold]" if row["given"] else value, default,
                      row["description"])
    Console().print(table)  # stdout, as --json: a listing to read or pipe, not a diagnostic
