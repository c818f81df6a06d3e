"""Labels: list, tree, create, import, rename/describe/retire."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select

from ctax.api.deps import Admin, DispatcherDep, Poster, SessionDep
from ctax.errors import InvalidInput, PayloadTooLarge
from ctax.store.models import Label
from ctax.taxonomy import catalog
from ctax.taxonomy.importers import parse_taxonomy_file
from ctax.taxonomy.paths import LabelPath

router = APIRouter(prefix="/v1/labels", tags=["labels"])

MAX_TAXONOMY_BYTES = 5 * 1024 * 1024


class LabelIn(BaseModel):
    path: str = Field(description="e.g. Service/Vehicles/Maintenance/Honda; write '/' inside a name as '\\/'")
    description: str | None = Field(None, max_length=2000)


class LabelPatch(BaseModel):
    name: str | None = Field(
        None, min_length=1, max_length=200, description="New name of this node (renames its subtree)"
    )
    description: str | None = Field(None, max_length=2000)
    status: Literal["active", "retired"] | None = None


def label_view(label: Label) -> dict[str, Any]:
    return {
        "id": label.id,
        "path": label.path,
        "name": label.name,
        "parent_id": label.parent_id,
        "depth": label.depth,
        "description": label.description,
        "iab_id": label.iab_id,
        "status": label.status,
        "source": label.source,
        "created_at": label.created_at,
        "updated_at": label.updated_at,
    }


@router.get("")
def list_labels(
    _: Poster,
    session: SessionDep,
    status: Annotated[Literal["active", "retired", "all"], Query()] = "active",
    q: Annotated[str | None, Query(max_length=200, description="substring of the path")] = None,
    parent_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    query = select(Label)
    if status != "all":
        query = query.where(Label.status == status)
    if q:
        terms = [term for term in q.split() if term]
        for term in terms:
            query = query.where(or_(Label.path.ilike(f"%{term}%"), Label.description.ilike(f"%{term}%")))
    if parent_id is not None:
        query = query.where(Label.parent_id == parent_id)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(query.order_by(Label.path).limit(limit).offset(offset))
    return {"items": [label_view(label) for label in rows], "total": total, "limit": limit, "offset": offset}


@router.get("/tree")
def label_tree(
    _: Poster, session: SessionDep, status: Annotated[Literal["active", "all"], Query()] = "active"
) -> dict[str, Any]:
    query = select(Label).order_by(Label.depth, Label.path)
    if status == "active":
        query = query.where(Label.status == "active")
    nodes: dict[int, dict[str, Any]] = {}
    roots: list[dict[str, Any]] = []
    for label in session.scalars(query):
        node = {
            "id": label.id,
            "name": label.name,
            "path": label.path,
            "iab_id": label.iab_id,
            "status": label.status,
            "children": [],
        }
        nodes[label.id] = node
        parent = nodes.get(label.parent_id) if label.parent_id is not None else None
        (parent["children"] if parent else roots).append(node)
    return {"roots": roots, "count": len(nodes)}


@router.get("/{label_id}")
def get_label(label_id: int, _: Poster, session: SessionDep) -> dict[str, Any]:
    return label_view(catalog.get_label(session, label_id))


@router.post("", status_code=201)
def create_label(body: LabelIn, _: Admin, session: SessionDep, dispatcher: DispatcherDep) -> dict[str, Any]:
    label = catalog.create_label(session, LabelPath.parse(body.path), body.description, source="api")
    session.commit()
    dispatcher.nudge()
    return label_view(label)


@router.post("/import")
async def import_labels(
    _: Admin,
    session: SessionDep,
    dispatcher: DispatcherDep,
    file: Annotated[UploadFile, File(description="IAB TSV, or one label path per line")],
    format: Annotated[Literal["auto", "iab_tsv", "lines"], Form()] = "auto",
) -> dict[str, Any]:
    data = await file.read(MAX_TAXONOMY_BYTES + 1)
    if len(data) > MAX_TAXONOMY_BYTES:
        raise PayloadTooLarge(f"taxonomy file is larger than {MAX_TAXONOMY_BYTES} bytes")
    result = parse_taxonomy_file(data, format)  # raises 422 naming the line; nothing stored yet
    summary = catalog.import_labels(session, result)
    session.commit()
    dispatcher.nudge()
    return {
        "created": summary.created,
        "reactivated": summary.reactivated,
        "unchanged": summary.unchanged,
        "iab_ids_set": summary.iab_ids_set,
        "total_in_file": len(result.labels),
        "warnings": summary.warnings,
    }


@router.patch("/{label_id}")
def patch_label(
    label_id: int, body: LabelPatch, _: Admin, session: SessionDep, dispatcher: DispatcherDep
) -> dict[str, Any]:
    label = catalog.get_label(session, label_id)
    if body.name is None and body.description is None and body.status is None:
        raise InvalidInput("nothing to change: send name, description or status")
    affected: list[Label] = []
    if body.status == "retired" and label.status == "active":
        affected += catalog.retire_label(session, label)
    elif body.status == "active" and label.status == "retired":
        catalog.reactivate_label(session, label)
        affected.append(label)
    if body.name is not None:
        affected += catalog.rename_label(session, label, body.name)
    if body.description is not None:
        label.description = body.description
    session.commit()
    dispatcher.nudge()
    return {**label_view(label), "affected": sorted({lab.id for lab in affected})}
