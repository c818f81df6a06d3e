"""The review web page: a server-rendered shell and static vanilla JS/CSS (no build step). The page asks for an
API key once, keeps it in localStorage, and sends it as X-API-Key on every call, images included (as blob URLs)."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from ctax.errors import NotFound

HERE = Path(__file__).parent
STATIC = HERE / "static"
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(HERE / "templates"))


@cache
def asset_version() -> str:
    """Changes whenever an asset does, so browsers never run a stale script against a new API."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@router.get("/review", response_class=HTMLResponse)
def review_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "review.html", {"version": asset_version()})


@router.get("/review/static/{name}")
def review_asset(name: str) -> FileResponse:
    path = STATIC / name
    if path.suffix not in MEDIA_TYPES or not path.is_file() or path.parent != STATIC:
        raise NotFound(f"no asset {name}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers={"Cache-Control": "public, max-age=86400"})
