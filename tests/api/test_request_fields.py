"""A field the API does not know, a text field sent as a file, or a single field sent twice is a 422 naming the
field, and nothing is stored. They were silently dropped: a misspelt `asserted_lable` stored the creative without
its claim, `versoin` skipped the stale-decision check, and `-F ocr_text=@file` answered "empty creative".
A 422 speaks of the request, not of pydantic ("Value error, ...", "at most 2000 items after validation")."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from ctax.store.models import Account, ApiKey, Creative, Label, TrainingRun
from tests.conftest import headers

UNKNOWN_JSON = [
    ("POST", "/v1/creatives", {"ocr_text": "Fresh pizza", "asserted_lable": "PSA/Animal Rights"}, "asserted_lable"),
    ("POST", "/v1/creatives/batch", {"items": [{"ocr_text": "Pizza"}, {"ocr_text": "Shoes", "colour": 1}]},
     "items.1.colour"),
    ("POST", "/v1/accounts", {"name": "Acme", "kind": "advertiser", "colour": "red"}, "colour"),
    ("POST", "/v1/api-keys", {"name": "ad server", "role": "reviewer", "acount_id": 1}, "acount_id"),
    ("POST", "/v1/labels", {"path": "Product/Pizza", "descripton": "pies"}, "descripton"),
    ("PATCH", "/v1/labels/1", {"descripton": "pies"}, "descripton"),
    ("POST", "/v1/review/1/decision", {"action": "confirm", "versoin": 3}, "versoin"),
    ("POST", "/v1/review/bulk", {"ids": [1], "action": "confirm", "labl": "A"}, "labl"),
    ("POST", "/v1/review/next", {"flags": "new_label"}, "flags"),
    ("POST", "/v1/proposals/discover", {"min_cluster": 3}, "min_cluster"),
    ("POST", "/v1/proposals/1/accept", {"nam": "Pizza"}, "nam"),
    ("POST", "/v1/training/runs", {"epoch": 2}, "epoch"),
    ("POST", "/v1/models/v1/promote", {"forced": True}, "forced"),
    ("POST", "/v1/search", {"text": "pizza", "filters": {"labels": "A"}}, "filters.labels"),
]


def _counts(db) -> tuple[int, ...]:
    with db.read() as session:
        return tuple(session.scalar(select(func.count()).select_from(table))
                     for table in (Creative, Account, ApiKey, Label, TrainingRun))


@pytest.mark.parametrize("method,path,body,field", UNKNOWN_JSON, ids=[f"{m} {p} {f}" for m, p, _, f in UNKNOWN_JSON])
def test_an_unknown_json_field_is_a_422_naming_it(client, keys, db, method, path, body, field) -> None:
    before = _counts(db)
    response = client.request(method, path, headers=headers(keys["admin"]), json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["error"] == "invalid_input" and answer["message"].startswith(f"{field}: unknown field"), answer
    assert answer["detail"]["field"] == field
    assert _counts(db) == before


@pytest.mark.parametrize("parts,field,words", [
    ({"ocr_text": (None, "Fresh pizza"), "asserted_lable": (None, "PSA/Animal Rights")}, "asserted_lable",
     "unknown field 'asserted_lable': a multipart creative has the fields image, ocr_text, asserted_label"),
    ({"texts": (None, "Fresh pizza")}, "texts", "unknown field 'texts'"),
    ({"ocr_text": ("ad.txt", b"Fresh pizza", "text/plain")}, "ocr_text",
     "ocr_text must be a text field, not a file (curl: -F 'ocr_text=<file'"),
    ({"ocr_text": (None, "Fresh pizza"), "external_id": ("id.txt", b"ad-1")}, "external_id",
     "external_id must be a text field, not a file"),
    ({"ocr_text": (None, "Fresh pizza"), "metadata": ("m.json", b"{}")}, "metadata",
     "metadata must be a text field, not a file"),
    ([("ocr_text", (None, "Fresh pizza")), ("asserted_label", (None, "PSA/Animal Rights")),
      ("asserted_label", (None, "Product/Vehicles/Cars"))], "asserted_label",
     "asserted_label is given 2 times; send it once"),
    ([("image", ("a.png", b"\x89PNG")), ("image", ("b.png", b"\x89PNG"))], "image", "image is given 2 times"),
], ids=["misspelt claim", "texts (the JSON name)", "ocr_text file", "external_id file", "metadata file",
        "claim twice", "two images"])
def test_a_multipart_part_that_is_no_field_of_a_creative_is_a_422_naming_it(client, keys, db, parts, field,
                                                                             words) -> None:
    before = _counts(db)
    response = client.post("/v1/creatives", headers=headers(keys["poster"]), files=parts)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["message"].startswith(words), answer
    assert answer["detail"]["field"] == field
    assert _counts(db) == before


@pytest.mark.parametrize("parts,field,words", [
    ([("file", ("t.txt", b"Product/Pizza\n")), ("fromat", (None, "lines"))], "fromat",
     "unknown field 'fromat': a taxonomy import has the fields file and format"),
    ([("file", ("a.txt", b"Product/Pizza\n")), ("file", ("b.txt", b"Product/Pasta\n"))], "file",
     "file is given 2 times; send it once"),
], ids=["misspelt format", "two files"])
def test_a_taxonomy_import_part_it_does_not_read_is_a_422_and_nothing_is_imported(client, keys, db, parts, field,
                                                                                  words) -> None:
    before = _counts(db)
    response = client.post("/v1/labels/import", headers=headers(keys["admin"]), files=parts)
    assert response.status_code == 422, response.text
    assert response.json()["message"] == words and response.json()["detail"]["field"] == field
    assert _counts(db) == before
    imported = client.post("/v1/labels/import", headers=headers(keys["admin"]), files=parts[:1])
    assert imported.status_code == 200 and imported.json()["created"] >= 1, imported.text


def test_repeated_ocr_text_parts_are_the_creatives_segments(client, keys) -> None:
    h = headers(keys["poster"])
    response = client.post("/v1/creatives", headers=h, files=[("ocr_text", (None, "Fresh pizza")),
                                                              ("ocr_text", (None, "Order tonight")),
                                                              ("external_id", (None, "ad-7"))])
    assert response.status_code == 202, response.text
    stored = client.get(f"/v1/creatives/{response.json()['id']}", headers=h).json()
    assert stored["texts"] == ["Fresh pizza", "Order tonight"] and stored["external_id"] == "ad-7"


def test_pydantic_s_wording_is_not_the_client_s(client, keys) -> None:
    h = headers(keys["admin"])
    text_for_file = client.post("/v1/labels/import", headers=h, files={"file": (None, "Product/Pizza")}).json()
    assert text_for_file["message"] == ("file: must be a file upload (a multipart part with a file name), "
                                        "not a text field"), text_for_file
    nothing = client.post("/v1/search", headers=h, json={}).json()
    assert nothing["message"].startswith("request: nothing to search for"), nothing


@pytest.mark.parametrize("method,path,kwargs,message", [
    ("PATCH", "/v1/labels/1", {"json": {"description": "x" * 2001}},
     "description: String should have at most 2000 characters"),
    ("PATCH", "/v1/labels/1", {"json": {"name": ""}}, "name: String should have at least 1 character"),
    ("GET", "/v1/labels", {"params": {"q": "x" * 201}}, "q: String should have at most 200 characters"),
    ("GET", "/v1/review", {"params": {"q": "x" * 201}}, "q: String should have at most 200 characters"),
    ("GET", "/v1/creatives", {"params": {"campaign": "x" * 201}}, "campaign: String should have at most 200"),
    ("POST", "/v1/search", {"json": {"text": "x" * 2001}}, "text: String should have at most 2000 characters"),
], ids=["description", "empty name", "labels q", "review q", "campaign", "search text"])
def test_a_bound_on_text_is_said_in_characters(client, keys, db, method, path, kwargs, message) -> None:
    before = _counts(db)
    response = client.request(method, path, headers=headers(keys["admin"]), **kwargs)
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith(message), response.json()
    assert _counts(db) == before


UNKNOWN_QUERY = [
    ("GET", "/v1/creatives?stauts=labelled", "stauts", "did you mean 'status'?"),
    ("GET", "/v1/creatives?status=labelled&acount_id=1", "acount_id", "did you mean 'account_id'?"),
    ("GET", "/v1/review?lable=PSA%2FAnimal%20Rights", "lable", "did you mean 'label'?"),
    ("GET", "/v1/labels?parent=3", "parent", "did you mean 'parent_id'?"),
    ("GET", "/v1/export?formt=csv", "formt", "did you mean 'format'?"),
    ("GET", "/v1/training/runs?limt=5", "limt", "did you mean 'limit'?"),
    ("GET", "/v1/models?colour=red", "colour", "(this route takes no query parameters)"),
    ("POST", "/v1/review/next?flag=new_label", "flag", "(this route takes no query parameters)"),
]


@pytest.mark.parametrize("method,url,name,words", UNKNOWN_QUERY, ids=[u for _, u, _, _ in UNKNOWN_QUERY])
def test_an_unknown_query_parameter_is_a_422_naming_it_and_the_one_meant(client, keys, method, url, name,
                                                                         words) -> None:
    """`?stauts=labelled` listed every creative: a misspelt filter was a filter lost without a word."""
    response = client.request(method, url, headers=headers(keys["admin"]), json={} if method == "POST" else None)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["error"] == "invalid_input" and answer["detail"]["field"] == name, answer
    assert answer["message"].startswith(f"{name}: unknown query parameter") and words in answer["message"], answer


def test_every_unknown_query_parameter_is_named_and_the_known_ones_still_filter(client, keys) -> None:
    admin = headers(keys["admin"])
    answer = client.get("/v1/creatives?stauts=x&limit=5&colour=red&colour=blue", headers=admin).json()
    assert answer["message"].count("unknown query parameter") == 2, answer
    assert answer["message"].startswith("stauts: ") and "; colour: " in answer["message"]
    assert "this route takes status, flag, external_id, campaign, limit, offset, account_id" in answer["message"]
    posted = client.post("/v1/creatives", headers=headers(keys["poster"]), json={"ocr_text": "Fresh pizza"})
    assert posted.status_code in (201, 202), posted.text
    listed = client.get("/v1/creatives?status=labelled&limit=5&offset=0", headers=admin)
    assert listed.status_code == 200 and listed.json()["items"] == []  # the filter is read: nothing is labelled
    assert len(client.get("/v1/creatives?limit=5", headers=admin).json()["items"]) == 1


def test_pages_and_their_files_take_what_browsers_add(client) -> None:
    for url in ("/review?utm_source=mail", "/map?x=1", "/healthz?probe=k8s"):
        assert client.get(url).status_code == 200, url
    busted = re.search(r'"(/review/static/review\.js\?v=[^"]+)"', client.get("/review").text)
    assert busted and client.get(busted.group(1)).status_code == 200  # the page's own cache-buster
