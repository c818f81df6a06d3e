"""Hostile input gets a 4xx in the API's JSON error format naming the field and the limit, never a 500, and stores
nothing: numbers beyond what the database holds, deep JSON, invalid UTF-8, lone surrogates, too many segments."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from ctax.store.models import Creative
from tests.conftest import headers

BIG = 2**31  # one more than an INTEGER column holds on PostgreSQL (SQLite overflowed at 2**63)
HUGE = "99999999999999999999"  # beyond 2**64

# (method, path, request arguments, the field the 422 must name)
OUT_OF_RANGE = [
    ("GET", f"/v1/labels/{BIG}", {}, "label_id"),
    ("PATCH", f"/v1/labels/{BIG}", {"json": {"name": "x"}}, "label_id"),
    ("GET", "/v1/labels", {"params": {"parent_id": BIG}}, "parent_id"),
    ("GET", "/v1/labels", {"params": {"offset": BIG}}, "offset"),
    ("GET", "/v1/creatives", {"params": {"offset": BIG}}, "offset"),
    ("GET", f"/v1/review/{BIG}", {}, "item_id"),
    ("POST", f"/v1/review/{BIG}/claim", {}, "item_id"),
    ("DELETE", f"/v1/review/{BIG}/claim", {}, "item_id"),
    ("POST", f"/v1/review/{BIG}/reopen", {}, "item_id"),
    ("POST", f"/v1/review/{BIG}/decision", {"json": {"action": "confirm"}}, "item_id"),
    ("POST", "/v1/review/1/decision", {"json": {"action": "relabel", "label": BIG}}, "label"),
    ("POST", "/v1/review/1/decision", {"json": {"action": "relabel", "label": HUGE}}, "label"),
    ("POST", "/v1/review/1/decision", {"json": {"action": "relabel", "label": "²"}}, "label"),
    ("POST", "/v1/review/1/decision", {"json": {"action": "confirm", "version": BIG}}, "version"),
    ("POST", "/v1/review/bulk", {"json": {"ids": [1, BIG], "action": "confirm"}}, "ids.1"),
    ("POST", "/v1/review/bulk", {"json": {"ids": [1], "action": "relabel", "label": BIG}}, "label"),
    ("GET", "/v1/review", {"params": {"proposal_id": BIG}}, "proposal_id"),
    ("GET", "/v1/review", {"params": {"label": HUGE}}, "label"),
    ("GET", "/v1/review", {"params": {"asserted": HUGE}}, "asserted"),
    ("GET", "/v1/review", {"params": {"min_age_s": 3.5e16}}, "min_age_s"),
    ("GET", "/v1/review", {"params": {"max_age_s": "inf"}}, "max_age_s"),
    ("GET", "/v1/review", {"params": {"min_score": "nan"}}, "min_score"),
    ("GET", "/v1/review", {"params": {"max_score": 1e300}}, "max_score"),
    ("GET", "/v1/review", {"params": {"offset": BIG}}, "offset"),
    ("GET", "/v1/review/decisions", {"params": {"reviewer_key_id": BIG}}, "reviewer_key_id"),
    ("GET", "/v1/review/decisions", {"params": {"item_id": BIG}}, "item_id"),
    ("POST", "/v1/review/next", {"json": {"exclude": [BIG]}}, "exclude.0"),
    ("POST", "/v1/review/next", {"json": {"exclude": list(range(1, 1002))}}, "exclude"),
    ("POST", "/v1/review/next", {"json": {"min_age_s": 3.5e16}}, "min_age_s"),
    ("POST", "/v1/review/next", {"json": {"label": HUGE}}, "label"),
    ("POST", "/v1/review/next", {"json": {"proposal_id": BIG}}, "proposal_id"),
    ("GET", f"/v1/proposals/{BIG}", {}, "proposal_id"),
    ("POST", f"/v1/proposals/{BIG}/accept", {}, "proposal_id"),
    ("POST", f"/v1/proposals/{BIG}/reject", {}, "proposal_id"),
    ("POST", "/v1/proposals/1/accept", {"json": {"parent": BIG}}, "parent"),
    ("POST", "/v1/proposals/1/accept", {"json": {"into": HUGE}}, "into"),
    ("POST", "/v1/proposals/1/accept", {"json": {"members": ["x"] * 1001}}, "members"),
    ("DELETE", f"/v1/api-keys/{BIG}", {}, "key_id"),
    ("GET", f"/v1/training/runs/{BIG}", {}, "run_id"),
    ("POST", "/v1/training/runs", {"json": {"seed": 2**32}}, "seed"),
    ("POST", "/v1/creatives", {"json": {"ocr_text": "Fresh pizza", "asserted_label": BIG}}, "asserted_label"),
    ("POST", "/v1/creatives", {"json": {"ocr_text": "Fresh pizza", "asserted_label": HUGE}}, "asserted_label"),
    # Parts without a file name: multipart text fields.
    ("POST", "/v1/creatives", {"files": {"ocr_text": (None, "Fresh pizza"), "asserted_label": (None, HUGE)}},
     "asserted_label"),
    ("POST", "/v1/creatives/batch", {"json": {"items": [{"ocr_text": "Pizza", "asserted_label": BIG}]}},
     "items.0.asserted_label"),
]


def _count(db) -> int:
    with db.read() as session:
        return session.scalar(select(func.count(Creative.id)))


@pytest.mark.parametrize("method,path,kwargs,field", OUT_OF_RANGE,
                         ids=[f"{m} {p.replace(str(BIG), 'BIG')} {f}" for m, p, _, f in OUT_OF_RANGE])
def test_numbers_out_of_range_are_a_422_naming_the_field(client, keys, db, method, path, kwargs, field) -> None:
    response = client.request(method, path, headers=headers(keys["admin"]), **kwargs)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_input" and body["message"].startswith(f"{field}:"), body
    assert _count(db) == 0


# Text PostgreSQL cannot store (NUL) or no UTF-8 encoder takes (a lone surrogate, sent as its JSON escape).
UNSTORABLE = [
    ("GET", "/v1/labels", {"params": {"q": "a\x00b"}}, "q"),
    ("GET", "/v1/creatives", {"params": {"external_id": "a\x00b"}}, "external_id"),
    ("GET", "/v1/creatives/a%00b", {}, "creative_id"),
    ("GET", "/v1/models/a%00b", {}, "version_id"),
    ("GET", "/v1/review", {"params": {"q": "a\x00b"}}, "q"),
    ("GET", "/v1/review", {"params": {"label": "A\x00B"}}, "label"),
    ("POST", "/v1/labels", {"content": b'{"path": "A\\ud800B"}'}, "path"),
    ("PATCH", "/v1/labels/1", {"content": b'{"description": "a\\u0000b"}'}, "description"),
    ("POST", "/v1/review/1/decision", {"content": b'{"action": "reject", "note": "a\\u0000b"}'}, "note"),
    ("POST", "/v1/review/1/decision", {"content": b'{"action": "reject", "note": "a\\udc00b"}'}, "note"),
    ("POST", "/v1/review/next", {"content": b'{"q": "a\\u0000b"}'}, "q"),
    ("POST", "/v1/proposals/1/accept", {"content": b'{"members": ["a\\u0000b"]}'}, "members.0"),
    ("POST", "/v1/creatives", {"content": b'{"ocr_text": "Fresh pizza", "asserted_label": "A\\u0000B"}'},
     "asserted_label"),
]


@pytest.mark.parametrize("method,path,kwargs,field", UNSTORABLE, ids=[f"{m} {p} {f}" for m, p, _, f in UNSTORABLE])
def test_text_no_database_stores_is_a_422_naming_the_field(client, keys, method, path, kwargs, field) -> None:
    h = {**headers(keys["admin"]), "Content-Type": "application/json"}
    response = client.request(method, path, headers=h, **kwargs)
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith(f"{field}: text must not contain"), response.json()


def test_an_idempotency_key_with_nul_is_refused(client, keys, db) -> None:
    response = client.post("/v1/creatives", headers={**headers(keys["poster"]), "Idempotency-Key": "k\x00"},
                           json={"ocr_text": "Fresh pizza"})
    assert response.status_code == 422 and "Idempotency-Key" in response.json()["message"]
    assert _count(db) == 0


def test_the_limit_is_named_too(client, keys) -> None:
    h = headers(keys["admin"])
    assert "2147483647" in client.get(f"/v1/labels/{BIG}", headers=h).json()["message"]
    assert client.get(f"/v1/labels/{2**63}", headers=h).status_code == 422
    assert "1000" in client.post("/v1/review/next", headers=h, json={"exclude": list(range(1, 1002))}).json()[
        "message"]
    assert "3155760000" in client.get("/v1/review", headers=h, params={"min_age_s": 3.5e16}).json()["message"]


def test_numbers_within_range_still_work(client, keys, pitt_labels) -> None:
    h = headers(keys["admin"])
    some_id = next(iter(pitt_labels.values()))
    assert client.get(f"/v1/labels/{some_id}", headers=h).status_code == 200
    assert client.get(f"/v1/labels/{BIG - 1}", headers=h).status_code == 404
    assert client.get("/v1/review", headers=h, params={"min_age_s": 3600, "max_score": 0.9,
                                                       "label": str(some_id)}).status_code == 200
    assert client.post("/v1/review/next", headers=h, json={"exclude": list(range(1, 1001))}).status_code == 200


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("path,body", [
    ("/v1/creatives", '{"ocr_text": "Fresh pizza", "metadata": {"a": ' + _deep(50_000) + "}}"),
    ("/v1/creatives/batch", '{"items": [{"ocr_text": "Fresh pizza", "metadata": {"a": ' + _deep(50_000) + "}}]}"),
    ("/v1/review/next", '{"exclude": ' + _deep(50_000) + "}"),
    ("/v1/labels", '{"path": ' + _deep(50_000) + "}"),
], ids=["creative", "batch", "review-next", "labels"])
def test_deeply_nested_json_is_a_422(client, keys, db, path: str, body: str) -> None:
    h = {**headers(keys["admin"]), "Content-Type": "application/json"}
    response = client.post(path, headers=h, content=body.encode())
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_input" and "nested too deeply" in response.json()["message"]
    assert _count(db) == 0


def test_metadata_nested_past_its_limit_is_a_422(client, keys, db) -> None:
    metadata: object = "leaf"
    for _ in range(20):
        metadata = {"a": metadata}
    response = client.post("/v1/creatives", headers=headers(keys["poster"]),
                           json={"ocr_text": "Fresh pizza", "metadata": metadata})
    assert response.status_code == 422 and "more than 16 levels" in response.json()["message"]
    assert _count(db) == 0


@pytest.mark.parametrize("path,body,words", [
    ("/v1/creatives", b'{"ocr_text": "Fresh pizza", "metadata": {"n": ' + b"9" * 5000 + b"}}",
     "a number has more than 4300 digits"),
    ("/v1/review/next", b'{"proposal_id": ' + b"9" * 5000 + b"}", "a number has more than 4300 digits"),
    ("/v1/creatives", b'{"ocr_text": "Caf\xe9 sale"}', "it is not UTF-8"),
    ("/v1/labels", b'{"path": "Caf\xe9"}', "it is not UTF-8"),
], ids=["creative-digits", "review-digits", "creative-latin1", "labels-latin1"])
def test_json_that_does_not_parse_is_a_422_saying_why(client, keys, db, path: str, body: bytes, words: str) -> None:
    h = {**headers(keys["admin"]), "Content-Type": "application/json"}
    response = client.post(path, headers=h, content=body)
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("invalid JSON body: " + words), response.json()
    assert _count(db) == 0


def _multipart(fields: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "ctaxboundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
             for name, value in fields]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_invalid_utf8_in_a_multipart_text_field_is_a_422(client, keys, db) -> None:
    body, content_type = _multipart([("ocr_text", b"Caf\xe9 sale \xff\xfe today")])
    response = client.post("/v1/creatives", headers={**headers(keys["poster"]), "Content-Type": content_type},
                           content=body)
    assert response.status_code == 422, response.text
    assert response.json()["message"] == "ocr_text is not valid UTF-8 text"
    assert _count(db) == 0
    good, content_type = _multipart([("ocr_text", "Café ☕ sale today".encode())])
    accepted = client.post("/v1/creatives", headers={**headers(keys["poster"]), "Content-Type": content_type},
                           content=good)
    assert accepted.status_code == 202
    stored = client.get(f"/v1/creatives/{accepted.json()['id']}", headers=headers(keys["poster"])).json()
    assert stored["texts"] == ["Café ☕ sale today"]


@pytest.mark.parametrize("body,words", [
    ({"ocr_text": "Great pizza deals \ud800 today"}, "surrogate"),
    ({"ocr_text": "Great pizza", "external_id": "a\x00b"}, "external_id"),
    ({"ocr_text": "Great pizza", "metadata": {"k": "a\x00b"}}, "NUL"),
    ({"texts": ["abcd"] * 5000}, "5000 text segments; the limit is 32"),
])
def test_text_that_no_database_stores_or_too_many_segments_are_refused(client, keys, db, body, words) -> None:
    response = client.post("/v1/creatives", headers={**headers(keys["poster"]), "Content-Type": "application/json"},
                           content=json.dumps(body).encode())
    assert response.status_code in (413, 422), response.text
    assert words in response.json()["message"]
    assert _count(db) == 0


def test_real_ads_with_runs_of_spaces_or_many_emoji_are_accepted(client, keys) -> None:
    spaced = "Buy one pizza, get one FREE!" + " " * 300 + "Tony's Pizzeria, open late"
    emoji = "❤️❤️❤️❤️❤️❤️❤️❤️❤️❤️ Mom ❤️❤️❤️❤️❤️❤️❤️❤️❤️❤️"
    response = client.post("/v1/creatives/batch", headers=headers(keys["poster"]),
                           json={"items": [{"ocr_text": spaced}, {"ocr_text": emoji}]})
    assert response.status_code == 202, response.text


def test_a_server_error_is_json_in_the_same_format(settings, db) -> None:
    from fastapi.testclient import TestClient

    from ctax.api.app import create_app

    app = create_app(settings, start_dispatcher=False)

    def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/v1/broken", broken)  # a route with a bug, to see what any unforeseen failure answers
    with TestClient(app, raise_server_exceptions=False) as raw:
        response = raw.get("/v1/broken")
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "internal_error",
                               "message": "internal error while answering GET /v1/broken; it was logged"}
