"""The FastAPI application factory. The API never opens the vector index and never imports torch:
everything it needs from the index goes through a task."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ctax.api import metrics, web
from ctax.api.dispatch import Dispatcher
from ctax.api.routes import creatives, export, health, keys, labels, models, proposals, review, training
from ctax.config import Settings
from ctax.enums import Role
from ctax.errors import CtaxError
from ctax.store.blobs import BlobStore
from ctax.store.keys import ensure_key
from ctax.store.session import Database

log = logging.getLogger(__name__)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "header"))
        if error.get("type") == "json_invalid":
            return f"invalid JSON body: {error.get('ctx', {}).get('error', error.get('msg'))}"
        parts.append(f"{where or 'request'}: {error.get('msg')}")
    return "; ".join(parts) or "invalid request"


def create_app(settings: Settings | None = None, *, start_dispatcher: bool = True) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.ensure_dirs()
        app.state.db = Database(settings.sqlalchemy_url)
        app.state.blobs = BlobStore(settings.blob_dir)
        app.state.dispatcher = Dispatcher(settings, app.state.db)
        # Whatever a request's write queued (a creative, an outbox job) leaves as soon as it commits.
        app.state.db.on_queued_work = app.state.dispatcher.nudge
        if settings.bootstrap_admin_key:
            with app.state.db.write() as session:
                ensure_key(session, "bootstrap admin", Role.ADMIN, settings.bootstrap_admin_key)
        if start_dispatcher:
            app.state.dispatcher.start()
        yield
        app.state.dispatcher.stop()
        app.state.db.dispose()

    app = FastAPI(
        title="ctax",
        version="1",
        summary="Label ad creatives with taxonomy paths in a shared image-text embedding space.",
        lifespan=lifespan,
    )
    app.state.settings = settings

    @app.exception_handler(CtaxError)
    async def _domain_error(_: Request, exc: CtaxError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid_input", "message": _validation_message(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": "http_error", "message": str(exc.detail)}, status_code=exc.status_code)

    @app.middleware("http")
    async def _limit_body(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        # Headroom above the specific limits, so they answer first with the precise reason.
        limit = settings.max_image_bytes * 2 + settings.max_text_chars * 8 + 1024 * 1024
        if request.url.path.endswith("/batch"):
            limit *= settings.max_batch_items
        if length and length.isdigit() and int(length) > limit:
            return JSONResponse(
                {"error": "payload_too_large", "message": f"request body is {length} bytes; the limit here is {limit}"},
                status_code=413,
            )
        return await call_next(request)

    metrics.install(app)
    for module in (health, creatives, labels, keys, models, training, review, proposals, export, web):
        app.include_router(module.router)
    return app
