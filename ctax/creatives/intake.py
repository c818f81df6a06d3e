"""Creatives: validated intake, idempotent creation, the worker's claim/lease, results, failure and retry.

The creative row is its own outbox: it is committed as `queued` with no `dispatched_at`, the dispatcher sends
every undispatched id after commit (many ids per message under load) and resends whatever a crash left behind;
a claim is a lease, so work held by a dead worker is taken over once the lease expires.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from ctax.config import Settings
from ctax.creatives.images import validate_image
from ctax.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from ctax.jobs import LABEL_CREATIVES
from ctax.store.blobs import BlobStore
from ctax.store.models import Creative, utcnow
from ctax.store.session import Database
from ctax.taxonomy.catalog import resolve_active


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
    if not isinstance(sub.metadata, dict):
        raise InvalidInput("metadata must be a JSON object", field="metadata")
    try:
        encoded = json.dumps(sub.metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"metadata is not valid JSON: {exc}", field="metadata") from exc
    if len(encoded.encode()) > settings.max_metadata_bytes:
        raise PayloadTooLarge(f"metadata is larger than {settings.max_metadata_bytes} bytes", field="metadata")
    if sub.idempotency_key is not None and not (0 < len(sub.idempotency_key) <= 200):
        raise InvalidInput("Idempotency-Key must be 1 to 200 characters", field="Idempotency-Key")
    return CreativeSubmission(texts, sub.image, sub.asserted_label, sub.external_id, sub.metadata, sub.idempotency_key)


def request_hash(sub: CreativeSubmission) -> str:
    digest = hashlib.sha256()
    digest.update(
        json.dumps([sub.texts, str(sub.asserted_label), sub.external_id, sub.metadata], sort_keys=True).encode()
    )
    digest.update(hashlib.sha256(sub.image or b"").digest())
    return digest.hexdigest()


def find_idempotent(session: Session, api_key_id: int | None, key: str, digest: str) -> Creative | None:
    existing = session.scalar(
        select(Creative).where(Creative.api_key_id == api_key_id, Creative.idempotency_key == key)
    )
    if existing is not None and existing.request_hash != digest:
        raise Conflict("Idempotency-Key was already used with a different request", creative_id=existing.id)
    return existing


def create_creative(
    session: Session, blobs: BlobStore, settings: Settings, sub: CreativeSubmission, api_key_id: int | None
) -> tuple[Creative, bool]:
    """Validate everything first, then store; returns (creative, created). Nothing is stored on a refusal."""
    sub = validate_submission(sub, settings)
    digest = request_hash(sub)
    if sub.idempotency_key:
        existing = find_idempotent(session, api_key_id, sub.idempotency_key, digest)
        if existing is not None:
            return existing, False
    asserted = resolve_active(session, sub.asserted_label, "asserted_label") if sub.asserted_label else None
    info = None
    if sub.image is not None:
        info = validate_image(sub.image, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
    sha = blobs.put(sub.image) if sub.image is not None else None
    creative = Creative(
        texts=sub.texts,
        image_sha256=sha,
        image_mime=info.mime if info else None,
        image_width=info.width if info else None,
        image_height=info.height if info else None,
        asserted_label_id=asserted.id if asserted else None,
        external_id=sub.external_id,
        metadata_=sub.metadata,
        idempotency_key=sub.idempotency_key,
        request_hash=digest,
        api_key_id=api_key_id,
        status="queued",
        source="api",
    )
    session.add(creative)
    session.flush()
    return creative, True


def get_creative(session: Session, creative_id: str) -> Creative:
    creative = session.get(Creative, creative_id) if len(creative_id) <= 64 else None
    if creative is None:
        raise NotFound(f"no creative {creative_id!r}")
    return creative


# -- dispatch and claims ---------------------------------------------------------------------------------------


def undispatched(session: Session, limit: int, requeue_before: dt.datetime, lease_before: dt.datetime) -> list[str]:
    """Ids to send: never dispatched, dispatched long ago but still queued (the message was lost), or held
    by a worker whose lease ran out."""
    rows = session.scalars(
        select(Creative.id)
        .where(
            or_(
                (Creative.status == "queued") & Creative.dispatched_at.is_(None),
                (Creative.status == "queued") & (Creative.dispatched_at < requeue_before),
                # Resent once per lease: after the resend dispatched_at is newer than the stale claim.
                (Creative.status == "processing")
                & (Creative.claimed_at < lease_before)
                & (Creative.dispatched_at < Creative.claimed_at),
            )
        )
        .order_by(Creative.created_at)
        .limit(limit)
    )
    return list(rows)


def mark_dispatched(session: Session, ids: Sequence[str]) -> None:
    if ids:
        session.execute(update(Creative).where(Creative.id.in_(ids)).values(dispatched_at=utcnow()))


def dispatch(
    db: Database,
    send: Callable[[str, list[Any], str], None],
    settings: Settings,
    limit_batches: int = 8,
) -> int:
    """Send waiting creatives to the labelling queue, up to label_batch_size ids per message.

    Under load many single POSTs wait together, so one message carries many ids and the worker encodes them in
    one forward pass; the broker then costs per batch, not per creative."""
    now = utcnow()
    with db.write() as session:
        ids = undispatched(
            session,
            settings.label_batch_size * limit_batches,
            now - dt.timedelta(seconds=settings.requeue_after_s),
            now - dt.timedelta(seconds=settings.lease_s),
        )
    size = settings.label_batch_size
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        send(LABEL_CREATIVES, [chunk], settings.label_queue)
        with db.write() as session:
            mark_dispatched(session, chunk)
    return len(ids)


def claim(session: Session, ids: Sequence[str], worker: str, lease_s: float) -> list[str]:
    """Atomically take the given creatives that are free (queued, or processing under an expired lease)."""
    if not ids:
        return []
    now = utcnow()
    result = session.execute(
        update(Creative)
        .where(Creative.id.in_(list(ids)))
        .where(
            or_(
                Creative.status == "queued",
                (Creative.status == "processing") & (Creative.claimed_at < now - dt.timedelta(seconds=lease_s)),
            )
        )
        .values(status="processing", claimed_at=now, claimed_by=worker, attempts=Creative.attempts + 1)
        .returning(Creative.id)
    )
    return [row[0] for row in result]


def finish(session: Session, creative_id: str, worker: str, values: Mapping[str, Any]) -> bool:
    """Store a result only if this worker still holds the claim (a slow worker must not overwrite a newer one)."""
    result = session.execute(
        update(Creative)
        .where(Creative.id == creative_id, Creative.claimed_by == worker, Creative.status == "processing")
        .values(**values, claimed_at=None, claimed_by=None)
    )
    return bool(result.rowcount)


def fail(session: Session, creative_id: str, worker: str, reason: str, *, retryable: bool, max_attempts: int) -> str:
    creative = session.get(Creative, creative_id)
    if creative is None or creative.claimed_by != worker:
        return "lost"
    if retryable and creative.attempts < max_attempts:
        status = "queued"
        creative.dispatched_at = None
    else:
        status = "failed"
    creative.status = status
    creative.error = reason[:4000]
    creative.claimed_at = None
    creative.claimed_by = None
    return status


def retry(session: Session, creative: Creative) -> Creative:
    if creative.status != "failed":
        raise Conflict(f"creative {creative.id} is {creative.status}; only failed creatives can be retried")
    creative.status = "queued"
    creative.error = None
    creative.attempts = 0
    creative.dispatched_at = None
    return creative
