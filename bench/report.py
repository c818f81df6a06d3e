"""What every bench does with its rows once its table is printed: `--json FILE` writes the same figures."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console


def write_rows(path: Path | None, rows: Sequence[Any], console: Console) -> None:
    """The rows (dataclasses) as a JSON list at `path`, if one was given, and a line saying so."""
    if path is None:
        return
    path.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    console.print(f"wrote {path}")
