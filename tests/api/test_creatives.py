"""Posting creatives: accepted at once, idempotent, and every kind of bad input refused with nothing stored."""

from __future__ import annotations

import base64
import io
import zlib

import pytest
from PIL import Image
from sqlalchemy import func, select

from ctax.store.models import Creative
from ctax.store.session import Database
from tests.conftest import headers, png_bytes


def _count(db) -> int:
    with db.read() as session:
        return session.scalar(select(func.count(Creative.id)))


def test_multipart_json_and_batch_are_accepted_with_202(client, keys, db, pitt_labels) -> None:
    h = headers(keys["poster"])
    image = client.post("/v1/creatives", headers=h, files={"image": ("ad.png", png_bytes("SALE"), "image/png")},
                        data={"asserted_label": "Product/Vehicles/Cars", "external_id": "ad-1",
                              "metadata": '{"campaign": 7}'})
    assert image.status_code == 202, image.text
    assert image.json()["status"] == "queued"
    text = client.post("/v1/creatives", headers=h, json={"ocr_text": "Fresh coffee every morning",
                                                          "metadata": {"market": "UK"}})
    assert text.status_code == 202
    both = client.post("/v1/creatives", headers=h, json={
        "image_base64": base64.b64encode(png_bytes("Cola", fmt="JPEG")).decode(), "texts": ["Cola", "Ice cold"]})
    assert both.status_code == 202
    batch = client.post("/v1/creatives/batch", headers=h, json={"items": [
        {"ocr_text": f"Buy shoes number {n}"} for n in range(5)]})
    assert batch.status_code == 202 and len(batch.json()["items"]) == 5

    got = client.get(f"/v1/creatives/{image.json()['id']}", headers=h).json()
    assert got["asserted_label"]["path"] == "Product/Vehicles/Cars"
    assert got["image"]["mime"] == "image/png" and got["metadata"] == {"campaign": 7}
    assert client.get(got["image"]["url"], headers=h).content == png_bytes("SALE")
    assert client.get(f"/v1/creatives/{both.json()['id']}", headers=h).json()["texts"] == ["Cola", "Ice cold"]
    assert _count(db) == 8


def test_a_creative_may_name_its_campaign_and_a_bad_one_is_refused_naming_it(client, keys, db) -> None:
    h = headers(keys["poster"])
    posted = client.post("/v1/creatives", headers=h, json={"ocr_text": "Spring sale on sofas", "campaign": "sofa-q2"})
    form = client.post("/v1/creatives", headers=h, data={"ocr_text": "Sofas, now 20% off", "campaign": "sofa-q2"},
                       files={"image": ("ad.png", png_bytes("SOFA"), "image/png")})
    batch = client.post("/v1/creatives/batch", headers=h, json={"items": [
        {"ocr_text": "Sofa sale ends Sunday", "campaign": "sofa-q2"}, {"ocr_text": "Fresh coffee"}]})
    assert posted.status_code == form.status_code == batch.status_code == 202, (posted.text, form.text, batch.text)
    ids = [posted.json()["id"], form.json()["id"], *[item["id"] for item in batch.json()["items"]]]
    assert [client.get(f"/v1/creatives/{cid}", headers=h).json()["campaign"] for cid in ids] == [
        "sofa-q2", "sofa-q2", "sofa-q2", None]
    listed = client.get("/v1/creatives", headers=h, params={"campaign": "sofa-q2"}).json()
    assert listed["total"] == 3 and {c["id"] for c in listed["items"]} == set(ids[:3])
    assert client.get("/v1/creatives", headers=h, params={"campaign": "chairs"}).json()["total"] == 0
    for campaign, words in (("", "campaign must be a non-empty string"), (" ", "campaign must be a non-empty"),
                            ("x" * 201, "campaign"), (7, "campaign"), ("a\x00b", "campaign must be")):
        refused = client.post("/v1/creatives", headers=h, json={"ocr_text": "Sofa sale", "campaign": campaign})
        assert refused.status_code == 422, (campaign, refused.text)
        assert words in refused.json()["message"]
    assert _count(db) == 4


def test_idempotency_key_returns_the_same_creative(client, keys, db) -> None:
    h = {**headers(keys["poster"]), "Idempotency-Key": "order-42"}
    first = client.post("/v1/creatives", headers=h, json={"ocr_text": "Cheap flights to Rome"})
    second = client.post("/v1/creatives", headers=h, json={"ocr_text": "Cheap flights to Rome"})
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"] and second.json()["created"] is False
    assert second.headers["Idempotent-Replayed"] == "true"
    clash = client.post("/v1/creatives", headers=h, json={"ocr_text": "Something else"})
    assert clash.status_code == 409
    other_key = client.post("/v1/creatives", headers={**headers(keys["admin"]), "Idempotency-Key": "order-42"},
                            json={"ocr_text": "Cheap flights to Rome"})
    assert other_key.json()["id"] != first.json()["id"]  # keys are scoped to the API key that sent them
    assert _count(db) == 2


def test_a_lost_idempotency_race_answers_with_the_winners_creative(client, keys, db, monkeypatch) -> None:
    from ctax.store.repos import creatives as creative_rows

    h = {**headers(keys["poster"]), "Idempotency-Key": "race-7"}
    winner = client.post("/v1/creatives", headers=h, json={"ocr_text": "Cheap flights to Rome"})
    assert winner.status_code == 202
    real_lookup = creative_rows.by_idempotency_key

    def missed_once(session, api_key_id, key):  # as if the winner had not committed yet when this one looked
        missed_once.calls += 1
        return None if missed_once.calls == 1 else real_lookup(session, api_key_id, key)

    missed_once.calls = 0
    monkeypatch.setattr(creative_rows, "by_idempotency_key", missed_once)
    loser = client.post("/v1/creatives", headers=h, json={"ocr_text": "Cheap flights to Rome"})
    assert loser.status_code == 202, loser.text
    assert loser.json() == {**winner.json(), "created": False}
    assert loser.headers["Idempotent-Replayed"] == "true"

    missed_once.calls = 0  # the winner sent another request under the same key: a conflict, not a replay
    clash = client.post("/v1/creatives", headers=h, json={"ocr_text": "Something else"})
    assert clash.status_code == 409 and "different request" in clash.json()["message"]
    assert _count(db) == 1


def test_listing_filters_retry_and_queue_metrics(client, keys, db) -> None:
    h = headers(keys["poster"])
    ids = [client.post("/v1/creatives", headers=h, json={"ocr_text": f"Fresh bread number {n}",
                                                         "external_id": f"bread-{n}"}).json()["id"] for n in range(3)]
    with db.write() as session:  # as the worker leaves a creative whose attempts ran out
        failed = session.get(Creative, ids[0])
        failed.status, failed.error, failed.attempts = "failed", "labelling failed: boom", 3

    queued = client.get("/v1/creatives", headers=h, params={"status": "queued", "limit": 1}).json()
    assert queued["total"] == 2 and [item["id"] for item in queued["items"]] == [ids[2]]  # newest first
    by_external = client.get("/v1/creatives", headers=h, params={"external_id": "bread-1"}).json()
    assert [item["id"] for item in by_external["items"]] == [ids[1]]
    assert client.get("/v1/creatives", headers=h, params={"status": "done"}).status_code == 422
    assert client.get("/v1/creatives", headers=h, params={"flag": "odd"}).status_code == 422
    assert 'ctax_creatives{status="failed"} 1.0' in client.get("/metrics", headers=headers(keys["reviewer"])).text

    retried = client.post(f"/v1/creatives/{ids[0]}/retry", headers=h)
    assert retried.status_code == 202 and retried.json() == {"id": ids[0], "status": "queued", "created": False}
    again = client.get(f"/v1/creatives/{ids[0]}", headers=h).json()
    assert again["status"] == "queued" and again["attempts"] == 0 and again["error"] is None
    refused = client.post(f"/v1/creatives/{ids[0]}/retry", headers=h)
    assert refused.status_code == 409 and "only failed creatives" in refused.json()["message"]
    assert 'ctax_creatives{status="queued"} 3.0' in client.get("/metrics", headers=headers(keys["reviewer"])).text


def test_waiting_creatives_leave_in_batches_and_lost_work_is_sent_again(db, settings, tmp_path) -> None:
    import datetime as dt

    from ctax.creatives.intake import CreativeSubmission, create_creative, dispatch
    from ctax.jobs import LABEL_CREATIVES
    from ctax.store.blobs import BlobStore
    from ctax.store.types import utcnow

    settings = settings.model_copy(update={"label_batch_size": 2})
    with db.write() as session:
        ids = [create_creative(session, BlobStore(tmp_path / "blobs"), settings,
                               CreativeSubmission(texts=[f"Fresh bread number {n}"]), None)[0].id for n in range(3)]
    sent: list[tuple[str, list[str], str]] = []
    assert dispatch(db, lambda task, args, queue: sent.append((task, args[0], queue)), settings) == 3
    assert [batch for _, batch, _ in sent] == [ids[:2], ids[2:]]  # oldest first, label_batch_size per message
    assert {(task, queue) for task, _, queue in sent} == {(LABEL_CREATIVES, settings.label_queue)}
    assert dispatch(db, lambda *_: None, settings) == 0  # sent work is not sent twice

    with db.write() as session:  # a worker claimed one and died: its lease runs out
        stale = session.get(Creative, ids[1])
        stale.status, stale.claimed_by = "processing", "dead-worker"
        stale.claimed_at = utcnow() - dt.timedelta(seconds=settings.lease_s + 1)
        stale.dispatched_at = stale.claimed_at - dt.timedelta(seconds=1)
    sent.clear()
    assert dispatch(db, lambda task, args, queue: sent.append((task, args[0], queue)), settings) == 1
    assert sent[0][1] == [ids[1]]
    assert dispatch(db, lambda *_: None, settings) == 0  # resent once per lease


def _bomb() -> bytes:
    """A PNG whose header claims 30000 x 30000 pixels (900 MP) in a few kilobytes."""
    small = io.BytesIO()
    Image.new("L", (1, 1)).save(small, "PNG")
    data = bytearray(small.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4: ihdr + 12] = (30000).to_bytes(4, "big") + (30000).to_bytes(4, "big")
    crc = zlib.crc32(bytes(data[ihdr: ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17: ihdr + 21] = crc.to_bytes(4, "big")
    return bytes(data)


BAD_IMAGES = {
    "corrupt": (b"\x89PNG\r\n\x1a\nthis is not really a png", 415, "readable"),
    "truncated": (png_bytes("cut", size=(400, 400))[:300], 422, "truncated"),
    "bomb": (_bomb(), 413, "pixels"),
    "gif": (None, 415, "GIF"),
    "empty": (b"", 422, "empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_images_are_refused_and_nothing_is_stored(client, keys, db, settings, case: str) -> None:
    data, status, words = BAD_IMAGES[case]
    if data is None:
        buffer = io.BytesIO()
        Image.new("RGB", (10, 10)).save(buffer, "GIF")
        data = buffer.getvalue()
    response = client.post("/v1/creatives", headers=headers(keys["poster"]),
                           files={"image": ("x.png", data, "image/png")}, data={"ocr_text": "hello there"})
    assert response.status_code == status, response.text
    assert words.lower() in response.json()["message"].lower()
    assert _count(db) == 0
    assert not any(settings.blob_dir.rglob("*")) or all(p.is_dir() for p in settings.blob_dir.rglob("*"))


def test_oversized_image_and_text_are_refused(keys, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from ctax.api.app import create_app
    from ctax.store.keys import create_account, create_key
    from ctax.store.migrate import upgrade
    from tests.conftest import make_settings

    small = make_settings(tmp_path / "small", max_image_bytes=2048, max_text_chars=50)
    small.ensure_dirs()
    upgrade(small.sqlalchemy_url)
    small_db = Database(small.sqlalchemy_url)
    with small_db.write() as session:
        _, key = create_key(session, "p", "poster", account_id=create_account(session, "a", "advertiser").id)
    with TestClient(create_app(small)) as small_client:
        big = small_client.post("/v1/creatives", headers=headers(key),
                                files={"image": ("a.png", png_bytes("x", size=(900, 900)), "image/png")})
        assert big.status_code == 413 and "2048" in big.json()["message"]
        long_text = small_client.post("/v1/creatives", headers=headers(key), json={"ocr_text": "word " * 40})
        assert long_text.status_code == 413 and "50" in long_text.json()["message"]
    assert _count(small_db) == 0


@pytest.mark.parametrize("body,status,words", [
    ({}, 422, "empty creative"),
    ({"ocr_text": "   "}, 422, "empty creative"),
    ({"ocr_text": "\x00\x01\x02binary"}, 422, "NUL"),
    ({"ocr_text": "%%%%%%%%%%%%%%%%%%%%%%%%%$$$$$$$$$$$$$"}, 422, "letters"),
    ({"ocr_text": 12345}, 422, "ocr_text"),
    ({"ocr_text": "Great pizza", "asserted_label": "Product/Nope"}, 422, "unknown label"),
    ({"ocr_text": "Great pizza", "metadata": ["not", "an", "object"]}, 422, "metadata"),
    ({"image_base64": "!!!not base64!!!"}, 422, "base64"),
])
def test_bad_json_fields_are_refused(client, keys, db, pitt_labels, body, status, words) -> None:
    response = client.post("/v1/creatives", headers=headers(keys["poster"]), json=body)
    assert response.status_code == status, response.text
    assert words.lower() in response.json()["message"].lower()
    assert _count(db) == 0


def test_invalid_json_and_content_type(client, keys, db) -> None:
    h = {**headers(keys["poster"]), "Content-Type": "application/json"}
    broken = client.post("/v1/creatives", headers=h, content=b'{"ocr_text": "unterminated')
    assert broken.status_code == 422 and "JSON" in broken.json()["message"]
    wrong = client.post("/v1/creatives", headers={**headers(keys["poster"]), "Content-Type": "text/plain"},
                        content=b"hello")
    assert wrong.status_code == 415
    assert _count(db) == 0


def test_a_batch_with_one_bad_item_stores_none(client, keys, db) -> None:
    response = client.post("/v1/creatives/batch", headers=headers(keys["poster"]), json={"items": [
        {"ocr_text": "Good item"}, {"ocr_text": ""}, {"ocr_text": "Another good item"}]})
    assert response.status_code == 422 and "items[1]" in response.json()["message"]
    assert _count(db) == 0
    assert client.post("/v1/creatives/batch", headers=headers(keys["poster"]),
                       json={"items": []}).status_code == 422


def test_auth_is_required_and_roles_checked(client, keys) -> None:
    assert client.post("/v1/creatives", json={"ocr_text": "x y z"}).status_code == 401
    assert client.get("/v1/creatives/abc", headers=headers(keys["poster"])).status_code == 404
    assert client.post("/v1/training/runs", headers=headers(keys["reviewer"])).status_code == 403
    assert client.post("/v1/api-keys", headers=headers(keys["reviewer"]),
                       json={"name": "x", "role": "admin"}).status_code == 403
    account = client.post("/v1/accounts", headers=headers(keys["admin"]), json={"name": "ci", "kind": "partner"})
    made = client.post("/v1/api-keys", headers=headers(keys["admin"]),
                       json={"name": "ci", "role": "poster", "account_id": account.json()["id"]})
    assert made.status_code == 201
    new_key = made.json()["key"]
    assert client.get("/v1/labels", headers=headers(new_key)).status_code == 200
    client.delete(f"/v1/api-keys/{made.json()['id']}", headers=headers(keys["admin"]))
    assert client.get("/v1/labels", headers=headers(new_key)).status_code == 401
