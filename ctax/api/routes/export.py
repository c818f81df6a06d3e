"""Export of labelled data (admin): what the next training run will learn from, as JSONL or CSV."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ctax.api.deps import Admin, SessionDep
from ctax.dataset import export

router = APIRouter(prefix="/v1/export", tags=["export"])

MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


@router.get("", responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}})
def export_labelled(
    request: Request,
    _: Admin,
    session: SessionDep,
    format: Literal["jsonl", "csv"] = "jsonl",
    source: Literal["import", "review", "proposal"] | None = None,
) -> StreamingResponse:
    """The latest annotation of every labelled creative, with its label path and IAB ids where known. JSONL rows
    are in the import format (`ctax creatives import` reads them back); rejected creatives are left out."""
    db = request.app.state.db
    # The key check's transaction would hold SQLite's write lock (BEGIN IMMEDIATE) until the stream ends.
    session.rollback()

    def stream() -> Iterator[str]:
        # Its own session: the response streams after the request's dependencies have closed theirs.
        with db.read() as session:
            yield from export.lines(session, format, source)

    filename = f"ctax-labelled.{format}"
    return StreamingResponse(
        stream(),
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
