"""Search through the real service: POST /v1/search -> the search queue -> the index-owning worker -> the result
backend -> HTTP, on both profiles."""

from __future__ import annotations

import time

import pytest

from tests.support import ServiceProcesses

pytestmark = pytest.mark.e2e

ADS = [
    ("Buy the new Honda Civic sedan, a great family car with low fuel costs", "Product/Vehicles/Cars"),
    ("Adopt a rescue dog today and stop animal cruelty", "PSA/Animal Rights"),
    ("The best burgers in town, open late every night", None),
]


def test_search_answers_through_a_worker(service: ServiceProcesses, shared_data) -> None:
    with service.client() as http:
        taxonomy = (shared_data / "pitt_ads_taxonomy.txt").read_bytes()
        assert http.post("/v1/labels/import", files={"file": ("pitt.txt", taxonomy)}).status_code == 200
        ids = [http.post("/v1/creatives", json={"ocr_text": text}).json()["id"] for text, _ in ADS]
    service.wait_for(ids)
    with service.client() as http:
        started = time.monotonic()
        response = http.post("/v1/search", json={"text": ADS[0][0], "limit": 3, "labels_limit": 3})
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["creatives"][0]["id"] == ids[0] and body["creatives"][0]["similarity"] > 0.99
        assert body["labels"][0]["path"].startswith("Product/Vehicles")
        assert body["indexed"]["creatives"] == body["indexed"]["total"] >= 3
        assert body["query"] == {"kind": "text", "creative_id": None, "modalities_used": ["text"]}
        assert elapsed < 10, elapsed

        by_creative = http.post("/v1/search", json={"creative_id": ids[1], "limit": 5}).json()
        assert ids[1] not in [c["id"] for c in by_creative["creatives"]]
        assert http.post("/v1/search", json={"creative_id": "0" * 32}).status_code == 404
