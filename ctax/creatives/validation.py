"""What a creative may carry: its texts, fields and metadata are checked before anything is stored, and the
request's fingerprint is what makes an Idempotency-Key replay safe to recognise."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from ctax.config import Settings
from ctax.errors import InvalidInput, PayloadTooLarge


@dataclass
class CreativeSubmission:
    texts: list[str] = field(default_factory=list)
    image: bytes | None = None
    asserted_label: str | int | None = None
    external_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    campaign: str | None = None


# Runs of spaces, tabs and newlines count as one space when a text is judged: a human-written ad with a run of
# 300 spaces in it is still words (it was refused as "almost no letters or digits").
_WHITESPACE = re.compile(r"\s+")


def clean_text(value: object, field_name: str, max_chars: int) -> str:
    """Text as people and OCR write it; binary junk and control characters are refused, not stored. The text is
    judged with its whitespace collapsed and kept as it was written."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field_name} must be a string, got {type(value).__name__}", field=field_name)
    if "\x00" in value:
        raise InvalidInput(f"{field_name} contains NUL bytes: is it binary data?", field=field_name)
    if len(value) > max_chars:
        raise PayloadTooLarge(f"{field_name} has {len(value)} characters; the limit is {max_chars}", field=field_name)
    _refuse_surrogates(value, field_name)
    text = unicodedata.normalize("NFC", value).strip()
    if not text:
        return ""
    judged = _WHITESPACE.sub(" ", text)
    control = sum(1 for ch in judged if unicodedata.category(ch) in ("Cc", "Co", "Cn"))
    if control / len(judged) > 0.05:
        raise InvalidInput(
            f"{field_name} is mostly unprintable characters ({control} of {len(judged)})", field=field_name
        )
    # Letters, digits and emoji (symbols, "So") are what an ad says; punctuation and currency signs alone are not.
    meaningful = sum(1 for ch in judged if ch.isalnum() or unicodedata.category(ch) == "So")
    if len(judged) >= 8 and meaningful / len(judged) < 0.2:
        raise InvalidInput(f"{field_name} has almost no letters or digits; send the creative's words", field=field_name)
    return text


def _refuse_surrogates(value: str, field_name: str) -> None:
    """A lone surrogate ("\\ud800" in JSON) is not text: no database can store it as UTF-8."""
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise InvalidInput(f"{field_name} contains an unpaired surrogate: it is not valid Unicode text",
                           field=field_name)


def validate_submission(sub: CreativeSubmission, settings: Settings) -> CreativeSubmission:
    """The submission with its texts cleaned; every field checked (the image is checked by images.py)."""
    if len(sub.texts) > settings.max_text_segments:
        # Each segment is encoded on its own: 5,000 four-letter segments cost a minute of labelling.
        raise PayloadTooLarge(f"ocr_text: {len(sub.texts)} text segments; the limit is {settings.max_text_segments}",
                              field="ocr_text", limit=settings.max_text_segments)
    texts = [clean_text(text, "ocr_text", settings.max_text_chars) for text in sub.texts]
    texts = [text for text in texts if text]
    if sum(len(text) for text in texts) > settings.max_text_chars:
        raise PayloadTooLarge(f"texts total more than {settings.max_text_chars} characters", field="ocr_text")
    if sub.image is None and not texts:
        raise InvalidInput("empty creative: send an image, some text, or both", field="image")
    for name, value in (("external_id", sub.external_id), ("campaign", sub.campaign)):
        check_identifier(value, name)
    _check_metadata(sub.metadata, settings.max_metadata_bytes, settings.max_metadata_depth)
    if sub.idempotency_key is not None and (not 0 < len(sub.idempotency_key) <= 200 or "\x00" in sub.idempotency_key):
        raise InvalidInput("Idempotency-Key must be 1 to 200 characters, without NUL", field="Idempotency-Key")
    return CreativeSubmission(texts, sub.image, sub.asserted_label, sub.external_id, sub.metadata, sub.idempotency_key,
                              sub.campaign)


def check_identifier(value: object, name: str) -> None:
    """external_id and campaign (posted, or in a file of rows): the poster's own names for things, stored and
    compared as given."""
    if value is None:
        return
    if not isinstance(value, str) or not value.strip() or len(value) > 200 or "\x00" in value:
        raise InvalidInput(f"{name} must be a non-empty string of at most 200 characters, without NUL", field=name)
    _refuse_surrogates(value, name)


def _check_metadata(metadata: object, max_bytes: int, max_depth: int) -> None:
    if not isinstance(metadata, dict):
        raise InvalidInput("metadata must be a JSON object", field="metadata")
    _check_nesting(metadata, max_depth)
    try:
        # ensure_ascii=False and UTF-8: what the databases store, so a lone surrogate fails here, not there.
        encoded = json.dumps(metadata, allow_nan=False, ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise InvalidInput(f"metadata is not valid JSON: {exc}", field="metadata") from exc
    if len(encoded) > max_bytes:
        raise PayloadTooLarge(f"metadata is larger than {max_bytes} bytes", field="metadata")


def _check_nesting(value: object, max_depth: int) -> None:
    """Refuses objects and lists nested more than `max_depth` levels (the metadata object itself is level 1), and
    NUL in any key or string (PostgreSQL stores neither in JSON). Walks one level at a time and at most that deep,
    so no depth reaches Python's recursion limit."""
    level, depth = [value], 1
    while level:
        if any("\x00" in text for item in level for text in _strings(item)):
            raise InvalidInput("metadata contains NUL characters", field="metadata")
        level = [child for item in level for child in _strings_or_containers(item) if not isinstance(child, str)]
        if level:
            depth += 1
        if depth > max_depth:
            raise InvalidInput(f"metadata nests more than {max_depth} levels deep", field="metadata",
                               limit=max_depth)


def _strings_or_containers(value: object) -> list[object]:
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else value if isinstance(value, list) else []
    return [v for v in items if isinstance(v, str | dict | list)]


def _strings(value: object) -> list[str]:
    return [v for v in _strings_or_containers(value) if isinstance(v, str)]


def request_hash(sub: CreativeSubmission) -> str:
    """The fingerprint of a validated submission: the same Idempotency-Key with another request is a conflict."""
    digest = hashlib.sha256()
    fields: list[Any] = [sub.texts, str(sub.asserted_label), sub.external_id, sub.metadata]
    if sub.campaign is not None:  # so that a request stored before campaigns existed hashes as it did
        fields.append(sub.campaign)
    digest.update(json.dumps(fields, sort_keys=True).encode())
    digest.update(hashlib.sha256(sub.image or b"").digest())
    return digest.hexdigest()
