"""The OpenAPI document: it declares how a key is sent, names it on exactly the operations that refuse a request
without one, and every reference in it resolves."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from tests.conftest import headers

KEY_SCHEMES = [{"ApiKey": []}, {"BearerKey": []}]


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolves(document: dict[str, Any], ref: str) -> bool:
    if not ref.startswith("#/"):
        return False
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_the_document_declares_the_key_schemes(client) -> None:
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["ApiKey"] | {"description": ""} == {"type": "apiKey", "in": "header", "name": "X-API-Key",
                                                       "description": ""}
    assert schemes["BearerKey"]["type"] == "http" and schemes["BearerKey"]["scheme"] == "bearer"


def test_operations_that_refuse_a_request_without_a_key_say_so(client) -> None:
    """Each operation is called without a key (path parameters filled with 1): the document names the key schemes
    on exactly those that answer 401, and marks the key optional ({}) where the operation answers without one."""
    document = client.get("/openapi.json").json()
    protected, public = [], []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answer = client.request(method.upper(), re.sub(r"\{[^}]+\}", "1", path))
            security = operation.get("security")
            if answer.status_code == 401:
                protected.append(f"{method} {path}")
                assert security == KEY_SCHEMES, (method, path, security)
                assert answer.json()["message"] == "missing API key: send it in the X-API-Key header"
            else:
                public.append(f"{method} {path}")
                assert security in (None, [*KEY_SCHEMES, {}]), (method, path, security)
    assert len(protected) > 30 and "get /metrics" in protected and "post /v1/creatives" in protected
    assert sorted(public) == ["get /healthz", "get /readyz"]


def test_a_key_is_accepted_as_a_bearer_token_with_the_same_answers(client, keys) -> None:
    assert client.get("/v1/labels", headers={"Authorization": f"Bearer {keys['reviewer']}"}).status_code == 200
    bad = client.get("/v1/labels", headers={"Authorization": "Bearer ctax_not_a_real_key_at_all"})
    assert bad.status_code == 401 and bad.json() == {"error": "unauthorized", "message": "invalid or revoked API key"}
    weak = client.post("/v1/labels", headers={"Authorization": f"Bearer {keys['reviewer']}"}, json={"path": "A"})
    assert weak.status_code == 403 and weak.json()["error"] == "forbidden" and "admin" in weak.json()["message"]
    # X-API-Key wins when both are sent, as it always did.
    both = {**headers(keys["admin"]), "Authorization": "Bearer ctax_not_a_real_key_at_all"}
    assert client.get("/v1/api-keys", headers=both).status_code == 200


def test_every_reference_in_the_document_resolves(client) -> None:
    document = client.get("/openapi.json").json()
    unresolved = sorted({ref for ref in _refs(document) if not _resolves(document, ref)})
    assert unresolved == []
