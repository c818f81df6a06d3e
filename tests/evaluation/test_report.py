"""`ctax eval --report DIR` refuses a report folder that is a file before evaluating anything."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from ctax.cli import app


def test_a_report_path_that_is_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    taken = tmp_path / "report.html"
    taken.write_text("not a folder")
    args = ["eval", "--taxonomy", "t.txt", "--train", "a.jsonl", "--test", "b.jsonl", "--json", "m.json",
            "--report", str(taken)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "is a file, not a folder" in result.output and taken.read_text() == "not a folder"
