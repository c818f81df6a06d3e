"""Request-scoped dependencies, as Annotated aliases routes can name.

Routes get the `Database` (`DbDep`) and open one `db.write()` block where they change data (it commits when the
block ends; work the change queued is sent right after) or a `db.read()` block where they only read.

Keys are read through FastAPI's security classes, so the OpenAPI document declares both ways of sending one (the
`X-API-Key` header, or `Authorization: Bearer`, which tools such as a Prometheus scrape config can send) and every
protected operation names them. Both are built with `auto_error=False`: the answers to a missing, invalid or
too-weak key stay ours (`keys.authenticate` / `keys.require`: 401 and 403 in the API's JSON error format).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ctax.api.key_cache import KeyCache
from ctax.config import Settings
from ctax.enums import Role
from ctax.store import keys
from ctax.store.blobs import BlobStore
from ctax.store.models import ApiKey
from ctax.store.session import Database
from ctax.store.types import utcnow

# The dependencies below are `async def` although they do no I/O: FastAPI runs a plain `def` dependency in its
# thread pool, and a thread hop per dependency per request was a large share of a POST's cost under load.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_blobs(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.blobs
    return blobs


async def get_key_cache(request: Request) -> KeyCache:
    cache: KeyCache = request.app.state.key_cache
    return cache


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Database, Depends(get_db)]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]
KeyCacheDep = Annotated[KeyCache, Depends(get_key_cache)]


api_key_header = APIKeyHeader(name="X-API-Key", scheme_name="ApiKey", auto_error=False,
                              description="An API key (poster, reviewer or admin); admins create them.")
bearer = HTTPBearer(scheme_name="BearerKey", bearerFormat="API key", auto_error=False,
                    description="The same API key as `Authorization: Bearer <key>`.")


async def presented_key(x_api_key: Annotated[str | None, Security(api_key_header)],
                  authorization: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> str | None:
    """The key the client sent: X-API-Key first, else a Bearer token; None when there is neither."""
    return x_api_key or (authorization.credentials if authorization else None)


PresentedKey = Annotated[str | None, Depends(presented_key)]


def _principal(role: Role):  # type: ignore[no-untyped-def]
    async def dependency(db: DbDep, cache: KeyCacheDep, presented: PresentedKey) -> ApiKey:
        key = cache.get(presented) if presented else None
        if key is None:
            key = await run_in_threadpool(_authenticate, db, presented)
            cache.put(presented or "", key)
        keys.require(key, role)
        if keys.needs_touch(key):
            await run_in_threadpool(_touch, db, key)
        return key

    return dependency


def _authenticate(db: Database, presented: str | None) -> ApiKey:
    with db.read() as session:
        return keys.authenticate(session, presented)


def _touch(db: Database, key: ApiKey) -> None:
    with db.write() as session:
        keys.touch(session, key.id)
    key.last_used_at = utcnow()  # the cached copy too, so the next requests do not write again


def _optional_principal(role: Role):  # type: ignore[no-untyped-def]
    """None when no key was sent; otherwise the key, checked exactly as `_principal` checks it."""
    required = _principal(role)

    async def dependency(db: DbDep, cache: KeyCacheDep, presented: PresentedKey) -> ApiKey | None:
        return None if presented is None else await required(db, cache, presented)

    return dependency


Poster = Annotated[ApiKey, Depends(_principal(Role.POSTER))]
Reviewer = Annotated[ApiKey, Depends(_principal(Role.REVIEWER))]
Admin = Annotated[ApiKey, Depends(_principal(Role.ADMIN))]
# Routes that answer anyone but say more to a reviewer (the detailed /readyz).
MaybeReviewer = Annotated[ApiKey | None, Depends(_optional_principal(Role.REVIEWER))]

