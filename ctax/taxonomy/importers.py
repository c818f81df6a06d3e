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
    text = _decode(data)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t")
    header = next(reader, None)
    if header is None:
        raise InvalidInput("taxonomy file is empty", line=1)
    header = [column.strip() for column in header]
    missing = [column for column in IAB_COLUMNS if column not in header]
    if missing:
        raise InvalidInput(f"line 1: IAB header lacks column(s) {', '.join(missing)}", line=1)
    col = {name: header.index(name) for name in IAB_COLUMNS}

    rows: list[tuple[int, str, str, str, LabelPath]] = []
    by_id: dict[str, int] = {}
    by_path: dict[LabelPath, int] = {}
    warnings: list[dict[str, object]] = []
    for number, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise InvalidInput(
                f"line {number}: expected {len(header)} tab-separated columns, got {len(row)}", line=number
            )
        unique_id = row[col["Unique ID"]].strip()
        parent_id = row[col["Parent ID"]].strip()
        name = row[col["Name"]]
        if not unique_id.isdigit():
            raise InvalidInput(f"line {number}: Unique ID must be a number, got {unique_id!r}", line=number)
        if unique_id in by_id:
            raise InvalidInput(
                f"line {number}: Unique ID {unique_id} already used on line {by_id[unique_id]}", line=number
            )
        if parent_id and not parent_id.isdigit():
            raise InvalidInput(f"line {number}: Parent ID must be a number or empty, got {parent_id!r}", line=number)
        tiers = [row[col[tier]] for tier in ("Tier 1", "Tier 2", "Tier 3")]
        stripped = [tier.strip() for tier in tiers]
        if not stripped[0]:
            raise InvalidInput(f"line {number}: Tier 1 is empty", line=number)
        depth = max(index for index, tier in enumerate(stripped) if tier) + 1
        if any(not tier for tier in stripped[:depth]):
            raise InvalidInput(f"line {number}: tiers have a gap: {' | '.join(stripped)}", line=number)
        try:
            path = LabelPath(tuple(stripped[:depth]))
        except InvalidInput as exc:
            raise InvalidInput(f"line {number}: {exc.message}", line=number) from exc
        if path in by_path:
            raise InvalidInput(f"line {number}: path {path} already defined on line {by_path[path]}", line=number)
        for raw in [name, *tiers[:depth]]:
            if raw != raw.strip():
                warnings.append({"line": number, "message": f"trimmed whitespace around {raw!r}"})
        if name.strip() and name.strip() != path.leaf:
            warnings.append(
                {"line": number, "message": f"Name {name.strip()!r} differs from tier {path.leaf!r}; the tier is used"}
            )
        by_id[unique_id] = number
        by_path[path] = number
        rows.append((number, unique_id, parent_id, name, path))

    path_of_id = {unique_id: path for _, unique_id, _, _, path in rows}
    for number, unique_id, parent_id, _, path in rows:
        expected = path.parent
        if parent_id == unique_id:
            warnings.append(
                {
                    "line": number,
                    "message": f"Parent ID is the row's own ID {unique_id}; parent taken"
                    f" from the tiers: {expected or '(root)'}",
                }
            )
        elif parent_id and parent_id not in path_of_id:
            warnings.append(
                {
                    "line": number,
                    "message": f"Parent ID {parent_id} does not exist; parent taken from"
                    f" the tiers: {expected or '(root)'}",
                }
            )
        elif parent_id and path_of_id[parent_id] != expected:
            warnings.append(
                {
                    "line": number,
                    "message": f"Parent ID {parent_id} is {path_of_id[parent_id]}, but the"
                    f" tiers say {expected or '(root)'}; the tiers are used",
                }
            )
        elif not parent_id and expected is not None:
            warnings.append(
                {
                    "line": number,
                    "message": f"empty Parent ID on a tier-{path.depth} row; parent taken from the tiers: {expected}",
                }
            )
    if not rows:
        raise InvalidInput("taxonomy file has a header but no rows", line=2)
    labels = [ImportedLabel(path, number, unique_id) for number, unique_id, _, _, path in rows]
    return ImportResult(_with_ancestors(labels), warnings)


TaxonomyFormat = Literal["auto", "iab_tsv", "lines"]


def parse_taxonomy_file(data: bytes | str, fmt: TaxonomyFormat = "auto") -> ImportResult:
    if fmt == "auto":
        text = _decode(data)
        first = text.lstrip("\ufeff").split("\n", 1)[0]
        fmt = "iab_tsv" if first.startswith("Unique ID\t") else "lines"
        data = text
    return parse_iab_tsv(data) if fmt == "iab_tsv" else parse_path_lines(data)

