"""The /map page: a shell like the review page's (the same sign-in, key and CSP) and the JSON it draws.

The projection is never computed here (the API imports neither the index nor UMAP): the process that owns the
index writes it (ctax.pictures.map) when asked through POST /v1/map/refresh, and after a promotion once a map
exists; GET /v1/map serves that file as it is."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from ctax.api.deps import DbDep, Reviewer, SettingsDep
from ctax.api.web import SECURITY_HEADERS, asset_version, page_vocabulary, templates
from ctax.errors import NotFound
from ctax.jobs import REFRESH_MAP
from ctax.store import outbox

router = APIRouter()


@router.get("/map", response_class=HTMLResponse, include_in_schema=False)
def map_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "map.html", {"version": asset_version(),
                                                            "vocabulary": page_vocabulary()},
                                      headers=SECURITY_HEADERS)


@router.get("/v1/map", tags=["map"], responses={404: {"description": "no map drawn yet"}})
def get_map(_: Reviewer, settings: SettingsDep) -> Response:
    """The active version's labels and recent creatives in 2-D, as the index owner last drew them."""
    path = settings.map_path
    if not path.is_file():
        raise NotFound("no map has been drawn yet: POST /v1/map/refresh asks the labelling worker for one")
    return Response(path.read_bytes(), media_type="application/json", headers={"Cache-Control": "no-store"})


@router.post("/v1/map/refresh", status_code=202, tags=["map"])
def refresh_map(_: Reviewer, db: DbDep) -> dict[str, Any]:
    """Ask the labelling worker (the index owner) to draw the map again; GET /v1/map shows it when done."""
    with db.write() as session:
        job = outbox.enqueue(session, REFRESH_MAP)
        session.flush()
        job_id = job.id
    return {"job_id": job_id, "status": "queued"}
