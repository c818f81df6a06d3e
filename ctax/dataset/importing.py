"""Importing labelled creatives (JSONL in the format of pitt_ads_dev.jsonl): the seed of training data."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ctax.config import Settings
from ctax.creatives.images import ImageInfo, validate_image
from ctax.creatives.intake import clean_text
from ctax.creatives.validation import check_identifier
from ctax.enums import CreativeStatus, Source
from ctax.errors import CtaxError, InvalidInput
from ctax.jobs import BACKFILL_CREATIVES
from ctax.store.blobs import BlobStore
from ctax.store.models import Annotation, Creative, Label
from ctax.store.outbox import enqueue, request_index_sync
from ctax.store.repos import annotations as annotation_rows
from ctax.store.repos import labels as label_rows
from ctax.store.repos import versions as version_rows
from ctax.store.session import Session
from ctax.store.types import new_id
from ctax.taxonomy import catalog
from ctax.taxonomy.importers import parse_path_lines
from ctax.taxonomy.paths import LabelPath


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str


@dataclass
class ImportReport:
    imported: int = 0
    skipped: int = 0
    labels_created: int = 0
    invalid: list[BadLine] = field(default_factory=list)


@dataclass
class Row:
    line: int
    external_id: str | None
    texts: list[str]
    label: LabelPath
    image: Path | None
    image_info: ImageInfo | None = None
    campaign: str | None = None  # the poster's campaign (rows posted as creatives by `ctax eval`)


@dataclass
class RowScan:
    """Every row of a file that can be imported, and every line that cannot, with the reason."""

    rows: list[Row]
    bad: list[BadLine]


class InvalidLines(InvalidInput):
    """A file with bad lines, refused whole: each line is named with its reason (`.bad`)."""

    def __init__(self, name: str, bad: list[BadLine]) -> None:
        first = bad[0]
        super().__init__(
            f"{name}: {len(bad)} invalid line{'s' if len(bad) > 1 else ''} (line {first.line}: {first.reason}); "
            "nothing was stored. Fix them, or pass --skip-invalid to go on without them",
            lines=[{"line": b.line, "reason": b.reason} for b in bad],
        )
        self.bad = bad


def scan_rows(path: Path, settings: Settings | None = None) -> RowScan:
    """Reads every line, checked as the API checks a posted creative (texts, their count and size, the image)."""
    limits = settings or Settings.model_construct()  # the defaults, without reading the environment
    rows: list[Row] = []
    bad: list[BadLine] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                rows.append(_row(path, number, raw, limits))
            except CtaxError as exc:  # invalid, too large, or an image of an unsupported type
                bad.append(BadLine(number, exc.message))
    return RowScan(rows, bad)


def read_rows(path: Path, settings: Settings | None = None, skip_invalid: bool = False) -> list[Row]:
    """The file's rows; a file with any bad line is refused (InvalidLines names them all) unless `skip_invalid`."""
    return _accepted(scan_rows(path, settings), path.name, skip_invalid)


def _accepted(scan: RowScan, name: str, skip_invalid: bool) -> list[Row]:
    if scan.bad and not skip_invalid:
        raise InvalidLines(name, scan.bad)
    if not scan.rows:
        raise InvalidInput(f"{name} holds no rows" + (" that can be imported" if scan.bad else ""))
    return scan.rows


def _row(path: Path, number: int, raw: bytes, settings: Settings) -> Row:
    try:
        data = json.loads(raw)
    except RecursionError as exc:
        raise InvalidInput("not valid JSON: nested too deeply") from exc
    except ValueError as exc:  # malformed JSON, or bytes that are not UTF-8
        raise InvalidInput(f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput("expected a JSON object")
    _check_keys(data)
    texts = data.get("texts", [data["text"]] if "text" in data else [])
    if not isinstance(texts, list):
        raise InvalidInput("texts must be a list of strings")
    if len(texts) > settings.max_text_segments:
        raise InvalidInput(f"{len(texts)} text segments; the limit is {settings.max_text_segments}")
    cleaned = [t for t in (clean_text(t, "text", settings.max_text_chars) for t in texts) if t]
    if sum(len(t) for t in cleaned) > settings.max_text_chars:
        raise InvalidInput(f"texts total more than {settings.max_text_chars} characters")
    label = LabelPath.parse(data.get("label", ""))
    image = (path.parent / str(data["image"])) if data.get("image") else None
    info = None
    if image is not None:
        if not image.is_file():
            raise InvalidInput(f"image {data['image']} not found")
        info = validate_image(image.read_bytes(), max_bytes=settings.max_image_bytes,
                              max_pixels=settings.max_image_pixels)
    if not cleaned and image is None:
        raise InvalidInput("no text and no image")
    external, campaign = data.get("id"), data.get("campaign")
    check_identifier(campaign, "campaign")
    return Row(number, str(external) if external is not None else None, cleaned, label, image, info, campaign)


# The keys a row is read by. Other keys are read past: an export's own (label_id, creative_id, ...) and a bench's.
ROW_KEYS = ("id", "texts", "text", "label", "image", "campaign")


def _check_keys(data: dict[str, object]) -> None:
    """A key that nearly names one a row is read by is a typo, and the row would lose that field without a word: a
    `lable` read as no label at all ("label path '' has an empty name"), a `campain` as no campaign."""
    for key in data:
        close = difflib.get_close_matches(str(key), ROW_KEYS, n=1, cutoff=0.8) if key not in ROW_KEYS else []
        if close:
            raise InvalidInput(f"unknown key {key!r}: did you mean {close[0]!r}?")
    if "label" not in data:
        raise InvalidInput('no label: a row needs "label", a path such as Product/Vehicles/Cars')


def import_labelled(
    session: Session, blobs: BlobStore, settings: Settings, path: Path, create_labels: bool = False,
    skip_invalid: bool = False,
) -> ImportReport:
    """All or nothing, in the caller's transaction. Rows already imported (same id) are skipped. A file with bad
    lines is refused before anything is stored, or, with `skip_invalid`, imported without them (report.invalid)."""
    scan = scan_rows(path, settings)
    rows = _accepted(scan, path.name, skip_invalid)
    report = ImportReport(invalid=scan.bad)
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
        # Never labelled by a worker, so not in the active version's creatives collection: search finds them once
        # the index owner has backfilled them (a version activated later backfills on its own).
        active = version_rows.active(session)
        if active is not None:
            enqueue(session, BACKFILL_CREATIVES, active.id)
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
            # Checked when the file was read; a Row built by hand (or a file changed since) is checked now.
            info = row.image_info or validate_image(data, max_bytes=settings.max_image_bytes,
                                                    max_pixels=settings.max_image_pixels)
        except CtaxError as exc:
            raise InvalidInput(f"{path.name} line {row.line}: {exc.message}", line=row.line) from exc
        sha, mime, width, height = blobs.put(data), info.mime, info.width, info.height
    return Creative(
        id=new_id(),
        source=Source.IMPORT,
        status=CreativeStatus.LABELLED,
        external_id=row.external_id,
        campaign=row.campaign,
        texts=row.texts,
        image_sha256=sha,
        image_mime=mime,
        image_width=width,
        image_height=height,
    )
