"""Reading creatives from a request: one as multipart or JSON, or a batch as JSON; every refusal says which field.

The body has already been bounded while it streamed in (api/limits.py). Here JSON nested past the parser's
recursion limit, numbers too long to parse, text fields that are not UTF-8 and label ids too large for the database
are refused as 422s naming the field, before anything is validated further or stored.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from ctax.api.params import LabelRef, LabelRefText, RequestBody, problem
from ctax.config import Settings
from ctax.creatives.validation import CreativeSubmission
from ctax.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType


class CreativeJSON(RequestBody):
    image_base64: str | None = Field(None, description="PNG, JPEG or WebP, base64-encoded")
    ocr_text: str | None = Field(None, description="The creative's text, if known")
    texts: list[str] | None = Field(
        None, description="Several text segments (e.g. headline, body); at most CTAX_MAX_TEXT_SEGMENTS in all")
    asserted_label: LabelRef | None = Field(None, description="The label the poster claims: a path or an id")
    external_id: str | None = Field(None, max_length=200)
    campaign: str | None = Field(None, max_length=200, description="The poster's campaign (e.g. an ad server's "
                                 "campaign id): a campaign's own creatives are no evidence of a new kind arriving")
    metadata: dict[str, Any] = Field(default_factory=dict, description="A JSON object (CTAX_MAX_METADATA_BYTES, "
                                                                       "nested at most CTAX_MAX_METADATA_DEPTH)")


class BatchJSON(RequestBody):
    items: list[CreativeJSON] = Field(description="at most CTAX_MAX_BATCH_ITEMS")


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its nested models written in place. Embedded in an operation's
    openapi_extra, pydantic's "#/$defs/..." references would point nowhere in the OpenAPI document."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


CREATIVE_SCHEMA = inline_schema(CreativeJSON)
BATCH_SCHEMA = inline_schema(BatchJSON)

MULTIPART_SCHEMA = {
    "type": "object",
    "properties": {
        "image": {"type": "string", "format": "binary"},
        "ocr_text": {"type": "string", "description": "UTF-8; may be repeated, one part per text segment"},
        "asserted_label": {"type": "string"},
        "external_id": {"type": "string"},
        "campaign": {"type": "string"},
        "metadata": {"type": "string", "description": "a JSON object"},
    },
}

_LABEL_TEXT: TypeAdapter[str] = TypeAdapter(LabelRefText)
# Every text segment is one `ocr_text` part; the other fields are given once. A form field the route does not know,
# or a text field sent as a file (curl's `-F ocr_text=@file`), was silently dropped: the creative then arrived
# without its text ("empty creative") or its claimed label, and an `external_id` file was stored as the upload's repr.
_FIELDS = tuple(MULTIPART_SCHEMA["properties"])
_REPEATABLE = ("ocr_text",)
_TEXT_FIELDS = tuple(name for name in _FIELDS if name != "image")


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
    body = _parse_json(await request.body(), "body")
    try:
        if batch:
            return _from_batch(BatchJSON.model_validate(body), idempotency_key, settings)
        return [_from_json(CreativeJSON.model_validate(body), idempotency_key, settings)]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{where or 'body'}: {problem(first)}", field=where) from exc


def _parse_json(raw: bytes | str, where: str) -> Any:
    prefix = "invalid JSON body" if where == "body" else f"{where} is not valid JSON"
    try:
        return json.loads(raw)
    except RecursionError as exc:
        raise InvalidInput(f"{prefix}: nested too deeply", field=where) from exc
    except ValueError as exc:  # malformed JSON, bytes that are not UTF-8, an integer of more than 4,300 digits
        raise InvalidInput(f"{prefix}: {json_problem(exc)}", field=where) from exc


def json_problem(exc: ValueError) -> str:
    """What is wrong with a body json.loads refused, in the client's terms."""
    if "integer string conversion" in str(exc):
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    if isinstance(exc, UnicodeDecodeError):
        return f"it is not UTF-8 ({exc.reason} at byte {exc.start})"
    return str(exc)


def _from_batch(parsed: BatchJSON, idempotency_key: str | None, settings: Settings) -> list[CreativeSubmission]:
    if not parsed.items:
        raise InvalidInput("items is empty", field="items")
    if len(parsed.items) > settings.max_batch_items:
        raise PayloadTooLarge(f"{len(parsed.items)} items; the limit is {settings.max_batch_items}", field="items")
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
        campaign=item.campaign,
    )


class StrictMultiPartParser(MultiPartParser):
    """Starlette's multipart parser, except that a text field which is not valid in its charset (UTF-8 unless the
    request says otherwise) is noted rather than silently decoded as Latin-1: that stored invalid UTF-8 garbled.
    Overrides the one callback that decodes a finished text part; everything else (limits, files) is Starlette's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.undecodable: list[str] = []

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                bytes(part.data).decode(self._charset or "utf-8")
            except (UnicodeDecodeError, LookupError):
                self.undecodable.append(part.field_name)
        super().on_part_end()


async def _read_form(request: Request, settings: Settings) -> FormData:
    # Files beyond the image are parsed only to be refused by name (_check_form_fields), not as "too many files".
    parser = StrictMultiPartParser(request.headers, request.stream(), max_files=len(_FIELDS),
                                   max_fields=32, max_part_size=settings.max_image_bytes + 1)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidInput(f"invalid multipart body: {exc.message}") from exc
    if parser.undecodable:
        await form.close()
        name = parser.undecodable[0]
        raise InvalidInput(f"{name} is not valid UTF-8 text", field=name)
    return form


async def _from_multipart(request: Request, idempotency_key: str | None, settings: Settings) -> CreativeSubmission:
    form = await _read_form(request, settings)
    try:
        _check_form_fields(form)
        image = await _uploaded_image(form, settings)
    finally:
        await form.close()
    metadata: Any = {}
    raw_metadata = form.get("metadata")
    if raw_metadata:
        metadata = _parse_json(str(raw_metadata), "metadata")
    texts = [str(t) for t in form.getlist("ocr_text")]
    asserted = form.get("asserted_label")
    external, campaign = form.get("external_id"), form.get("campaign")
    return CreativeSubmission(
        texts=texts,
        image=image,
        asserted_label=_label_reference(str(asserted)) if asserted else None,
        external_id=str(external) if external else None,
        metadata=metadata,
        idempotency_key=idempotency_key,
        campaign=str(campaign) if campaign else None,
    )


def _check_form_fields(form: FormData) -> None:
    """Each part names a field of a multipart creative, a text field is text, and a single field comes once."""
    for name in dict.fromkeys(form.keys()):
        if name not in _FIELDS:
            raise InvalidInput(f"unknown field {name!r}: a multipart creative has the fields {', '.join(_FIELDS)}",
                               field=name)
        values = form.getlist(name)
        if len(values) > 1 and name not in _REPEATABLE:
            raise InvalidInput(f"{name} is given {len(values)} times; send it once", field=name)
        if name in _TEXT_FIELDS and any(isinstance(value, UploadFile) for value in values):
            raise InvalidInput(f"{name} must be a text field, not a file (curl: -F '{name}=<file' sends a file's "
                               "content as text)", field=name)


async def _uploaded_image(form: FormData, settings: Settings) -> bytes | None:
    upload = form.get("image")
    if upload is None:
        return None
    if not isinstance(upload, UploadFile):
        raise InvalidInput("image must be a file upload (multipart field 'image')", field="image")
    image = await upload.read(settings.max_image_bytes + 1)
    if len(image) > settings.max_image_bytes:
        raise PayloadTooLarge(f"image is larger than {settings.max_image_bytes} bytes", field="image")
    return image


def _label_reference(value: str) -> str:
    try:
        return _LABEL_TEXT.validate_python(value)
    except ValidationError as exc:
        raise InvalidInput(f"asserted_label: {exc.errors()[0]['msg']}", field="asserted_label") from exc
