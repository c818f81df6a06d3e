"""Labelled-data files with bad lines: every bad line is reported with its number and reason; the file is refused
before anything is stored, or, with --skip-invalid, imported (and evaluated) without them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select
from typer.testing import CliRunner

from ctax.cli import app
from ctax.config import Settings
from ctax.dataset.export import ExportRow, jsonl_line
from ctax.dataset.importing import InvalidLines, import_labelled, read_rows, scan_rows
from ctax.store.blobs import BlobStore
from ctax.store.models import Creative
from ctax.store.session import Database
from tests.conftest import png_bytes
from tests.support import EVAL_ENV

GOOD = {"id": "good-1", "texts": ["Fresh pizza delivered hot"], "label": "Product/Food and Drink/Soft Drinks"}
SPACED = {"id": "good-2", "texts": ["Buy one pizza, get one FREE!" + " " * 300 + "Tony's Pizzeria"],
          "label": "Product/Food and Drink/Soft Drinks"}


def write_file(folder: Path) -> Path:
    """Two good lines (one an ad with a long run of spaces), then one bad line of each kind, then a good one."""
    (folder / "ad.png").write_bytes(png_bytes("SALE"))
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    big = io.BytesIO()
    Image.new("RGB", (50, 50)).save(big, "GIF")
    (folder / "ad.gif").write_bytes(big.getvalue())
    lines = [
        json.dumps(GOOD),                                                            # 1
        json.dumps(SPACED),                                                          # 2
        '{"id": "broken", "texts": ["unterminated"',                                 # 3
        json.dumps(["not", "an", "object"]),                                         # 4
        json.dumps({"id": "b5", "texts": "not a list", "label": "A/B"}),             # 5
        json.dumps({"id": "b6", "texts": ["%%%%%%%%%%%$$$$$$$$$$$"], "label": "A/B"}),  # 6
        json.dumps({"id": "b7", "texts": ["abcd"] * 40, "label": "A/B"}),            # 7
        json.dumps({"id": "b8", "texts": ["Nice car"], "label": "A/B", "image": "missing.png"}),  # 8
        json.dumps({"id": "b9", "texts": ["Nice car"], "label": "A/B", "image": "corrupt.png"}),  # 9
        json.dumps({"id": "b10", "texts": ["Nice car"], "label": "A/B", "image": "ad.gif"}),      # 10
        json.dumps({"id": "b11", "texts": [], "label": "A/B"}),                      # 11
        json.dumps({"id": "b12", "texts": ["Nice car"], "label": "A//B"}),           # 12
        "",                                                                          # 13: blank lines are skipped
        json.dumps({**GOOD, "id": "good-3", "image": "ad.png"}),                     # 14
    ]
    path = folder / "labelled.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


BAD = {3: "not valid JSON", 4: "expected a JSON object", 5: "texts must be a list", 6: "letters or digits",
       7: "40 text segments; the limit is 32", 8: "missing.png not found", 9: "not a readable PNG",
       10: "GIF is not supported", 11: "no text and no image", 12: "empty name"}


def test_every_bad_line_is_found_with_its_reason(tmp_path: Path) -> None:
    scan = scan_rows(write_file(tmp_path))
    assert [row.external_id for row in scan.rows] == ["good-1", "good-2", "good-3"]
    assert [line.line for line in scan.bad] == sorted(BAD)
    for line in scan.bad:
        assert BAD[line.line] in line.reason, (line.line, line.reason)
    with pytest.raises(InvalidLines, match=r"10 invalid lines \(line 3: not valid JSON") as refused:
        read_rows(tmp_path / "labelled.jsonl")
    assert [b.line for b in refused.value.bad] == sorted(BAD)
    assert len(read_rows(tmp_path / "labelled.jsonl", skip_invalid=True)) == 3


def test_a_row_may_name_its_campaign_as_a_posted_creative_may(tmp_path: Path) -> None:
    path = tmp_path / "stream.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in [
        {**GOOD, "campaign": "pizza-q1"}, {**GOOD, "id": "good-2"}, {**GOOD, "id": "b3", "campaign": 7},
        {**GOOD, "id": "b4", "campaign": " "}]))
    scan = scan_rows(path)
    assert [(row.external_id, row.campaign) for row in scan.rows] == [("good-1", "pizza-q1"), ("good-2", None)]
    assert [(line.line, "campaign must be a non-empty string" in line.reason) for line in scan.bad] == [
        (3, True), (4, True)]


def test_a_misspelt_key_or_no_label_is_a_bad_line_saying_so_and_an_exports_own_keys_are_read_past(
        tmp_path: Path) -> None:
    label = GOOD["label"]
    exported = jsonl_line(ExportRow("c1", "ex-1", ["Fresh pizza"], None, None, None, 7, str(label), "1-2", ["1"],
                                    "review", "2026-12-06T10:00:00Z", group="c0"))
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in [
        {"id": "b1", "texts": GOOD["texts"], "lable": label},
        {**GOOD, "id": "b2", "campain": "pizza-q1"},
        {"id": "b3", "txt": "Fresh pizza", "label": label},
        {"id": "b4", "texts": GOOD["texts"]},
        {**GOOD, "id": "good-5", "drawn_text": "PIZZA", "legible_text": True},
    ]) + exported)
    scan = scan_rows(path)
    assert [(line.line, line.reason) for line in scan.bad] == [
        (1, "unknown key 'lable': did you mean 'label'?"), (2, "unknown key 'campain': did you mean 'campaign'?"),
        (3, "unknown key 'txt': did you mean 'text'?"),
        (4, 'no label: a row needs "label", a path such as Product/Vehicles/Cars')]
    assert [(row.external_id, row.texts) for row in scan.rows] == [("good-5", GOOD["texts"]),
                                                                   ("ex-1", ["Fresh pizza"])]


def _stored(db: Database, settings: Settings) -> tuple[int, list[Path]]:
    with db.read() as session:
        count = int(session.scalar(select(func.count(Creative.id))) or 0)
    return count, [p for p in settings.blob_dir.rglob("*") if p.is_file()]


def test_a_file_with_bad_lines_stores_nothing_unless_told_to_skip_them(db, settings, tmp_path, pitt_labels) -> None:
    path = write_file(tmp_path)
    blobs = BlobStore(settings.blob_dir)
    with pytest.raises(InvalidLines), db.write() as session:
        import_labelled(session, blobs, settings, path, create_labels=True)
    assert _stored(db, settings) == (0, [])  # not a row, not an image blob
    with db.write() as session:
        report = import_labelled(session, blobs, settings, path, create_labels=True, skip_invalid=True)
    assert report.imported == 3 and [b.line for b in report.invalid] == sorted(BAD)
    count, files = _stored(db, settings)
    assert count == 3 and len(files) == 1


def _cli_env(settings: Settings) -> dict[str, str]:
    return {"CTAX_DATA_DIR": str(settings.data_dir), "CTAX_IMAGE_ENABLED": "false", "CTAX_OCR_ENABLED": "false"}


def test_ctax_creatives_import_lists_every_bad_line(db, settings, tmp_path, pitt_labels) -> None:
    path = write_file(tmp_path)
    refused = CliRunner().invoke(app, ["creatives", "import", str(path)], env=_cli_env(settings))
    assert refused.exit_code == 2, refused.output
    output = " ".join(refused.output.split())
    for number, reason in BAD.items():
        assert f"labelled.jsonl line {number}: " in output and reason in output, number
    assert "--skip-invalid" in output and _stored(db, settings)[0] == 0
    done = CliRunner().invoke(app, ["creatives", "import", str(path), "--skip-invalid"], env=_cli_env(settings))
    assert done.exit_code == 0, done.output
    output = " ".join(done.output.split())
    assert "labelled.jsonl line 7 (skipped): 40 text segments" in output
    assert "imported 3" in output and "invalid lines skipped 10" in output
    assert _stored(db, settings)[0] == 3


def test_ctax_eval_refuses_bad_lines_before_it_starts_anything(tmp_path, shared_data) -> None:
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text(json.dumps(GOOD) + "\n" + "{broken\n")
    test.write_text(json.dumps(SPACED) + "\n" + json.dumps({"id": "t2", "texts": [], "label": "A/B"}) + "\n")
    work = tmp_path / "work"
    args = ["eval", "--taxonomy", str(shared_data / "pitt_ads_taxonomy.txt"), "--train", str(train),
            "--test", str(test), "--no-train", "--json", str(tmp_path / "m.json"), "--work-dir", str(work)]
    result = CliRunner().invoke(app, args, env={"CTAX_IMAGE_ENABLED": "false", "CTAX_OCR_ENABLED": "false"})
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "train.jsonl line 2: not valid JSON" in output and "test.jsonl line 2: no text and no image" in output
    assert "2 invalid lines" in output and not work.exists()  # nothing was started


@pytest.mark.slow  # loads the text tower and labels the test rows
def test_ctax_eval_with_skip_invalid_goes_on_without_the_bad_lines(tmp_path, shared_data) -> None:
    from tests.support import write_split

    train, test, _ = write_split(shared_data, tmp_path, per_label=10)
    with test.open("a") as handle:
        handle.write("{broken\n" + json.dumps(SPACED) + "\n")
    out = tmp_path / "m.json"
    args = ["eval", "--taxonomy", str(shared_data / "pitt_ads_taxonomy.txt"), "--train", str(train),
            "--test", str(test), "--no-train", "--json", str(out), "--skip-invalid"]
    result = CliRunner().invoke(app, args, env=EVAL_ENV)
    assert result.exit_code == 0, result.output
    n_test = sum(1 for line in test.read_text().splitlines() if line.strip())
    metrics = json.loads(out.read_text())
    assert metrics["n_test"] == n_test - 1  # the spaced ad is evaluated, the broken line is not
    [bad] = metrics["invalid_lines"]["test"]
    assert bad["line"] == n_test - 1 and "not valid JSON" in bad["reason"]
    assert f"test.jsonl line {n_test - 1} (skipped): not valid JSON" in " ".join(result.output.split())


def test_imported_creatives_are_backfilled_into_the_active_versions_creatives_collection(
        db, settings, tmp_path, pitt_labels) -> None:
    """Search finds every labelled creative: imported ones were never labelled by a worker, so the import asks the
    index owner to backfill the active version's collection (before, they waited for the next worker start)."""
    from ctax.enums import VersionKind, VersionStatus
    from ctax.jobs import BACKFILL_CREATIVES
    from ctax.store.models import ModelVersion, OutboxJob

    path = tmp_path / "ads.jsonl"
    path.write_text(json.dumps(GOOD) + "\n")
    blobs = BlobStore(settings.blob_dir)
    with db.write() as session:  # no version yet: the first one backfills when it is activated
        import_labelled(session, blobs, settings, path, create_labels=True)
        assert not session.scalars(select(OutboxJob).where(OutboxJob.task == BACKFILL_CREATIVES)).all()
    with db.write() as session:
        session.add(ModelVersion(id="v1-pretrained", seq=1, kind=VersionKind.PRETRAINED, status=VersionStatus.ACTIVE,
                                 artefact_dir=str(tmp_path / "v1")))
    path.write_text(json.dumps(SPACED) + "\n")
    with db.write() as session:
        import_labelled(session, blobs, settings, path, create_labels=True)
    with db.read() as session:
        jobs = session.scalars(select(OutboxJob).where(OutboxJob.task == BACKFILL_CREATIVES)).all()
        assert [job.args for job in jobs] == [["v1-pretrained"]]
