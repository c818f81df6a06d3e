"""The review web page: a server-rendered shell and static vanilla JS/CSS (no build step). The page asks for an
API key once, keeps it in localStorage, and sends it as X-API-Key on every call, images included (as blob URLs).

The page does not hard-code the vocabulary of flags, actions and statuses: the shell carries `ctax.enums` as a JSON
data block (`<script type="application/json" id="ctax-vocabulary">`), which browsers never execute, so a
Content-Security-Policy without inline scripts still allows it; review.js reads it before anything else.

The page and its assets are sent with a Content-Security-Policy that allows only this origin's script, style,
fetches and images (plus the blob: URLs images are shown through, and the data: favicon), no inline script or
style (review.js sets computed sizes through the CSSOM, which CSP allows, never `style=` attributes), and no
framing (with `X-Frame-Options: DENY` for browsers that predate `frame-ancestors`, and `nosniff` so an asset is
never run as another type). The page shows untrusted text; the escaping in review.js is the first defence, and
this policy keeps a miss in it from running script.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from ctax.enums import Flag, QueueOrder, vocabulary
from ctax.errors import NotFound

HERE = Path(__file__).parent
STATIC = HERE / "static"
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

# What the page's narrow chips and menus call each flag and order; FLAG_TITLES (in the vocabulary) heads an item.
FLAG_SHORT = {Flag.NEW_LABEL: "Fits no label", Flag.WRONG_LABEL: "Wrong label", Flag.LOW_CONFIDENCE: "Unsure"}
ORDER_TITLES = {
    QueueOrder.PRIORITY: "Most instructive first",
    QueueOrder.NEWEST: "Newest first",
    QueueOrder.OLDEST: "Oldest first",
    QueueOrder.SCORE: "Lowest score first",
    QueueOrder.SCORE_DESC: "Highest score first",
}

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' blob: data:",
    "connect-src 'self'", "font-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(HERE / "templates"))


@cache
def asset_version() -> str:
    """Changes whenever an asset does, so browsers never run a stale script against a new API."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def page_vocabulary() -> dict[str, object]:
    """`ctax.enums.vocabulary()` and the page's short names for flags and orders, keyed by value."""
    flags: dict[str, str] = {flag.value: FLAG_SHORT.get(flag, flag.value) for flag in Flag if flag is not Flag.NONE}
    orders = {order.value: ORDER_TITLES.get(order, order.value) for order in QueueOrder}
    return {**vocabulary(), "flag_short": flags, "order_titles": orders}


@router.get("/review", response_class=HTMLResponse)
def review_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "review.html", {"version": asset_version(),
                                                               "vocabulary": page_vocabulary()},
                                      headers=SECURITY_HEADERS)


@router.get("/review/static/{name}")
def review_asset(name: str) -> FileResponse:
    path = STATIC / name
    if path.suffix not in MEDIA_TYPES or not path.is_file() or path.parent != STATIC:
        raise NotFound(f"no asset {name}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix],
                        headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=86400"})
