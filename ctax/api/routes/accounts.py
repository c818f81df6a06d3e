"""Accounts (admin): the advertisers and partners poster keys belong to. A poster sees its account's creatives
only; reviewers and admins see every account and may filter by one (`AccountFilter`). An admin suspends an account
(its poster keys are refused until it is resumed), renames it, gives it its own rate limits or quota, or erases
it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field, field_validator

from ctax import settings_checks as checks
from ctax.api.deps import Admin, DbDep, KeyCacheDep, SettingsDep
from ctax.api.params import Id, Name, RequestBody
from ctax.api.throttle import rate_limits_view
from ctax.config import Settings
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


class RateLimitsIn(RequestBody):
    creatives: str | None = Field(default=None, examples=["60000/minute"], description="creatives it may post")
    searches: str | None = Field(default=None, examples=["none"], description="searches it may make")

    @field_validator("creatives", "searches")
    @classmethod
    def _limit(cls, value: str | None) -> str | None:
        return checks.account_rate_limit(value)


class QuotasIn(RequestBody):
    creatives: int | str | None = Field(default=None, examples=[100000],
                                        description="creatives it may hold at once")

    @field_validator("creatives", mode="before")
    @classmethod
    def _quota(cls, value: int | str | None) -> int | str | None:
        return checks.account_quota(value)


class AccountChange(RequestBody):
    name: Name | None = Field(default=None, description="a new name (names are unique)")
    status: AccountStatus | None = Field(
        default=None, description="suspended: its poster keys are refused (403 account_suspended) until it is "
                                  "active again; its creatives stay, and those already sent are still labelled")
    rate_limits: RateLimitsIn | None = Field(default=None, description="its own limits, in the notation of "
        "CTAX_RATE_LIMIT_* ('6000/minute', '100/second; 6000/minute'), 'none' for no limit, or 'default' (or null) "
        "to follow the service's again; a kind left out stays as it is")
    quotas: QuotasIn | None = Field(default=None, description="its own quotas: a number, 'none' for no quota, or "
        "'default' (or null) to follow CTAX_QUOTA_* again; a post that would pass one is refused (403)")


def account_view(account: Account, settings: Settings) -> dict[str, Any]:
    return {"id": account.id, "name": account.name, "kind": account.kind,
            "status": service.account_status(account),
            "suspended_at": account.suspended_at, "erasing_at": account.erasing_at, "created_at": account.created_at,
            "rate_limits": rate_limits_view(account, settings), "quotas": quotas_view(account, settings)}


def quotas_view(account: Account, settings: Settings) -> dict[str, dict[str, Any]]:
    quota, own = settings.for_account("quota", "creatives", account.quotas)
    # held: the count the quota is checked against; null where none is kept (no quota yet, or none since it changed)
    return {"creatives": {"quota": quota if quota is not None else "none", "own": own,
                          "held": account.creatives_held}}


@router.post("", status_code=201)
def create_account(body: AccountIn, _: Admin, db: DbDep, settings: SettingsDep) -> dict[str, Any]:
    """A new account; then make its poster keys with POST /v1/api-keys and its account_id. Names are unique."""
    with db.write() as session:
        return account_view(service.create_account(session, body.name, body.kind), settings)


@router.get("")
def list_accounts(_: Admin, db: DbDep, settings: SettingsDep, status: AccountStatus | None = None) -> dict[str, Any]:
    with db.read() as session:
        return {"items": [account_view(account, settings) for account in service.list_accounts(session, status)]}


@router.get("/{account_id}")
def get_account(account_id: Id, _: Admin, db: DbDep, settings: SettingsDep) -> dict[str, Any]:
    """The account, its rate limits, its poster keys (active, revoked) and its creatives by status."""
    with db.read() as session:
        account = service.get_account(session, account_id)
        return {**account_view(account, settings), **service.account_usage(session, account)}


@router.patch("/{account_id}")
def change_account(account_id: Id, body: AccountChange, _: Admin, db: DbDep, cache: KeyCacheDep,
                   settings: SettingsDep) -> dict[str, Any]:
    """Rename, suspend or resume, or give it its own rate limits or quota. A suspension, a new limit or a new quota
    takes effect at once in this API process, and in others within CTAX_KEY_CACHE_S seconds (how long a process
    trusts a key it checked, and the account it read with it). A quota below what the account holds refuses its
    posts until it holds less; nothing stored is removed."""
    limits = body.rate_limits.model_dump(exclude_unset=True) if body.rate_limits else None
    quotas = body.quotas.model_dump(exclude_unset=True) if body.quotas else None
    with db.write() as session:
        view = account_view(service.update_account(session, account_id, body.name, body.status, limits, quotas),
                            settings)
    if body.status == AccountStatus.SUSPENDED or limits or quotas:
        cache.forget_account(account_id)
    return view


@router.delete("/{account_id}", status_code=202, responses={404: {"description": "no such account"}})
def erase_account(account_id: Id, _: Admin, db: DbDep, cache: KeyCacheDep, settings: SettingsDep) -> dict[str, Any]:
    """Erase the account: its keys are refused from now on, and a worker removes its creatives (as DELETE
    /v1/creatives/{id} removes one: labelled data, review items, images, index points), then its keys and the
    account itself. It answers at once; GET /v1/accounts/{id} says `erasing` and what is left, then 404 once it is
    gone. Asking again while it is being erased picks up an erasure whose worker was lost."""
    with db.write() as session:
        account = service.start_erasure(session, account_id)
        view = {**account_view(account, settings), **service.account_usage(session, account)}
    cache.forget_account(account_id)
    return view
