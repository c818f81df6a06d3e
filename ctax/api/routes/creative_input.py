"""Reading creatives from a request: one as multipart or JSON, or a batch as JSON; every refusal says which field."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from ctax.config import Settings
from ctax.creatives.validation import CreativeSubmission
from ctax.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType


class CreativeJSON(BaseModel):
    image_base64: str | None = Field(None, description="PNG, JPEG or WebP, base64-encoded")
    ocr_text: str | None = Field(None, description="The creative's text, if known")
    texts: list[str] | None = Field(None, description="Several text segments (e.g. headline, body)")
    asserted_label: str | int | None = Field(None, description="The label the poster claims: a path or an id")
    external_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class BatchJSON(BaseModel):
    items: list[CreativeJSON]


MULTIPART_SCHEMA = {
    "type": "object",
    "properties": {
        "image": {"type": "string", "format": "binary"},
        "ocr_text": {"type": "string"},
        "asserted_label": {"type": "string"},
        "external_id": {"type": "string"},
        "metadata": {"type": "string", "description": "a JSON object"},
    },
}


async def read_submissions(
    request: Request, idempotency_key: str | None, settings: Settings, batch: bool
) -> list[CreativeSubmission]:
    """The creatives a POST carries; a batch's items get `<Idempotency-Key>:<n>` as their keys."""
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
    try:
        if batch:
            return _from_batch(BatchJSON.model_validate(body), idempotency_key, settings)
        return [_from_json(CreativeJSON.model_validate(body), idempotency_key, settings)]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{where or 'body'}: {first['msg']}", field=where) from exc


def _from_batch(parsed: BatchJSON, idempotency_key: str | None, settings: Settings) -> list[CreativeSubmission]:
    if not parsed.items:
        raise InvalidInput("items is empty", field="items")
    if len(parsed.items) > settings.max_batch_items:
        raise PayloadTooLarge(f"{len(parsed.items)} items; the limit is {settings.max_batch_items}")
    return [
        _from_json(item, f"{idempotency_key}:{n}" if idempotency_key else None, settings, f"items[{n}].image_base64")
        for n, item in enumerate(parsed.items)
    ]


def _decode_base64(value: str, where: str, max_bytes: int) -> bytes:
    if len(value) > (max_bytes * 4) // 3 + 8:
        raise PayloadTooLarge(f"{where}: image is larger than {max_bytes} bytes", field=where)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{where}: image_base64 is not valid base64", field=where) from exc


def _from_json(
    item: CreativeJSON, idempotency_key: str | None, settings: Settings, where: str = "image_base64"
) -> CreativeSubmission:
    texts = list(item.texts or [])
    if item.ocr_text is not None:
        texts.insert(0, item.ocr_text)
    image = _decode_base64(item.image_base64, where, settings.max_image_bytes) if item.image_base64 else None
    return CreativeSubmission(
        texts=texts,
        image=image,
        asserted_label=item.asserted_label,
        external_id=item.external_id,
        metadata=item.metadata,
        idempotency_key=idempotency_key,
    )


async def _from_multipart(request: Request, idempotency_key: str | None, settings: Settings) -> CreativeSubmission:
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
    return CreativeSubmission(
        texts=texts,
        image=image,
        asserted_label=str(asserted) if asserted else None,
        external_id=str(external) if external else None,
        metadata=metadata,
        idempotency_key=idempotency_key,
    )
