"""POST /v1/search: the creatives and labels nearest a text, an image, both, or a stored creative, in the active
version's space. The API checks the request (and who may see what), the index owner answers (a task: see
ctax/api/search_client.py), and the API waits for it."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, model_validator

from ctax.api.deps import DbDep, Poster, SettingsDep
from ctax.api.params import CreativeId, Id, LabelRef, LongText, RequestBody
from ctax.api.search_client import SearchClient
from ctax.api.throttle import RATE_LIMITED, SearchAllowance
from ctax.config import Settings
from ctax.creatives.images import validate_image
from ctax.enums import CreativeStatus, Flag, ReviewStatus, Role
from ctax.errors import InvalidInput, NotFound, PayloadTooLarge
from ctax.search.query import SearchQuery
from ctax.store import keys
from ctax.store.models import ApiKey
from ctax.store.repos import labels as label_rows
from ctax.store.repos import search as search_rows
from ctax.store.repos.search import SearchFilter
from ctax.store.session import Database, Session
from ctax.taxonomy.catalog import find_label

router = APIRouter(prefix="/v1", tags=["search"])


class SearchFilters(RequestBody):
    label: LabelRef | None = Field(None, description="a label path or id: the decided label is it or below it")
    flag: list[Flag] | None = Field(None, max_length=len(Flag), description="the creative's flag is one of these")
    status: list[CreativeStatus] | None = Field(None, max_length=len(CreativeStatus),
                                                description="the creative's status is one of these")
    review_status: list[ReviewStatus] | None = Field(
        None, max_length=len(ReviewStatus), description="the creative's review item is in one of these states")
    account_id: Id | None = Field(None, description="only this account's creatives (reviewers and admins; a poster "
                                                    "always searches its own account only)")
    created_after: dt.datetime | None = Field(None, description="created at or after (ISO 8601; UTC if no zone)")
    created_before: dt.datetime | None = Field(None, description="created before (ISO 8601; UTC if no zone)")


class SearchIn(RequestBody):
    text: LongText | None = Field(None, description="a text query")
    image_base64: str | None = Field(None, description="an image query: PNG, JPEG or WebP, base64-encoded")
    creative_id: CreativeId | None = Field(
        None, description="a stored creative: its neighbours (it is never its own)")
    filters: SearchFilters = Field(default_factory=lambda: SearchFilters.model_validate({}))
    limit: int = Field(10, ge=1, le=100, description="creatives to return")
    labels_limit: int = Field(5, ge=0, le=50, description="labels to return")

    @model_validator(mode="after")
    def _something_to_search(self) -> SearchIn:
        if self.text is not None and not self.text.strip():
            raise ValueError("text is empty: give words to search for, or leave it out")
        if not (self.text or self.image_base64 or self.creative_id):
            raise ValueError("nothing to search for: give text, image_base64 or creative_id")
        if self.creative_id and (self.text or self.image_base64):
            raise ValueError("creative_id searches by a stored creative: give it alone, without text or image_base64")
        return self


class LabelHitOut(BaseModel):
    id: int
    path: str
    similarity: float


class DecidedLabel(BaseModel):
    id: int
    path: str | None


class CreativeHitOut(BaseModel):
    id: str
    similarity: float = Field(description="cosine similarity to the query in the version's space")
    decided_label: DecidedLabel | None
    flag: str | None
    status: str
    review_item_id: int | None
    review_status: str | None
    image_url: str | None
    text_excerpt: str | None
    created_at: str
    account_id: int | None


class QueryOut(BaseModel):
    kind: str = Field(description="text, image, text+image or creative")
    creative_id: str | None
    modalities_used: list[str]


class Indexed(BaseModel):
    creatives: int = Field(description="creatives the version has indexed (searchable)")
    total: int = Field(description="labelled creatives stored: fewer indexed means a backfill is under way")


class SearchOut(BaseModel):
    model_version: str
    query: QueryOut
    creatives: list[CreativeHitOut]
    labels: list[LabelHitOut]
    indexed: Indexed
    took_ms: float = Field(description="the whole search as the API saw it (queue, worker, answer)")
    search_ms: float = Field(description="the part the index owner spent")


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value.astimezone(dt.UTC) if value else None
    return value.replace(tzinfo=dt.UTC)


def _decode_image(value: str, settings: Settings) -> bytes:
    if len(value) > (settings.max_image_bytes * 4) // 3 + 8:
        raise PayloadTooLarge(f"image_base64: image is larger than {settings.max_image_bytes} bytes",
                              field="image_base64")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("image_base64 is not valid base64", field="image_base64") from exc
    # Refused here (415 / 413 / 422, as POST /v1/creatives does), before any worker is asked.
    validate_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels,
                   budget_pixels=settings.image_decode_budget_pixels)
    return data


def _label_id(session: Session, reference: str | int) -> int:
    """A label given by id or path; retired labels too (creatives decided before it retired are searchable)."""
    label = None
    if isinstance(reference, int) or reference.isdigit():
        label = label_rows.get(session, int(reference))
    else:
        try:
            label = find_label(session, reference)
        except InvalidInput as exc:
            raise InvalidInput(f"filters.label: {exc.message}", field="filters.label") from exc
    if label is None:
        raise InvalidInput(f"filters.label: unknown label {reference!r}", field="filters.label")
    return label.id


def build_query(db: Database, key: ApiKey, body: SearchIn, settings: Settings) -> SearchQuery:
    f = body.filters
    image = _decode_image(body.image_base64, settings) if body.image_base64 else None
    with db.read() as session:
        account_id = keys.account_scope(session, key, f.account_id)
        label_id = _label_id(session, f.label) if f.label is not None else None
        if body.creative_id is not None and not search_rows.exists(
                session, body.creative_id, key.account_id if key.role == Role.POSTER else None):
            raise NotFound(f"no creative with id {body.creative_id}", field="creative_id")
    return SearchQuery(
        text=body.text, image=image, creative_id=body.creative_id, limit=body.limit, labels_limit=body.labels_limit,
        filter=SearchFilter(label_id=label_id, flags=f.flag or [], statuses=f.status or [],
                            review_statuses=f.review_status or [], account_id=account_id,
                            created_after=_utc(f.created_after), created_before=_utc(f.created_before)))


@router.post("/search", response_model=SearchOut, dependencies=[SearchAllowance], responses={
    **RATE_LIMITED,
    404: {"description": "creative_id is unknown (or, for a poster, another account's)"},
    413: {"description": "the image is too large"},
    415: {"description": "image_base64 is not a PNG, JPEG or WebP image"},
    422: {"description": "nothing to search for, empty text, a bad filter (an unknown label names it)"},
    503: {"description": "no worker answered within CTAX_SEARCH_TIMEOUT_S (Retry-After says when to try again)"},
})
def search(body: SearchIn, request: Request, key: Poster, db: DbDep, settings: SettingsDep) -> dict[str, Any]:
    """The creatives (best first, with their similarity, decided label, flag, status and review item) and the
    labels nearest the query in the active model version's shared space.

    Query by `text`, `image_base64`, both, or `creative_id` (a stored creative; never returned as its own
    neighbour). Reviewers and admins search every account (or one, with `filters.account_id`); a poster key
    searches its own account's creatives only. `indexed` says how many creatives the version can find of those
    stored: fewer while a new version is being filled in."""
    query = build_query(db, key, body, settings)
    client: SearchClient = request.app.state.search
    return client.search(query.to_json())
