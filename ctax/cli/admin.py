"""Administration: the database schema, accounts, API keys, and the background jobs they cause."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from ctax.cli.common import console, database, fail, settings
from ctax.enums import AccountKind, AccountStatus, JobState
from ctax.jobs import RESENT_WHEN_LOST
from ctax.settings_checks import account_quota, account_rate_limit
from ctax.store import migrate, outbox
from ctax.store.keys import (
    account_status,
    account_usage,
    create_account,
    create_key,
    list_accounts,
    recount_held,
    start_erasure,
    update_account,
)

db_app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)
accounts_app = typer.Typer(help="Accounts: the advertisers and partners poster keys belong to.",
                           no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the schema."""
    current = settings()
    migrate.upgrade(current.sqlalchemy_url, revision, current.database_lock_wait_s)
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
    """Every account: id, kind, status and name, one a line."""
    with database(settings()).read() as session:
        for account in list_accounts(session):
            typer.echo(f"{account.id}\t{account.kind}\t{account_status(account)}\t{account.name}")


def _set_status(account_id: int, status: AccountStatus) -> None:
    with database(settings()).write() as session:
        name = update_account(session, account_id, status=status).name
    typer.echo(f"account {account_id} ({name}) is {status}")


@accounts_app.command("suspend")
def accounts_suspend(account_id: int) -> None:
    """Refuse the account's poster keys until it is resumed (a running API notices within CTAX_KEY_CACHE_S)."""
    _set_status(account_id, AccountStatus.SUSPENDED)


@accounts_app.command("resume")
def accounts_resume(account_id: int) -> None:
    """Let the account's poster keys in again."""
    _set_status(account_id, AccountStatus.ACTIVE)


@accounts_app.command("erase")
def accounts_erase(account_id: int, yes: bool = typer.Option(False, "--yes", help="do not ask first")) -> None:
    """Erase the account: its keys are refused at once, and the labelling worker removes its creatives, then its
    keys and the account (`ctax accounts list` shows it as erasing until it is gone). It cannot be undone."""
    current = settings()
    if not yes:
        typer.confirm(f"erase account {account_id}, every creative it posted and its keys?", abort=True)
    try:
        with database(current).write() as session:
            account = start_erasure(session, account_id)
            name, creatives = account.name, account_usage(session, account)["creatives"]["total"]
    except Exception as exc:
        fail(exc)
    typer.echo(f"account {account_id} ({name}) is being erased: {creatives} creatives to remove")


def _own_limit(kind: str, value: str) -> str | None:
    try:
        return account_rate_limit(value)
    except ValueError as exc:
        raise ValueError(f"--{kind} {value}: {exc}") from None


@accounts_app.command("limit")
def accounts_limit(
    account_id: int,
    creatives: str | None = typer.Option(None, help="creatives it may post: e.g. 60000/minute, none (no limit) or "
                                                    "default (the service's CTAX_RATE_LIMIT_CREATIVES)"),
    searches: str | None = typer.Option(None, help="searches it may make, written the same way"),
) -> None:
    """Give the account its own rate limits (a running API applies them within CTAX_KEY_CACHE_S); prints them."""
    current = settings()
    try:
        given = {"creatives": creatives, "searches": searches}
        own = {kind: _own_limit(kind, value) for kind, value in given.items() if value is not None}
        with database(current).write() as session:
            account = update_account(session, account_id, rate_limits=own)
            name, limits = account.name, [current.for_account("rate_limit", kind, account.rate_limits)
                                           for kind in given]
    except Exception as exc:
        fail(exc)
    whose = {True: "its own", False: "the service's"}
    shown = [f"{kind} {limit or 'none'} ({whose[mine]})" for kind, (limit, mine) in zip(given, limits, strict=True)]
    typer.echo(f"account {account_id} ({name}): " + ", ".join(shown))


@accounts_app.command("quota")
def accounts_quota(
    account_id: int,
    creatives: str = typer.Option(..., help="creatives it may hold at once: a number, none (no quota) or default "
                                            "(the service's CTAX_QUOTA_CREATIVES)"),
) -> None:
    """Give the account its own quota (a running API applies it within CTAX_KEY_CACHE_S); prints it and what the
    account holds."""
    current = settings()
    try:
        try:
            own = account_quota(creatives)
        except ValueError as exc:
            raise ValueError(f"--creatives {creatives}: {exc}") from None
        with database(current).write() as session:
            account = update_account(session, account_id, quotas={"creatives": own})
            quota, mine = current.for_account("quota", "creatives", account.quotas)
            name, held = account.name, account_usage(session, account)["creatives"]["total"]
    except Exception as exc:
        fail(exc)
    whose = "its own" if mine else "the service's"
    typer.echo(f"account {account_id} ({name}): creatives {quota or 'none'} ({whose}); holds {held}")


@accounts_app.command("recount")
def accounts_recount(
    account_ids: Annotated[list[int] | None, typer.Argument(help="these accounts (default: every one)")] = None,
) -> None:
    """Count again what each account holds, where a quota keeps a count (a creative written other than through the
    API is not counted), and correct the count: a line per account, saying whether it was right."""
    current = settings()
    db = database(current)
    try:
        if not account_ids:
            with db.read() as session:
                account_ids = [account.id for account in list_accounts(session)]
        for account_id in account_ids:
            with db.write() as session:  # one account a transaction: its row is locked only while it is counted
                name, kept, counted = recount_held(session, account_id)
            verdict = ("no quota keeps a count" if kept is None else "right" if kept == counted
                       else f"was {kept}, corrected")
            typer.echo(f"account {account_id} ({name}): holds {counted}; {verdict}")
    except Exception as exc:
        fail(exc)


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


JOB_COLUMNS = ("id", "task", "state", "queued", "sent", "started", "ended", "starts", "error")


def jobs(
    state: Annotated[JobState | None, typer.Option(help="only jobs in this state")] = None,
    task: Annotated[str | None, typer.Option(help="only this task, e.g. ctax.index.sync")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="at most this many")] = 20,
) -> None:
    """Background jobs, newest first: what ran, and how it ended.

    Index syncs, deletions' forgets, erasure steps, builds, training requests: one a line after a header, with its
    id, task, state, when it was queued, sent, started and ended (UTC), how often a worker started it, and why it
    failed. Ended jobs are kept CTAX_OUTBOX_KEEP_DAYS (7). Only jobs that are sent again when their worker is lost
    (index syncs and builds, forgets, erasures) record when they started and ended; the others (the creatives
    backfill, new-label discovery, training requests) show as "sent, not tracked" once sent: the worker's log says
    how they went, and a training run its own status (`GET /v1/training/runs`)."""
    with database(settings()).read() as session:
        found = outbox.recent(session, state, task, limit)
        typer.echo("\t".join(JOB_COLUMNS))
        for job, named in found:
            error = " ".join((job.last_error or "").split())[:300]
            shown = f"{named.value}, not tracked" if named == JobState.SENT and job.task not in RESENT_WHEN_LOST \
                else named.value
            typer.echo("\t".join([str(job.id), job.task, shown, *map(_when, (job.created_at, job.sent_at,
                                   job.started_at, job.done_at)), str(job.starts), error]))


def _when(at: dt.datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at is not None else "-"
