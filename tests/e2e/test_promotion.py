"""Promotion while creatives stream in: every creative is labelled by one version or the other and says which."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ctax.config import Settings
from ctax.embedding.config import SpaceConfig
from ctax.jobs import BUILD_VERSION
from ctax.store.outbox import enqueue
from ctax.store.session import Database
from ctax.versions import registry
from tests.support import ServiceProcesses

pytestmark = pytest.mark.e2e


def _candidate(service_env: dict[str, str]) -> str:
    """A second version of the same encoders: a sound artefact, as a training run would leave it."""
    settings = Settings(_env_file=None, **{k[5:].lower(): v for k, v in service_env.items() if k.startswith("CTAX_")})
    db = Database(settings.sqlalchemy_url)
    with db.write() as session:
        active = registry.active_version(session)
        version = registry.new_version(session, settings, "trained")
        config = SpaceConfig.read(Path(active.artefact_dir))
        config.version, config.kind = version.id, "trained"
        config.write(Path(version.artefact_dir))
        version.config, version.thresholds = config.to_json(), dict(active.thresholds)
        version.status, version.comparison = "candidate", {"better": True, "reasons": []}
        enqueue(session, BUILD_VERSION, version.id)
        return version.id


@pytest.mark.parametrize("profile", ["embedded"], indirect=True)
def test_promotion_during_labelling_and_rollback(service: ServiceProcesses, service_env, shared_data) -> None:
    with service.client() as http:
        http.post("/v1/labels/import", files={"file": ("p.txt", (shared_data / "pitt_ads_taxonomy.txt")
                                                       .read_bytes())}).raise_for_status()
        candidate = _candidate(service_env)
        deadline = time.monotonic() + 120
        while not http.get(f"/v1/models/{candidate}").json()["index_ready"]:
            assert time.monotonic() < deadline, service.logs()
            time.sleep(0.5)

        ids: list[str] = []
        stop = threading.Event()

        def stream() -> None:
            with service.client() as poster:
                n = 0
                while not stop.is_set():
                    ids.append(poster.post("/v1/creatives", json={"ocr_text": f"Buy a new car today, offer {n}"})
                               .json()["id"])
                    n += 1

        streamer = threading.Thread(target=stream)
        streamer.start()
        time.sleep(3)
        promoted = http.post(f"/v1/models/{candidate}/promote")
        assert promoted.status_code == 200, promoted.text
        time.sleep(6)
        stop.set()
        streamer.join()
        results = service.wait_for(list(ids))
        versions = [results[i]["model_version"] for i in ids]
        assert all(r["status"] == "labelled" for r in results.values())
        assert set(versions) == {"v1-pretrained", candidate}, set(versions)
        assert versions[-1] == candidate  # after the swap, new work goes to the new version
        first_new = versions.index(candidate)
        assert all(v == candidate for v in versions[first_new:]), "labelling went back to the old version"

        back = http.post("/v1/models/rollback")
        assert back.status_code == 200 and back.json()["id"] == "v1-pretrained"
        deadline = time.monotonic() + 60
        while True:
            after = http.post("/v1/creatives", json={"ocr_text": "Adopt a dog"}).json()["id"]
            if service.wait_for([after])[after]["model_version"] == "v1-pretrained":
                break
            assert time.monotonic() < deadline
        models = {m["id"]: m["status"] for m in http.get("/v1/models").json()["items"]}
        assert models == {"v1-pretrained": "active", candidate: "retired"}
        assert http.get("/readyz").json()["model_version"] == "v1-pretrained"  # the admin key: the detail
