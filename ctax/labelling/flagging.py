"""Flagged creatives become review items: the labelling worker (and the novelty sweep) call flag_for_review with
the trigger's decision; its priority is what the review queue orders by."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ctax.enums import Flag, ReviewStatus
from ctax.jobs import DISCOVER
from ctax.labelling.trigger import Decision
from ctax.store.models import OutboxJob, ReviewItem
from ctax.store.outbox import enqueue
from ctax.store.repos import groups, review_counts
from ctax.store.repos import proposals as proposal_rows
from ctax.store.repos import review as review_items
from ctax.store.session import Session
from ctax.store.types import utcnow

# Discovery runs by itself once this many creatives were flagged new_label since it last ran.
AUTO_DISCOVER_EVERY = 20


# A flood of new_label flags (a new campaign, a broken model) must not queue discovery after discovery.
AUTO_DISCOVER_MIN_INTERVAL = dt.timedelta(minutes=10)


def priority_of(decision: Decision) -> tuple[float, str]:
    """Active learning: a decision teaches the model most where the model is least sure.

    - new_label: far from every label; reviewers' names for these grow the taxonomy.
    - a small margin between the top two rival labels: the boundary is unclear there.
    - a wrong-label gap far above its threshold: either the poster or the model is badly wrong.
    - disagreement between the nearest label and the nearest labelled exemplars.
    Density (many similar unreviewed creatives) is added by discovery, which has the vectors.
    """
    scores = decision.scores
    parts: list[tuple[float, str]] = []
    if decision.flag == Flag.NEW_LABEL:
        fit, threshold = scores.get("fit"), scores.get("new_label_threshold")
        distance = (threshold - fit) if fit is not None and threshold is not None else 0.0
        parts.append(
            (1.0 + distance, f"fits no label (fit {fit:.3f} < {threshold:.3f})" if fit is not None else "fits no label")
        )
    margin = scores.get("margin")
    if margin is not None:
        parts.append((max(0.0, 0.5 - margin), f"top two labels differ by only {margin:.3f}"))
    gap, gap_threshold = scores.get("wrong_label_gap"), scores.get("wrong_label_threshold")
    if decision.flag == Flag.WRONG_LABEL and gap is not None and gap_threshold is not None:
        parts.append((0.5 + gap - gap_threshold, f"asserted label trails by {gap:.2f}"))
    if decision.ranked:
        top = decision.ranked[0]
        if top.exemplar_share < 0.5 and top.exemplar_share > 0:
            parts.append(
                (0.5 - top.exemplar_share, f"only {top.exemplar_share:.0%} of similar labelled creatives agree")
            )
    if not parts:
        return 0.0, "flagged"
    parts.sort(reverse=True)
    return round(sum(p for p, _ in parts), 5), "; ".join(reason for _, reason in parts[:2])


def flag_for_review(
    session: Session, creative_id: str, decision: Decision, version_id: str, asserted_label_id: int | None
) -> ReviewItem | None:
    item = review_items.item_of_creative(session, creative_id)
    if decision.flag == Flag.NONE:
        return None
    item, created = _flag(session, creative_id, decision, version_id, asserted_label_id, item)
    if created:  # the novelty sweep flags a creative labelled earlier: duplicates may have joined its group since
        item.members = 1 + groups.member_count(session, creative_id)
    if created and decision.flag == Flag.NEW_LABEL:
        session.flush()
        maybe_request_discovery(session)
    return item


def flag_batch(session: Session, flagged: list[tuple[str, Decision, int | None]], version_id: str) -> None:
    """flag_for_review for a labelled batch: (creative id, decision, asserted label) each, their review items read
    in one query, the new ones inserted in one statement and discovery considered once for the batch. Per
    creative, item by item, those cost the labelling worker more than a fast encoder took to encode it
    (bench.backends, docs/benchmarks.md)."""
    existing = review_items.items_of_creatives(session, [creative_id for creative_id, _, _ in flagged])
    new: list[dict[str, Any]] = []
    for creative_id, decision, asserted_label_id in flagged:
        if decision.flag == Flag.NONE:
            continue
        item = existing.get(creative_id)
        values = _values(decision, version_id, asserted_label_id)
        if item is None:
            new.append({"creative_id": creative_id, **values})
        else:
            _update(item, values)
    review_items.open_items(session, new)
    if any(row["flag"] == Flag.NEW_LABEL for row in new):
        session.flush()
        maybe_request_discovery(session)


def _values(decision: Decision, version_id: str, asserted_label_id: int | None) -> dict[str, Any]:
    """A flagged creative's review item as the decision sets it."""
    priority, reason = priority_of(decision)
    return {
        "flag": decision.flag,
        "suggested_label_id": decision.decided_label_id or decision.top_label_id,
        "asserted_label_id": asserted_label_id,
        "top_score": decision.ranked[0].score if decision.ranked else None,
        "priority": priority,
        "priority_reason": reason,
        "model_version_id": version_id,
    }


def _update(item: ReviewItem, values: dict[str, Any]) -> None:
    """An open item takes the new decision; one a reviewer decided stays as decided."""
    if item.status == ReviewStatus.OPEN:
        for key, value in values.items():
            setattr(item, key, value)
        item.updated_at = utcnow()


def _flag(session: Session, creative_id: str, decision: Decision, version_id: str, asserted_label_id: int | None,
          item: ReviewItem | None) -> tuple[ReviewItem, bool]:
    """The creative's review item opened or (while open) updated; returns it and whether it is new."""
    values = _values(decision, version_id, asserted_label_id)
    if item is None:
        item = ReviewItem(creative_id=creative_id, status=ReviewStatus.OPEN, **values)
        session.add(item)
        return item, True
    _update(item, values)
    return item, False


def maybe_request_discovery(session: Session, every: int = AUTO_DISCOVER_EVERY) -> OutboxJob | None:
    """Queue discovery once `every` creatives were flagged new_label since the last request (sent or not)."""
    last = proposal_rows.last_discovery_request_at(session)
    if last is not None and utcnow() - last < AUTO_DISCOVER_MIN_INTERVAL:
        return None
    if review_counts.open_count_flagged(session, Flag.NEW_LABEL, since=last) < every:
        return None
    return enqueue(session, DISCOVER, {"reason": f"{every} new_label flags since the last run"})
