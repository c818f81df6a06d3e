"""What a creative may carry: its texts, fields and metadata are checked before anything is stored, and the
request's fingerprint is what makes an Idempotency-Key replay safe to recognise."""

from __future__ import annotations

import hashlib
import json
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


def clean_text(value: object, field_name: str, max_chars: int) -> str:
    """Text as people and OCR write it; binary junk and control characters are refused, not stored."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field_name} must be a string, got {type(value).__name__}", field=field_name)
    if "\x00" in value:
        raise InvalidInput(f"{field_name} contains NUL bytes: is it binary data?", field=field_name)
    if len(value) > max_chars:
        raise PayloadTooLarge(f"{field_name} has {len(value)} characters; the limit is {max_chars}", field=field_name)
    text = unicodedata.normalize("NFC", value).strip()
    if not text:
        return ""
    control = sum(1 for ch in text if unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") and ch not in "\n\r\t")
    if control / len(text) > 0.05:
        raise InvalidInput(
            f"{field_name} is mostly unprintable characters ({control} of {len(text)})", field=field_name
        )
    letters = sum(1 for ch in text if ch.isalnum())
    if len(text) >= 8 and letters / len(text) < 0.2:
        raise InvalidInput(f"{field_name} has almost no letters or digits; send the creative's words", field=field_name)
    return text


def validate_submission(sub: CreativeSubmission, settings: Settings) -> CreativeSubmission:
    """The submission with its texts cleaned; every field checked (the image is checked by images.py)."""
    texts = [clean_text(text, "ocr_text", settings.max_text_chars) for text in sub.texts]
    texts = [text for text in texts if text]
    if sum(len(text) for text in texts) > settings.max_text_chars:
        raise PayloadTooLarge(f"texts total more than {settings.max_text_chars} characters", field="ocr_text")
    if sub.image is None and not texts:
        raise InvalidInput("empty creative: send an image, some text, or both", field="image")
    if sub.external_id is not None and (
        not isinstance(sub.external_id, str) or not sub.external_id.strip() or len(sub.external_id) > 200
    ):
        raise InvalidInput("external_id must be a non-empty string of at most 200 characters", field="external_id")
    _check_metadata(sub.metadata, settings.max_metadata_bytes)
    if sub.idempotency_key is not None and not (0 < len(sub.idempotency_key) <= 200):
        raise InvalidInput("Idempotency-Key must be 1 to 200 characters", field="Idempotency-Key")
    return CreativeSubmission(texts, sub.image, sub.asserted_label, sub.external_id, sub.metadata, sub.idempotency_key)


def _check_metadata(metadata: object, max_bytes: int) -> None:
    if not isinstance(metadata, dict):
        raise InvalidInput("metadata must be a JSON object", field="metadata")
    try:
        encoded = json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"metadata is not valid JSON: {exc}", field="metadata") from exc
    if len(encoded.encode()) > max_bytes:
        raise PayloadTooLarge(f"metadata is larger than {max_bytes} bytes", field="metadata")


def request_hash(sub: CreativeSubmission) -> str:
    """The fingerprint of a validated submission: the same Idempotency-Key with another request is a conflict."""
    digest = hashlib.sha256()
    digest.update(
        json.dumps([sub.texts, str(sub.asserted_label), sub.external_id, sub.metadata], sort_keys=True).encode()
    )
    digest.update(hashlib.sha256(sub.image or b"").digest())
    return digest.hexdigest()
