"""The /map data: drawn by the index owner from the active version's labels and recent creatives, served as it
is by the API to reviewers and admins, refreshed on request through the outbox."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

import ctax.worker.runtime as runtime_module
from ctax.api.app import create_app
from ctax.creatives.intake import CreativeSubmission, create_creative
from ctax.jobs import INDEX_QUEUE, LABEL_QUEUE, REFRESH_MAP
from ctax.pictures.map import compute_map, refresh_map
from ctax.pictures.projection import MIN_UMAP_POINTS, project
from ctax.store.models import Creative, Label, OutboxJob, ReviewItem
from ctax.taxonomy import catalog
from ctax.taxonomy.importers import parse_taxonomy_file
from ctax.worker.runtime import Runtime
from ctax.worker.tasks.index import refresh_map as draw_map_task
from ctax.worker.tasks.label import run as label_run
from tests.conftest import headers

TAXONOMY = b"Product/Cars\nProduct/Soft Drinks\nPSA/Smoking\n"
CREATIVES = [("Buy the new sedan, test drive today", None), ("Ice cold cola for a hot summer day", None),
             ("Stop smoking: your lungs will thank you", None), ("Fast hatchback, low price, low mileage", None),
             ("Sparkling lemonade in a can", "Product/Cars"), ("Quit cigarettes, call our helpline", "Product/Cars"),
             ("Family SUV with seven seats", "PSA/Smoking"), ("Orange soda, now with less sugar", None)]


@pytest.fixture
def mapped(settings, db) -> Iterator[tuple[Runtime, list[str]]]:
    """A small taxonomy and eight creatives labelled by the index owner (three asserted wrongly)."""
    with db.write() as session:
        catalog.import_labels(session, parse_taxonomy_file(TAXONOMY))
    rt = Runtime(settings, [LABEL_QUEUE, INDEX_QUEUE], owns_index=True)
    rt.start()
    with rt.db.write() as session:
        ids = [create_creative(session, rt.blobs, settings, CreativeSubmission(texts=[text], asserted_label=label),
                               None)[0].id for text, label in CREATIVES]
    assert label_run(rt, ids)["labelled"] == len(ids)
    yield rt, ids
    rt.stop()
    if rt._index is not None:
        rt._index.client.close()


def test_every_label_and_recent_creative_gets_coordinates_and_its_decision(mapped) -> None:
    rt, ids = mapped
    data = compute_map(rt.db, rt.index, rt.settings)
    with rt.db.read() as session:
        labels = {label.id: label.path for label in session.scalars(select(Label))}
        rows = {c.id: c for c in session.scalars(select(Creative).where(Creative.id.in_(ids)))}
        items = {item.creative_id: item.id for item in session.scalars(select(ReviewItem))}
    assert data["version"] == "v1-pretrained"
    assert sorted(point["path"] for point in data["labels"]) == sorted(labels.values())
    assert sorted(point["id"] for point in data["creatives"]) == sorted(ids)
    # 5 labels and 8 creatives are too few for UMAP: PCA lays them out, and the map says so.
    assert data["method"] == "pca" and "too few for UMAP" in data["note"]
    for point in data["labels"] + data["creatives"]:
        assert 0.0 <= point["x"] <= 1.0 and 0.0 <= point["y"] <= 1.0
    for point in data["creatives"]:
        creative = rows[point["id"]]
        assert point["label_id"] == creative.decided_label_id and point["flag"] == (creative.flag or "none")
        assert point["label"] == labels.get(creative.decided_label_id)  # what the page colours by
        assert point["review_item_id"] == items.get(point["id"]) and point["text"] == creative.texts[0]
    flagged = [p for p in data["creatives"] if p["flag"] == "wrong_label"]
    assert len(flagged) >= 2 and all(p["review_item_id"] for p in flagged)  # clicking opens their review item
    assert len({(p["x"], p["y"]) for p in data["creatives"]}) == len(ids)  # no two creatives drawn on one spot


def test_the_map_is_served_as_drawn_and_refreshed_on_request(mapped, keys) -> None:
    rt, _ = mapped
    with TestClient(create_app(rt.settings, start_dispatcher=False)) as client:
        reviewer = headers(keys["reviewer"])
        missing = client.get("/v1/map", headers=reviewer)
        assert missing.status_code == 404 and "POST /v1/map/refresh" in missing.json()["message"]
        asked = client.post("/v1/map/refresh", headers=reviewer)
        assert asked.status_code == 202 and asked.json()["status"] == "queued"
        with rt.db.read() as session:
            job = session.get(OutboxJob, asked.json()["job_id"])
            assert job.task == REFRESH_MAP and job.queue == INDEX_QUEUE  # the index owner draws it
        runtime_module._runtime = rt  # the worker's task, run as the index owner runs it
        try:
            draw_map_task()
        finally:
            runtime_module._runtime = None
        served = client.get("/v1/map", headers=headers(keys["admin"]))
        assert served.status_code == 200 and served.json()["version"] == "v1-pretrained"
        assert len(served.json()["creatives"]) == len(CREATIVES)
        drawn = refresh_map(rt.db, rt.index, rt.settings)  # drawn again: the file is replaced whole
        assert client.get("/v1/map", headers=reviewer).json() == json.loads(json.dumps(drawn))
        assert client.get("/v1/map").status_code == 401
        assert client.get("/v1/map", headers=headers(keys["poster"])).status_code == 403
        assert client.post("/v1/map/refresh", headers=headers(keys["poster"])).status_code == 403
        page = client.get("/map")
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        assert '<script src="/review/static/map.js' in page.text


@pytest.mark.slow  # UMAP's first run compiles it (numba): tens of seconds
def test_umap_keeps_clusters_apart_when_there_are_enough_points() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16)) * 5
    vectors = np.vstack([c + rng.normal(size=(MIN_UMAP_POINTS, 16)) for c in centres])
    layout = project(vectors)
    assert layout.method == "umap" and layout.xy.shape == (3 * MIN_UMAP_POINTS, 2)
    groups = [layout.xy[n * MIN_UMAP_POINTS:(n + 1) * MIN_UMAP_POINTS] for n in range(3)]
    spread = max(float(np.linalg.norm(g - g.mean(axis=0), axis=1).mean()) for g in groups)
    gaps = [float(np.linalg.norm(a.mean(axis=0) - b.mean(axis=0))) for a, b in
            ((groups[0], groups[1]), (groups[0], groups[2]), (groups[1], groups[2]))]
    assert min(gaps) > 2 * spread
