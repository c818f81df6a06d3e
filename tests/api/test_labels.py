"""Taxonomy through the API: imports of the real files, malformed files, edits that re-sync the index."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from ctax.jobs import SYNC_INDEX
from ctax.store.models import Label, OutboxJob
from tests.conftest import headers


def _import(client, key: str, content: bytes, name: str = "taxonomy.txt", fmt: str = "auto"):
    return client.post("/v1/labels/import", headers=headers(key), files={"file": (name, content)},
                       data={"format": fmt})


def test_import_iab_keeps_ids_and_reports_its_flaws(client, keys, db, shared_data: Path) -> None:
    response = _import(client, keys["admin"], (shared_data / "iab_ad_product_taxonomy_2.0.tsv").read_bytes(),
                       "iab.tsv")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["created"] == 583
    messages = {w["line"]: w["message"] for w in body["warnings"]}
    assert "own ID 1000" in messages[2] and "own ID 1037" in messages[39]
    assert "trimmed" in messages[122]  # "Video Games "
    with db.read() as session:
        by_iab = {label.iab_id: label for label in session.scalars(select(Label))}
        assert by_iab["1037"].path == "Business and Industrial/Industrials/Aerospace and Defense"
        assert by_iab["1037"].parent.path == "Business and Industrial/Industrials"  # not itself
        assert by_iab["1038"].parent.path == "Business and Industrial/Industrials"  # not 1037, a sibling
        assert by_iab["1120"].name == "Video Games"
        printers = by_iab["1116"]
        assert printers.name == "Printers/Copiers/Scanners/Fax"
        assert printers.path == "Consumer Electronics/Printers\\/Copiers\\/Scanners\\/Fax"
        assert printers.depth == 2
        assert by_iab["1000"].parent_id is None
    again = _import(client, keys["admin"], (shared_data / "iab_ad_product_taxonomy_2.0.tsv").read_bytes(), "iab.tsv")
    assert again.json()["created"] == 0 and again.json()["unchanged"] == 583


def test_import_pitt_paths_creates_parents(client, keys, shared_data: Path) -> None:
    body = _import(client, keys["admin"], (shared_data / "pitt_ads_taxonomy.txt").read_bytes()).json()
    assert body["created"] == 65  # 38 leaves and their 27 ancestors
    tree = client.get("/v1/labels/tree", headers=headers(keys["poster"])).json()
    assert {root["name"] for root in tree["roots"]} == {"Product", "Service", "PSA"}
    product = next(r for r in tree["roots"] if r["name"] == "Product")
    vehicles = next(c for c in product["children"] if c["name"] == "Vehicles")
    assert [c["name"] for c in vehicles["children"]] == ["Cars"]


def test_malformed_file_is_refused_naming_the_line_and_changes_nothing(client, keys, db) -> None:
    assert _import(client, keys["admin"], b"Product/Cars\nService/Banks\n").status_code == 200
    with db.read() as session:
        before = session.scalar(select(func.count(Label.id)))
    bad_tsv = (b"Unique ID\tParent ID\tName\tTier 1\tTier 2\tTier 3\n"
               b"1\t\tA\tA\t\t\n2\t1\tB\tA\tB\t\n3\t1\tC\tA\n")
    response = _import(client, keys["admin"], bad_tsv, "bad.tsv")
    assert response.status_code == 422
    assert "line 4" in response.json()["message"] and "columns" in response.json()["message"]
    gapped = b"Unique ID\tParent ID\tName\tTier 1\tTier 2\tTier 3\n7\t\tX\tX\t\tZ\n"
    assert "line 2" in _import(client, keys["admin"], gapped, "gap.tsv").json()["message"]
    empty_name = _import(client, keys["admin"], b"Product/Toys\nProduct//Dolls\n")
    assert empty_name.status_code == 422 and "line 2" in empty_name.json()["message"]
    binary = _import(client, keys["admin"], b"\xff\xfe\x00garbage\x00")
    assert binary.status_code == 422 and "UTF-8" in binary.json()["message"]
    assert _import(client, keys["admin"], b"\n# only a comment\n").status_code == 422
    with db.read() as session:
        assert session.scalar(select(func.count(Label.id))) == before
        assert session.scalar(select(Label).where(Label.path == "Product/Toys")) is None


def test_edits_rename_subtrees_retire_and_queue_a_resync(client, keys, db) -> None:
    _import(client, keys["admin"], b"Service/Vehicles/Maintenance/Honda\nService/Vehicles/Rental\n")
    labels = client.get("/v1/labels", headers=headers(keys["poster"])).json()["items"]
    by_path = {label["path"]: label for label in labels}
    vehicles = by_path["Service/Vehicles"]
    with db.write() as session:
        session.query(OutboxJob).delete()

    renamed = client.patch(f"/v1/labels/{vehicles['id']}", headers=headers(keys["admin"]),
                           json={"name": "Automotive", "description": "cars and their upkeep"})
    assert renamed.status_code == 200, renamed.text
    honda = client.get(f"/v1/labels/{by_path['Service/Vehicles/Maintenance/Honda']['id']}",
                       headers=headers(keys["poster"])).json()
    assert honda["path"] == "Service/Automotive/Maintenance/Honda"
    with db.read() as session:
        assert session.scalar(select(func.count(OutboxJob.id)).where(OutboxJob.task == SYNC_INDEX)) >= 1

    retired = client.patch(f"/v1/labels/{by_path['Service/Vehicles/Maintenance']['id']}",
                           headers=headers(keys["admin"]), json={"status": "retired"})
    assert set(retired.json()["affected"]) == {by_path["Service/Vehicles/Maintenance"]["id"],
                                               by_path["Service/Vehicles/Maintenance/Honda"]["id"]}
    active = {lab["path"] for lab in client.get("/v1/labels", headers=headers(keys["poster"])).json()["items"]}
    assert "Service/Automotive/Maintenance/Honda" not in active and "Service/Automotive/Rental" in active

    clash = client.patch(f"/v1/labels/{by_path['Service/Vehicles/Rental']['id']}", headers=headers(keys["admin"]),
                         json={"name": "Maintenance"})
    assert clash.status_code == 409
    orphan = client.post("/v1/labels", headers=headers(keys["admin"]), json={"path": "Nope/Child"})
    assert orphan.status_code == 422 and "parent" in orphan.json()["message"]
    created = client.post("/v1/labels", headers=headers(keys["admin"]), json={"path": "Service/Automotive/Tyres"})
    assert created.status_code == 201 and created.json()["depth"] == 3
    duplicate = client.post("/v1/labels", headers=headers(keys["admin"]), json={"path": "Service/Automotive/Tyres"})
    assert duplicate.status_code == 422


def test_roles_guard_label_changes(client, keys) -> None:
    assert client.get("/v1/labels").status_code == 401
    assert client.get("/v1/labels", headers=headers("ctax_not_a_real_key_at_all")).status_code == 401
    forbidden = _import(client, keys["reviewer"], b"A/B\n")
    assert forbidden.status_code == 403 and "admin" in forbidden.json()["message"]
    assert client.post("/v1/labels", headers=headers(keys["poster"]), json={"path": "A"}).status_code == 403
