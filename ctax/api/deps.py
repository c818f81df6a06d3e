"""Request-scoped dependencies, as Annotated aliases routes can name."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from ctax.api.dispatch import Dispatcher
from ctax.config import Settings
from ctax.store.blobs import BlobStore
from ctax.store.keys import Role, authenticate, require
from ctax.store.models import ApiKey, utcnow


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """Routes commit explicitly (before they hand work to the dispatcher); anything left is rolled back."""
    session = request.app.state.db._sessions()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def get_blobs(request: Request) -> BlobStore:
    return request.app.state.blobs


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]


def _principal(role: Role):  # type: ignore[no-untyped-def]
    def dependency(session: SessionDep, x_api_key: Annotated[str | None, Header()] = None) -> ApiKey:
        key = authenticate(session, x_api_key)
        require(key, role)
        if key.last_used_at is None or utcnow() - key.last_used_at > dt.timedelta(minutes=5):
            key.last_used_at = utcnow()
            session.commit()
        return key

    return dependency


Poster = Annotated[ApiKey, Depends(_principal("poster"))]
Reviewer = Annotated[ApiKey, Depends(_principal("reviewer"))]
Admin = Annotated[ApiKey, Depends(_principal("admin"))]
