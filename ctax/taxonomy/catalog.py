"""The label catalogue in the database: import, create, rename, describe, retire. Every change asks the worker
to re-sync the index (label vectors are keyed by label id and carry the phrase they were encoded from)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from ctax.errors import Conflict, InvalidInput, NotFound
from ctax.store.models import Label, utcnow
from ctax.store.outbox import request_index_sync
from ctax.taxonomy.importers import ImportResult
from ctax.taxonomy.paths import LabelPath
from ctax.taxonomy.tree import Taxonomy, TaxonomyNode


@dataclass
class ImportSummary:
    created: int = 0
    reactivated: int = 0
    unchanged: int = 0
    iab_ids_set: int = 0
    warnings: list[dict[str, object]] = field(default_factory=list)


def get_label(session: Session, label_id: int) -> Label:
    label = session.get(Label, label_id)
    if label is None:
        raise NotFound(f"no label with id {label_id}")
    return label


def find_label(session: Session, path: LabelPath | str) -> Label | None:
    key = str(path) if isinstance(path, LabelPath) else str(LabelPath.parse(path))
    return session.scalar(select(Label).where(Label.path == key))


def resolve_active(session: Session, reference: str | int, field_name: str = "label") -> Label:
    """A label given by id or path, which must exist and be active."""
    if isinstance(reference, int) or (isinstance(reference, str) and reference.isdigit()):
        label = session.get(Label, int(reference))
    else:
        try:
            label = find_label(session, reference)
        except InvalidInput as exc:
            raise InvalidInput(f"{field_name}: {exc.message}", field=field_name) from exc
    if label is None:
        raise InvalidInput(f"{field_name}: unknown label {reference!r}", field=field_name)
    if label.status != "active":
        raise InvalidInput(f"{field_name}: label {label.path!r} is retired", field=field_name)
    return label


def active_taxonomy(session: Session) -> Taxonomy:
    rows = session.execute(select(Label.id, Label.path, Label.parent_id).where(Label.status == "active")).all()
    return Taxonomy([TaxonomyNode(row.id, LabelPath.parse(row.path), row.parent_id) for row in rows])


def import_labels(session: Session, result: ImportResult, source: str = "import") -> ImportSummary:
    """All or nothing: the caller's transaction commits every label or none."""
    summary = ImportSummary(warnings=list(result.warnings))
    existing = {label.path: label for label in session.scalars(select(Label))}
    for item in result.labels:  # parents come before children
        key = str(item.path)
        label = existing.get(key)
        if label is not None:
            changed = False
            if label.status != "active":
                label.status = "active"
                summary.reactivated += 1
                changed = True
            if item.iab_id and label.iab_id != item.iab_id:
                label.iab_id = item.iab_id
                summary.iab_ids_set += 1
                changed = True
            if not changed:
                summary.unchanged += 1
            continue
        parent = existing.get(str(item.path.parent)) if item.path.parent else None
        label = Label(
            path=key,
            name=item.path.leaf,
            parent=parent,
            depth=item.path.depth,
            iab_id=item.iab_id,
            source=source,
            status="active",
        )
        session.add(label)
        existing[key] = label
        summary.created += 1
    session.flush()
    if summary.created or summary.reactivated or summary.iab_ids_set:
        request_index_sync(session, "labels imported")
    return summary


def create_label(session: Session, path: LabelPath, description: str | None = None, source: str = "api") -> Label:
    """A new label under an existing, active parent (or a new root)."""
    if find_label(session, path) is not None:
        existing = find_label(session, path)
        assert existing is not None
        state = "retired; re-activate it instead" if existing.status == "retired" else "exists"
        raise InvalidInput(f"label {path} already {state}", field="path", label_id=existing.id)
    parent = None
    if path.parent is not None:
        parent = find_label(session, path.parent)
        if parent is None:
            raise InvalidInput(f"parent {path.parent} does not exist; create it first", field="path")
        if parent.status != "active":
            raise InvalidInput(f"parent {path.parent} is retired", field="path")
    label = Label(
        path=str(path),
        name=path.leaf,
        parent=parent,
        depth=path.depth,
        description=description,
        source=source,
        status="active",
    )
    session.add(label)
    session.flush()
    request_index_sync(session, f"label {path} created")
    return label


def subtree(session: Session, label: Label) -> list[Label]:
    prefix = label.path + "/"
    return [label, *session.scalars(select(Label).where(Label.path.startswith(prefix, autoescape=True)))]


def rename_label(session: Session, label: Label, new_name: str) -> list[Label]:
    """Renaming a node renames the path of its whole subtree; every renamed label is re-embedded."""
    old = LabelPath.parse(label.path)
    new = LabelPath((*old.names[:-1], new_name.strip()))
    if new == old:
        return []
    clash = find_label(session, new)
    if clash is not None:
        raise Conflict(f"label {new} already exists", label_id=clash.id)
    moved = subtree(session, label)
    for node in moved:
        names = LabelPath.parse(node.path).names
        node.path = str(LabelPath((*new.names, *names[len(old.names) :])))
        if node.id == label.id:
            node.name = new.leaf
        node.updated_at = utcnow()
    session.flush()
    request_index_sync(session, f"label {old} renamed to {new}")
    return moved


def retire_label(session: Session, label: Label) -> list[Label]:
    """Retiring a node retires its subtree: a child cannot be active under a retired parent."""
    retired = [node for node in subtree(session, label) if node.status == "active"]
    for node in retired:
        node.status = "retired"
        node.updated_at = utcnow()
    session.flush()
    if retired:
        request_index_sync(session, f"label {label.path} retired")
    return retired


def reactivate_label(session: Session, label: Label) -> None:
    if label.parent is not None and label.parent.status != "active":
        raise InvalidInput(f"parent {label.parent.path} is retired; re-activate it first", field="status")
    label.status = "active"
    label.updated_at = utcnow()
    session.flush()
    request_index_sync(session, f"label {label.path} re-activated")


def labels_by_ids(session: Session, ids: Iterable[int]) -> dict[int, Label]:
    ids = list(set(ids))
    if not ids:
        return {}
    return {label.id: label for label in session.scalars(select(Label).where(Label.id.in_(ids)))}
