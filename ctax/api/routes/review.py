"""The review queue: list with filters, claim, decide (one item or a selection), undo, the audit trail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import Field, ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import PydanticCustomError

from ctax.api.deps import DbDep, Reviewer, SettingsDep
from ctax.api.params import (
    AgeSeconds,
    CreativeId,
    Id,
    IdList,
    LabelRef,
    LabelRefText,
    Offset,
    RequestBody,
    Score,
    ShortText,
    Text,
    Version,
)
from ctax.api.routes.accounts import AccountFilter
from ctax.api.views.review import decision_views, group_members_view, item_views, label_ref
from ctax.enums import Action, Flag, QueueOrder, ReviewStatus
from ctax.errors import InvalidInput
from ctax.review import audit, claims
from ctax.review import decisions as review_decisions
from ctax.review import groups as review_groups
from ctax.review import queue as review
from ctax.store import keys
from ctax.store.models import ApiKey
from ctax.store.session import Session
from ctax.taxonomy import catalog

router = APIRouter(prefix="/v1/review", tags=["review"])



def one_of(values: Sequence[str]) -> WrapValidator:
    """Accepts only `values`, refusing anything else with one message that names them all (the messages of a
    union, or of an enum narrowed to some members, would name other things)."""
    quoted = [repr(str(value)) for value in values]
    expected = f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            parsed = handler(value)
        except ValidationError:
            parsed = None
        if parsed is None or parsed not in values:
            raise PydanticCustomError("enum", "Input should be {expected}", {"expected": expected})
        return parsed

    return WrapValidator(validate)


# Creatives flagged "none" are never reviewed.
ReviewFlag = Annotated[Flag, one_of([flag for flag in Flag if flag is not Flag.NONE])]
StatusOrAll = Annotated[ReviewStatus | Literal["all"], one_of([*ReviewStatus, "all"])]
LabelQuery = Annotated[LabelRefText | None, Query(description="a label path or id; its subtree matches")]


class DecisionIn(RequestBody):
    action: Action
    label: LabelRef | None = Field(
        default=None, description="relabel: an existing path or id; new_label: the new path"
    )
    note: Text | None = Field(default=None, description="why; required for reject")
    version: Version | None = Field(
        default=None, description="the item version you saw: a stale decision is refused with 409"
    )


class BulkIn(RequestBody):
    ids: IdList = Field(description="review item ids")
    action: Action
    label: LabelRef | None = None
    note: Text | None = None


class NextIn(RequestBody):
    flag: ReviewFlag | None = None
    label: LabelRefText | None = None
    asserted: LabelRefText | None = None
    min_score: Score | None = None
    max_score: Score | None = None
    min_age_s: AgeSeconds | None = None
    max_age_s: AgeSeconds | None = None
    proposal_id: Id | None = None
    q: ShortText | None = None
    order: QueueOrder = QueueOrder.PRIORITY
    exclude: IdList = Field(default_factory=list, description="items to pass over (e.g. skipped ones)")
    account_id: Id | None = Field(default=None, description="only this account's creatives")


def _label_id(session: Session, reference: str | None, name: str) -> int | None:
    if reference is None or reference == "":
        return None
    if reference.isdigit():
        return catalog.get_label(session, int(reference)).id
    label = catalog.find_label(session, reference)
    if label is None:
        raise InvalidInput(f"{name}: unknown label {reference!r}", field=name)
    return label.id


def _filter(
    session: Session, body: NextIn, key: ApiKey, status: ReviewStatus | Literal["all"] = ReviewStatus.OPEN,
    available_to: int | None = None,
) -> review.QueueFilter:
    return review.QueueFilter(
        account_id=keys.account_scope(session, key, body.account_id),
        flag=body.flag,
        status=status,
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
    db: DbDep,
    flag: Annotated[ReviewFlag | None, Query()] = None,
    label: LabelQuery = None,
    asserted: LabelQuery = None,
    status: StatusOrAll = ReviewStatus.OPEN,
    min_score: Score | None = None,
    max_score: Score | None = None,
    min_age_s: Annotated[AgeSeconds | None, Query(description="only items flagged at least this long ago")] = None,
    max_age_s: Annotated[AgeSeconds | None, Query(description="only items flagged within this many seconds")] = None,
    available: Annotated[bool, Query(description="hide items other reviewers hold")] = False,
    proposal_id: Id | None = None,
    q: Annotated[ShortText | None, Query(description="words in the creative's texts")] = None,
    order: QueueOrder = QueueOrder.PRIORITY,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
    account_id: AccountFilter = None,
) -> dict[str, Any]:
    """Flagged creatives, most instructive first by default (see priority_reason)."""
    if min_score is not None and max_score is not None and min_score > max_score:
        raise InvalidInput(f"min_score {min_score} is above max_score {max_score}", field="min_score")
    body = NextIn(flag=flag, label=label, asserted=asserted, min_score=min_score, max_score=max_score,
                  min_age_s=min_age_s, max_age_s=max_age_s, proposal_id=proposal_id, q=q, order=order,
                  account_id=account_id)
    with db.read() as session:
        f = _filter(session, body, key, status, key.id if available else None)
        items, total = review.list_items(session, f, limit, offset)
        return {
            "items": item_views(session, items, key),
            "total": total,
            "limit": limit,
            "offset": offset,
            "next_offset": offset + len(items) if offset + len(items) < total else None,
        }


@router.get("/stats")
def stats(key: Reviewer, db: DbDep) -> dict[str, Any]:
    with db.read() as session:
        counts = review.counts(session, key.id)
    return {**counts, "reviewer": key.name, "role": key.role}


@router.get("/decisions")
def audit_trail(
    _: Reviewer,
    db: DbDep,
    reviewer_key_id: Id | None = None,
    item_id: Id | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Every decision: who, when, what, and the state it replaced."""
    with db.read() as session:
        rows, total = audit.decisions(session, reviewer_key_id=reviewer_key_id, item_id=item_id, limit=limit,
                                      offset=offset)
        return {"items": decision_views(session, rows), "total": total, "limit": limit, "offset": offset}


@router.post("/next")
def claim_next(key: Reviewer, db: DbDep, settings: SettingsDep, body: NextIn | None = None) -> dict[str, Any]:
    """Claim and return the item to work now: one you already hold, else the first available in queue order."""
    body = body or NextIn()
    with db.write() as session:
        item = claims.claim_next(session, _filter(session, body, key), key, settings.claim_ttl_s)
        remaining = review.list_items(session, _filter(session, body, key, available_to=key.id), limit=1)[1]
        return {"item": item_views(session, [item], key)[0] if item else None, "remaining": remaining}


@router.post("/bulk")
def decide_bulk(key: Reviewer, body: BulkIn, db: DbDep) -> dict[str, Any]:
    """Decide a selection at once: all of it, or (409 listing the items that cannot be decided) none of it."""
    request = review_decisions.DecisionRequest(body.action, body.label, body.note)
    with db.write() as session:
        outcome = review_decisions.decide_bulk(session, body.ids, key, request)
        labels = catalog.labels_by_ids(session, [o.decision.label_id for o in outcome.outcomes
                                                 if o.decision.label_id])
        return {
            "bulk_id": outcome.bulk_id,
            "decided": len(outcome.outcomes),
            "replayed": outcome.replayed,
            "label_created": label_ref(labels, outcome.created_label.id) if outcome.created_label else None,
            "decisions": decision_views(session, [o.decision for o in outcome.outcomes]),
        }


@router.get("/{item_id}")
def get_item(item_id: Id, key: Reviewer, db: DbDep) -> dict[str, Any]:
    with db.read() as session:
        item = review.get_item(session, item_id)
        history = review.history(session, item.id)
        return {**item_views(session, [item], key)[0], "group_members": group_members_view(session, item),
                "history": decision_views(session, history)}


@router.post("/{item_id}/claim")
def claim(item_id: Id, key: Reviewer, db: DbDep, settings: SettingsDep) -> dict[str, Any]:
    """Hold an item while you work it (claims expire after CTAX_CLAIM_TTL_S); 409 when someone else holds it."""
    with db.write() as session:
        item = claims.claim(session, item_id, key, settings.claim_ttl_s)
        return item_views(session, [item], key)[0]


@router.delete("/{item_id}/claim")
def release(item_id: Id, key: Reviewer, db: DbDep) -> dict[str, Any]:
    with db.write() as session:
        item = claims.release(session, item_id, key)
        return item_views(session, [item], key)[0]


@router.post("/{item_id}/decision")
def decide(item_id: Id, body: DecisionIn, key: Reviewer, db: DbDep, response: Response) -> dict[str, Any]:
    """confirm (the suggested label), relabel (an existing label), new_label (a new path under an existing
    parent, created and embedded at once) or reject (with a reason in note)."""
    request = review_decisions.DecisionRequest(body.action, body.label, body.note, body.version)
    with db.write() as session:
        outcome = review_decisions.decide(session, item_id, key, request)
        answer = {
            "item": item_views(session, [outcome.item], key)[0],
            "decision": decision_views(session, [outcome.decision])[0],
            "label_created": outcome.created_label,
            "replayed": outcome.replayed,
        }
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return answer


@router.post("/{item_id}/reopen")
def reopen(item_id: Id, key: Reviewer, db: DbDep, settings: SettingsDep) -> dict[str, Any]:
    """Undo the item's last decision (yours; admins may undo anyone's): it stops counting and the item is yours
    to decide again. The audit trail keeps both."""
    with db.write() as session:
        item = review_decisions.reopen(session, item_id, key, settings.claim_ttl_s)
        return item_views(session, [item], key)[0]


@router.post("/{item_id}/members/{creative_id}/split")
def split_member(item_id: Id, creative_id: CreativeId, key: Reviewer, db: DbDep) -> dict[str, Any]:
    """Take a creative that is not the same ad out of the item's duplicate group (`group_members` of
    `GET /v1/review/{id}`): the item counts one fewer, the group's decisions stop applying to it, and it opens a
    review item of its own (`split`) to be decided on its own."""
    with db.write() as session:
        group, own = review_groups.split(session, item_id, creative_id, key)
        return {"item": item_views(session, [group], key)[0], "split": item_views(session, [own], key)[0]}
