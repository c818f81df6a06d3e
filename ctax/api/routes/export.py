"""Export of labelled data (admin): what the next training run will learn from, as JSONL or CSV."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from ctax.api.deps import Admin, DbDep
from ctax.api.routes.accounts import AccountFilter
from ctax.dataset import export
from ctax.enums import Source
from ctax.store import keys

router = APIRouter(prefix="/v1/export", tags=["export"])

MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


@router.get("", responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}})
def export_labelled(
    _: Admin,
    db: DbDep,
    format: export.ExportFormat = "jsonl",
    # Not Source: annotations come from imports, reviews and proposals, and 'api' stays refused (422).
    source: Literal["import", "review", "proposal"] | None = None,
    account_id: AccountFilter = None,
    one_per_group: bool = False,
) -> StreamingResponse:
    """The latest annotation of every labelled creative (or of one account's), with its label path and IAB ids
    where known. JSONL rows are in the import format (`ctax creatives import` reads them back); rejected
    creatives are left out. one_per_group=true keeps one row per near-duplicate group (its first)."""
    only = Source(source) if source else None
    if account_id is not None:
        with db.read() as session:  # an unknown account is a 422 now, not an empty file later
            keys.known_account(session, account_id)

    def stream() -> Iterator[str]:
        # Opened when the response streams, which is after the request's dependencies are done.
        with db.read() as session:
            yield from export.lines(session, format, only, account_id, one_per_group)

    filename = f"ctax-labelled.{format}"
    return StreamingResponse(
        stream(),
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
