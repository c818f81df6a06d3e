"""The label catalogue in the database: import, create, rename, describe, retire. Every change asks the worker
to re-sync the index (label vectors are keyed by label id and carry the phrase they were encoded from)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ctax.enums import LabelStatus, Source
from ctax.errors import Conflict, InvalidInput, NotFound
from ctax.store.models import Label
from ctax.store.outbox import request_index_sync
from ctax.store.repos import labels as rows
from ctax.store.session import Session
from ctax.store.types import utcnow
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
    label = rows.get(session, label_id)
    if label is None:
        raise NotFound(f"no label with id {label_id}")
    return label


def find_label(session: Session, path: LabelPath | str) -> Label | None:
    key = str(path) if isinstance(path, LabelPath) else str(LabelPath.parse(path))
    return rows.by_path(session, key)


def resolve_active(session: Session, reference: str | int, field_name: str = "label") -> Label:
    """A label given by id or path, which must exist and be active."""
    if isinstance(reference, int) or (isinstance(reference, str) and reference.isdigit()):
        label = rows.get(session, int(reference))
    else:
        try:
            label = find_label(session, reference)
        except InvalidInput as exc:
            raise InvalidInput(f"{field_name}: {exc.message}", field=field_name) from exc
    if label is None:
        raise InvalidInput(f"{field_name}: unknown label {reference!r}", field=field_name)
    if label.status != LabelStatus.ACTIVE:
        raise InvalidInput(f"{field_name}: label {label.path!r} is retired", field=field_name)
    return label


def active_taxonomy(session: Session) -> Taxonomy:
    nodes = rows.active_tree_rows(session)
    return Taxonomy([TaxonomyNode(label_id, LabelPath.parse(path), parent_id) for label_id, path, parent_id in nodes])


def import_labels(session: Session, result: ImportResult, source: Source = Source.IMPORT) -> ImportSummary:
    """All or nothing: the caller's transaction commits every label or none."""
    summary = ImportSummary(warnings=list(result.warnings))
    existing = {label.path: label for label in rows.all_labels(session)}
    for item in result.labels:  # parents come before children
        key = str(item.path)
        label = existing.get(key)
        if label is not None:
            changed = False
            if label.status != LabelStatus.ACTIVE:
                label.status = LabelStatus.ACTIVE
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
            status=LabelStatus.ACTIVE,
        )
        session.add(label)
        existing[key] = label
        summary.created += 1
    session.flush()
    if summary.created or summary.reactivated or summary.iab_ids_set:
        request_index_sync(session, "labels imported")
    return summary


def create_label(
    session: Session, path: LabelPath, description: str | None = None, source: Source = Source.API
) -> Label:
    """A new label under an existing, active parent (or a new root)."""
    existing = find_label(session, path)
    if existing is not None:
        state = "retired; re-activate it instead" if existing.status == LabelStatus.RETIRED else "exists"
        raise InvalidInput(f"label {path} already {state}", field="path", label_id=existing.id)
    parent = None
    if path.parent is not None:
        parent = find_label(session, path.parent)
        if parent is None:
            raise InvalidInput(f"parent {path.parent} does not exist; create it first", field="path")
        if parent.status != LabelStatus.ACTIVE:
            raise InvalidInput(f"parent {path.parent} is retired", field="path")
    label = Label(
        path=str(path),
        name=path.leaf,
        parent=parent,
        depth=path.depth,
        description=description,
        source=source,
        status=LabelStatus.ACTIVE,
    )
    session.add(label)
    session.flush()
    request_index_sync(session, f"label {path} created")
    return label


def subtree(session: Session, label: Label) -> list[Label]:
    return [label, *rows.descendants(session, label.path)]


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
    retired = [node for node in subtree(session, label) if node.status == LabelStatus.ACTIVE]
    for node in retired:
        node.status = LabelStatus.RETIRED
        node.updated_at = utcnow()
    session.flush()
    if retired:
        request_index_sync(session, f"label {label.path} retired")
    return retired


def reactivate_label(session: Session, label: Label) -> None:
    if label.parent is not None and label.parent.status != LabelStatus.ACTIVE:
        raise InvalidInput(f"parent {label.parent.path} is retired; re-activate it first", field="status")
    label.status = LabelStatus.ACTIVE
    label.updated_at = utcnow()
    session.flush()
    request_index_sync(session, f"label {label.path} re-activated")


def edit_label(
    session: Session,
    label: Label,
    *,
    name: str | None = None,
    description: str | None = None,
    status: LabelStatus | None = None,
) -> list[Label]:
    """One edit of a label: its status first (retiring takes the subtree along), then its name (renaming the
    subtree's paths), then its description. Returns every label whose path or status changed."""
    if name is None and description is None and status is None:
        raise InvalidInput("nothing to change: send name, description or status")
    affected: list[Label] = []
    if status == LabelStatus.RETIRED and label.status == LabelStatus.ACTIVE:
        affected += retire_label(session, label)
    elif status == LabelStatus.ACTIVE and label.status == LabelStatus.RETIRED:
        reactivate_label(session, label)
        affected.append(label)
    if name is not None:
        affected += rename_label(session, label, name)
    if description is not None:
        label.description = description
    return affected


def labels_by_ids(session: Session, ids: Iterable[int]) -> dict[int, Label]:
    return rows.by_ids(session, ids)
