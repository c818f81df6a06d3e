"""Accounts (admin): the advertisers and partners poster keys belong to. A poster sees its account's creatives
only; reviewers and admins see every account and may filter by one (`AccountFilter`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from ctax.api.deps import Admin, DbDep
from ctax.api.params import Id, RequestBody
from ctax.enums import AccountKind
from ctax.store import keys as service
from ctax.store.models import Account

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])

AccountFilter = Annotated[Id | None, Query(
    description="only this account's creatives (reviewers and admins; a poster key sees its own account only)",
)]


class AccountIn(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    kind: AccountKind


def account_view(account: Account) -> dict[str, Any]:
    return {"id": account.id, "name": account.name, "kind": account.kind, "created_at": account.created_at}


@router.post("", status_code=201)
def create_account(body: AccountIn, _: Admin, db: DbDep) -> dict[str, Any]:
    """A new account; then make its poster keys with POST /v1/api-keys and its account_id. Names are unique."""
    with db.write() as session:
        return account_view(service.create_account(session, body.name, body.kind))


@router.get("")
def list_accounts(_: Admin, db: DbDep) -> dict[str, Any]:
    with db.read() as session:
        return {"items": [account_view(account) for account in service.list_accounts(session)]}
