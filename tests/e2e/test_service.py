"""The whole service as processes, on both profiles: HTTP -> queue -> worker process -> index -> DB -> HTTP."""

from __future__ import annotations

import base64
import http.client
import time

import httpx
import pytest

from tests.conftest import png_bytes
from tests.support import ServiceProcesses

pytestmark = pytest.mark.e2e


def _import_pitt(http: httpx.Client, shared_data) -> None:
    response = http.post("/v1/labels/import", files={"file": ("pitt.txt", (shared_data / "pitt_ads_taxonomy.txt")
                                                             .read_bytes())})
    assert response.status_code == 200, response.text


def test_post_label_and_read_back(service: ServiceProcesses, shared_data, profile: str) -> None:
    with service.client() as http:
        _import_pitt(http, shared_data)
        account = http.post("/v1/accounts", json={"name": "Acme", "kind": "advertiser"}).json()["id"]
        poster = http.post("/v1/api-keys", json={"name": "poster", "role": "poster",
                                                 "account_id": account}).json()["key"]
    with service.client(poster) as http:
        text = http.post("/v1/creatives", json={"ocr_text": "Buy the new Honda Civic sedan, a great family car",
                                                "asserted_label": "PSA/Animal Rights", "external_id": "civic-1"})
        image = http.post("/v1/creatives", files={"image": ("ad.png", png_bytes("Stop animal cruelty",
                                                                                  size=(520, 180)), "image/png")})
        both = http.post("/v1/creatives", json={
            "image_base64": base64.b64encode(png_bytes("COLA", size=(200, 200))).decode(),
            "ocr_text": "Ice cold cola, the taste of summer"})
        batch = http.post("/v1/creatives/batch", json={"items": [
            {"ocr_text": "Stop smoking today, your lungs will thank you"},
            {"ocr_text": "The best burgers in town, open late"},
        ]}, headers={"Idempotency-Key": "batch-1"})
        replay = http.post("/v1/creatives/batch", json={"items": [
            {"ocr_text": "Stop smoking today, your lungs will thank you"},
            {"ocr_text": "The best burgers in town, open late"},
        ]}, headers={"Idempotency-Key": "batch-1"})
        assert {r.status_code for r in (text, image, both, batch, replay)} == {202}
        assert [i["id"] for i in replay.json()["items"]] == [i["id"] for i in batch.json()["items"]]
        ids = [text.json()["id"], image.json()["id"], both.json()["id"], *[i["id"] for i in batch.json()["items"]]]
    results = service.wait_for(ids)
    assert all(r["status"] == "labelled" for r in results.values()), results

    civic = results[ids[0]]
    assert civic["model_version"] == "v1-pretrained"
    assert civic["top_k"][0]["path"].startswith("Product/Vehicles")
    assert civic["flag"] == "wrong_label" and civic["review"]["flag"] == "wrong_label"
    assert civic["reasons"] and civic["scores"]["wrong_label_gap"] > civic["scores"]["wrong_label_threshold"]

    dog = results[ids[1]]
    assert "animal" in dog["ocr_text"].lower() and dog["modalities_used"] == ["ocr"]
    assert dog["top_k"][0]["path"].startswith("PSA/Animal Rights")
    # The pretrained version has no trained image projection: results say so instead of guessing.
    assert "no trained projection" in dog["modalities"]["image"]
    assert results[ids[2]]["modalities"]["text"] == "used"
    assert results[ids[3]]["top_k"][0]["path"].startswith("PSA/Health")


def test_worker_killed_mid_batch_loses_nothing(service: ServiceProcesses, shared_data) -> None:
    with service.client() as http:
        _import_pitt(http, shared_data)
        # Each is encoded: numbers would make them exact duplicates of the first (labelling/duplicates.py), which
        # take its decision without being encoded, and the worker would be done before it could be killed.
        items = [{"ocr_text": f"Fresh cookies and sweets from bakery {chr(97 + n % 26)}{chr(97 + n // 26)}, baked "
                              "every morning"} for n in range(120)]
        ids = [i["id"] for i in http.post("/v1/creatives/batch", json={"items": items}).json()["items"]]
        # Wait until the worker is in the middle of the work, then kill it without warning.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            statuses = [http.get(f"/v1/creatives/{i}").json()["status"] for i in ids[::10]]
            if "processing" in statuses or "labelled" in statuses:
                break
            time.sleep(0.05)
        service.kill_worker("label")
        midway = [http.get(f"/v1/creatives/{i}").json()["status"] for i in ids]
        assert "labelled" not in midway or midway.count("labelled") < len(ids), "killed too late to prove anything"
        service.start_worker("label")
    results = service.wait_for(ids, statuses=("labelled",), timeout=300)
    assert len(results) == len(ids)
    assert {r["top_k"][0]["path"].split("/")[0] for r in results.values()} == {"Product"}


@pytest.mark.parametrize("profile", ["embedded"], indirect=True)
def test_an_idle_connection_outlives_a_client_pools_idle_time(service: ServiceProcesses) -> None:
    """A client (or proxy) that reuses a connection idle for longer than uvicorn's default keep-alive (5 s) had it
    closed under it: the request sent on it was reset. CTAX_KEEP_ALIVE_S (75 s) keeps it open."""
    host, port = service.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().read() == b'{"status":"ok"}'
        first_socket = connection.sock
        time.sleep(7)
        connection.request("GET", "/healthz")  # raises RemoteDisconnected where the API closed the connection
        response = connection.getresponse()
        assert response.status == 200 and response.read() == b'{"status":"ok"}'
        assert connection.sock is first_socket  # the same connection, not a new one
    finally:
        connection.close()


def test_readiness_follows_the_worker(service: ServiceProcesses) -> None:
    assert httpx.get(f"{service.url}/readyz").status_code == 200
    assert httpx.get(f"{service.url}/healthz").json() == {"status": "ok"}
    admin = {"X-API-Key": service.admin_key}
    metrics = httpx.get(f"{service.url}/metrics", headers=admin).text
    assert "ctax_http_requests_total" in metrics
    service.kill_worker("label")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and httpx.get(f"{service.url}/readyz").status_code == 200:
        time.sleep(1)
    not_ready = httpx.get(f"{service.url}/readyz", headers=admin)
    assert not_ready.status_code == 503 and "no live worker" in not_ready.json()["problems"][0]


@pytest.mark.parametrize("profile", ["embedded"], indirect=True)
def test_gpu_role_consumes_its_own_queue(service_env, tmp_path, shared_data) -> None:
    """GPU hosts run `ctax worker --role gpu` on their own queue; the labelling code is the same (CPU here)."""
    env = {**service_env, "CTAX_LABEL_QUEUE": "ctax.label.gpu", "CTAX_DEVICE": "cpu"}
    service = ServiceProcesses(env, tmp_path / "gpu-logs", roles=("gpu",))
    service.start()
    try:
        with service.client() as http:
            _import_pitt(http, shared_data)
            creative_id = http.post("/v1/creatives", json={"ocr_text": "Stop animal cruelty today"}).json()["id"]
        [result] = service.wait_for([creative_id]).values()
        assert result["status"] == "labelled" and result["top_k"][0]["path"].startswith("PSA/Animal Rights")
        assert "ctax.label.gpu" in (tmp_path / "gpu-logs" / "worker-gpu.log").read_text()
    finally:
        service.stop()
