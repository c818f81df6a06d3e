"""Filters the store's searches share: similar-creative search (repos/search.py) and the review queue
(repos/review.py) both narrow by a label and everything below it, and by the account a creative belongs to."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from ctax.store.models import Creative, Label


def label_subtree(session: Session, label_id: int) -> Select[int]:
    """The ids of the label and of every label below it, retired ones included (an unknown id: itself alone)."""
    label = session.get(Label, label_id)
    if label is None:
        return select(Label.id).where(Label.id == label_id)
    return select(Label.id).where(or_(Label.id == label.id, Label.path.startswith(label.path + "/", autoescape=True)))


def of_account(creative_id: InstrumentedAttribute[str], account_id: int) -> ColumnElement[bool]:
    """Rows whose creative is that account's; `creative_id` is the column holding the creative's id."""
    if creative_id is Creative.id:  # a query of creatives: their own column, no subquery
        return Creative.account_id == account_id
    return creative_id.in_(select(Creative.id).where(Creative.account_id == account_id))
