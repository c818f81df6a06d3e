"""Annotations: labelled data. The latest annotation of each creative is the one that counts; a rejection or a
retired label takes the creative out of labelled data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVarTuple

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from ctax.enums import AnnotationKind, LabelStatus, Source
from ctax.store.models import Annotation, Creative, Label

_Columns = TypeVarTuple("_Columns")

# (creative id, label id, texts, OCR text, image SHA-256)
LabelledRow = tuple[str, int, list[str] | None, str | None, str | None]


def _labelled(query: Select[*_Columns]) -> Select[*_Columns]:
    """Restricts `query` (over Creative) to creatives whose latest annotation is a label that is still active."""
    latest = (
        select(Annotation.creative_id, func.max(Annotation.id).label("annotation_id"))
        .group_by(Annotation.creative_id)
        .subquery()
    )
    return (
        query.join(latest, latest.c.creative_id == Creative.id)
        .join(Annotation, Annotation.id == latest.c.annotation_id)
        .join(Label, Label.id == Annotation.label_id)
        .where(Annotation.kind == AnnotationKind.LABEL, Label.status == LabelStatus.ACTIVE)
        .order_by(Creative.id)
    )


def current_labels(session: Session) -> list[LabelledRow]:
    """What training learns from, by creative id: the label and the content of every labelled creative."""
    query = select(Creative.id, Label.id, Creative.texts, Creative.ocr_text, Creative.image_sha256)
    return list(session.execute(_labelled(query)).tuples().all())


def current_with_creatives(
    session: Session, source: Source | None = None, batch: int = 1000, account_id: int | None = None
) -> Iterator[tuple[Creative, Annotation]]:
    """The same labelled data as whole rows, streamed `batch` at a time, optionally only annotations from one
    source or creatives of one account; iterate it inside the session's block."""
    query = _labelled(select(Creative, Annotation))
    if source:
        query = query.where(Annotation.source == source)
    if account_id is not None:
        query = query.where(Creative.account_id == account_id)
    yield from session.execute(query.execution_options(yield_per=batch)).tuples()


def imported_external_ids(session: Session) -> set[str]:
    """The ids imported creatives were given in their files, so that importing a file again skips them."""
    ids = session.scalars(select(Creative.external_id).where(Creative.source == Source.IMPORT))
    return {external_id for external_id in ids if external_id is not None}
