"""Query parameters a route does not declare are refused (a 422 naming them), not ignored.

FastAPI reads the parameters a route declares and drops the rest without a word, so `GET
/v1/creatives?stauts=labelled` listed every creative and `GET /v1/review?lable=...` the whole queue: a filter
misspelt is a filter lost, and the client cannot tell. JSON bodies already refuse what they do not declare
(`params.RequestBody`); this does the same for the query string. FastAPI has no switch for it (a Pydantic model
with extra="forbid" per route would, but every route would have to be rewritten around one), so one dependency,
installed on the app, compares the query's names with those the matched route's dependencies declare.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel

UNKNOWN_QUERY = "unknown_query_parameter"
# The JSON API. The pages and their files are left alone: browsers and links add what they like to a page's
# address (the pages' own `?v=` cache-busters, a campaign's utm_* tags), and a page reads nothing from it.
API_PREFIX = "/v1/"


def _query_names(dependant: Dependant) -> Iterator[str]:
    for field in dependant.query_params:
        model = field.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):  # a query model: its fields are the names
            yield from (info.alias or name for name, info in model.model_fields.items())
        else:
            yield field.alias
    for sub in dependant.dependencies:
        yield from _query_names(sub)


def declared_query(route: APIRoute) -> tuple[str, ...]:
    """The names a route reads from the query string (aliases as clients write them), in declaration order."""
    return tuple(dict.fromkeys(_query_names(route.dependant)))


def install(app: FastAPI) -> None:
    """Each route's names are read on its first request, then kept by the route (routes live as long as the app;
    FastAPI builds the app's route table lazily, so they cannot all be read here)."""
    app.state.declared_query = {}


def _unknown(name: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
    hint = f"did you mean {close[0]!r}? " if close else ""
    takes = f"this route takes {', '.join(known)}" if known else "this route takes no query parameters"
    return f"unknown query parameter: {hint}({takes})"


async def refuse_unknown_query(request: Request) -> None:
    """Async, and the names read once per route (`install`): it runs on every request, and a thread hop or a walk
    of the route's dependencies each time would be a cost on the hot POST path for nothing."""
    route = request.scope.get("route")
    if not request.query_params or not isinstance(route, APIRoute) or not route.path.startswith(API_PREFIX):
        return
    cache: dict[int, tuple[str, ...]] = request.app.state.declared_query
    known = cache.get(id(route))
    if known is None:
        known = cache[id(route)] = declared_query(route)
    extra = [name for name in dict.fromkeys(request.query_params.keys()) if name not in known]
    if extra:
        raise RequestValidationError([
            {"type": UNKNOWN_QUERY, "loc": ("query", name), "msg": _unknown(name, known), "input": None}
            for name in extra
        ])
