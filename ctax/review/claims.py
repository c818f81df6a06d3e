"""Claims: a reviewer holds an item while working it, so two reviewers do not decide the same item. A claim
expires after a while (CTAX_CLAIM_TTL_S); taking one is a conditional UPDATE (store.repos.review), so two reviewers
cannot both hold an item, and a refusal names who holds it."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from ctax.enums import ReviewStatus
from ctax.errors import Conflict
from ctax.review.queue import QueueFilter, checked, get_item, last_decision, list_items
from ctax.store.models import ApiKey, ReviewItem
from ctax.store.repos import review as items
from ctax.store.session import Session
from ctax.store.types import utcnow

NEXT_CANDIDATES = 20  # items tried, in queue order, when the first ones are taken between the read and the claim


def _holder(session: Session, key_id: int | None) -> str:
    key = session.get(ApiKey, key_id) if key_id is not None else None
    return key.name if key is not None else f"key {key_id}"


def held_by_another(item: ReviewItem, key: ApiKey, now: dt.datetime) -> bool:
    return item.claimed_by not in (None, key.id) and item.claim_expires_at is not None and item.claim_expires_at >= now


def refusal(session: Session, item: ReviewItem, key: ApiKey, now: dt.datetime) -> Conflict:
    """Why an item cannot be worked by this key right now."""
    if item.status != ReviewStatus.OPEN:
        last = last_decision(session, item.id)
        who = f" by {last.reviewer_name} ({last.action})" if last is not None else ""
        return Conflict(
            f"review item {item.id} was already decided{who}; nothing was changed",
            item_id=item.id,
            status=item.status,
            version=item.version,
        )
    if held_by_another(item, key, now):
        assert item.claim_expires_at is not None
        return Conflict(
            f"review item {item.id} is claimed by {_holder(session, item.claimed_by)} until "
            f"{item.claim_expires_at:%H:%M:%S} UTC; pick another item",
            item_id=item.id,
            claimed_by=_holder(session, item.claimed_by),
            claim_expires_at=item.claim_expires_at.isoformat(),
        )
    return Conflict(f"review item {item.id} changed while you decided; reload it", item_id=item.id)


def claim(session: Session, item_id: int, key: ApiKey, ttl_s: float, now: dt.datetime | None = None) -> ReviewItem:
    """Hold the item (or renew this key's hold) for `ttl_s` seconds; Conflict when it cannot be held."""
    now = now or utcnow()
    won = items.claim_if_available(session, item_id, key.id, now + dt.timedelta(seconds=ttl_s), now)
    item = get_item(session, item_id)
    if not won:
        raise refusal(session, item, key, now)
    return item


def release(session: Session, item_id: int, key: ApiKey) -> ReviewItem:
    """Let go of the item if this key holds it; anyone else's claim stays."""
    items.release_claim(session, item_id, key.id)
    return get_item(session, item_id)


def claim_next(
    session: Session, f: QueueFilter, key: ApiKey, ttl_s: float, now: dt.datetime | None = None
) -> ReviewItem | None:
    """The item this reviewer should work now: one they already hold, else the first available in queue order."""
    now = now or utcnow()
    mine = items.first_held(session, checked(session, f), key.id, now)
    if mine is not None:
        candidates = [mine]
    else:
        candidates, _ = list_items(session, replace(f, available_to=key.id), limit=NEXT_CANDIDATES, now=now)
    for candidate in candidates:
        try:
            return claim(session, candidate.id, key, ttl_s, now)
        except Conflict:  # another reviewer took it between the read and the claim: try the next one
            continue
    return None
