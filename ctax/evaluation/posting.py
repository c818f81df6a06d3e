"""Posting evaluation rows as creatives: the test stream's and the OCR block's, with the same draw of which known
rows carry a wrong asserted label, so that both blocks measure the same thing."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ctax.store.repos import labels
from ctax.store.session import Session
from ctax.taxonomy import catalog
from ctax.taxonomy.paths import LabelPath

if TYPE_CHECKING:
    from ctax.worker.runtime import Runtime


class LabelledRow(Protocol):
    @property
    def label(self) -> LabelPath: ...


RowT = TypeVar("RowT", bound=LabelledRow)
# Stores one row as a creative (given the label it asserts, and that label's id; both None for held-out or unknown
# labels) and returns the creative's id.
CreateCreative = Callable[[Session, RowT, LabelPath | None, int | None], str]


def post_rows(rt: Runtime, rows: Sequence[RowT], hidden: set[LabelPath], rng: random.Random,
              wrong_label_rate: float, create: CreateCreative[RowT]) -> tuple[list[dict[str, Any]],
                                                                             dict[LabelPath, int]]:
    """Every row posted through `create` in one transaction; a `wrong_label_rate` share of the known ones asserts
    another leaf (not an ancestor or descendant of its own), a held-out one asserts nothing. Returns what was posted
    and the active labels' ids by path."""
    with rt.db.read() as session:
        ids = {LabelPath.parse(label.path): label.id for label in labels.active(session)}
        taxonomy = catalog.active_taxonomy(session)
    leaves = [path for path in ids if taxonomy.is_leaf(ids[path])]
    posted: list[dict[str, Any]] = []
    with rt.db.write() as session:
        for row in rows:
            novel = row.label in hidden
            asserted: LabelPath | None = None
            wrong = False
            if not novel and row.label in ids:
                wrong = rng.random() < wrong_label_rate
                asserted = rng.choice([p for p in leaves if p != row.label and not p.is_ancestor_of(row.label)
                                       and not row.label.is_ancestor_of(p)]) if wrong else row.label
            creative_id = create(session, row, asserted, ids[asserted] if asserted is not None else None)
            posted.append({"id": creative_id, "label": row.label, "novel": novel, "wrong": wrong})
    return posted, ids
