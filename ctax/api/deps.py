"""Request-scoped dependencies, as Annotated aliases routes can name.

Routes get the `Database` (`DbDep`) and open one `db.write()` block where they change data (it commits when the
block ends; work the change queued is sent right after) or a `db.read()` block where they only read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from ctax.config import Settings
from ctax.enums import Role
from ctax.store import keys
from ctax.store.blobs import BlobStore
from ctax.store.models import ApiKey
from ctax.store.session import Database


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_blobs(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.blobs
    return blobs


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Database, Depends(get_db)]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]


def _principal(role: Role):  # type: ignore[no-untyped-def]
    def dependency(db: DbDep, x_api_key: Annotated[str | None, Header()] = None) -> ApiKey:
        with db.read() as session:
            key = keys.authenticate(session, x_api_key)
        keys.require(key, role)
        if keys.needs_touch(key):
            with db.write() as session:
                keys.touch(session, key.id)
        return key

    return dependency


Poster = Annotated[ApiKey, Depends(_principal(Role.POSTER))]
Reviewer = Annotated[ApiKey, Depends(_principal(Role.REVIEWER))]
Admin = Annotated[ApiKey, Depends(_principal(Role.ADMIN))]

