"""Importers for taxonomy files: the IAB Ad Product Taxonomy TSV and plain lists of label paths. Pure: bytes in,
label paths (with their parents, which are labels too) and warnings naming the line out."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from ctax.errors import InvalidInput
from ctax.taxonomy.paths import LabelPath


@dataclass(frozen=True)
class ImportedLabel:
    path: LabelPath
    line: int | None = None
    iab_id: str | None = None


@dataclass
class ImportResult:
    labels: list[ImportedLabel]
    warnings: list[dict[str, object]] = field(default_factory=list)


def _with_ancestors(labels: Iterable[ImportedLabel]) -> list[ImportedLabel]:
    """Parents are labels too: a file listing only leaves still yields every ancestor, once."""
    seen: dict[LabelPath, ImportedLabel] = {}
    for label in labels:
        for ancestor in reversed(list(label.path.ancestors())):
            seen.setdefault(ancestor, ImportedLabel(ancestor, label.line))
        existing = seen.get(label.path)
        if existing is None or (existing.iab_id is None and label.iab_id is not None):
            seen[label.path] = label
    return sorted(seen.values(), key=lambda item: (item.path.depth, item.path.names))


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"taxonomy file is not UTF-8 text (byte {exc.start})", line=None) from exc


def parse_path_lines(data: bytes | str) -> ImportResult:
    """One label path per line; blank lines and lines starting with '#' are skipped."""
    text = _decode(data)
    labels: list[ImportedLabel] = []
    seen: dict[LabelPath, int] = {}
    warnings: list[dict[str, object]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "\t" in line:
            raise InvalidInput(
                f"line {number}: a tab inside a label path (is this an IAB TSV file? use format=iab_tsv)",
                line=number,
            )
        try:
            path = LabelPath.parse(line)
        except InvalidInput as exc:
            raise InvalidInput(f"line {number}: {exc.message}", line=number) from exc
        if path in seen:
            warnings.append({"line": number, "message": f"duplicate of line {seen[path]}: {path}"})
            continue
        seen[path] = number
        labels.append(ImportedLabel(path, number))
    if not labels:
        raise InvalidInput("taxonomy file holds no label paths", line=None)
    return ImportResult(_with_ancestors(labels), warnings)


IAB_COLUMNS = ("Unique ID", "Parent ID", "Name", "Tier 1", "Tier 2", "Tier 3")
IAB_TIERS = ("Tier 1", "Tier 2", "Tier 3")


@dataclass(frozen=True)
class _IabRow:
    line: int
    unique_id: str
    parent_id: str
    path: LabelPath


@dataclass
class _IabFile:
    """What the rows read so far define, to refuse a second row with the same ID or path."""

    header: list[str]
    col: dict[str, int]
    rows: list[_IabRow] = field(default_factory=list)
    line_of_id: dict[str, int] = field(default_factory=dict)
    line_of_path: dict[LabelPath, int] = field(default_factory=dict)
    warnings: list[dict[str, object]] = field(default_factory=list)

    def add(self, row: _IabRow) -> None:
        self.line_of_id[row.unique_id] = row.line
        self.line_of_path[row.path] = row.line
        self.rows.append(row)


def parse_iab_tsv(data: bytes | str) -> ImportResult:
    """The IAB Ad Product Taxonomy 2.0 TSV.

    The tier columns are authoritative for a node's path (IAB documents the path as the non-empty tiers).
    The file's known flaws are handled on purpose and reported as warnings naming the line:
    a Parent ID equal to the row's own ID (1000, 1037), Parent IDs that disagree with the tiers (the
    children of 1037, 1426), names with trailing spaces (1120), a Name that differs from the last tier,
    and names containing "/" (kept as one name, escaped in the text form of the path).
    Structural problems (wrong column count, missing or duplicate IDs, empty or gapped tiers, two rows with
    one path) make the whole file invalid.
    """
    reader = csv.reader(io.StringIO(_decode(data), newline=""), delimiter="\t")
    file = _read_iab_header(next(reader, None))
    for number, cells in enumerate(reader, start=2):
        if any(cell.strip() for cell in cells):
            file.add(_read_iab_row(file, number, cells))
    file.warnings.extend(_parent_id_warnings(file.rows))
    if not file.rows:
        raise InvalidInput("taxonomy file has a header but no rows", line=2)
    labels = [ImportedLabel(row.path, row.line, row.unique_id) for row in file.rows]
    return ImportResult(_with_ancestors(labels), file.warnings)


def _read_iab_header(header: list[str] | None) -> _IabFile:
    if header is None:
        raise InvalidInput("taxonomy file is empty", line=1)
    header = [column.strip() for column in header]
    missing = [column for column in IAB_COLUMNS if column not in header]
    if missing:
        raise InvalidInput(f"line 1: IAB header lacks column(s) {', '.join(missing)}", line=1)
    return _IabFile(header, {name: header.index(name) for name in IAB_COLUMNS})


def _read_iab_row(file: _IabFile, number: int, cells: list[str]) -> _IabRow:
    """One row's ID, Parent ID and path, refusing structural errors; whitespace and Name flaws become warnings."""
    if len(cells) != len(file.header):
        raise InvalidInput(
            f"line {number}: expected {len(file.header)} tab-separated columns, got {len(cells)}", line=number
        )
    unique_id = cells[file.col["Unique ID"]].strip()
    parent_id = cells[file.col["Parent ID"]].strip()
    name = cells[file.col["Name"]]
    if not unique_id.isdigit():
        raise InvalidInput(f"line {number}: Unique ID must be a number, got {unique_id!r}", line=number)
    if unique_id in file.line_of_id:
        raise InvalidInput(
            f"line {number}: Unique ID {unique_id} already used on line {file.line_of_id[unique_id]}", line=number
        )
    if parent_id and not parent_id.isdigit():
        raise InvalidInput(f"line {number}: Parent ID must be a number or empty, got {parent_id!r}", line=number)
    tiers = [cells[file.col[tier]] for tier in IAB_TIERS]
    path = _tier_path(number, [tier.strip() for tier in tiers])
    if path in file.line_of_path:
        raise InvalidInput(
            f"line {number}: path {path} already defined on line {file.line_of_path[path]}", line=number
        )
    for raw in [name, *tiers[: path.depth]]:
        if raw != raw.strip():
            file.warnings.append({"line": number, "message": f"trimmed whitespace around {raw!r}"})
    if name.strip() and name.strip() != path.leaf:
        file.warnings.append(
            {"line": number, "message": f"Name {name.strip()!r} differs from tier {path.leaf!r}; the tier is used"}
        )
    return _IabRow(number, unique_id, parent_id, path)


def _tier_path(number: int, tiers: list[str]) -> LabelPath:
    """The path is the non-empty tiers, which must start at Tier 1 and have no gap."""
    if not tiers[0]:
        raise InvalidInput(f"line {number}: Tier 1 is empty", line=number)
    depth = max(index for index, tier in enumerate(tiers) if tier) + 1
    if any(not tier for tier in tiers[:depth]):
        raise InvalidInput(f"line {number}: tiers have a gap: {' | '.join(tiers)}", line=number)
    try:
        return LabelPath(tuple(tiers[:depth]))
    except InvalidInput as exc:
        raise InvalidInput(f"line {number}: {exc.message}", line=number) from exc


def _parent_id_warnings(rows: list[_IabRow]) -> list[dict[str, object]]:
    """The tiers decide each parent; a Parent ID that disagrees with them is reported, never followed."""
    path_of_id = {row.unique_id: row.path for row in rows}
    warnings: list[dict[str, object]] = []
    for row in rows:
        message = _parent_id_disagreement(row, path_of_id)
        if message is not None:
            warnings.append({"line": row.line, "message": message})
    return warnings


def _parent_id_disagreement(row: _IabRow, path_of_id: dict[str, LabelPath]) -> str | None:
    parent_id, expected = row.parent_id, row.path.parent
    if parent_id == row.unique_id:
        return f"Parent ID is the row's own ID {row.unique_id}; parent taken from the tiers: {expected or '(root)'}"
    if parent_id and parent_id not in path_of_id:
        return f"Parent ID {parent_id} does not exist; parent taken from the tiers: {expected or '(root)'}"
    if parent_id and path_of_id[parent_id] != expected:
        return (f"Parent ID {parent_id} is {path_of_id[parent_id]}, but the tiers say {expected or '(root)'};"
                " the tiers are used")
    if not parent_id and expected is not None:
        return f"empty Parent ID on a tier-{row.path.depth} row; parent taken from the tiers: {expected}"
    return None


TaxonomyFormat = Literal["auto", "iab_tsv", "lines"]


def parse_taxonomy_file(data: bytes | str, fmt: TaxonomyFormat = "auto") -> ImportResult:
    if fmt == "auto":
        text = _decode(data)
        first = text.lstrip("\ufeff").split("\n", 1)[0]
        fmt = "iab_tsv" if first.startswith("Unique ID\t") else "lines"
        data = text
    return parse_iab_tsv(data) if fmt == "iab_tsv" else parse_path_lines(data)

