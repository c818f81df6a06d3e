"""A reviewer takes a creative out of a near-duplicate group (labelling/duplicates.py): it was grouped by its
vector (calibrated at precision 0.99, so about one member in a hundred is another ad) or by its words, and is not
the same ad. It leaves the group at once and is reviewed on its own:
- the group's item counts one creative fewer (`members`), and the group's decisions stop applying to it: the
  annotations they gave it go (its own review decides its label now);
- it opens a review item of its own, open, with its flag (the group's where its own is none), the group's
  suggested label and its own asserted one, and an audit row (`split`) naming the group it left;
- its prediction keeps the group's scores, marked `split_from` (not `duplicate_of`).
Its vector stays in the creatives collection (search finds it as before). A split is not undone by `reopen`:
the creative would have to be decided into the group again by hand. It may join a group again only if it is
labelled again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ctax.enums import Flag, ReviewStatus
from ctax.errors import Conflict, NotFound
from ctax.review import audit
from ctax.review.claims import held_by_another
from ctax.review.queue import get_item
from ctax.store.models import ApiKey, Creative, ReviewDecision, ReviewItem
from ctax.store.outbox import request_index_sync
from ctax.store.repos import groups
from ctax.store.session import Session
from ctax.store.types import utcnow

SPLIT = "split"  # the audit row's action on the item a creative taken out of its group opens


def split(session: Session, item_id: int, creative_id: str, key: ApiKey,
          now: dt.datetime | None = None) -> tuple[ReviewItem, ReviewItem]:
    """Take `creative_id` out of the group review item `item_id` stands for; returns the group's item and the one
    the creative opened."""
    now = now or utcnow()
    item = get_item(session, item_id)
    root = item.creative_id
    if held_by_another(item, key, now):
        raise Conflict(f"review item {item.id} is held by another reviewer; take creatives out of its group once "
                       "they release it or their claim expires. Nothing was changed", item_id=item.id)
    # The count first: the item's row is what a joining member (duplicates.join) and a decision (decisions.decide)
    # update before reading the group, so on PostgreSQL the three are ordered by that row's lock.
    groups.add_members(session, {root: -1})
    if not groups.leave_if_member(session, creative_id, root):
        raise NotFound(f"creative {creative_id} is not a member of review item {item.id}'s duplicate group; "
                       f"GET /v1/review/{item.id} lists its members", item_id=item.id)
    member = session.get(Creative, creative_id, populate_existing=True)
    assert member is not None  # it was just updated
    dropped = groups.drop_group_annotations(session, creative_id, item.id)
    prediction: dict[str, Any] = {k: v for k, v in (member.prediction or {}).items() if k != "duplicate_of"}
    member.prediction = {**prediction, "split_from": root}
    own = ReviewItem(
        creative_id=creative_id, status=ReviewStatus.OPEN,
        flag=member.flag if member.flag not in (None, Flag.NONE) else item.flag,
        suggested_label_id=item.suggested_label_id, asserted_label_id=member.asserted_label_id,
        top_score=item.top_score, priority=item.priority, model_version_id=item.model_version_id,
        priority_reason=f"taken out of the duplicate group of {root} by {key.name}: decide it on its own",
    )
    session.add(own)
    session.flush()
    session.add(ReviewDecision(
        review_item_id=own.id, creative_id=creative_id, reviewer_key_id=key.id, reviewer_name=key.name,
        action=SPLIT, note=f"taken out of the duplicate group of review item {item.id} (creative {root})",
        previous={**audit.snapshot(session, own), "duplicate_of": root, "group_item": item.id,
                  "group_annotations_dropped": dropped},
        created_at=now))
    if dropped:
        request_index_sync(session, f"creative {creative_id} taken out of review item {item.id}'s group")
    session.flush()
    return get_item(session, item.id), get_item(session, own.id)

