"""Accounts (admin): the advertisers and partners poster keys belong to. A poster sees its account's creatives
only; reviewers and admins see every account and may filter by one (`AccountFilter`). An admin suspends an account
(its poster keys are refused until it is resumed) and renames it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from ctax.api.deps import Admin, DbDep, KeyCacheDep
from ctax.api.params import Id, Name, RequestBody
from ctax.enums import AccountKind, AccountStatus
from ctax.store import keys as service
from ctax.store.models import Account

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])

AccountFilter = Annotated[Id | None, Query(
    description="only this account's creatives (reviewers and admins; a poster key sees its own account only)",
)]


class AccountIn(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    kind: AccountKind


class AccountChange(RequestBody):
    name: Name | None = Field(default=None, description="a new name (names are unique)")
    status: AccountStatus | None = Field(
        default=None, description="suspended: its poster keys are refused (403 account_suspended) until it is "
                                  "active again; its creatives stay, and those already sent are still labelled")


def account_view(account: Account) -> dict[str, Any]:
    return {"id": account.id, "name": account.name, "kind": account.kind,
            "status": service.account_status(account),
            "suspended_at": account.suspended_at, "created_at": account.created_at}


@router.post("", status_code=201)
def create_account(body: AccountIn, _: Admin, db: DbDep) -> dict[str, Any]:
    """A new account; then make its poster keys with POST /v1/api-keys and its account_id. Names are unique."""
    with db.write() as session:
        return account_view(service.create_account(session, body.name, body.kind))


@router.get("")
def list_accounts(_: Admin, db: DbDep, status: AccountStatus | None = None) -> dict[str, Any]:
    with db.read() as session:
        return {"items": [account_view(account) for account in service.list_accounts(session, status)]}


@router.get("/{account_id}")
def get_account(account_id: Id, _: Admin, db: DbDep) -> dict[str, Any]:
    """The account, its poster keys (active, revoked) and its creatives by status."""
    with db.read() as session:
        account = service.get_account(session, account_id)
        return {**account_view(account), **service.account_usage(session, account)}


@router.patch("/{account_id}")
def change_account(account_id: Id, body: AccountChange, _: Admin, db: DbDep, cache: KeyCacheDep) -> dict[str, Any]:
    """Rename, suspend or resume. A suspension takes effect at once in this API process, and in others within
    CTAX_KEY_CACHE_S seconds (how long a process trusts a key it checked)."""
    with db.write() as session:
        view = account_view(service.update_account(session, account_id, body.name, body.status))
    if body.status == AccountStatus.SUSPENDED:
        cache.forget_account(account_id)
    return view
