"""Importing labelled creatives (JSONL in the format of pitt_ads_dev.jsonl): the seed of training data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ctax.config import Settings
from ctax.creatives.images import validate_image
from ctax.creatives.intake import clean_text
from ctax.enums import CreativeStatus, Source
from ctax.errors import InvalidInput
from ctax.store.blobs import BlobStore
from ctax.store.models import Annotation, Creative, Label
from ctax.store.outbox import request_index_sync
from ctax.store.repos import annotations as annotation_rows
from ctax.store.repos import labels as label_rows
from ctax.store.session import Session
from ctax.store.types import new_id
from ctax.taxonomy import catalog
from ctax.taxonomy.importers import parse_path_lines
from ctax.taxonomy.paths import LabelPath


@dataclass
class ImportReport:
    imported: int = 0
    skipped: int = 0
    labels_created: int = 0


@dataclass
class Row:
    line: int
    external_id: str | None
    texts: list[str]
    label: LabelPath
    image: Path | None


def read_rows(path: Path) -> list[Row]:
    rows: list[Row] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InvalidInput(f"{path.name} line {number}: not valid JSON: {exc}", line=number) from exc
            if not isinstance(data, dict):
                raise InvalidInput(f"{path.name} line {number}: expected a JSON object", line=number)
            texts = data.get("texts", [data["text"]] if "text" in data else [])
            if not isinstance(texts, list):
                raise InvalidInput(f"{path.name} line {number}: texts must be a list of strings", line=number)
            try:
                cleaned = [t for t in (clean_text(t, "text", 20_000) for t in texts) if t]
                label = LabelPath.parse(data.get("label", ""))
            except InvalidInput as exc:
                raise InvalidInput(f"{path.name} line {number}: {exc.message}", line=number) from exc
            image = (path.parent / data["image"]) if data.get("image") else None
            if image is not None and not image.is_file():
                raise InvalidInput(f"{path.name} line {number}: image {data['image']} not found", line=number)
            if not cleaned and image is None:
                raise InvalidInput(f"{path.name} line {number}: no text and no image", line=number)
            external = data.get("id")
            rows.append(Row(number, str(external) if external is not None else None, cleaned, label, image))
    if not rows:
        raise InvalidInput(f"{path.name} holds no rows")
    return rows


def import_labelled(
    session: Session, blobs: BlobStore, settings: Settings, path: Path, create_labels: bool = False
) -> ImportReport:
    """All or nothing, in the caller's transaction. Rows already imported (same id) are skipped."""
    rows = read_rows(path)
    report = ImportReport()
    labels = _labels_for(session, rows, path, create_labels, report)
    known = annotation_rows.imported_external_ids(session)
    for row in tqdm(rows, desc=f"importing {path.name}", unit="row", disable=len(rows) < 1000):
        if row.external_id is not None and row.external_id in known:
            report.skipped += 1
            continue
        creative = _creative(row, blobs, settings, path)
        session.add(creative)
        session.add(Annotation(creative=creative, label_id=labels[str(row.label)].id, source=Source.IMPORT))
        if row.external_id is not None:
            known.add(row.external_id)
        report.imported += 1
    if report.imported:
        request_index_sync(session, f"{report.imported} labelled creatives imported")
    return report


def _labels_for(session: Session, rows: list[Row], path: Path, create_labels: bool,
                report: ImportReport) -> dict[str, Label]:
    """The active labels by path, after creating the rows' unknown ones if asked to (else they are refused)."""
    labels = {label.path: label for label in label_rows.active(session)}
    missing = sorted({str(row.label) for row in rows if str(row.label) not in labels})
    if not missing:
        return labels
    if not create_labels:
        first = next(row for row in rows if str(row.label) in missing)
        raise InvalidInput(
            f"{path.name} line {first.line}: unknown label {first.label} ({len(missing)} unknown "
            f"in all: import the taxonomy first, or pass --create-labels)",
            line=first.line,
        )
    summary = catalog.import_labels(session, parse_path_lines("\n".join(missing)), source=Source.IMPORT)
    report.labels_created = summary.created
    return {label.path: label for label in label_rows.active(session)}


def _creative(row: Row, blobs: BlobStore, settings: Settings, path: Path) -> Creative:
    """An imported creative, labelled on arrival; its image (validated like a posted one) goes to the blob store."""
    sha = mime = None
    width = height = None
    if row.image is not None:
        data = row.image.read_bytes()
        try:
            info = validate_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
        except InvalidInput as exc:
            raise InvalidInput(f"{path.name} line {row.line}: {exc.message}", line=row.line) from exc
        sha, mime, width, height = blobs.put(data), info.mime, info.width, info.height
    return Creative(
        id=new_id(),
        source=Source.IMPORT,
        status=CreativeStatus.LABELLED,
        external_id=row.external_id,
        texts=row.texts,
        image_sha256=sha,
        image_mime=mime,
        image_width=width,
        image_height=height,
    )
