"""Creatives arriving: validated, created idempotently, sent to the labelling queue, retried after a failure.

The creative row is its own outbox: it is committed as `queued` with no `dispatched_at`, the dispatcher sends
every undispatched id after commit (many ids per message under load) and resends whatever a crash left behind;
a claim is a lease (store/repos/creatives.py), so work held by a dead worker is taken over once the lease expires.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ctax.config import Settings
from ctax.creatives.images import ImageInfo, validate_image
from ctax.creatives.validation import CreativeSubmission, clean_text, request_hash, validate_submission
from ctax.enums import CreativeStatus, Source
from ctax.errors import REFUSED_FOR_CONTENT, ConcurrentChange, Conflict, InvalidInput, NotFound, QuotaExceeded
from ctax.jobs import LABEL_CREATIVES
from ctax.store import outbox as outbox_rows
from ctax.store.blobs import BlobStore
from ctax.store.models import Creative
from ctax.store.repos import accounts
from ctax.store.repos import creatives as repo
from ctax.store.session import Database, Session
from ctax.store.types import utcnow
from ctax.taxonomy.catalog import resolve_active

__all__ = [  # the submission and its checks are part of this module's interface (dataset import, `ctax eval`)
    "CreativeSubmission", "clean_text", "create_creative", "dispatch", "find_idempotent", "get_creative", "held_back",
    "plan", "retry", "store", "submit", "validate_submission",
]


def find_idempotent(session: Session, api_key_id: int | None, key: str, digest: str) -> Creative | None:
    existing = repo.by_idempotency_key(session, api_key_id, key)
    if existing is not None and existing.request_hash != digest:
        raise Conflict("Idempotency-Key was already used with a different request", creative_id=existing.id)
    return existing


@dataclass(frozen=True)
class Prepared:
    """A submission checked and ready to store: texts cleaned, image checked, request hashed. Preparing touches
    neither the database nor the disk, so it runs before any transaction."""

    sub: CreativeSubmission
    digest: str
    image: ImageInfo | None


def prepare(sub: CreativeSubmission, settings: Settings, n: int = 0, of: int = 1) -> Prepared:
    try:
        clean = validate_submission(sub, settings)
        info = None
        if clean.image is not None:
            info = validate_image(clean.image, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels,
                                  budget_pixels=settings.image_decode_budget_pixels)
    except InvalidInput as exc:
        if of > 1:  # say which item of a batch was refused
            raise type(exc)(f"items[{n}]: {exc.message}", item=n, **exc.detail) from exc
        raise
    return Prepared(clean, request_hash(clean), info)


def _new_creative(
    item: Prepared, image_sha: str | None, asserted_id: int | None, api_key_id: int | None, account_id: int | None
) -> Creative:
    return Creative(
        texts=item.sub.texts,
        image_sha256=image_sha,
        image_mime=item.image.mime if item.image else None,
        image_width=item.image.width if item.image else None,
        image_height=item.image.height if item.image else None,
        asserted_label_id=asserted_id,
        external_id=item.sub.external_id,
        campaign=item.sub.campaign,
        metadata_=item.sub.metadata,
        idempotency_key=item.sub.idempotency_key,
        request_hash=item.digest,
        api_key_id=api_key_id,
        account_id=account_id,
        status=CreativeStatus.QUEUED,
        source=Source.API,
    )


def _asserted_id(session: Session, item: Prepared, n: int, of: int) -> int | None:
    if not item.sub.asserted_label:
        return None
    try:
        return resolve_active(session, item.sub.asserted_label, "asserted_label").id
    except InvalidInput as exc:
        if of > 1:
            raise type(exc)(f"items[{n}]: {exc.message}", item=n, **exc.detail) from exc
        raise


def create_creative(
    session: Session, blobs: BlobStore, settings: Settings, sub: CreativeSubmission, api_key_id: int | None,
    account_id: int | None = None,
) -> tuple[Creative, bool]:
    """One creative in the caller's transaction (`ctax eval` posts its test rows so); returns (creative, created).
    Validates everything first: nothing is stored on a refusal."""
    item = prepare(sub, settings)
    if item.sub.idempotency_key:
        existing = find_idempotent(session, api_key_id, item.sub.idempotency_key, item.digest)
        if existing is not None:
            return existing, False
    asserted = _asserted_id(session, item, 0, 1)
    sha = blobs.put(item.sub.image) if item.sub.image is not None else None
    return repo.add(session, _new_creative(item, sha, asserted, api_key_id, account_id)), True


@dataclass(frozen=True)
class Planned:
    """A post checked and read, nothing stored: its items, the creatives earlier requests with the same
    Idempotency-Keys made (by item number), the others' asserted labels; `new`: what it would add."""

    items: list[Prepared]
    replays: dict[int, Creative]
    asserted: dict[int, int | None]
    new: int


def plan(
    db: Database, settings: Settings, subs: Sequence[CreativeSubmission], api_key_id: int | None,
    account_id: int | None = None, quota: int | None = None,
) -> Planned:
    """What of a post writes nothing: validation (images decoded, texts checked), replays and asserted labels
    read, and where the account's quota keeps a count, QuotaExceeded when the new creatives cannot fit. That count
    is read, not taken: `store` judges the quota again as it counts (racing posts never both pass)."""
    items = [prepare(sub, settings, n, len(subs)) for n, sub in enumerate(subs)]
    with db.read() as session:
        replays = _replays(session, items, api_key_id)
        asserted = {n: _asserted_id(session, item, n, len(items)) for n, item in enumerate(items) if n not in replays}
        planned = Planned(items, replays, asserted, len(items) - len(replays))
        if planned.new and account_id is not None and quota is not None:
            kept = accounts.kept_count(session, account_id)
            if kept is not None and kept + planned.new > quota:
                raise _over_quota(quota, kept, planned.new)
    return planned


def submit(
    db: Database, blobs: BlobStore, settings: Settings, subs: Sequence[CreativeSubmission], api_key_id: int | None,
    account_id: int | None = None, quota: int | None = None, charge: Callable[[int], None] | None = None,
) -> list[tuple[Creative, bool]]:
    """`plan` then `store`: every submission created, all or nothing; (creative, created) for each. `charge`, the
    sender's rate budget (it refuses by raising), is given what the post adds (0: all replays) before anything is
    stored: replays and a quota's refusal pay nothing; a refusal for its content pays for all it sent (api/routes).
    Without it the quota is judged by `store` alone: plan's early read cost quota'd posts 20% (bench.quotas)."""
    try:
        planned = plan(db, settings, subs, api_key_id, account_id, quota if charge is not None else None)
    except REFUSED_FOR_CONTENT:
        if charge is not None:
            charge(len(subs))
        raise
    if charge is not None:
        charge(planned.new)
    return store(db, blobs, planned, api_key_id, account_id, quota)


def store(
    db: Database, blobs: BlobStore, planned: Planned, api_key_id: int | None, account_id: int | None = None,
    quota: int | None = None,
) -> list[tuple[Creative, bool]]:
    """Create a planned post's creatives, all or nothing, in the sending key's account (`account_id`: the caller
    passes the key's, so that no lookup is added under the write lock). With a `quota` (the creatives the account
    may hold) they must fit in it, judged first in the same transaction (`within_quota`: a count taken before it
    could let two racing posts both fit).

    The order keeps the database's write lock (SQLite has one) for the inserts alone: everything was validated and
    read by `plan` without any transaction, then images are stored, and only then a write transaction inserts the
    rows. A refused request stores nothing; one whose transaction fails removes the image blobs it created. Two
    posts with the same Idempotency-Key can race past the lookup: the loser answers with the winner's creatives."""
    items, replays, asserted = planned.items, planned.replays, planned.asserted
    if len(replays) == len(items):
        return [(replays[n], False) for n in range(len(items))]
    stored = {n: blobs.store(item.sub.image) for n, item in enumerate(items)
              if n not in replays and item.sub.image is not None}
    try:
        with db.write() as session:
            # First: a refused post commits no creative, but keeps the count it may have taken (see within_quota).
            refusal = within_quota(session, account_id, quota, len(items) - len(replays))
            created = [] if refusal else [
                (replays[n], False) if n in replays else
                (repo.add(session, _new_creative(item, stored[n][0] if n in stored else None, asserted[n],
                                                 api_key_id, account_id)), True)
                for n, item in enumerate(items)]
        if refusal is not None:
            raise refusal
        return created
    except ConcurrentChange:
        _discard_unused(db, blobs, [sha for sha, created in stored.values() if created])
        with db.read() as session:
            replays = _replays(session, items, api_key_id)
        if len(replays) != len(items):
            raise
        return [(replays[n], False) for n in range(len(items))]
    except BaseException:
        _discard_unused(db, blobs, [sha for sha, created in stored.values() if created])
        raise


def within_quota(session: Session, account_id: int | None, quota: int | None, posting: int) -> QuotaExceeded | None:
    """Count `posting` new creatives held by the account, or the refusal to give (nothing counted) past its
    `quota`. Without a quota nothing is counted, and no statement is added to the post (even a no-op UPDATE cost API
    posts a sixth a second, bench.quotas --without-quotas). Returned rather than raised, so that the caller commits
    the count a first post under a quota took: otherwise every post refused while over a quota would count the
    account's creatives again."""
    if account_id is None or posting == 0 or quota is None or accounts.take_places(session, account_id, posting,
                                                                                    quota):
        return None
    return _over_quota(quota, accounts.held(session, account_id), posting)


def _over_quota(quota: int, held: int, posting: int) -> QuotaExceeded:
    room = max(quota - held, 0)
    return QuotaExceeded(
        f"quota: the account may hold {quota} creatives and holds {held}, so {room} more fit and this request "
        f"sends {posting}; delete some (DELETE /v1/creatives/{{id}}) or ask an admin for a larger quota",
        quota=quota, held=held, posting=posting)


def _replays(session: Session, items: Sequence[Prepared], api_key_id: int | None) -> dict[int, Creative]:
    """The creatives earlier requests with the same Idempotency-Keys made, by item number."""
    out = {}
    for n, item in enumerate(items):
        if item.sub.idempotency_key:
            existing = find_idempotent(session, api_key_id, item.sub.idempotency_key, item.digest)
            if existing is not None:
                out[n] = existing
    return out


def _discard_unused(db: Database, blobs: BlobStore, created: Sequence[str]) -> None:
    """Remove the blobs a failed request created, unless a creative committed meanwhile uses one (the same image
    posted by another request at the same moment)."""
    if not created:
        return
    with db.read() as session:
        used = repo.images_in_use(session, created)
    for digest in created:
        if digest not in used:
            blobs.discard(digest)


def get_creative(session: Session, creative_id: str, account_id: int | None = None) -> Creative:
    """The creative; with `account_id`, only that account's: another's answers 404, as an unknown id does."""
    creative = repo.get(session, creative_id, account_id)
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
        ids = outbox_rows.undispatched(
            session,
            settings.label_batch_size * limit_batches,
            now - dt.timedelta(seconds=settings.requeue_after_s),
            now - dt.timedelta(seconds=settings.lease_s),
            ahead=settings.dispatch_ahead_batches * settings.label_batch_size or None,
        )
    size = settings.label_batch_size
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        # Stamped before the send: a worker may claim the chunk before the mark commits, and a dispatch stamped
        # after its claim would keep a dead worker's claim from ever being resent (undispatched's last rule).
        sent_at = utcnow()
        send(LABEL_CREATIVES, [chunk], settings.label_queue)
        with db.write() as session:
            outbox_rows.mark_dispatched(session, chunk, sent_at)
    return len(ids)


def held_back(db: Database) -> bool:
    """Whether creatives wait in the database for room ahead of the workers (CTAX_DISPATCH_AHEAD_BATCHES)."""
    with db.read() as session:
        return outbox_rows.held_back(session)
