"""Which OCR backend reads: `auto` times each one that can run and keeps the faster that reads right; one that is
not installed is skipped with the reason logged under `auto`, and stops the worker with one line when named."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from ctax.cli import app
from ctax.config import Settings
from ctax.embedding.ocr import (
    OcrReader,
    OcrUnavailable,
    ProbeResult,
    check_backend,
    choose,
    cpu_count,
    open_reader,
    probe,
    probe_images,
)

MISSING = "OCR backend openvino needs the openvino package (pip install openvino)"


@pytest.fixture
def without_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine where openvino is not installed: Python's own marker for a module that cannot be imported."""
    monkeypatch.setitem(sys.modules, "openvino", None)


def test_the_fastest_backend_that_reads_right_is_chosen() -> None:
    onnx, openvino = ProbeResult("onnxruntime", 4.0, True), ProbeResult("openvino", 8.0, True)
    assert choose([onnx, openvino]) is openvino
    misreading = ProbeResult("openvino", 50.0, False)  # fast but wrong must not win
    assert choose([onnx, misreading]) is onnx


def test_no_backend_reading_right_is_a_clear_error() -> None:
    with pytest.raises(OcrUnavailable, match="onnxruntime misread the probe images; openvino skipped: gone"):
        choose([ProbeResult("onnxruntime", 4.0, False)], ["openvino skipped: gone"])
    with pytest.raises(OcrUnavailable, match="none installed"):
        choose([])


def test_auto_times_both_backends_and_keeps_the_faster() -> None:
    reader, how = open_reader("auto", workers=1)
    assert reader.backend in ("onnxruntime", "openvino") and reader.workers == 1
    assert how.startswith(f"{reader.backend}, 1 engine(s)") and "auto, faster at start-up: onnxruntime " in how
    assert ", openvino " in how and "/s" in how
    result = probe(reader, rounds=1)
    assert result.reads_probe and result.per_s > 0


@pytest.mark.usefixtures("without_openvino")
def test_auto_skips_a_backend_that_is_not_installed_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ctax.embedding.ocr"):
        reader, how = open_reader("auto", workers=1)
    assert reader.backend == "onnxruntime"
    assert how.endswith(f"openvino skipped: {MISSING})"), how
    assert [r.getMessage() for r in caplog.records] == [f"OCR backend openvino skipped: {MISSING}"]


@pytest.mark.usefixtures("without_openvino")
def test_a_backend_named_but_not_installed_is_one_clear_error() -> None:
    with pytest.raises(OcrUnavailable) as caught:
        open_reader("openvino")
    assert str(caught.value) == MISSING
    with pytest.raises(ValueError, match="unknown OCR backend 'tesseract': expected one of onnxruntime, openvino"):
        check_backend("tesseract")
    assert check_backend("onnxruntime") == "onnxruntime"


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTAX_")}
    return {**env, "CTAX_DATA_DIR": str(tmp_path / "var"), **values}


@pytest.mark.usefixtures("without_openvino")
@pytest.mark.parametrize("command", [["worker", "--role", "label"], ["run"]])
def test_the_worker_stops_at_once_with_one_line(tmp_path: Path, command: list[str]) -> None:
    result = CliRunner().invoke(app, command, env=_env(tmp_path, CTAX_OCR_BACKEND="openvino"))
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"error: {MISSING}"


def test_the_settings_name_a_backend_and_a_worker_count() -> None:
    def make(**values: object) -> Settings:
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    assert (make().ocr_backend, make().ocr_workers) == ("auto", 0)
    assert make(ocr_backend=" OpenVINO ").ocr_backend == "openvino"
    for bad in ({"ocr_backend": "tesseract"}, {"ocr_workers": -1}, {"ocr_workers": 65}, {"ocr_workers": "many"}):
        with pytest.raises(ValidationError) as caught:
            make(**bad)
        assert caught.value.errors()[0]["loc"] == (next(iter(bad)),)


def test_an_explicit_backend_is_what_reads() -> None:
    reader, how = open_reader("openvino", workers=2)
    assert isinstance(reader, OcrReader) and reader.backend == "openvino"
    assert how == f"openvino, 2 engine(s) x {max(1, cpu_count() // 2)} thread(s) (CTAX_OCR_BACKEND=openvino)"
    assert reader.read_many(probe_images()[:2]) == ["Adopt a dog today", "Fresh coffee every morning"]
