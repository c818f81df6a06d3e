"""Creatives arriving: validated, created idempotently, sent to the labelling queue, retried after a failure.

The creative row is its own outbox: it is committed as `queued` with no `dispatched_at`, the dispatcher sends
every undispatched id after commit (many ids per message under load) and resends whatever a crash left behind;
a claim is a lease (store/repos/creatives.py), so work held by a dead worker is taken over once the lease expires.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from ctax.config import Settings
from ctax.creatives.images import validate_image
from ctax.creatives.validation import CreativeSubmission, clean_text, request_hash, validate_submission
from ctax.enums import CreativeStatus, Source
from ctax.errors import ConcurrentChange, Conflict, InvalidInput, NotFound
from ctax.jobs import LABEL_CREATIVES
from ctax.store.blobs import BlobStore
from ctax.store.models import Creative
from ctax.store.repos import creatives as repo
from ctax.store.session import Database, Session
from ctax.store.types import utcnow
from ctax.taxonomy.catalog import resolve_active

__all__ = [  # the submission and its checks are part of this module's interface (dataset import, `ctax eval`)
    "CreativeSubmission", "clean_text", "create_creative", "dispatch", "find_idempotent", "get_creative", "retry",
    "submit", "validate_submission",
]


def find_idempotent(session: Session, api_key_id: int | None, key: str, digest: str) -> Creative | None:
    existing = repo.by_idempotency_key(session, api_key_id, key)
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
        status=CreativeStatus.QUEUED,
        source=Source.API,
    )
    return repo.add(session, creative), True


def submit(
    db: Database, blobs: BlobStore, settings: Settings, subs: Sequence[CreativeSubmission], api_key_id: int | None
) -> list[tuple[Creative, bool]]:
    """Create every submission in one transaction, all or nothing; returns (creative, created) for each.

    Two requests with the same Idempotency-Key can race past the lookup: the loser's insert breaks the unique
    key and its transaction rolls back, and it answers with the winner's creatives, read afresh."""
    try:
        with db.write() as session:
            return [_create_item(session, blobs, settings, sub, api_key_id, n, len(subs)) for n, sub in enumerate(subs)]
    except ConcurrentChange:
        with db.read() as session:
            replay = []
            for sub in subs:
                digest = request_hash(validate_submission(sub, settings))
                existing = find_idempotent(session, api_key_id, sub.idempotency_key or "", digest)
                if existing is None:
                    raise
                replay.append((existing, False))
            return replay


def _create_item(
    session: Session, blobs: BlobStore, settings: Settings, sub: CreativeSubmission, api_key_id: int | None,
    n: int, of: int,
) -> tuple[Creative, bool]:
    try:
        return create_creative(session, blobs, settings, sub, api_key_id)
    except InvalidInput as exc:
        if of > 1:  # say which item of a batch was refused
            raise type(exc)(f"items[{n}]: {exc.message}", item=n, **exc.detail) from exc
        raise


def get_creative(session: Session, creative_id: str) -> Creative:
    creative = repo.get(session, creative_id)
    if creative is None:
        raise NotFound(f"no creative {creative_id!r}")
    return creative


def retry(session: Session, creative: Creative) -> Creative:
    if creative.status != CreativeStatus.FAILED:
        raise Conflict(f"creative {creative.id} is {creative.status}; only failed creatives can be retried")
    return repo.requeue(session, creative)


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
    with db.read() as session:
        ids = repo.undispatched(
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
            repo.mark_dispatched(session, chunk)
    return len(ids)
