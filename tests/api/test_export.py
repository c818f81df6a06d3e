"""Exporting labelled data: the latest annotation per creative, in the import format and as CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ctax.dataset.importing import import_labelled, read_rows
from ctax.store.blobs import BlobStore
from ctax.taxonomy import catalog
from ctax.taxonomy.importers import parse_taxonomy_file
from tests.conftest import headers

CARS = "Product/Vehicles/Cars"
TRAVEL = "Service/Travel/Vacations and Travel"


def _seed(db, settings, tmp_path: Path, flag_creative) -> dict[str, int]:
    rows = [
        {"id": "ad-1", "texts": ["Fast sedan", "Leather seats"], "label": CARS},
        {"id": "ad-2", "texts": ["Beach holidays"], "label": TRAVEL},
        {"id": "ad-3", "texts": ["Cheap flights"], "label": TRAVEL},
    ]
    source = tmp_path / "seed.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with db.write() as session:
        import_labelled(session, BlobStore(settings.blob_dir), settings, source)
    return {
        "wrong": flag_creative("A convertible for the road", {CARS: 0.6, TRAVEL: 0.3}, asserted=TRAVEL,
                               external_id="ad-9"),
        "junk": flag_creative("lorem ipsum", {CARS: 0.05, TRAVEL: 0.04}),
    }


def test_export_jsonl_is_what_training_uses_and_imports_back(client, keys, db, settings, tmp_path,
                                                             flag_creative, pitt_labels) -> None:
    items = _seed(db, settings, tmp_path, flag_creative)
    r = headers(keys["reviewer"])
    client.post(f"/v1/review/{items['wrong']}/decision", headers=r, json={"action": "confirm"})
    client.post(f"/v1/review/{items['junk']}/decision", headers=r, json={"action": "reject", "note": "not an ad"})

    response = client.get("/v1/export", headers=headers(keys["admin"]))
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in response.text.splitlines()]
    by_id = {row["id"]: row for row in rows}
    assert set(by_id) == {"ad-1", "ad-2", "ad-3", "ad-9"}  # the rejected creative is not labelled data
    assert by_id["ad-9"]["label"] == CARS and by_id["ad-9"]["source"] == "review"
    assert by_id["ad-1"]["texts"] == ["Fast sedan", "Leather seats"] and by_id["ad-1"]["source"] == "import"

    exported = tmp_path / "exported.jsonl"
    exported.write_text(response.text)
    assert [(row.external_id, str(row.label)) for row in read_rows(exported)] == [
        (row["id"], row["label"]) for row in rows]

    only_review = client.get("/v1/export?source=review", headers=headers(keys["admin"])).text.splitlines()
    assert [json.loads(line)["id"] for line in only_review] == ["ad-9"]


def test_export_csv_carries_iab_ids_where_known(client, keys, db, settings, tmp_path, shared_data) -> None:
    with db.write() as session:
        catalog.import_labels(session, parse_taxonomy_file((shared_data / "iab_ad_product_taxonomy_2.0.tsv")
                                                           .read_bytes()))
    iab_path = "Business and Industrial/Industrials/Aerospace and Defense"
    source = tmp_path / "iab.jsonl"
    source.write_text(json.dumps({"id": "jet", "texts": ["Fighter jets, \"made\", here"], "label": iab_path}) + "\n")
    with db.write() as session:
        import_labelled(session, BlobStore(settings.blob_dir), settings, source)
    response = client.get("/v1/export?format=csv", headers=headers(keys["admin"]))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    [row] = list(csv.DictReader(io.StringIO(response.text)))
    assert row["label"] == iab_path and row["iab_id"] == "1037" and row["tier1"] == "Business and Industrial"
    assert row["iab_path_ids"].endswith(">1037") and row["texts"] == 'Fighter jets, "made", here'
    assert client.get("/v1/export?format=xml", headers=headers(keys["admin"])).status_code == 422


def test_cli_export_writes_reimportable_jsonl_with_images(db, settings, tmp_path, pitt_labels, monkeypatch
                                                          ) -> None:
    from PIL import Image
    from typer.testing import CliRunner

    from ctax.cli import app
    from tests.conftest import png_bytes

    picture = tmp_path / "seed" / "car.png"
    picture.parent.mkdir()
    picture.write_bytes(png_bytes("CAR"))
    source = tmp_path / "seed" / "rows.jsonl"
    source.write_text(json.dumps({"id": "ad-7", "texts": ["A red car"], "label": CARS, "image": "car.png"}) + "\n")
    with db.write() as session:
        import_labelled(session, BlobStore(settings.blob_dir), settings, source)
    monkeypatch.setenv("CTAX_DATA_DIR", str(settings.data_dir))
    out = tmp_path / "export" / "labelled.jsonl"
    result = CliRunner().invoke(app, ["creatives", "export", str(out), "--images"])
    assert result.exit_code == 0, result.output
    [row] = read_rows(out)
    assert row.external_id == "ad-7" and str(row.label) == CARS and row.image is not None
    assert Image.open(row.image).size == (320, 120)
