"""Review decisions: confirm, relabel, new_label, reject, one item or a selection, and undo. Each is recorded with
the state it replaced and becomes labelled data (an Annotation; the latest one per creative is its truth).

Concurrency is review.py's: every state change is a conditional UPDATE on status, claim and `version`, so of two
reviewers deciding one item at the same moment exactly one succeeds and nothing is applied twice.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.orm import Session

from ctax.errors import Conflict, Forbidden, InvalidInput
from ctax.review.queue import ACTIONS, REOPEN, claimable_by, get_item, last_decision, refusal
from ctax.store.models import Annotation, ApiKey, Label, ReviewDecision, ReviewItem, utcnow
from ctax.store.outbox import request_index_sync
from ctax.taxonomy import catalog
from ctax.taxonomy.paths import LabelPath

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


def _latest_annotation(session: Session, creative_id: str) -> Annotation | None:
    return session.scalar(
        select(Annotation).where(Annotation.creative_id == creative_id).order_by(Annotation.id.desc()).limit(1)
    )


def snapshot(session: Session, item: ReviewItem) -> dict[str, Any]:
    """The state a decision replaces, kept in the audit row."""
    creative = item.creative
    annotation = _latest_annotation(session, item.creative_id)
    return {
        "item": {
            "status": item.status,
            "flag": item.flag,
            "version": item.version,
            "suggested_label_id": item.suggested_label_id,
            "asserted_label_id": item.asserted_label_id,
            "top_score": item.top_score,
            "priority": item.priority,
            "claimed_by": item.claimed_by,
            "proposal_id": item.proposal_id,
            "decided_at": item.decided_at.isoformat() if item.decided_at else None,
        },
        "creative": {
            "flag": creative.flag,
            "decided_label_id": creative.decided_label_id,
            "asserted_label_id": creative.asserted_label_id,
            "model_version": creative.model_version_id,
            "annotation": {
                "id": annotation.id,
                "label_id": annotation.label_id,
                "kind": annotation.kind,
                "source": annotation.source,
            }
            if annotation is not None
            else None,
        },
    }


def _clean_note(note: str | None) -> str | None:
    if note is None:
        return None
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidInput(f"note has {len(note)} characters; the limit is {MAX_NOTE_CHARS}", field="note")
    return note.strip() or None


def new_label_path(reference: str | int | None) -> LabelPath:
    if not isinstance(reference, str) or not reference.strip():
        raise InvalidInput("new_label needs label: the new path, e.g. Product/Pets/Dog Toys", field="label")
    try:
        path = LabelPath.parse(reference)
    except InvalidInput as exc:
        raise InvalidInput(f"label: {exc.message}", field="label") from exc
    if path.parent is None:
        raise InvalidInput(
            f"label: a new label goes under an existing parent; {path} has none (write Parent/{path})", field="label"
        )
    return path


def create_reviewed_label(session: Session, reference: str | int | None, source: str = "review") -> Label:
    """A reviewer's new label: a new path under an existing, active parent; duplicates are refused."""
    path = new_label_path(reference)
    try:
        return catalog.create_label(session, path, source=source)
    except InvalidInput as exc:
        raise InvalidInput(f"label: {exc.message}", **{**exc.detail, "field": "label"}) from exc


def _target_label(session: Session, item: ReviewItem, request: DecisionRequest, given: Label | None) -> Label | None:
    """The label a decision applies (None for reject); validates without writing, except new_label's creation."""
    action = request.action
    if action == "reject":
        if request.label is not None:
            raise InvalidInput("reject takes no label: send action relabel to change the label", field="label")
        if not (request.note or "").strip():
            raise InvalidInput("reject needs a reason in note (e.g. 'not an ad')", field="note")
        return None
    if given is not None:
        return given
    if action == "confirm":
        if item.suggested_label_id is None:
            raise InvalidInput(
                f"review item {item.id} has no suggested label to confirm; relabel it or name a new label",
                field="action",
            )
        label = catalog.get_label(session, item.suggested_label_id)
        if request.label is not None and catalog.resolve_active(session, request.label).id != label.id:
            raise InvalidInput(
                f"confirm applies the suggested label {label.path}; to apply another, send action relabel",
                field="label",
            )
        if label.status != "active":
            raise InvalidInput(f"the suggested label {label.path} was retired; relabel this item", field="action")
        return label
    if action == "relabel":
        if request.label is None or request.label == "":
            raise InvalidInput("relabel needs label: an existing label path or id", field="label")
        return catalog.resolve_active(session, request.label)
    if action == "new_label":
        return create_reviewed_label(session, request.label)
    raise InvalidInput(f"action must be one of {', '.join(ACTIONS)}, got {action!r}", field="action")


def is_replay(session: Session, item: ReviewItem, key: ApiKey, request: DecisionRequest) -> ReviewDecision | None:
    """The recorded decision this request repeats, if it repeats one (a retry after a lost answer)."""
    if item.status != "decided":
        return None
    last = last_decision(session, item.id)
    if last is None or last.reviewer_key_id != key.id or last.action != request.action:
        return None
    if request.action in ("relabel", "new_label"):
        label = session.get(Label, last.label_id) if last.label_id is not None else None
        if label is None or request.label is None:
            return None
        if isinstance(request.label, int) or str(request.label).isdigit():
            return last if int(request.label) == label.id else None
        try:
            same = str(LabelPath.parse(str(request.label))) == label.path
        except InvalidInput:
            return None
        return last if same else None
    return last


def decide(
    session: Session,
    item_id: int,
    key: ApiKey,
    request: DecisionRequest,
    *,
    now: dt.datetime | None = None,
    bulk_id: str | None = None,
    label: Label | None = None,
    source: str = "review",
) -> DecisionOutcome:
    """Record a decision in the caller's transaction: the item is decided, the audit row keeps the previous state,
    and an annotation makes it labelled data (the latest annotation of a creative is its truth for training)."""
    now = now or utcnow()
    if request.action not in ACTIONS:
        raise InvalidInput(f"action must be one of {', '.join(ACTIONS)}, got {request.action!r}", field="action")
    note = _clean_note(request.note)
    item = get_item(session, item_id)
    replay = is_replay(session, item, key, request)
    if replay is not None:
        replayed_label = session.get(Label, replay.label_id) if replay.label_id is not None else None
        return DecisionOutcome(item, replay, replayed_label, replayed=True)
    if item.status != "open":
        raise refusal(session, item, key, now)
    if request.version is not None and request.version != item.version:
        raise Conflict(
            f"review item {item.id} changed since you loaded it (version {request.version}, now {item.version}): "
            "the model re-flagged it or someone decided it; reload it. Nothing was changed",
            item_id=item.id,
            version=item.version,
        )
    if item.claimed_by not in (None, key.id) and item.claim_expires_at is not None and item.claim_expires_at >= now:
        raise refusal(session, item, key, now)
    created = request.action == "new_label" and label is None
    target = _target_label(session, item, request, label)
    previous = snapshot(session, item)
    result = session.execute(
        update(ReviewItem)
        .where(
            ReviewItem.id == item.id,
            ReviewItem.version == item.version,
            ReviewItem.status == "open",
            claimable_by(key.id, now),
        )
        .values(
            status="decided",
            decided_at=now,
            claimed_by=None,
            claim_expires_at=None,
            version=ReviewItem.version + 1,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise refusal(session, get_item(session, item.id), key, now)
    decision = ReviewDecision(
        review_item_id=item.id,
        creative_id=item.creative_id,
        reviewer_key_id=key.id,
        reviewer_name=key.name,
        action=request.action,
        label_id=target.id if target is not None else None,
        note=note,
        previous=previous,
        bulk_id=bulk_id,
        created_at=now,
    )
    session.add(decision)
    session.flush()
    session.add(
        Annotation(
            creative_id=item.creative_id,
            label_id=target.id if target is not None else None,
            kind="reject" if target is None else "label",
            source=source,
            decision_id=decision.id,
            created_by=key.id,
            created_at=now,
        )
    )
    session.flush()
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
    items = [get_item(session, item_id) for item_id in ids]
    shared: Label | None = None
    if request.action == "new_label":
        if all(is_replay(session, item, key, request) for item in items):
            shared = None  # a retry of a bulk that created the label: each item replays below
        else:
            shared = create_reviewed_label(session, request.label)
            outcome.created_label = shared
    conflicts: list[dict[str, Any]] = []
    for item in items:
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
    if item.status != "decided":
        raise Conflict(f"review item {item.id} is {item.status}, not decided; nothing to reopen", item_id=item.id)
    last = last_decision(session, item.id)
    if last is not None and last.reviewer_key_id != key.id and key.role != "admin":
        raise Forbidden(
            f"review item {item.id} was decided by {last.reviewer_name}; only they or an admin can reopen it"
        )
    previous = snapshot(session, item)
    result = session.execute(
        update(ReviewItem)
        .where(ReviewItem.id == item.id, ReviewItem.version == item.version, ReviewItem.status == "decided")
        .values(
            status="open",
            decided_at=None,
            claimed_by=key.id,
            claim_expires_at=now + dt.timedelta(seconds=ttl_s),
            version=ReviewItem.version + 1,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"review item {item.id} changed while reopening it; reload it", item_id=item.id)
    if last is not None:
        session.execute(delete(Annotation).where(Annotation.decision_id == last.id))
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


def decisions(
    session: Session, *, reviewer_key_id: int | None = None, item_id: int | None = None, limit: int = 50,
    offset: int = 0
) -> tuple[list[ReviewDecision], int]:
    conditions = []
    if reviewer_key_id is not None:
        conditions.append(ReviewDecision.reviewer_key_id == reviewer_key_id)
    if item_id is not None:
        conditions.append(ReviewDecision.review_item_id == item_id)
    query = select(ReviewDecision).where(and_(*conditions)) if conditions else select(ReviewDecision)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(ReviewDecision.id.desc()).limit(limit).offset(offset)).all()
    return list(rows), total
