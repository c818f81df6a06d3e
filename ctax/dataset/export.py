"""Exporting labelled data: what training uses (the latest annotation of each creative, on an active label),
as JSONL in the import format (`ctax creatives import` reads it back) or as CSV for spreadsheets."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from ctax.enums import Source
from ctax.store.models import Label
from ctax.store.repos import annotations as annotation_rows
from ctax.store.repos import labels as label_rows
from ctax.store.session import Session
from ctax.taxonomy.paths import LabelPath

ExportFormat = Literal["jsonl", "csv"]
CSV_COLUMNS = (
    "id",
    "creative_id",
    "label",
    "label_id",
    "iab_id",
    "iab_path_ids",
    "tier1",
    "source",
    "annotated_at",
    "texts",
    "ocr_text",
    "image_sha256",
)


@dataclass(frozen=True)
class ExportRow:
    creative_id: str
    external_id: str | None
    texts: list[str]
    ocr_text: str | None
    image_sha256: str | None
    image_mime: str | None
    label_id: int
    label_path: str
    iab_id: str | None
    iab_path_ids: list[str]
    source: str
    annotated_at: str
    group: str = ""  # the near-duplicate group's root (the creative itself where it is a root or in no group)

    @property
    def id(self) -> str:
        return self.external_id or self.creative_id

    def import_texts(self) -> list[str]:
        """The import format has one list of texts; OCR text stands in when nothing was supplied."""
        return list(self.texts) or ([self.ocr_text] if self.ocr_text else [])


def labelled_rows(
    session: Session, source: Source | None = None, batch: int = 1000, account_id: int | None = None,
    one_per_group: bool = False,
) -> Iterator[ExportRow]:
    """one_per_group: a near-duplicate group (ctax/labelling/duplicates.py) gives one row, its first in the
    export's order, so that a campaign posted a hundred times weighs as one example."""
    labels = {label.id: label for label in label_rows.all_labels(session)}
    seen: set[str] = set()
    for creative, annotation in annotation_rows.current_with_creatives(session, source, batch, account_id):
        assert annotation.label_id is not None  # only label annotations are labelled data
        group = creative.duplicate_of or creative.id
        if one_per_group:
            if group in seen:
                continue
            seen.add(group)
        label = labels[annotation.label_id]
        yield ExportRow(
            creative_id=creative.id,
            external_id=creative.external_id,
            texts=list(creative.texts or []),
            ocr_text=creative.ocr_text,
            image_sha256=creative.image_sha256,
            image_mime=creative.image_mime,
            label_id=label.id,
            label_path=label.path,
            iab_id=label.iab_id,
            iab_path_ids=[node.iab_id for node in _root_first(label, labels) if node.iab_id],
            source=annotation.source,
            annotated_at=annotation.created_at.isoformat(),
            group=group,
        )


def _root_first(label: Label, labels: dict[int, Label]) -> list[Label]:
    chain = []
    node: Label | None = label
    while node is not None:
        chain.append(node)
        node = labels.get(node.parent_id) if node.parent_id is not None else None
    return chain[::-1]


def jsonl_line(row: ExportRow, image: str | None = None) -> str:
    body: dict[str, Any] = {
        "id": row.id,
        "texts": row.import_texts(),
        "label": row.label_path,
        "label_id": row.label_id,
        "iab_id": row.iab_id,
        "source": row.source,
        "creative_id": row.creative_id,
        "annotated_at": row.annotated_at,
    }
    if row.group and row.group != row.creative_id:
        body["duplicate_of"] = row.group
    if image is not None:
        body["image"] = image
    elif row.image_sha256:
        body["image_sha256"] = row.image_sha256
    return json.dumps(body, ensure_ascii=False) + "\n"


def csv_header() -> str:
    return _csv_line(list(CSV_COLUMNS))


def csv_line(row: ExportRow) -> str:
    return _csv_line(
        [
            row.id,
            row.creative_id,
            row.label_path,
            str(row.label_id),
            row.iab_id or "",
            ">".join(row.iab_path_ids),
            LabelPath.parse(row.label_path).names[0],
            row.source,
            row.annotated_at,
            " | ".join(row.texts),
            row.ocr_text or "",
            row.image_sha256 or "",
        ]
    )


def _csv_line(values: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def image_name(row: ExportRow) -> str | None:
    if not row.image_sha256:
        return None
    extension = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(row.image_mime or "", "bin")
    return f"images/{row.image_sha256}.{extension}"


def lines(
    session: Session, fmt: ExportFormat, source: Source | None = None, account_id: int | None = None,
    one_per_group: bool = False,
) -> Iterator[str]:
    rows = labelled_rows(session, source, account_id=account_id, one_per_group=one_per_group)
    if fmt == "csv":
        yield csv_header()
        for row in rows:
            yield csv_line(row)
    else:
        for row in rows:
            yield jsonl_line(row)
