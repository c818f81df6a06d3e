"""The review queue: list with filters, claim, decide (one item or a selection), undo, the audit trail."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ctax.api.deps import DispatcherDep, Reviewer, SessionDep, SettingsDep
from ctax.api.dispatch import Dispatcher
from ctax.errors import Conflict, InvalidInput
from ctax.review import decisions as review_decisions
from ctax.review import queue as review
from ctax.store.models import ApiKey, Label, ReviewDecision, ReviewItem, utcnow
from ctax.taxonomy import catalog

router = APIRouter(prefix="/v1/review", tags=["review"])

FLAG_TITLES = {
    "new_label": "Fits no existing label",
    "wrong_label": "The asserted label looks wrong",
    "low_confidence": "The model is unsure between labels",
}
FlagParam = Annotated[str | None, Query(pattern="^(new_label|wrong_label|low_confidence)$")]
LabelRef = Annotated[str | None, Query(max_length=1800, description="a label path or id; its subtree matches")]


class DecisionIn(BaseModel):
    action: review.Action
    label: str | int | None = Field(None, description="relabel: an existing path or id; new_label: the new path")
    note: str | None = Field(None, description="why; required for reject")
    version: int | None = Field(None, description="the item version you saw: a stale decision is refused with 409")


class BulkIn(BaseModel):
    ids: list[int] = Field(description="review item ids")
    action: review.Action
    label: str | int | None = None
    note: str | None = None


class NextIn(BaseModel):
    flag: Literal["new_label", "wrong_label", "low_confidence"] | None = None
    label: str | None = None
    asserted: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    min_age_s: float | None = Field(None, ge=0)
    max_age_s: float | None = Field(None, ge=0)
    proposal_id: int | None = None
    q: str | None = Field(None, max_length=200)
    order: review.Order = "priority"
    exclude: list[int] = Field(default_factory=list, description="items to pass over (e.g. skipped ones)")


def _label_id(session: Session, reference: str | None, name: str) -> int | None:
    if reference is None or reference == "":
        return None
    if reference.isdigit():
        return catalog.get_label(session, int(reference)).id
    label = catalog.find_label(session, reference)
    if label is None:
        raise InvalidInput(f"{name}: unknown label {reference!r}", field=name)
    return label.id


def _labels(session: Session, items: list[ReviewItem]) -> dict[int, Label]:
    ids = {i for item in items for i in (item.suggested_label_id, item.asserted_label_id) if i is not None}
    return catalog.labels_by_ids(session, ids)


def _names(session: Session, key_ids: set[int | None]) -> dict[int, str]:
    wanted = [k for k in key_ids if k is not None]
    if not wanted:
        return {}
    return dict(session.execute(select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(wanted))).all())


def _label_ref(labels: dict[int, Label], label_id: int | None) -> dict[str, Any] | None:
    if label_id is None:
        return None
    label = labels.get(label_id)
    return {"id": label_id, "path": label.path if label else None, "status": label.status if label else None}


def item_view(
    item: ReviewItem, labels: dict[int, Label], names: dict[int, str], me: ApiKey, now: dt.datetime
) -> dict[str, Any]:
    creative = item.creative
    prediction = creative.prediction or {}
    live_claim = item.claimed_by is not None and item.claim_expires_at is not None and item.claim_expires_at >= now
    return {
        "id": item.id,
        "version": item.version,
        "status": item.status,
        "flag": item.flag,
        "flag_title": FLAG_TITLES.get(item.flag, item.flag),
        "reasons": prediction.get("reasons", []),
        "scores": prediction.get("scores") or {},
        "priority": item.priority,
        "priority_reason": item.priority_reason,
        "suggested_label": _label_ref(labels, item.suggested_label_id),
        "asserted_label": _label_ref(labels, item.asserted_label_id),
        "top_score": item.top_score,
        "top_k": prediction.get("top_k", []),
        "model_version": item.model_version_id,
        "proposal_id": item.proposal_id,
        "claim": {
            "by": names.get(item.claimed_by or -1, f"key {item.claimed_by}"),
            "mine": item.claimed_by == me.id,
            "expires_at": item.claim_expires_at,
        }
        if live_claim
        else None,
        "created_at": item.created_at,
        "decided_at": item.decided_at,
        "creative": {
            "id": creative.id,
            "external_id": creative.external_id,
            "texts": creative.texts or [],
            "ocr_text": creative.ocr_text,
            "image_url": f"/v1/creatives/{creative.id}/image" if creative.image_sha256 else None,
            "image_size": [creative.image_width, creative.image_height] if creative.image_sha256 else None,
            "modalities_used": prediction.get("modalities_used", []),
            "metadata": creative.metadata_,
            "created_at": creative.created_at,
        },
    }


def decision_view(decision: ReviewDecision, labels: dict[int, Label]) -> dict[str, Any]:
    return {
        "id": decision.id,
        "item_id": decision.review_item_id,
        "creative_id": decision.creative_id,
        "reviewer": decision.reviewer_name,
        "reviewer_key_id": decision.reviewer_key_id,
        "action": decision.action,
        "label": _label_ref(labels, decision.label_id),
        "note": decision.note,
        "previous": decision.previous,
        "bulk_id": decision.bulk_id,
        "created_at": decision.created_at,
    }


def _views(session: Session, items: list[ReviewItem], me: ApiKey) -> list[dict[str, Any]]:
    labels = _labels(session, items)
    names = _names(session, {item.claimed_by for item in items})
    now = utcnow()
    return [item_view(item, labels, names, me, now) for item in items]


def commit(session: Session, dispatcher: Dispatcher) -> None:
    """Commit, then let the dispatcher send the index sync the change queued."""
    try:
        session.commit()
    except IntegrityError as exc:  # e.g. two reviewers created the same new label at the same moment
        session.rollback()
        raise Conflict("a concurrent change to the same data won; reload and try again. Nothing was changed") from exc
    dispatcher.nudge()


def _filter(
    session: Session, body: NextIn, status: str = "open", available_to: int | None = None
) -> review.QueueFilter:
    return review.QueueFilter(
        flag=body.flag,
        status=status,  # type: ignore[arg-type]
        label_id=_label_id(session, body.label, "label"),
        asserted_label_id=_label_id(session, body.asserted, "asserted"),
        min_score=body.min_score,
        max_score=body.max_score,
        min_age_s=body.min_age_s,
        max_age_s=body.max_age_s,
        available_to=available_to,
        proposal_id=body.proposal_id,
        text=body.q,
        exclude=body.exclude,
        order=body.order,
    )


@router.get("")
def list_queue(
    key: Reviewer,
    session: SessionDep,
    flag: FlagParam = None,
    label: LabelRef = None,
    asserted: LabelRef = None,
    status: Literal["open", "decided", "all"] = "open",
    min_score: float | None = None,
    max_score: float | None = None,
    min_age_s: Annotated[float | None, Query(ge=0, description="only items flagged at least this long ago")] = None,
    max_age_s: Annotated[float | None, Query(ge=0, description="only items flagged within this many seconds")] = None,
    available: Annotated[bool, Query(description="hide items other reviewers hold")] = False,
    proposal_id: int | None = None,
    q: Annotated[str | None, Query(max_length=200, description="words in the creative's texts")] = None,
    order: review.Order = "priority",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Flagged creatives, most instructive first by default (see priority_reason)."""
    if min_score is not None and max_score is not None and min_score > max_score:
        raise InvalidInput(f"min_score {min_score} is above max_score {max_score}", field="min_score")
    body = NextIn(flag=flag, label=label, asserted=asserted, min_score=min_score, max_score=max_score,  # type: ignore[arg-type]
                  min_age_s=min_age_s, max_age_s=max_age_s, proposal_id=proposal_id, q=q, order=order)
    f = _filter(session, body, status, key.id if available else None)
    items, total = review.list_items(session, f, limit, offset)
    return {
        "items": _views(session, items, key),
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_offset": offset + len(items) if offset + len(items) < total else None,
    }


@router.get("/stats")
def stats(key: Reviewer, session: SessionDep) -> dict[str, Any]:
    return {**review.counts(session, key.id), "reviewer": key.name, "role": key.role}


@router.get("/decisions")
def audit_trail(
    _: Reviewer,
    session: SessionDep,
    reviewer_key_id: int | None = None,
    item_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Every decision: who, when, what, and the state it replaced."""
    rows, total = review_decisions.decisions(session, reviewer_key_id=reviewer_key_id, item_id=item_id, limit=limit,
                                   offset=offset)
    labels = catalog.labels_by_ids(session, [r.label_id for r in rows if r.label_id is not None])
    return {"items": [decision_view(r, labels) for r in rows], "total": total, "limit": limit, "offset": offset}


@router.post("/next")
def claim_next(key: Reviewer, session: SessionDep, settings: SettingsDep, body: NextIn | None = None) -> dict[str, Any]:
    """Claim and return the item to work now: one you already hold, else the first available in queue order."""
    body = body or NextIn()
    item = review.claim_next(session, _filter(session, body), key, settings.claim_ttl_s)
    session.commit()
    remaining = review.list_items(session, _filter(session, body, available_to=key.id), limit=1)[1]
    return {"item": _views(session, [item], key)[0] if item else None, "remaining": remaining}


@router.post("/bulk")
def decide_bulk(key: Reviewer, body: BulkIn, session: SessionDep, dispatcher: DispatcherDep) -> dict[str, Any]:
    """Decide a selection at once: all of it, or (409 listing the items that cannot be decided) none of it."""
    request = review_decisions.DecisionRequest(body.action, body.label, body.note)
    outcome = review_decisions.decide_bulk(session, body.ids, key, request)
    commit(session, dispatcher)
    labels = catalog.labels_by_ids(session, [o.decision.label_id for o in outcome.outcomes if o.decision.label_id])
    return {
        "bulk_id": outcome.bulk_id,
        "decided": len(outcome.outcomes),
        "replayed": outcome.replayed,
        "label_created": _label_ref(labels, outcome.created_label.id) if outcome.created_label else None,
        "decisions": [decision_view(o.decision, labels) for o in outcome.outcomes],
    }


@router.get("/{item_id}")
def get_item(item_id: int, key: Reviewer, session: SessionDep) -> dict[str, Any]:
    item = review.get_item(session, item_id)
    rows = review.history(session, item.id)
    labels = catalog.labels_by_ids(session, [r.label_id for r in rows if r.label_id is not None])
    return {**_views(session, [item], key)[0], "history": [decision_view(r, labels) for r in rows]}


@router.post("/{item_id}/claim")
def claim(item_id: int, key: Reviewer, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    """Hold an item while you work it (claims expire after CTAX_CLAIM_TTL_S); 409 when someone else holds it."""
    item = review.claim(session, item_id, key, settings.claim_ttl_s)
    session.commit()
    return _views(session, [item], key)[0]


@router.delete("/{item_id}/claim")
def release(item_id: int, key: Reviewer, session: SessionDep) -> dict[str, Any]:
    item = review.release(session, item_id, key)
    session.commit()
    return _views(session, [item], key)[0]


@router.post("/{item_id}/decision")
def decide(
    item_id: int, body: DecisionIn, key: Reviewer, session: SessionDep, dispatcher: DispatcherDep, response: Response
) -> dict[str, Any]:
    """confirm (the suggested label), relabel (an existing label), new_label (a new path under an existing
    parent, created and embedded at once) or reject (with a reason in note)."""
    request = review_decisions.DecisionRequest(body.action, body.label, body.note, body.version)
    outcome = review_decisions.decide(session, item_id, key, request)
    commit(session, dispatcher)
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    labels = catalog.labels_by_ids(session, [outcome.decision.label_id] if outcome.decision.label_id else [])
    return {
        "item": _views(session, [outcome.item], key)[0],
        "decision": decision_view(outcome.decision, labels),
        "label_created": outcome.created_label,
        "replayed": outcome.replayed,
    }


@router.post("/{item_id}/reopen")
def reopen(item_id: int, key: Reviewer, session: SessionDep, settings: SettingsDep,
           dispatcher: DispatcherDep) -> dict[str, Any]:
    """Undo the item's last decision (yours; admins may undo anyone's): it stops counting and the item is yours
    to decide again. The audit trail keeps both."""
    item = review_decisions.reopen(session, item_id, key, settings.claim_ttl_s)
    commit(session, dispatcher)
    return _views(session, [item], key)[0]
