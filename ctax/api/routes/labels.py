"""Labels: list, tree, create, import, rename/describe/retire."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from pydantic import Field

from ctax.api.deps import Admin, DbDep, Poster
from ctax.api.limits import MAX_TAXONOMY_BYTES
from ctax.api.params import Id, LongText, Name, Offset, RequestBody, ShortText, Text
from ctax.enums import LabelStatus
from ctax.errors import InvalidInput, PayloadTooLarge
from ctax.store.models import Label
from ctax.store.repos import labels as label_rows
from ctax.taxonomy import catalog
from ctax.taxonomy.importers import TaxonomyFormat, parse_taxonomy_file
from ctax.taxonomy.paths import LabelPath

router = APIRouter(prefix="/v1/labels", tags=["labels"])


class LabelIn(RequestBody):
    path: Text = Field(description="e.g. Service/Vehicles/Maintenance/Honda; write '/' inside a name as '\\/'")
    description: LongText | None = None


class LabelPatch(RequestBody):
    name: Name | None = Field(None, description="New name of this node (renames its subtree)")
    description: LongText | None = None
    status: LabelStatus | None = None


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
    db: DbDep,
    # Literals, not LabelStatus: "all" is no status, and a union would change the 422 message.
    status: Annotated[Literal["active", "retired", "all"], Query()] = "active",
    q: Annotated[ShortText | None, Query(description="substring of the path")] = None,
    parent_id: Id | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    offset: Offset = 0,
) -> dict[str, Any]:
    with db.read() as session:
        rows, total = label_rows.page(
            session,
            status=None if status == "all" else LabelStatus(status),
            terms=q.split() if q else (),
            parent_id=parent_id,
            limit=limit,
            offset=offset,
        )
        return {"items": [label_view(label) for label in rows], "total": total, "limit": limit, "offset": offset}


@router.get("/tree")
def label_tree(
    _: Poster, db: DbDep, status: Annotated[Literal["active", "all"], Query()] = "active"
) -> dict[str, Any]:
    with db.read() as session:
        labels = label_rows.tree_order(session, include_retired=status == "all")
    nodes: dict[int, dict[str, Any]] = {}
    roots: list[dict[str, Any]] = []
    for label in labels:  # parents come first
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
def get_label(label_id: Id, _: Poster, db: DbDep) -> dict[str, Any]:
    with db.read() as session:
        return label_view(catalog.get_label(session, label_id))


@router.post("", status_code=201)
def create_label(body: LabelIn, _: Admin, db: DbDep) -> dict[str, Any]:
    path = LabelPath.parse(body.path)
    with db.write() as session:
        label = catalog.create_label(session, path, body.description)
    return label_view(label)


_IMPORT_FIELDS = ("file", "format")


async def _check_import_form(request: Request) -> None:
    """A part the import does not read (`fromat=iab`, a second file) was ignored without a word: the file was read
    as `auto`, or only its last copy imported."""
    form = await request.form()  # parsed once already, for the route's parameters: this is the same object
    for name in dict.fromkeys(form.keys()):
        if name not in _IMPORT_FIELDS:
            raise InvalidInput(f"unknown field {name!r}: a taxonomy import has the fields file and format",
                               field=name)
        if len(form.getlist(name)) > 1:
            raise InvalidInput(f"{name} is given {len(form.getlist(name))} times; send it once", field=name)


@router.post("/import")
async def import_labels(
    request: Request,
    _: Admin,
    db: DbDep,
    file: Annotated[UploadFile, File(description="IAB TSV, or one label path per line")],
    format: Annotated[TaxonomyFormat, Form()] = "auto",
) -> dict[str, Any]:
    await _check_import_form(request)
    data = await file.read(MAX_TAXONOMY_BYTES + 1)
    if len(data) > MAX_TAXONOMY_BYTES:
        raise PayloadTooLarge(f"taxonomy file is larger than {MAX_TAXONOMY_BYTES} bytes")
    result = parse_taxonomy_file(data, format)  # raises 422 naming the line; nothing stored yet
    with db.write() as session:
        summary = catalog.import_labels(session, result)
    return {
        "created": summary.created,
        "reactivated": summary.reactivated,
        "unchanged": summary.unchanged,
        "iab_ids_set": summary.iab_ids_set,
        "total_in_file": len(result.labels),
        "warnings": summary.warnings,
    }


@router.patch("/{label_id}")
def patch_label(label_id: Id, body: LabelPatch, _: Admin, db: DbDep) -> dict[str, Any]:
    with db.write() as session:
        label = catalog.get_label(session, label_id)
        affected = catalog.edit_label(session, label, name=body.name, description=body.description,
                                      status=body.status)
    # After the block: the view shows updated_at as the commit's flush wrote it.
    return {**label_view(label), "affected": sorted({lab.id for lab in affected})}
