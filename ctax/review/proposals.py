"""New-label proposals in the database: stored by discovery, accepted or rejected by reviewers.

Re-running discovery keeps proposal ids stable: a new draft that shares most members with an open proposal
updates it in place, open proposals matching no draft are withdrawn, and a draft that mostly repeats a proposal
reviewers rejected is dropped, so a rejection is not undone by the next run.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ctax.errors import Conflict, InvalidInput, NotFound
from ctax.review import decisions as review_decisions
from ctax.review.discovery import ProposalDraft
from ctax.store.models import ApiKey, Label, Proposal, ReviewItem, utcnow
from ctax.taxonomy import catalog
from ctax.taxonomy.paths import LabelPath

SAME_PROPOSAL = 0.5  # Jaccard overlap of members above which two clusters are the same proposal


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    left, right = set(a), set(b)
    return len(left & right) / max(len(left | right), 1)


@dataclass
class StoreReport:
    created: int = 0
    updated: int = 0
    withdrawn: int = 0
    dropped_as_rejected: int = 0
    ids: list[int] = field(default_factory=list)


def store_drafts(session: Session, drafts: Sequence[ProposalDraft], version_id: str | None) -> StoreReport:
    report = StoreReport()
    open_rows = list(session.scalars(select(Proposal).where(Proposal.status == "open")))
    rejected = [row.member_ids for row in session.scalars(select(Proposal).where(Proposal.status == "rejected"))]
    kept: set[int] = set()
    for draft in drafts:
        if any(jaccard(draft.member_ids, members) > SAME_PROPOSAL for members in rejected):
            report.dropped_as_rejected += 1
            continue
        match = max(
            (row for row in open_rows if row.id not in kept),
            key=lambda row: jaccard(draft.member_ids, row.member_ids),
            default=None,
        )
        if match is not None and jaccard(draft.member_ids, match.member_ids) > SAME_PROPOSAL:
            row = match
            report.updated += 1
        else:
            row = Proposal(status="open")
            session.add(row)
            report.created += 1
        row.member_ids = list(draft.member_ids)
        row.suggested_name = draft.suggested_name[:200]
        row.suggested_parent_id = draft.suggested_parent_id
        row.terms = list(draft.terms)
        row.cohesion = round(draft.cohesion, 5)
        row.model_version_id = version_id
        session.flush()
        kept.add(row.id)
        report.ids.append(row.id)
    stale = [row.id for row in open_rows if row.id not in kept]
    if stale:
        _unlink(session, stale)
        session.execute(delete(Proposal).where(Proposal.id.in_(stale)))
        report.withdrawn = len(stale)
    for proposal_id in report.ids:
        row = session.get(Proposal, proposal_id)
        assert row is not None
        _unlink(session, [proposal_id])
        # A core UPDATE leaves `version` alone: linking an item to a proposal changes nothing a reviewer saw.
        session.execute(
            update(ReviewItem)
            .where(ReviewItem.creative_id.in_(row.member_ids), ReviewItem.status == "open")
            .values(proposal_id=proposal_id)
            .execution_options(synchronize_session=False)
        )
    return report


DENSITY_WEIGHT = 0.05
DENSITY_CAP = 20
_DENSITY_MARK = "; one of "


def boost_dense(session: Session, drafts: Sequence[ProposalDraft]) -> None:
    """Active learning: a creative among many similar unreviewed ones teaches more (its decision, or the
    proposal's, labels the whole region), so its priority rises with the size of its cluster. The bonus is
    recorded in the reason, so a later run replaces it instead of adding to it."""
    for draft in drafts:
        size = len(draft.member_ids)
        for item in session.scalars(
            select(ReviewItem).where(ReviewItem.creative_id.in_(draft.member_ids), ReviewItem.status == "open")
        ):
            reason = (item.priority_reason or "flagged").split(_DENSITY_MARK)[0]
            base = item.priority - _density_bonus(item.priority_reason)
            reason += f"{_DENSITY_MARK}{size} similar unlabelled creatives ({draft.suggested_name})"
            session.execute(
                update(ReviewItem)
                .where(ReviewItem.id == item.id)
                .values(priority=round(base + DENSITY_WEIGHT * min(size, DENSITY_CAP), 5), priority_reason=reason)
                .execution_options(synchronize_session=False)
            )


def _density_bonus(reason: str | None) -> float:
    if not reason or _DENSITY_MARK not in reason:
        return 0.0
    try:
        size = int(reason.split(_DENSITY_MARK)[1].split()[0])
    except (IndexError, ValueError):
        return 0.0
    return DENSITY_WEIGHT * min(size, DENSITY_CAP)


def _unlink(session: Session, proposal_ids: Sequence[int]) -> None:
    session.execute(
        update(ReviewItem)
        .where(ReviewItem.proposal_id.in_(list(proposal_ids)))
        .values(proposal_id=None)
        .execution_options(synchronize_session=False)
    )


def get_proposal(session: Session, proposal_id: int) -> Proposal:
    row = session.get(Proposal, proposal_id, populate_existing=True)
    if row is None:
        raise NotFound(f"no proposal {proposal_id}")
    return row


def list_proposals(session: Session, status: str | None = "open") -> list[Proposal]:
    query = select(Proposal)
    if status and status != "all":
        query = query.where(Proposal.status == status)
    return list(session.scalars(query.order_by(Proposal.status, Proposal.id.desc())))


def open_members(session: Session, proposal: Proposal) -> list[ReviewItem]:
    return list(
        session.scalars(
            select(ReviewItem).where(
                ReviewItem.creative_id.in_(proposal.member_ids), ReviewItem.status == "open"
            ).order_by(ReviewItem.priority.desc())
        )
    )


@dataclass
class AcceptOutcome:
    proposal: Proposal
    label: Label
    labelled: list[review_decisions.DecisionOutcome]
    skipped: list[dict[str, Any]]
    replayed: bool = False


def _decided(session: Session, proposal_id: int, to: str, key: ApiKey, now: dt.datetime) -> None:
    """The status flip is conditional, so two reviewers deciding one proposal cannot both succeed."""
    result = session.execute(
        update(Proposal)
        .where(Proposal.id == proposal_id, Proposal.status == "open")
        .values(status=to, decided_by=key.id, decided_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        current = get_proposal(session, proposal_id)
        raise Conflict(f"proposal {proposal_id} is already {current.status}; nothing was changed",
                       proposal_id=proposal_id, status=current.status)


def accept(
    session: Session,
    proposal_id: int,
    key: ApiKey,
    *,
    name: str | None = None,
    parent: str | int | None = None,
    into: str | int | None = None,
    members: Sequence[str] | None = None,
    now: dt.datetime | None = None,
) -> AcceptOutcome:
    """Create the label (optionally renamed or moved), or with `into` use an existing one (discovery often splits
    one missing label into several proposals, e.g. by brand), and label the members the reviewer kept; members left
    out stay in the queue. Members decided meanwhile, or held by another reviewer, are skipped and reported."""
    now = now or utcnow()
    proposal = get_proposal(session, proposal_id)
    if proposal.status == "accepted" and proposal.decided_by == key.id and proposal.created_label_id is not None:
        label = catalog.get_label(session, proposal.created_label_id)
        if (name is None or label.name == name.strip()) and (into is None or _same(label, into)):
            return AcceptOutcome(proposal, label, [], [], replayed=True)
    if proposal.status != "open":
        raise Conflict(f"proposal {proposal_id} is already {proposal.status}; nothing was changed",
                       proposal_id=proposal_id, status=proposal.status)
    existing = catalog.resolve_active(session, into, "into") if into not in (None, "") else None
    path = LabelPath.parse(existing.path) if existing is not None else _new_path(session, proposal, name, parent)
    chosen = set(proposal.member_ids if members is None else members)
    strangers = chosen - set(proposal.member_ids)
    if strangers:
        raise InvalidInput(f"members: {sorted(strangers)[0]} is not a member of proposal {proposal_id}",
                           field="members")
    if not chosen:
        raise InvalidInput("members is empty: keep at least one member, or reject the proposal", field="members")
    _decided(session, proposal_id, "accepted", key, now)
    label = existing or review_decisions.create_reviewed_label(session, str(path), source="proposal")
    bulk_id = uuid.uuid4().hex
    labelled: list[review_decisions.DecisionOutcome] = []
    skipped: list[dict[str, Any]] = []
    action = "relabel" if existing is not None else "new_label"
    request = review_decisions.DecisionRequest(action, str(path), note=f"accepted proposal {proposal_id}")
    for item in open_members(session, proposal):
        if item.creative_id not in chosen:
            continue
        try:
            outcome = review_decisions.decide(
                session, item.id, key, request, now=now, bulk_id=bulk_id, label=label, source="proposal"
            )
            labelled.append(outcome)
        except Conflict as exc:
            skipped.append({"id": item.id, "creative_id": item.creative_id, "reason": exc.message})
    _unlink(session, [proposal_id])
    session.execute(
        update(Proposal)
        .where(Proposal.id == proposal_id)
        .values(created_label_id=label.id, member_ids=sorted(chosen))
        .execution_options(synchronize_session=False)
    )
    return AcceptOutcome(get_proposal(session, proposal_id), label, labelled, skipped)


def _same(label: Label, reference: str | int) -> bool:
    if isinstance(reference, int) or str(reference).isdigit():
        return int(reference) == label.id
    try:
        return str(LabelPath.parse(str(reference))) == label.path
    except InvalidInput:
        return False


def _new_path(session: Session, proposal: Proposal, name: str | None, parent: str | int | None) -> LabelPath:
    parent_ref = parent if parent not in (None, "") else proposal.suggested_parent_id
    if parent_ref is None:
        raise InvalidInput("this proposal has no suggested parent: send parent (a label path or id)", field="parent")
    parent_label = catalog.resolve_active(session, parent_ref, "parent")
    leaf = (name if name is not None else proposal.suggested_name).strip()
    if not leaf:
        raise InvalidInput("name is empty", field="name")
    try:
        return LabelPath.parse(parent_label.path).child(leaf)
    except InvalidInput as exc:
        raise InvalidInput(f"name: {exc.message}", field="name") from exc


def reject(session: Session, proposal_id: int, key: ApiKey, now: dt.datetime | None = None) -> Proposal:
    """The members stay in the queue, each to be decided on its own."""
    now = now or utcnow()
    proposal = get_proposal(session, proposal_id)
    if proposal.status == "rejected" and proposal.decided_by == key.id:
        return proposal
    _decided(session, proposal_id, "rejected", key, now)
    _unlink(session, [proposal_id])
    return get_proposal(session, proposal_id)
