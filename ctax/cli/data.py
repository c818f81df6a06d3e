"""Data in and out: the taxonomy, labelled creatives (import and export), and new-label proposals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, TextIO, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ctax.cli.common import console, database, fail, flush, settings
from ctax.dataset import export
from ctax.dataset.importing import BadLine, InvalidLines, import_labelled
from ctax.enums import ProposalStatus, Source
from ctax.jobs import DISCOVER
from ctax.review import proposals
from ctax.store.blobs import BlobStore
from ctax.store.outbox import enqueue
from ctax.taxonomy import catalog
from ctax.taxonomy.importers import TaxonomyFormat, parse_taxonomy_file

labels_app = typer.Typer(help="The taxonomy.", no_args_is_help=True)
creatives_app = typer.Typer(help="Creatives and labelled data.", no_args_is_help=True)
proposals_app = typer.Typer(help="New-label proposals (discovery).", no_args_is_help=True)


@labels_app.command("import")
def labels_import(path: Path, format: Annotated[str, typer.Option(help="auto, iab_tsv or lines")] = "auto") -> None:
    """Import a taxonomy file (IAB Ad Product Taxonomy TSV, or one label path per line)."""
    current = settings()
    db = database(current)
    try:
        result = parse_taxonomy_file(path.read_bytes(), cast(TaxonomyFormat, format))
        with db.write() as session:
            summary = catalog.import_labels(session, result)
    except Exception as exc:
        fail(exc)
    for warning in summary.warnings:
        console.print(f"[yellow]line {warning['line']}:[/yellow] {warning['message']}")
    console.print(
        f"created {summary.created}, re-activated {summary.reactivated}, unchanged {summary.unchanged}, "
        f"IAB ids set {summary.iab_ids_set}"
    )
    flush(current, db)


@creatives_app.command("import")
def creatives_import(
    path: Path, create_labels: Annotated[bool, typer.Option(help="add unknown label paths")] = False,
    skip_invalid: Annotated[bool, typer.Option(help="import the good lines and list the bad ones; without it a "
                                                    "file with any bad line is refused whole")] = False,
) -> None:
    """Import labelled creatives from JSONL ({"id", "texts" or "text", "label", optional "image" and "campaign"})."""
    current = settings()
    db = database(current)
    try:
        with db.write() as session:
            report = import_labelled(session, BlobStore(current.blob_dir), current, path, create_labels=create_labels,
                                     skip_invalid=skip_invalid)
    except InvalidLines as exc:
        report_bad_lines(path, exc.bad)
        fail(exc)
    except Exception as exc:
        fail(exc)
    report_bad_lines(path, report.invalid, skipped=True)
    console.print(
        f"imported {report.imported}, already present {report.skipped}, labels created {report.labels_created}"
        + (f", invalid lines skipped {len(report.invalid)}" if report.invalid else "")
    )
    flush(current, db)


def report_bad_lines(path: Path, bad: list[BadLine], skipped: bool = False) -> None:
    """One line per bad line of the file: its number and why (`ctax eval` reports its files the same way)."""
    for line in bad:
        console.print(f"[yellow]{escape(path.name)} line {line.line}{' (skipped)' if skipped else ''}:[/yellow] "
                      f"{escape(line.reason)}", soft_wrap=True)


@creatives_app.command("export")
def creatives_export(
    path: Path,
    format: Annotated[str, typer.Option(help="jsonl (the import format) or csv")] = "jsonl",
    source: Annotated[str | None, typer.Option(help="only annotations from import, review or proposal")] = None,
    images: Annotated[bool, typer.Option(help="jsonl: copy images to images/ beside the file")] = False,
    one_per_group: Annotated[bool, typer.Option(help="one row per near-duplicate group (its first)")] = False,
) -> None:
    """Export labelled data: the latest annotation of each creative, with label paths and IAB ids."""
    if format not in ("jsonl", "csv"):
        fail(ValueError("format must be jsonl or csv"))
    if source is not None and source not in {member.value for member in Source}:
        fail(ValueError(f"source must be one of {', '.join(Source)}"))
    current = settings()
    path.parent.mkdir(parents=True, exist_ok=True)
    with database(current).read() as session, path.open("w", encoding="utf-8") as out:
        count = _write_export(
            out, export.labelled_rows(session, Source(source) if source else None, one_per_group=one_per_group), format,
            BlobStore(current.blob_dir) if images else None, path.parent,
        )
    console.print(f"exported {count} labelled creatives to {path}")


def _write_export(out: TextIO, rows: Iterator[export.ExportRow], format: str, blobs: BlobStore | None,
                  folder: Path) -> int:
    """Writes the rows; with a blob store, a JSONL export copies each image into `folder` and names it."""
    count = 0
    if format == "csv":
        out.write(export.csv_header())
    for row in rows:
        if format == "csv":
            out.write(export.csv_line(row))
        else:
            name = export.image_name(row) if blobs is not None else None
            if name is not None and blobs is not None:
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(blobs.get(row.image_sha256 or ""))
            out.write(export.jsonl_line(row, image=name))
        count += 1
    return count


@proposals_app.command("discover")
def proposals_discover(min_cluster_size: int = 5) -> None:
    """Ask the labelling worker to cluster the open new_label items into proposals now."""
    current = settings()
    db = database(current)
    with db.write() as session:
        enqueue(session, DISCOVER, {"reason": "requested (cli)", "min_cluster_size": min_cluster_size})
    console.print("discovery queued; proposals appear in the review page and GET /v1/proposals")
    flush(current, db)


@proposals_app.command("list")
def proposals_list(status: str = "open") -> None:
    """Proposals with their suggested path, size and terms."""
    if status and status != "all" and status not in set(ProposalStatus):
        fail(ValueError(f"status must be all or one of {', '.join(ProposalStatus)}"))
    wanted = ProposalStatus(status) if status and status != "all" else None
    table = Table("id", "status", "suggested path", "size", "cohesion", "terms")
    with database(settings()).read() as session:
        rows = proposals.list_proposals(session, wanted)
        parents = catalog.labels_by_ids(session, [r.suggested_parent_id for r in rows if r.suggested_parent_id])
        for row in rows:
            parent = parents.get(row.suggested_parent_id or -1)
            table.add_row(
                str(row.id),
                row.status,
                f"{parent.path}/{row.suggested_name}" if parent else row.suggested_name,
                str(len(row.member_ids)),
                f"{row.cohesion:.2f}" if row.cohesion is not None else "-",
                ", ".join(row.terms[:5]),
            )
    Console().print(table)
