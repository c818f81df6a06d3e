"""The FastAPI application factory. The API never opens the vector index and never imports torch:
everything it needs from the index goes through a task."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ctax.api import limits, metrics, query_check, web
from ctax.api.admission import WriteAdmission
from ctax.api.dispatch import Dispatcher
from ctax.api.key_cache import KeyCache
from ctax.api.limits import BodyLimit
from ctax.api.params import problem
from ctax.api.routes import accounts, creatives, export, health, keys, labels, models, proposals, review, training
from ctax.api.routes import search as search_routes
from ctax.api.routes.creative_input import json_problem
from ctax.api.search_client import SearchClient
from ctax.api.throttle import Throttle
from ctax.api.web import maps as map_page
from ctax.config import Settings
from ctax.enums import Role
from ctax.errors import CtaxError
from ctax.store.blobs import BlobStore
from ctax.store.keys import ensure_key
from ctax.store.session import Database

log = logging.getLogger(__name__)


# Where a value came from (the first part of an error's location) is not part of its field's name.
_LOCATIONS = ("body", "query", "path", "header", "cookie")


def _where(error: Mapping[str, Any]) -> str:
    loc = list(error.get("loc", ()))
    if loc and loc[0] in _LOCATIONS:
        loc = loc[1:]
    return ".".join(str(p) for p in loc)


def _first_field(exc: RequestValidationError) -> str | None:
    errors = exc.errors()
    if not errors or errors[0].get("type") == "json_invalid":
        return None
    return _where(errors[0]) or None


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = _where(error)
        if error.get("type") == "json_invalid":
            return f"invalid JSON body: {error.get('ctx', {}).get('error', error.get('msg'))}"
        parts.append(f"{where or 'request'}: {problem(error)}")
    return "; ".join(parts) or "invalid request"


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is JSON in one format, {"error": code, "message": text naming the field and the limit}."""

    @app.exception_handler(CtaxError)
    async def _domain_error(_: Request, exc: CtaxError) -> JSONResponse:
        # Retry-After on a 503 that expects to pass (SearchUnavailable) and on a 429 (RateLimited).
        return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        field = _first_field(exc)
        body: dict[str, Any] = {"error": "invalid_input", "message": _validation_message(exc)}
        if field:
            body["detail"] = {"field": field}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        cause = exc.__cause__
        if isinstance(cause, RecursionError | ValueError):
            # FastAPI answers any failure to parse a body with a 400 "There was an error parsing the body"; JSON
            # nested past the parser's recursion limit, a 5,000-digit number or bytes that are not UTF-8 are the
            # client's doing, and said so.
            problem = "nested too deeply" if isinstance(cause, RecursionError) else json_problem(cause)
            return JSONResponse({"error": "invalid_input", "message": f"invalid JSON body: {problem}"},
                                status_code=422)
        return JSONResponse({"error": "http_error", "message": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the exception and re-raises it after this answer; the client gets the same format as
        # every other error, not a plain-text "Internal Server Error".
        return JSONResponse({"error": "internal_error",
                             "message": f"internal error while answering {request.method} {request.url.path}; "
                                        "it was logged"}, status_code=500)


def create_app(settings: Settings | None = None, *, start_dispatcher: bool = True) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.ensure_dirs()
        app.state.db = Database(settings.sqlalchemy_url, lock_wait_s=settings.database_lock_wait_s)
        app.state.blobs = BlobStore(settings.blob_dir)
        app.state.key_cache = KeyCache(settings.key_cache_s)
        app.state.dispatcher = Dispatcher(settings, app.state.db)
        app.state.search = SearchClient(settings, app.state.db)
        app.state.throttle = Throttle(settings)
        # Whatever a request's write queued (a creative, an outbox job) leaves as soon as it commits.
        app.state.db.on_queued_work = app.state.dispatcher.nudge
        if settings.bootstrap_admin_key:
            with app.state.db.write() as session:
                ensure_key(session, "bootstrap admin", Role.ADMIN, settings.bootstrap_admin_key)
        if start_dispatcher:
            app.state.dispatcher.start()
        yield
        app.state.dispatcher.stop()
        await app.state.throttle.close()
        app.state.db.dispose()

    app = FastAPI(
        title="ctax",
        version="1",
        summary="Label ad creatives with taxonomy paths in a shared image-text embedding space.",
        lifespan=lifespan,
        dependencies=[Depends(query_check.refuse_unknown_query)],
    )
    app.state.settings = settings

    _install_error_handlers(app)
    # Writes waiting on a lock leave threads to reads. Inside BodyLimit (added before it): outside it, bench.load's
    # posts/s on SQLite fell by ~45% (2026-12-07, not explained); inside, they did not fall.
    app.add_middleware(WriteAdmission)
    # Outermost of ours: a body over its limit is refused before any route or parser holds it in memory.
    app.add_middleware(BodyLimit, limit_for=limits.limit_for(settings))
    metrics.install(app)
    for module in (health, creatives, labels, accounts, keys, models, training, review, proposals, export,
                   search_routes, web, map_page):
        app.include_router(module.router)
    query_check.install(app)
    return app
