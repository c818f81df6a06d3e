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
from typing import Any, Literal

from ctax.enums import Action, ProposalStatus, Source
from ctax.errors import Conflict, InvalidInput, NotFound
from ctax.jobs import DISCOVER
from ctax.review import decisions as review_decisions
from ctax.review.discovery import ProposalDraft
from ctax.review.target import create_reviewed_label, names_label
from ctax.store.models import ApiKey, Creative, Label, OutboxJob, Proposal, ReviewItem
from ctax.store.outbox import enqueue
from ctax.store.repos import proposals as rows
from ctax.store.session import Session
from ctax.store.types import utcnow
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


def _matching(draft: ProposalDraft, open_rows: Sequence[Proposal], kept: set[int]) -> Proposal | None:
    """The open proposal this draft is a new run of, if any."""
    match = max(
        (row for row in open_rows if row.id not in kept),
        key=lambda row: jaccard(draft.member_ids, row.member_ids),
        default=None,
    )
    return match if match is not None and jaccard(draft.member_ids, match.member_ids) > SAME_PROPOSAL else None


def store_drafts(session: Session, drafts: Sequence[ProposalDraft], version_id: str | None) -> StoreReport:
    report = StoreReport()
    open_rows = rows.with_status(session, ProposalStatus.OPEN)
    rejected = [row.member_ids for row in rows.with_status(session, ProposalStatus.REJECTED)]
    kept: set[int] = set()
    for draft in drafts:
        if any(jaccard(draft.member_ids, members) > SAME_PROPOSAL for members in rejected):
            report.dropped_as_rejected += 1
            continue
        row = _matching(draft, open_rows, kept)
        if row is not None:
            report.updated += 1
        else:
            row = Proposal(status=ProposalStatus.OPEN)
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
        rows.unlink_items(session, stale)
        rows.delete_proposals(session, stale)
        report.withdrawn = len(stale)
    for proposal_id in report.ids:
        stored = session.get(Proposal, proposal_id)
        assert stored is not None
        rows.unlink_items(session, [proposal_id])
        rows.link_open_items(session, proposal_id, stored.member_ids)
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
        for item in rows.open_items_of(session, draft.member_ids):
            reason = (item.priority_reason or "flagged").split(_DENSITY_MARK)[0]
            base = item.priority - _density_bonus(item.priority_reason)
            reason += f"{_DENSITY_MARK}{size} similar unlabelled creatives ({draft.suggested_name})"
            rows.set_priority(session, item.id, round(base + DENSITY_WEIGHT * min(size, DENSITY_CAP), 5), reason)


def _density_bonus(reason: str | None) -> float:
    if not reason or _DENSITY_MARK not in reason:
        return 0.0
    try:
        size = int(reason.split(_DENSITY_MARK)[1].split()[0])
    except (IndexError, ValueError):
        return 0.0
    return DENSITY_WEIGHT * min(size, DENSITY_CAP)


# -- reading -----------------------------------------------------------------------------------------------------


def get_proposal(session: Session, proposal_id: int) -> Proposal:
    row = session.get(Proposal, proposal_id, populate_existing=True)
    if row is None:
        raise NotFound(f"no proposal {proposal_id}")
    return row


def list_proposals(
    session: Session, status: ProposalStatus | Literal["all"] | None = ProposalStatus.OPEN
) -> list[Proposal]:
    """Proposals of one status ("all" or None: every one), by status, newest first."""
    return rows.listing(session, status if status and status != "all" else None)


def open_members(session: Session, proposal: Proposal) -> list[ReviewItem]:
    return rows.open_items_of(session, proposal.member_ids)


def members(session: Session, proposal: Proposal, limit: int | None) -> list[tuple[Creative, ReviewItem | None]]:
    """The first `limit` members (all for None) that still exist, each with its review item."""
    ids = proposal.member_ids[:limit] if limit is not None else proposal.member_ids
    creatives, items = rows.members(session, ids)
    return [(creatives[cid], items.get(cid)) for cid in ids if cid in creatives]


@dataclass(frozen=True)
class DiscoveryState:
    pending: bool  # a request waits to be sent to the worker
    has_new_label_items: bool  # open new_label items exist for it to cluster


def discovery_state(session: Session) -> DiscoveryState:
    return DiscoveryState(rows.discovery_pending(session), rows.has_open_new_label_items(session))


def request_discovery(session: Session, reason: str, **options: Any) -> OutboxJob:
    """Queue discovery (sent to the worker when the caller's transaction commits); the job has its id."""
    job = enqueue(session, DISCOVER, {"reason": reason, **options})
    session.flush()
    return job


# -- deciding ----------------------------------------------------------------------------------------------------


@dataclass
class AcceptOutcome:
    proposal: Proposal
    label: Label
    labelled: list[review_decisions.DecisionOutcome]
    skipped: list[dict[str, Any]]
    replayed: bool = False


def _decided(session: Session, proposal_id: int, to: ProposalStatus, key: ApiKey, now: dt.datetime) -> None:
    if not rows.decide_if_open(session, proposal_id, to, key.id, now):
        current = get_proposal(session, proposal_id)
        raise Conflict(f"proposal {proposal_id} is already {current.status}; nothing was changed",
                       proposal_id=proposal_id, status=current.status)


def _chosen(proposal: Proposal, members: Sequence[str] | None) -> set[str]:
    chosen = set(proposal.member_ids if members is None else members)
    strangers = chosen - set(proposal.member_ids)
    if strangers:
        raise InvalidInput(f"members: {sorted(strangers)[0]} is not a member of proposal {proposal.id}",
                           field="members")
    if not chosen:
        raise InvalidInput("members is empty: keep at least one member, or reject the proposal", field="members")
    return chosen


def _replay(session: Session, proposal: Proposal, key: ApiKey, name: str | None,
            into: str | int | None) -> AcceptOutcome | None:
    """The answer to a retried accept, if this is one."""
    if proposal.status != ProposalStatus.ACCEPTED or proposal.decided_by != key.id:
        return None
    if proposal.created_label_id is None:
        return None
    label = catalog.get_label(session, proposal.created_label_id)
    if (name is None or label.name == name.strip()) and (into is None or names_label(label, into)):
        return AcceptOutcome(proposal, label, [], [], replayed=True)
    return None


def _label_members(session: Session, proposal: Proposal, chosen: set[str], key: ApiKey, label: Label,
                   request: review_decisions.DecisionRequest, now: dt.datetime) -> AcceptOutcome:
    bulk_id = uuid.uuid4().hex
    outcome = AcceptOutcome(proposal, label, [], [])
    for item in open_members(session, proposal):
        if item.creative_id not in chosen:
            continue
        try:
            outcome.labelled.append(review_decisions.decide(
                session, item.id, key, request, now=now, bulk_id=bulk_id, label=label, source=Source.PROPOSAL))
        except Conflict as exc:
            outcome.skipped.append({"id": item.id, "creative_id": item.creative_id, "reason": exc.message})
    return outcome


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
    replay = _replay(session, proposal, key, name, into)
    if replay is not None:
        return replay
    if proposal.status != ProposalStatus.OPEN:
        raise Conflict(f"proposal {proposal_id} is already {proposal.status}; nothing was changed",
                       proposal_id=proposal_id, status=proposal.status)
    existing = catalog.resolve_active(session, into, "into") if into not in (None, "") else None
    path = LabelPath.parse(existing.path) if existing is not None else _new_path(session, proposal, name, parent)
    chosen = _chosen(proposal, members)
    _decided(session, proposal_id, ProposalStatus.ACCEPTED, key, now)
    label = existing or create_reviewed_label(session, str(path), source=Source.PROPOSAL)
    action = Action.RELABEL if existing is not None else Action.NEW_LABEL
    request = review_decisions.DecisionRequest(action, str(path), note=f"accepted proposal {proposal_id}")
    outcome = _label_members(session, proposal, chosen, key, label, request, now)
    rows.unlink_items(session, [proposal_id])
    rows.record_acceptance(session, proposal_id, label.id, sorted(chosen))
    outcome.proposal = get_proposal(session, proposal_id)
    return outcome


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
    if proposal.status == ProposalStatus.REJECTED and proposal.decided_by == key.id:
        return proposal
    _decided(session, proposal_id, ProposalStatus.REJECTED, key, now)
    rows.unlink_items(session, [proposal_id])
    return get_proposal(session, proposal_id)
