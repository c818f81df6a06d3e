"""Near-duplicate groups (ctax/labelling/duplicates.py): the labelled creatives exact duplicates are found among,
a group's members, and the review item that stands for the group."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from ctax.enums import CreativeStatus, ReviewStatus
from ctax.store.models import Annotation, Creative, ReviewDecision, ReviewItem


def labelled_with_same_content(session: Session, text_keys: Sequence[str],
                               image_digests: Sequence[str]
                               ) -> list[tuple[str | None, str | None, str, str | None, int | None, int | None,
                                               str | None]]:
    """Labelled creatives whose text key is one of `text_keys` or whose image is one of `image_digests`:
    (text key, image digest, id, duplicate_of, asserted label, decided label, flag), earliest labelled first."""
    if not text_keys and not image_digests:
        return []
    rows = session.execute(
        select(Creative.text_sha256, Creative.image_sha256, Creative.id, Creative.duplicate_of,
               Creative.asserted_label_id, Creative.decided_label_id, Creative.flag)
        .where(or_(Creative.text_sha256.in_(list(set(text_keys))), Creative.image_sha256.in_(list(set(image_digests)))),
               Creative.status == CreativeStatus.LABELLED)
        .order_by(Creative.labelled_at, Creative.id))
    return list(rows.tuples())


def roots_among(session: Session, ids: Sequence[str]) -> set[str]:
    """Those of `ids` that are the root of a group with members."""
    if not ids:
        return set()
    return set(session.scalars(select(Creative.duplicate_of).where(Creative.duplicate_of.in_(list(ids))).distinct()))


def members_of(session: Session, root_id: str) -> list[str]:
    """The members of the group `root_id` is the root of (itself not included)."""
    return list(session.scalars(select(Creative.id).where(Creative.duplicate_of == root_id).order_by(Creative.id)))


def member_rows(session: Session, root_id: str, limit: int) -> list[Creative]:
    """The first `limit` members of the group `root_id` is the root of, in the order they were labelled."""
    return list(session.scalars(select(Creative).where(Creative.duplicate_of == root_id)
                                .order_by(Creative.labelled_at, Creative.id).limit(limit)))


def leave_if_member(session: Session, creative_id: str, root_id: str) -> bool:
    """The creative leaves the group of `root_id` if it is still in it (a conditional UPDATE: of two reviewers
    taking it out at the same moment, one does)."""
    result = session.execute(update(Creative).where(Creative.id == creative_id, Creative.duplicate_of == root_id)
                             .values(duplicate_of=None).execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0) == 1


def drop_group_annotations(session: Session, creative_id: str, item_id: int) -> int:
    """The annotations the decisions on a group's item gave one of its members (not the member's own decisions)."""
    decisions = select(ReviewDecision.id).where(ReviewDecision.review_item_id == item_id)
    result = session.execute(delete(Annotation).where(Annotation.creative_id == creative_id,
                                                      Annotation.decision_id.in_(decisions)))
    return int(getattr(result, "rowcount", 0) or 0)


def member_count(session: Session, root_id: str) -> int:
    return session.scalar(select(func.count(Creative.id)).where(Creative.duplicate_of == root_id)) or 0


def follow_roots(session: Session, roots: Sequence[Creative]) -> dict[str, int]:
    """The members of these roots take their root's decision again (its flag, decided label and prediction, marked
    `duplicate_of`), as when they joined; the novelty sweep calls this after re-deciding roots. Returns, per root
    with members, how many were brought in line."""
    with_members = roots_among(session, [root.id for root in roots])
    followed: dict[str, int] = {}
    for root in roots:
        if root.id not in with_members:
            continue
        result = session.execute(
            update(Creative).where(Creative.duplicate_of == root.id, Creative.status == CreativeStatus.LABELLED)
            .values(flag=root.flag, decided_label_id=root.decided_label_id,
                    prediction={**(root.prediction or {}), "duplicate_of": root.id})
            .execution_options(synchronize_session=False))
        followed[root.id] = int(getattr(result, "rowcount", 0) or 0)
    return followed


def add_members(session: Session, joined: dict[str, int]) -> None:
    """The review items of these roots stand for this many more creatives each. A display count: not a change a
    reviewer's decision depends on, so `version` stays (a decision made on the item applies to every member)."""
    for root, count in joined.items():
        session.execute(update(ReviewItem).where(ReviewItem.creative_id == root)
                        .values(members=ReviewItem.members + count).execution_options(synchronize_session=False))


def decided_items_of(session: Session, creative_ids: Sequence[str]) -> dict[str, int]:
    """The ids of the decided review items of these creatives, as the database has them now."""
    if not creative_ids:
        return {}
    rows = session.execute(select(ReviewItem.creative_id, ReviewItem.id).where(
        ReviewItem.creative_id.in_(list(creative_ids)), ReviewItem.status == ReviewStatus.DECIDED))
    return dict(rows.tuples().all())


def annotation_of_decision(session: Session, decision_id: int, creative_id: str) -> Annotation | None:
    """The annotation a decision made for this creative."""
    return session.scalar(select(Annotation).where(Annotation.decision_id == decision_id,
                                                   Annotation.creative_id == creative_id).limit(1))


def hand_group_on(session: Session, root_id: str) -> str | None:
    """The root is leaving (deleted): its earliest member becomes the root of the others, of the group's review item
    (one member fewer) and of the decisions on it, whose annotations the members keep. None: it had no members."""
    members = list(session.scalars(select(Creative).where(Creative.duplicate_of == root_id)
                                   .order_by(Creative.labelled_at, Creative.id)))
    if not members:
        return None
    heir, rest = members[0], members[1:]
    for member in rest:
        member.duplicate_of = heir.id
        member.prediction = {**(member.prediction or {}), "duplicate_of": heir.id}
    heir.duplicate_of = None
    heir.prediction = {k: v for k, v in (heir.prediction or {}).items() if k != "duplicate_of"}
    session.flush()
    session.execute(update(ReviewItem).where(ReviewItem.creative_id == root_id)
                    .values(creative_id=heir.id, members=ReviewItem.members - 1)
                    .execution_options(synchronize_session=False))
    session.execute(update(ReviewDecision).where(ReviewDecision.creative_id == root_id)
                    .values(creative_id=heir.id).execution_options(synchronize_session=False))
    return heir.id
