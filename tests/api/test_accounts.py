"""Accounts: a poster sees, fetches and retries only its own account's creatives; Idempotency-Keys are the
account's; reviewers and admins see every account and filter by one; imported data belongs to none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from ctax.dataset.importing import import_labelled
from ctax.store.blobs import BlobStore
from ctax.store.models import ApiKey, Creative
from tests.conftest import headers, png_bytes

CARS = "Product/Vehicles/Cars"
TRAVEL = "Service/Travel/Vacations and Travel"


@pytest.fixture
def accounts(client, keys) -> dict[str, dict]:
    """Two accounts made through the API, each with a poster key: {'a': {'id', 'key'}, 'b': {...}}."""
    admin = headers(keys["admin"])
    out = {}
    for name, kind in [("a", "advertiser"), ("b", "partner")]:
        account = client.post("/v1/accounts", headers=admin, json={"name": f"Account {name}", "kind": kind})
        assert account.status_code == 201, account.text
        key = client.post("/v1/api-keys", headers=admin,
                          json={"name": f"poster {name}", "role": "poster", "account_id": account.json()["id"]})
        assert key.status_code == 201, key.text
        assert key.json()["account"] == {"id": account.json()["id"], "name": f"Account {name}", "kind": kind}
        out[name] = {"id": account.json()["id"], "key": key.json()["key"]}
    return out


def _post(client, key: str, **body) -> dict:
    idem = body.pop("idempotency_key", None)
    extra = {"Idempotency-Key": idem} if idem else {}
    response = client.post("/v1/creatives", headers={**headers(key), **extra}, json=body)
    assert response.status_code == 202, response.text
    return response.json()


def test_a_poster_sees_fetches_and_retries_only_its_own_accounts_creatives(client, accounts, db) -> None:
    a, b = headers(accounts["a"]["key"]), headers(accounts["b"]["key"])
    mine = client.post("/v1/creatives", headers=a, files={"image": ("ad.png", png_bytes("SALE"), "image/png")},
                       data={"external_id": "shared-ext"}).json()["id"]
    theirs = _post(client, accounts["b"]["key"], ocr_text="Cheap flights to Rome", external_id="shared-ext")["id"]
    with db.write() as session:  # as the worker leaves a creative whose attempts ran out
        failed = session.get(Creative, mine)
        failed.status, failed.error = "failed", "labelling failed: boom"

    assert client.get(f"/v1/creatives/{mine}", headers=a).json()["account_id"] == accounts["a"]["id"]
    assert client.get(f"/v1/creatives/{mine}/image", headers=a).content == png_bytes("SALE")
    unknown = client.get("/v1/creatives/" + "0" * 32, headers=b)
    for path in (f"/v1/creatives/{mine}", f"/v1/creatives/{mine}/image"):
        other = client.get(path, headers=b)
        assert other.status_code == 404, path
        assert other.json()["error"] == unknown.json()["error"] == "not_found"
        assert other.json()["message"].replace(mine, "") == unknown.json()["message"].replace("0" * 32, "")
    assert client.post(f"/v1/creatives/{mine}/retry", headers=b).status_code == 404
    with db.read() as session:
        assert session.get(Creative, mine).status == "failed"  # B's retry changed nothing
    assert client.post(f"/v1/creatives/{mine}/retry", headers=a).json()["status"] == "queued"

    listed_b = client.get("/v1/creatives", headers=b).json()
    assert [item["id"] for item in listed_b["items"]] == [theirs] and listed_b["total"] == 1
    by_external = client.get("/v1/creatives", headers=a, params={"external_id": "shared-ext"}).json()
    assert [item["id"] for item in by_external["items"]] == [mine]
    other_account = client.get("/v1/creatives", headers=b, params={"account_id": accounts["a"]["id"]})
    assert other_account.status_code == 403 and other_account.json()["detail"]["field"] == "account_id"


def test_idempotency_keys_are_the_accounts(client, keys, accounts, db) -> None:
    body = {"ocr_text": "Cheap flights to Rome", "idempotency_key": "order-42"}
    in_a = _post(client, accounts["a"]["key"], **body)
    in_b = _post(client, accounts["b"]["key"], **body)
    assert in_a["id"] != in_b["id"] and in_a["created"] and in_b["created"]

    second = client.post("/v1/api-keys", headers=headers(keys["admin"]),  # another poster key of account A
                         json={"name": "a again", "role": "poster", "account_id": accounts["a"]["id"]}).json()["key"]
    replay = client.post("/v1/creatives", headers={**headers(second), "Idempotency-Key": "order-42"},
                         json={"ocr_text": "Cheap flights to Rome"})
    assert replay.status_code == 202 and replay.json() == {**in_a, "created": False}
    assert replay.headers["Idempotent-Replayed"] == "true"
    clash = client.post("/v1/creatives", headers={**headers(second), "Idempotency-Key": "order-42"},
                        json={"ocr_text": "Something else"})
    assert clash.status_code == 409
    with db.read() as session:
        rows = session.execute(select(Creative.id, Creative.account_id)).tuples().all()
    assert sorted(rows) == sorted([(in_a["id"], accounts["a"]["id"]), (in_b["id"], accounts["b"]["id"])])


def test_a_batch_is_stored_in_the_posters_account(client, accounts, db) -> None:
    batch = client.post("/v1/creatives/batch", headers=headers(accounts["b"]["key"]),
                        json={"items": [{"ocr_text": f"Buy shoes number {n}"} for n in range(3)]})
    assert batch.status_code == 202
    with db.read() as session:
        owners = {c.id: c.account_id for c in session.scalars(select(Creative))}
    assert owners == {item["id"]: accounts["b"]["id"] for item in batch.json()["items"]}


def test_reviewers_see_every_account_and_filter_by_one(client, keys, accounts) -> None:
    in_a = _post(client, accounts["a"]["key"], ocr_text="Fresh bread daily")["id"]
    in_b = _post(client, accounts["b"]["key"], ocr_text="Fresh fish daily")["id"]
    for staff in ("reviewer", "admin"):
        h = headers(keys[staff])
        assert {item["id"] for item in client.get("/v1/creatives", headers=h).json()["items"]} == {in_a, in_b}
        only_b = client.get("/v1/creatives", headers=h, params={"account_id": accounts["b"]["id"]}).json()
        assert [item["id"] for item in only_b["items"]] == [in_b]
        assert client.get(f"/v1/creatives/{in_a}", headers=h).json()["account_id"] == accounts["a"]["id"]
    unknown = client.get("/v1/creatives", headers=headers(keys["reviewer"]), params={"account_id": 999})
    assert unknown.status_code == 422 and "999" in unknown.json()["message"]
    assert unknown.json()["detail"]["field"] == "account_id"
    huge = client.get("/v1/creatives", headers=headers(keys["reviewer"]), params={"account_id": 2**64})
    assert huge.status_code == 422


def test_the_review_queue_filters_by_account(client, keys, accounts, flag_creative) -> None:
    in_a = flag_creative("Adopt a rescue dog today", {CARS: 0.05, TRAVEL: 0.04}, account_id=accounts["a"]["id"])
    in_b = flag_creative("The new sedan, 300 horsepower", {CARS: 0.6, TRAVEL: 0.3}, asserted=TRAVEL,
                         account_id=accounts["b"]["id"])
    h = headers(keys["reviewer"])
    assert {item["id"] for item in client.get("/v1/review", headers=h).json()["items"]} == {in_a, in_b}
    only_a = client.get("/v1/review", headers=h, params={"account_id": accounts["a"]["id"]}).json()
    assert [item["id"] for item in only_a["items"]] == [in_a] and only_a["total"] == 1
    assert only_a["items"][0]["creative"]["account_id"] == accounts["a"]["id"]
    claimed = client.post("/v1/review/next", headers=h, json={"account_id": accounts["b"]["id"]}).json()
    assert claimed["item"]["id"] == in_b and claimed["remaining"] == 1
    unknown = client.post("/v1/review/next", headers=h, json={"account_id": 999})
    assert unknown.status_code == 422 and "999" in unknown.json()["message"]
    assert client.get("/v1/review", headers=h, params={"account_id": 999}).status_code == 422


def test_the_export_filters_by_account_and_imported_data_has_none(client, keys, accounts, db, settings, tmp_path,
                                                                   flag_creative, pitt_labels) -> None:
    source = tmp_path / "seed.jsonl"
    source.write_text(json.dumps({"id": "ad-1", "texts": ["Fast sedan"], "label": CARS}) + "\n")
    with db.write() as session:
        import_labelled(session, BlobStore(settings.blob_dir), settings, Path(source))
    in_a = flag_creative("A convertible for the road", {CARS: 0.6, TRAVEL: 0.3}, asserted=TRAVEL,
                         external_id="ad-a", account_id=accounts["a"]["id"])
    in_b = flag_creative("Beach holidays, cheap", {CARS: 0.3, TRAVEL: 0.6}, asserted=CARS,
                         external_id="ad-b", account_id=accounts["b"]["id"])
    for item in (in_a, in_b):
        decided = client.post(f"/v1/review/{item}/decision", headers=headers(keys["reviewer"]),
                              json={"action": "confirm"})
        assert decided.status_code == 200, decided.text

    admin = headers(keys["admin"])
    everything = [json.loads(line)["id"] for line in client.get("/v1/export", headers=admin).text.splitlines()]
    assert sorted(everything) == ["ad-1", "ad-a", "ad-b"]
    only_a = client.get("/v1/export", headers=admin, params={"account_id": accounts["a"]["id"]})
    assert [json.loads(line)["id"] for line in only_a.text.splitlines()] == ["ad-a"]
    as_csv = client.get("/v1/export", headers=admin, params={"account_id": accounts["b"]["id"], "format": "csv"})
    assert [row.split(",")[0] for row in as_csv.text.splitlines()[1:]] == ["ad-b"]
    unknown = client.get("/v1/export", headers=admin, params={"account_id": 999})
    assert unknown.status_code == 422 and unknown.json()["detail"]["field"] == "account_id"

    with db.read() as session:
        imported = session.scalar(select(Creative).where(Creative.external_id == "ad-1"))
    assert imported.account_id is None
    for poster in ("a", "b"):  # training data is no poster's
        listed = client.get("/v1/creatives", headers=headers(accounts[poster]["key"])).json()["items"]
        assert imported.id not in {item["id"] for item in listed}
        assert client.get(f"/v1/creatives/{imported.id}", headers=headers(accounts[poster]["key"])).status_code == 404
    assert client.get(f"/v1/creatives/{imported.id}", headers=headers(keys["reviewer"])).json()["account_id"] is None


def test_accounts_are_made_by_admins_and_poster_keys_need_one(client, keys, accounts, db) -> None:
    admin = headers(keys["admin"])
    listed = client.get("/v1/accounts", headers=admin).json()["items"]
    assert [(a["name"], a["kind"]) for a in listed] == [
        ("test advertiser", "advertiser"), ("Account a", "advertiser"), ("Account b", "partner")]
    for role in ("poster", "reviewer"):
        assert client.get("/v1/accounts", headers=headers(keys[role])).status_code == 403
        assert client.post("/v1/accounts", headers=headers(keys[role]),
                           json={"name": "x", "kind": "partner"}).status_code == 403
    twice = client.post("/v1/accounts", headers=admin, json={"name": "Account a", "kind": "partner"})
    assert twice.status_code == 409 and "Account a" in twice.json()["message"]
    bad_kind = client.post("/v1/accounts", headers=admin, json={"name": "z", "kind": "agency"})
    assert bad_kind.status_code == 422 and "kind" in bad_kind.text
    for name in ("Acme\x00", "   "):  # PostgreSQL refuses NUL in text: a 422 here, not a 500 there
        refused = client.post("/v1/accounts", headers=admin, json={"name": name, "kind": "partner"})
        assert refused.status_code == 422 and refused.json()["detail"]["field"] == "name", name

    without = client.post("/v1/api-keys", headers=admin, json={"name": "p", "role": "poster"})
    assert without.status_code == 422 and without.json()["detail"]["field"] == "account_id"
    unknown = client.post("/v1/api-keys", headers=admin, json={"name": "p", "role": "poster", "account_id": 999})
    assert unknown.status_code == 422 and "999" in unknown.json()["message"]
    staff = client.post("/v1/api-keys", headers=admin,
                        json={"name": "r", "role": "reviewer", "account_id": accounts["a"]["id"]})
    assert staff.status_code == 422 and staff.json()["detail"]["field"] == "account_id"
    views = {k["name"]: k for k in client.get("/v1/api-keys", headers=admin).json()["items"]}
    assert views["poster a"]["account"]["id"] == accounts["a"]["id"] and views["test admin"]["account"] is None

    with db.write() as session:  # a poster key row made without create_key's checks
        from ctax.store.keys import hash_key

        session.add(ApiKey(name="orphan", role="poster", key_hash=hash_key("ctax_orphan_key_0000"), prefix="ctax_orph"))
    refused = client.get("/v1/labels", headers=headers("ctax_orphan_key_0000"))
    assert refused.status_code == 403 and "no account" in refused.json()["message"]


def test_a_suspended_accounts_keys_are_refused_until_it_is_resumed_and_nothing_it_holds_is_lost(
        client, keys, accounts, db) -> None:
    admin, a, b = headers(keys["admin"]), headers(accounts["a"]["key"]), headers(accounts["b"]["key"])
    mine = _post(client, accounts["a"]["key"], ocr_text="Cheap flights to Rome")["id"]
    assert client.get(f"/v1/creatives/{mine}", headers=a).status_code == 200  # the key is now in the API's cache
    account = f"/v1/accounts/{accounts['a']['id']}"

    suspended = client.patch(account, headers=admin, json={"status": "suspended"})
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended", suspended.text
    assert suspended.json()["suspended_at"]
    for method, path, body in [("GET", f"/v1/creatives/{mine}", None), ("GET", "/v1/creatives", None),
                               ("POST", "/v1/creatives", {"ocr_text": "More flights"})]:
        refused = client.request(method, path, headers=a, json=body)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["error"] == "account_suspended" and "'Account a'" in refused.json()["message"]
    assert client.get("/v1/creatives", headers=b).status_code == 200  # another account is not touched
    made = client.post("/v1/api-keys", headers=admin,
                       json={"name": "another", "role": "poster", "account_id": accounts["a"]["id"]})
    assert made.status_code == 409 and made.json()["detail"]["field"] == "account_id", made.text

    shown = client.get(account, headers=admin).json()
    assert shown["status"] == "suspended" and shown["keys"] == {"active": 1, "revoked": 0}
    assert shown["creatives"]["total"] == 1 and shown["creatives"]["queued"] == 1
    listed = client.get("/v1/accounts", headers=admin, params={"status": "suspended"}).json()["items"]
    assert [item["id"] for item in listed] == [accounts["a"]["id"]]
    active = client.get("/v1/accounts", headers=admin, params={"status": "active"}).json()["items"]
    assert accounts["b"]["id"] in [item["id"] for item in active]
    assert accounts["a"]["id"] not in [item["id"] for item in active]

    resumed = client.patch(account, headers=admin, json={"status": "active"})
    assert resumed.json()["status"] == "active" and resumed.json()["suspended_at"] is None
    assert client.get(f"/v1/creatives/{mine}", headers=a).status_code == 200  # the same key, unchanged
    with db.read() as session:
        assert session.get(Creative, mine) is not None


def test_an_account_is_renamed_and_unknown_or_taken_names_and_ids_say_so(client, keys, accounts) -> None:
    admin = headers(keys["admin"])
    account = f"/v1/accounts/{accounts['a']['id']}"
    renamed = client.patch(account, headers=admin, json={"name": "Acme Ads"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Acme Ads"
    assert renamed.json()["status"] == "active"
    taken = client.patch(account, headers=admin, json={"name": "Account b"})
    assert taken.status_code == 409 and taken.json()["detail"]["field"] == "name"
    for method in ("GET", "PATCH"):
        missing = client.request(method, "/v1/accounts/9999", headers=admin, json={} if method == "PATCH" else None)
        assert missing.status_code == 404 and "no account 9999" in missing.json()["message"]
    assert client.patch(account, headers=admin, json={"status": "closed"}).status_code == 422
    assert client.patch(account, headers=headers(keys["reviewer"]), json={"status": "suspended"}).status_code == 403
    assert client.get(account, headers=admin).json()["name"] == "Acme Ads"
