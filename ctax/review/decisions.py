"""Review decisions: confirm, relabel, new_label, reject, one item or a selection, and undo. Each is recorded with
the state it replaced (audit.py) and becomes labelled data (an Annotation; the latest one per creative is its
truth).

Concurrency is queue.py's: every state change is a conditional UPDATE on status, claim and `version`
(store.repos.review: decide_if_unchanged, reopen_if_unchanged), so of two reviewers deciding one item at the same
moment exactly one succeeds and nothing is applied twice.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ctax.enums import REOPEN, Action, AnnotationKind, ReviewStatus, Role, Source
from ctax.errors import Conflict, Forbidden, InvalidInput
from ctax.review import audit
from ctax.review.claims import held_by_another, refusal
from ctax.review.queue import get_item, last_decision
from ctax.review.target import check_action, create_reviewed_label, names_label, target_label
from ctax.store.models import Annotation, ApiKey, Label, ReviewDecision, ReviewItem
from ctax.store.outbox import request_index_sync
from ctax.store.repos import groups
from ctax.store.repos import review as items
from ctax.store.session import Session
from ctax.store.types import utcnow

MAX_NOTE_CHARS = 2000
MAX_BULK = 500


@dataclass(frozen=True)
class DecisionRequest:
    action: str
    label: str | int | None = None
    note: str | None = None
    version: int | None = None


@dataclass
class DecisionOutcome:
    item: ReviewItem
    decision: ReviewDecision
    label: Label | None
    replayed: bool = False
    created_label: bool = False


@dataclass
class BulkOutcome:
    bulk_id: str
    outcomes: list[DecisionOutcome] = field(default_factory=list)
    created_label: Label | None = None

    @property
    def replayed(self) -> bool:
        return bool(self.outcomes) and all(o.replayed for o in self.outcomes)


def _clean_note(note: str | None) -> str | None:
    if note is None:
        return None
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidInput(f"note has {len(note)} characters; the limit is {MAX_NOTE_CHARS}", field="note")
    return note.strip() or None


def is_replay(session: Session, item: ReviewItem, key: ApiKey, request: DecisionRequest) -> ReviewDecision | None:
    """The recorded decision this request repeats, if it repeats one (a retry after a lost answer)."""
    if item.status != ReviewStatus.DECIDED:
        return None
    last = last_decision(session, item.id)
    if last is None or last.reviewer_key_id != key.id or last.action != request.action:
        return None
    if request.action in (Action.RELABEL, Action.NEW_LABEL):
        label = session.get(Label, last.label_id) if last.label_id is not None else None
        if label is None or request.label is None:
            return None
        return last if names_label(label, request.label) else None
    return last


def _check_decidable(session: Session, item: ReviewItem, key: ApiKey, request: DecisionRequest,
                     now: dt.datetime) -> None:
    """Refuse early, with the reason, what the conditional UPDATE would refuse anyway."""
    if item.status != ReviewStatus.OPEN:
        raise refusal(session, item, key, now)
    if request.version is not None and request.version != item.version:
        raise Conflict(
            f"review item {item.id} changed since you loaded it (version {request.version}, now {item.version}): "
            "the model re-flagged it or someone decided it; reload it. Nothing was changed",
            item_id=item.id,
            version=item.version,
        )
    if held_by_another(item, key, now):
        raise refusal(session, item, key, now)


def _record(session: Session, item: ReviewItem, key: ApiKey, action: Action, target: Label | None,
            note: str | None, previous: dict[str, Any], bulk_id: str | None, source: Source,
            now: dt.datetime, members: Sequence[str] = ()) -> ReviewDecision:
    """The audit row, and the annotations that make the decision labelled data: the item's creative's and, for a
    duplicate group's item, every member's (an undo deletes them all: they share the decision)."""
    decision = ReviewDecision(
        review_item_id=item.id,
        creative_id=item.creative_id,
        reviewer_key_id=key.id,
        reviewer_name=key.name,
        action=action,
        label_id=target.id if target is not None else None,
        note=note,
        previous=previous,
        bulk_id=bulk_id,
        created_at=now,
    )
    session.add(decision)
    session.flush()
    session.add_all([
        Annotation(
            creative_id=creative_id,
            label_id=target.id if target is not None else None,
            kind=AnnotationKind.REJECT if target is None else AnnotationKind.LABEL,
            source=source,
            decision_id=decision.id,
            created_by=key.id,
            created_at=now,
        )
        for creative_id in [item.creative_id, *members]
    ])
    session.flush()
    return decision


def decide(
    session: Session,
    item_id: int,
    key: ApiKey,
    request: DecisionRequest,
    *,
    now: dt.datetime | None = None,
    bulk_id: str | None = None,
    label: Label | None = None,
    source: Source = Source.REVIEW,
) -> DecisionOutcome:
    """Record a decision in the caller's transaction: the item is decided, the audit row keeps the previous state,
    and an annotation makes it labelled data (the latest annotation of a creative is its truth for training)."""
    now = now or utcnow()
    action = check_action(request.action)
    note = _clean_note(request.note)
    item = get_item(session, item_id)
    replay = is_replay(session, item, key, request)
    if replay is not None:
        replayed_label = session.get(Label, replay.label_id) if replay.label_id is not None else None
        return DecisionOutcome(item, replay, replayed_label, replayed=True)
    _check_decidable(session, item, key, request, now)
    created = action is Action.NEW_LABEL and label is None
    target = target_label(session, item, action, request.label, request.note, label)
    previous = audit.snapshot(session, item)
    if not items.decide_if_unchanged(session, item, key.id, now):
        raise refusal(session, get_item(session, item.id), key, now)
    # Read after the item's UPDATE: a duplicate joining the group at this moment is either counted here or,
    # waiting on that row, finds the item decided and takes the decision itself (labelling/duplicates.join).
    members = groups.members_of(session, item.creative_id)
    if members:
        previous["group_members"] = members  # the audit trail names every creative the decision applied to
    decision = _record(session, item, key, action, target, note, previous, bulk_id, source, now, members)
    request_index_sync(session, f"review decision on item {item.id}")
    return DecisionOutcome(get_item(session, item.id), decision, target, created_label=created)


def decide_bulk(
    session: Session, item_ids: Sequence[int], key: ApiKey, request: DecisionRequest, now: dt.datetime | None = None
) -> BulkOutcome:
    """All or nothing: every item is decided, or a 409 lists the items that could not be, and nothing changes."""
    ids = list(dict.fromkeys(item_ids))
    if not ids:
        raise InvalidInput("ids is empty: select at least one item", field="ids")
    if len(ids) > MAX_BULK:
        raise InvalidInput(f"{len(ids)} items; a bulk decision takes at most {MAX_BULK}", field="ids")
    if request.version is not None:
        raise InvalidInput("version applies to one item; a bulk decision checks each item's state", field="version")
    now = now or utcnow()
    outcome = BulkOutcome(bulk_id=uuid.uuid4().hex)
    selected = [get_item(session, item_id) for item_id in ids]
    shared: Label | None = None
    if request.action == Action.NEW_LABEL:
        if all(is_replay(session, item, key, request) for item in selected):
            shared = None  # a retry of a bulk that created the label: each item replays below
        else:
            shared = create_reviewed_label(session, request.label)
            outcome.created_label = shared
    conflicts: list[dict[str, Any]] = []
    for item in selected:
        try:
            outcome.outcomes.append(decide(session, item.id, key, request, now=now, bulk_id=outcome.bulk_id,
                                           label=shared))
        except Conflict as exc:
            conflicts.append({"id": item.id, "reason": exc.message})
    if conflicts:
        raise Conflict(
            f"{len(conflicts)} of {len(ids)} items cannot be decided now; nothing was changed. "
            f"First: {conflicts[0]['reason']}",
            conflicts=conflicts,
        )
    return outcome


def reopen(session: Session, item_id: int, key: ApiKey, ttl_s: float, now: dt.datetime | None = None) -> ReviewItem:
    """Undo: the item's last decision stops counting (its annotation goes; its audit row stays) and the item
    is open again, claimed by whoever reopened it. Reviewers may reopen their own decisions; admins any."""
    now = now or utcnow()
    item = get_item(session, item_id)
    if item.status != ReviewStatus.DECIDED:
        raise Conflict(f"review item {item.id} is {item.status}, not decided; nothing to reopen", item_id=item.id)
    last = last_decision(session, item.id)
    if last is not None and last.reviewer_key_id != key.id and key.role != Role.ADMIN:
        raise Forbidden(
            f"review item {item.id} was decided by {last.reviewer_name}; only they or an admin can reopen it"
        )
    previous = audit.snapshot(session, item)
    if not items.reopen_if_unchanged(session, item, key.id, now + dt.timedelta(seconds=ttl_s), now):
        raise Conflict(f"review item {item.id} changed while reopening it; reload it", item_id=item.id)
    if last is not None:
        items.delete_annotations_of(session, last.id)
    session.add(
        ReviewDecision(
            review_item_id=item.id,
            creative_id=item.creative_id,
            reviewer_key_id=key.id,
            reviewer_name=key.name,
            action=REOPEN,
            label_id=None,
            note=f"undid decision {last.id}" if last is not None else None,
            previous=previous,
            created_at=now,
        )
    )
    session.flush()
    request_index_sync(session, f"review item {item.id} reopened")
    return get_item(session, item.id)

