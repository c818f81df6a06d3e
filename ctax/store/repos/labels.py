"""Labels: the catalogue's queries. Paths are given in their text form (`str(LabelPath)`), which is unique."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from ctax.enums import LabelStatus
from ctax.store.models import Label


def get(session: Session, label_id: int) -> Label | None:
    return session.get(Label, label_id)


def by_path(session: Session, path: str) -> Label | None:
    return session.scalar(select(Label).where(Label.path == path))


def by_ids(session: Session, ids: Iterable[int]) -> dict[int, Label]:
    wanted = list(set(ids))
    if not wanted:
        return {}
    return {label.id: label for label in session.scalars(select(Label).where(Label.id.in_(wanted)))}


def all_labels(session: Session) -> list[Label]:
    """Every label, retired ones included."""
    return list(session.scalars(select(Label)))


def active(session: Session) -> list[Label]:
    return list(session.scalars(select(Label).where(Label.status == LabelStatus.ACTIVE)))


def active_tree_rows(session: Session) -> list[tuple[int, str, int | None]]:
    """(id, path, parent id) of every active label: what the in-memory taxonomy is built from."""
    rows = session.execute(
        select(Label.id, Label.path, Label.parent_id).where(Label.status == LabelStatus.ACTIVE)
    ).all()
    return [(row.id, row.path, row.parent_id) for row in rows]


def descendants(session: Session, path: str) -> list[Label]:
    """Every label below `path` (not the label itself), at any depth, retired ones included."""
    prefix = path + "/"
    return list(session.scalars(select(Label).where(Label.path.startswith(prefix, autoescape=True))))


def page(
    session: Session,
    *,
    status: LabelStatus | None,
    terms: Sequence[str] = (),
    parent_id: int | None = None,
    limit: int,
    offset: int,
) -> tuple[list[Label], int]:
    """One page of labels ordered by path, and how many match in all. `status` None matches every label; each
    term must occur (case-insensitive) in the path or the description."""
    query: Select[Label] = select(Label)
    if status is not None:
        query = query.where(Label.status == status)
    for term in terms:
        query = query.where(or_(Label.path.ilike(f"%{term}%"), Label.description.ilike(f"%{term}%")))
    if parent_id is not None:
        query = query.where(Label.parent_id == parent_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(session.scalars(query.order_by(Label.path).limit(limit).offset(offset)))
    return rows, total


def tree_order(session: Session, *, include_retired: bool) -> list[Label]:
    """Labels by depth, then path: every parent comes before its children."""
    query = select(Label).order_by(Label.depth, Label.path)
    if not include_retired:
        query = query.where(Label.status == LabelStatus.ACTIVE)
    return list(session.scalars(query))
