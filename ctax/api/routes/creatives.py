"""POST /v1/creatives (multipart or JSON), /v1/creatives/batch, GET /v1/creatives/{id}, retry, image."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from ctax.api.deps import BlobsDep, DispatcherDep, Poster, SessionDep, SettingsDep
from ctax.config import Settings
from ctax.creatives import intake as service
from ctax.errors import InvalidInput, NotFound, PayloadTooLarge, UnsupportedMediaType
from ctax.store.blobs import BlobStore
from ctax.store.models import ApiKey, Creative, ReviewItem

router = APIRouter(prefix="/v1/creatives", tags=["creatives"])


class CreativeJSON(BaseModel):
    image_base64: str | None = Field(None, description="PNG, JPEG or WebP, base64-encoded")
    ocr_text: str | None = Field(None, description="The creative's text, if known")
    texts: list[str] | None = Field(None, description="Several text segments (e.g. headline, body)")
    asserted_label: str | int | None = Field(None, description="The label the poster claims: a path or an id")
    external_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class BatchJSON(BaseModel):
    items: list[CreativeJSON]


class Accepted(BaseModel):
    id: str
    status: str
    created: bool


class BatchAccepted(BaseModel):
    items: list[Accepted]


_MULTIPART_SCHEMA = {
    "type": "object",
    "properties": {
        "image": {"type": "string", "format": "binary"},
        "ocr_text": {"type": "string"},
        "asserted_label": {"type": "string"},
        "external_id": {"type": "string"},
        "metadata": {"type": "string", "description": "a JSON object"},
    },
}


def _decode_base64(value: str, where: str, max_bytes: int) -> bytes:
    if len(value) > (max_bytes * 4) // 3 + 8:
        raise PayloadTooLarge(f"{where}: image is larger than {max_bytes} bytes", field=where)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{where}: image_base64 is not valid base64", field=where) from exc


def _from_json(
    item: CreativeJSON, idempotency_key: str | None, settings: Settings, where: str = "image_base64"
) -> service.CreativeSubmission:
    texts = list(item.texts or [])
    if item.ocr_text is not None:
        texts.insert(0, item.ocr_text)
    image = _decode_base64(item.image_base64, where, settings.max_image_bytes) if item.image_base64 else None
    return service.CreativeSubmission(
        texts=texts,
        image=image,
        asserted_label=item.asserted_label,
        external_id=item.external_id,
        metadata=item.metadata,
        idempotency_key=idempotency_key,
    )


async def _from_multipart(
    request: Request, idempotency_key: str | None, settings: Settings
) -> service.CreativeSubmission:
    form = await request.form(max_files=1, max_fields=32, max_part_size=settings.max_image_bytes + 1)
    image: bytes | None = None
    upload = form.get("image")
    if isinstance(upload, UploadFile):
        image = await upload.read(settings.max_image_bytes + 1)
        if len(image) > settings.max_image_bytes:
            raise PayloadTooLarge(f"image is larger than {settings.max_image_bytes} bytes", field="image")
    elif upload is not None:
        raise InvalidInput("image must be a file upload (multipart field 'image')", field="image")
    metadata: Any = {}
    raw_metadata = form.get("metadata")
    if raw_metadata:
        try:
            metadata = json.loads(str(raw_metadata))
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"metadata is not valid JSON: {exc}", field="metadata") from exc
    texts = [str(t) for t in form.getlist("ocr_text") if not isinstance(t, UploadFile)]
    asserted = form.get("asserted_label")
    external = form.get("external_id")
    return service.CreativeSubmission(
        texts=texts,
        image=image,
        asserted_label=str(asserted) if asserted else None,
        external_id=str(external) if external else None,
        metadata=metadata,
        idempotency_key=idempotency_key,
    )


def _store(
    session: Session, blobs: BlobStore, settings: Settings, subs: list[service.CreativeSubmission], key: ApiKey
) -> list[tuple[Creative, bool]]:
    """All or nothing: one transaction for the whole request."""
    try:
        results = []
        for n, sub in enumerate(subs):
            try:
                results.append(service.create_creative(session, blobs, settings, sub, key.id))
            except InvalidInput as exc:
                if len(subs) > 1:
                    raise type(exc)(f"items[{n}]: {exc.message}", item=n, **exc.detail) from exc
                raise
        session.commit()
        return results
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the race: answer with its creative.
        session.rollback()
        replay = []
        for sub in subs:
            clean = service.validate_submission(sub, settings)
            existing = service.find_idempotent(session, key.id, sub.idempotency_key or "", service.request_hash(clean))
            if existing is None:
                raise
            replay.append((existing, False))
        return replay


async def _read_submissions(
    request: Request, idempotency_key: str | None, settings: Settings, batch: bool
) -> list[service.CreativeSubmission]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data") and not batch:
        return [await _from_multipart(request, idempotency_key, settings)]
    if not content_type.startswith("application/json"):
        accepted = "application/json" if batch else "multipart/form-data or application/json"
        raise UnsupportedMediaType(f"send {accepted}, not {content_type or 'no content type'}")
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"invalid JSON body: {exc}") from exc
    from pydantic import ValidationError

    try:
        if batch:
            parsed = BatchJSON.model_validate(body)
            if not parsed.items:
                raise InvalidInput("items is empty", field="items")
            if len(parsed.items) > settings.max_batch_items:
                raise PayloadTooLarge(f"{len(parsed.items)} items; the limit is {settings.max_batch_items}")
            return [
                _from_json(
                    item, f"{idempotency_key}:{n}" if idempotency_key else None, settings, f"items[{n}].image_base64"
                )
                for n, item in enumerate(parsed.items)
            ]
        return [_from_json(CreativeJSON.model_validate(body), idempotency_key, settings)]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{where or 'body'}: {first['msg']}", field=where) from exc


@router.post(
    "",
    status_code=202,
    response_model=Accepted,
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
                "application/json": {"schema": CreativeJSON.model_json_schema()},
            },
            "required": True,
        }
    },
)
async def post_creative(
    request: Request,
    response: Response,
    key: Poster,
    session: SessionDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Accepted:
    """Accept a creative (an image, its text, or both) and answer at once; labelling happens in the worker."""
    subs = await _read_submissions(request, idempotency_key, settings, batch=False)
    [(creative, created)] = await run_in_threadpool(_store, session, blobs, settings, subs, key)
    if created:
        dispatcher.nudge()
    else:
        response.headers["Idempotent-Replayed"] = "true"
    return Accepted(id=creative.id, status=creative.status, created=created)


@router.post(
    "/batch",
    status_code=202,
    response_model=BatchAccepted,
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": BatchJSON.model_json_schema()}}, "required": True}
    },
)
async def post_batch(
    request: Request,
    key: Poster,
    session: SessionDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> BatchAccepted:
    """Accept many creatives in one request: all of them or, if any is invalid, none."""
    subs = await _read_submissions(request, idempotency_key, settings, batch=True)
    results = await run_in_threadpool(_store, session, blobs, settings, subs, key)
    if any(created for _, created in results):
        dispatcher.nudge()
    return BatchAccepted(items=[Accepted(id=c.id, status=c.status, created=created) for c, created in results])


def creative_view(creative: Creative, review: ReviewItem | None = None) -> dict[str, Any]:
    prediction = creative.prediction or {}
    return {
        "id": creative.id,
        "status": creative.status,
        "external_id": creative.external_id,
        "source": creative.source,
        "texts": creative.texts,
        "ocr_text": creative.ocr_text,
        "image": {
            "sha256": creative.image_sha256,
            "mime": creative.image_mime,
            "width": creative.image_width,
            "height": creative.image_height,
            "url": f"/v1/creatives/{creative.id}/image",
        }
        if creative.image_sha256
        else None,
        "asserted_label": {
            "label_id": creative.asserted_label_id,
            "path": creative.asserted_label.path if creative.asserted_label else None,
        }
        if creative.asserted_label_id
        else None,
        "metadata": creative.metadata_,
        "created_at": creative.created_at,
        "labelled_at": creative.labelled_at,
        "attempts": creative.attempts,
        "error": creative.error,
        "model_version": creative.model_version_id,
        "top_k": prediction.get("top_k", []),
        "decided_label": prediction.get("decided_label"),
        "flag": creative.flag,
        "scores": prediction.get("scores"),
        "reasons": prediction.get("reasons", []),
        "modalities": prediction.get("modalities"),
        "modalities_used": prediction.get("modalities_used", []),
        "review": {"id": review.id, "status": review.status, "flag": review.flag} if review else None,
    }


@router.get("/{creative_id}")
def get_creative(creative_id: str, _: Poster, session: SessionDep) -> dict[str, Any]:
    creative = service.get_creative(session, creative_id)
    review = session.scalar(select(ReviewItem).where(ReviewItem.creative_id == creative.id))
    return creative_view(creative, review)


@router.get("")
def list_creatives(
    _: Poster,
    session: SessionDep,
    status: Annotated[str | None, Query(pattern="^(queued|processing|labelled|failed)$")] = None,
    flag: Annotated[str | None, Query(pattern="^(none|new_label|wrong_label|low_confidence)$")] = None,
    external_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    query = select(Creative)
    if status:
        query = query.where(Creative.status == status)
    if flag:
        query = query.where(Creative.flag == flag)
    if external_id:
        query = query.where(Creative.external_id == external_id)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(query.order_by(Creative.created_at.desc(), Creative.id).limit(limit).offset(offset))
    return {"items": [creative_view(c) for c in rows], "total": total, "limit": limit, "offset": offset}


@router.post("/{creative_id}/retry", status_code=202, response_model=Accepted)
def retry_creative(creative_id: str, _: Poster, session: SessionDep, dispatcher: DispatcherDep) -> Accepted:
    creative = service.retry(session, service.get_creative(session, creative_id))
    session.commit()
    dispatcher.nudge()
    return Accepted(id=creative.id, status=creative.status, created=False)


@router.get("/{creative_id}/image", responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}})
def get_image(creative_id: str, _: Poster, session: SessionDep, blobs: BlobsDep) -> Response:
    creative = service.get_creative(session, creative_id)
    if not creative.image_sha256:
        raise NotFound(f"creative {creative_id} has no image")
    return Response(
        blobs.get(creative.image_sha256),
        media_type=creative.image_mime or "application/octet-stream",
        headers={"Cache-Control": "private, max-age=86400"},
    )
