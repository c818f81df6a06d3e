"""The layout's rules that import-linter cannot express: sizes, the one place that commits, and an API process
that never loads torch. Each number is the one CONTRIBUTING.md gives; change both together."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ctax"
MAX_MODULES_PER_PACKAGE = 12
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60
GENERATED = {PACKAGE / "migrations"}  # Alembic's files are written by Alembic


def _modules() -> list[Path]:
    return [path for path in sorted(PACKAGE.rglob("*.py"))
            if not any(path.is_relative_to(skip) for skip in GENERATED)]


def test_no_package_holds_more_than_a_dozen_modules() -> None:
    crowded = {}
    for package in {path.parent for path in _modules()}:
        modules = [p for p in package.glob("*.py") if p.name != "__init__.py"]
        if len(modules) > MAX_MODULES_PER_PACKAGE:
            crowded[str(package.relative_to(PACKAGE.parent))] = len(modules)
    assert not crowded, f"packages over {MAX_MODULES_PER_PACKAGE} modules (split them by responsibility): {crowded}"


def test_no_module_is_longer_than_300_lines() -> None:
    long = {str(p.relative_to(PACKAGE.parent)): n for p in _modules()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_longer_than_60_lines() -> None:
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}"] = length
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_only_the_unit_of_work_commits() -> None:
    """`Database.write()` commits; a commit anywhere else would be a second transaction boundary in a request."""
    # local_mode.py commits Qdrant local mode's own SQLite file (one commit per write request), not our database.
    allowed = {PACKAGE / "store" / "session.py", PACKAGE / "index" / "local_mode.py"}
    found = []
    for path in _modules():
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "commit":
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not found, f"commit() outside Database.write(): {found}"


@pytest.mark.parametrize("module", ["ctax.api.app", "ctax.cli"])
def test_importing_the_api_or_the_command_line_loads_no_model_code(module: str) -> None:
    heavy = ["torch", "sentence_transformers", "open_clip", "transformers", "qdrant_client", "ctax.embedding.text"]
    code = (f"import sys, {module}\n"
            f"loaded = [m for m in {heavy!r} if m in sys.modules]\n"
            "print(','.join(loaded))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "", f"importing {module} loaded {out.stdout.strip()}"
