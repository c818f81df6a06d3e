"""Liveness and readiness.

`/healthz` (liveness) and the bare `/readyz` answer anyone: load balancers and orchestrators send no key and need
only the status code. The detail of `/readyz` (the problems, each worker's name, queues, device and host facts,
the active model version) is for reviewers and admins: it answers in full only to such a key, sent as X-API-Key
or `Authorization: Bearer`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ctax.api.deps import DbDep, MaybeReviewer, SettingsDep
from ctax.creatives.readiness import readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


# The key is optional here: the empty requirement `{}`, added to the two schemes FastAPI lists, says so in OpenAPI.
@router.get("/readyz", openapi_extra={"security": [{}]})
def readyz(db: DbDep, settings: SettingsDep, key: MaybeReviewer) -> JSONResponse:
    """200 only when the API can accept creatives and a live worker can label them; with a reviewer or admin key,
    also why not, the workers seen and the active model version."""
    return _answer(readiness(db, settings), key)


def _answer(body: dict[str, Any], key: object) -> JSONResponse:
    """The status code says ready or not to anyone; only a reviewer's key gets the body's detail."""
    status_code = 200 if body["status"] == "ready" else 503
    return JSONResponse(body if key is not None else {"status": body["status"]}, status_code=status_code)

