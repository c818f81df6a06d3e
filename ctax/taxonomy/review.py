"""The review queue: flagged creatives become review items, ordered so the most instructive come first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ctax.taxonomy.db.models import ReviewItem, utcnow
from ctax.taxonomy.trigger import Decision


def priority_of(decision: Decision) -> tuple[float, str]:
    """Active learning: a decision teaches the model most where the model is least sure.

    - new_label: far from every label; reviewers' names for these grow the taxonomy.
    - a small margin between the top two rival labels: the boundary is unclear there.
    - a wrong-label gap far above its threshold: either the poster or the model is badly wrong.
    - disagreement between the nearest label and the nearest labelled exemplars.
    """
    scores = decision.scores
    parts: list[tuple[float, str]] = []
    if decision.flag == "new_label":
        fit, threshold = scores.get("fit"), scores.get("new_label_threshold")
        distance = (threshold - fit) if fit is not None and threshold is not None else 0.0
        parts.append(
            (1.0 + distance, f"fits no label (fit {fit:.2f} < {threshold:.2f})" if fit is not None else "fits no label")
        )
    margin = scores.get("margin")
    if margin is not None:
        parts.append((max(0.0, 0.5 - margin), f"top two labels differ by only {margin:.3f}"))
    gap, gap_threshold = scores.get("wrong_label_gap"), scores.get("wrong_label_threshold")
    if decision.flag == "wrong_label" and gap is not None and gap_threshold is not None:
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
    item = session.scalar(select(ReviewItem).where(ReviewItem.creative_id == creative_id))
    if decision.flag == "none":
        return None
    priority, reason = priority_of(decision)
    values: dict[str, Any] = {
        "flag": decision.flag,
        "suggested_label_id": decision.decided_label_id or decision.top_label_id,
        "asserted_label_id": asserted_label_id,
        "top_score": decision.ranked[0].score if decision.ranked else None,
        "priority": priority,
        "priority_reason": reason,
        "model_version_id": version_id,
    }
    if item is None:
        item = ReviewItem(creative_id=creative_id, status="open", **values)
        session.add(item)
    elif item.status == "open":
        for key, value in values.items():
            setattr(item, key, value)
        item.updated_at = utcnow()
    return item
