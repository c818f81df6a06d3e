"""Near-duplicate groups through the running service (API and a real labelling worker, both profiles): a re-post
and a re-cut with a new price join the first ad's group and its one review item, and a reviewer's decision on
that item labels all three."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_service import _import_pitt
from tests.support import ServiceProcesses

pytestmark = pytest.mark.e2e

AD = "Buy the new Honda Civic today: only $19,999 at your local dealer until May 31"


def test_duplicates_join_the_first_ads_group_and_take_its_review(service: ServiceProcesses, shared_data) -> None:
    with service.client() as http:
        _import_pitt(http, shared_data)
        first = http.post("/v1/creatives", json={"texts": [AD], "asserted_label": "PSA/Animal Rights"}).json()["id"]
        assert service.wait_for([first])[first]["status"] == "labelled"
        later = http.post("/v1/creatives/batch", json={"items": [
            {"texts": [AD], "asserted_label": "PSA/Animal Rights"},
            {"texts": [AD.replace("$19,999", "$18,499").replace("May 31", "June 30")],
             "asserted_label": "PSA/Animal Rights"},
            {"texts": ["Stop animal cruelty: adopt a rescue dog from your local shelter"]},
        ]}).json()["items"]
        ids = [item["id"] for item in later]
        results = service.wait_for(ids)
        assert [results[i]["duplicate_of"] for i in ids] == [first, first, None]
        root = http.get(f"/v1/creatives/{first}").json()
        assert root["flag"] == "wrong_label" and root["review"]["members"] == 3
        assert all(results[i]["flag"] == root["flag"] and results[i]["review"] == root["review"] for i in ids[:2])

        queue = http.get("/v1/review", params={"status": "all"}).json()["items"]
        assert [item["creative"]["id"] for item in queue].count(first) == 1
        assert not {item["creative"]["id"] for item in queue} & set(ids[:2])  # members open no items
        item_id = root["review"]["id"]
        decided = http.post(f"/v1/review/{item_id}/decision", json={"action": "confirm"})
        assert decided.status_code == 200, decided.text
        exported = [json.loads(line) for line in http.get("/v1/export", params={"source": "review"}).text.splitlines()]
        assert sorted(row["creative_id"] for row in exported) == sorted([first, *ids[:2]])
        grouped = http.get("/v1/export", params={"source": "review", "one_per_group": "true"}).text.splitlines()
        assert len(grouped) == 1
