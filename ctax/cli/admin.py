"""Administration: the database schema, accounts and API keys."""

from __future__ import annotations

import typer

from ctax.cli.common import console, database, fail, settings
from ctax.enums import AccountKind
from ctax.store import migrate
from ctax.store.keys import create_account, create_key, list_accounts

db_app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)
accounts_app = typer.Typer(help="Accounts: the advertisers and partners poster keys belong to.",
                           no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the schema."""
    current = settings()
    migrate.upgrade(current.sqlalchemy_url, revision)
    console.print(f"database at {current.sqlalchemy_url.split('@')[-1]} is at {revision}")


@accounts_app.command("create")
def accounts_create(
    name: str, kind: AccountKind = typer.Option(AccountKind.ADVERTISER, help="advertiser or partner")
) -> None:
    """Create an account; prints its id (give it to `ctax keys create NAME poster --account ID`)."""
    current = settings()
    try:
        with database(current).write() as session:
            account_id = create_account(session, name, kind).id
    except Exception as exc:
        fail(exc)
    typer.echo(account_id)


@accounts_app.command("list")
def accounts_list() -> None:
    """Every account: id, kind and name, one a line."""
    with database(settings()).read() as session:
        for account in list_accounts(session):
            typer.echo(f"{account.id}\t{account.kind}\t{account.name}")


@keys_app.command("create")
def keys_create(
    name: str,
    role: str,
    account: int | None = typer.Option(None, help="the account a poster key posts for (required for posters)"),
) -> None:
    """Create an API key (printed once)."""
    current = settings()
    try:
        with database(current).write() as session:
            _, key = create_key(session, name, role, account_id=account)
    except Exception as exc:
        fail(exc)
    typer.echo(key)
