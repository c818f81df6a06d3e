"""API keys (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from ctax.api.deps import Admin, DbDep, KeyCacheDep
from ctax.api.params import Id, RequestBody
from ctax.enums import Role
from ctax.store import keys as service
from ctax.store.models import ApiKey

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


class KeyIn(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    role: Role
    account_id: Id | None = Field(
        default=None,
        description="the account a poster key posts for (required for posters, refused for the other roles)",
    )


def key_view(row: ApiKey) -> dict[str, Any]:
    """Build it inside the session's block: it follows the key's account."""
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "account": {"id": row.account.id, "name": row.account.name, "kind": row.account.kind} if row.account else None,
        "prefix": row.prefix,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "revoked_at": row.revoked_at,
    }


@router.post("", status_code=201)
def create_key(body: KeyIn, _: Admin, db: DbDep) -> dict[str, Any]:
    """The key is in this answer only; it is stored hashed."""
    with db.write() as session:
        row, key = service.create_key(session, body.name, body.role, account_id=body.account_id)
        return {**key_view(row), "key": key}


@router.get("")
def list_keys(_: Admin, db: DbDep) -> dict[str, Any]:
    with db.read() as session:
        return {"items": [key_view(row) for row in service.list_keys(session)]}


@router.delete("/{key_id}")
def revoke_key(key_id: Id, _: Admin, db: DbDep, cache: KeyCacheDep) -> dict[str, Any]:
    with db.write() as session:
        view = key_view(service.revoke(session, key_id))
    cache.forget(key_id)  # refused from the next request on, in this process at once
    return view
