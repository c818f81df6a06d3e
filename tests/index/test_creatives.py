"""Every labelled creative is kept per version: searched exactly, filtered to an allow-list, never its own
neighbour, the same through the in-memory table (local mode), after reopening, and through the request a Qdrant
server is sent (qdrant-client's local mode evaluates the same filter)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctax.index.connect import open_qdrant
from ctax.index.qdrant import LabelIndex

DIM = 8


def ids(n: int, start: int = 0) -> list[str]:
    return [f"{k:032x}" for k in range(start, start + n)]


def exact(vectors: np.ndarray, query: np.ndarray) -> list[int]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return list(np.argsort(-(unit @ (query / np.linalg.norm(query))), kind="stable"))


def check_searches(index: LabelIndex, names: list[str], vectors: np.ndarray, rng: np.random.Generator) -> None:
    query = rng.normal(size=(2, DIM)).astype(np.float32)
    hits = index.nearest_creatives("v", query, 5)
    assert [h.creative_id for h in hits[0]] == [names[r] for r in exact(vectors, query[0])[:5]]
    assert all(a.score >= b.score for a, b in zip(hits[1], hits[1][1:], strict=False))
    # A creative's own vector: found first unless excluded; an allow-list restricts; an empty one finds nothing.
    own = index.nearest_creatives("v", vectors[:1], 3)[0]
    assert own[0].creative_id == names[0] and abs(own[0].score - 1.0) < 1e-5
    assert names[0] not in [h.creative_id for h in index.nearest_creatives("v", vectors[:1], 3, exclude=[names[0]])[0]]
    allowed = names[10:13]
    limited = index.nearest_creatives("v", query, 10, only=[allowed, None])
    assert {h.creative_id for h in limited[0]} == set(allowed) and len(limited[1]) == 10
    assert index.nearest_creatives("v", query[:1], 5, only=[[]]) == [[]]


def test_creatives_are_kept_searched_filtered_and_deleted(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    path = tmp_path / "qdrant"
    index = LabelIndex(open_qdrant(None, path), "t")
    assert index.count_creatives("v") == 0 and index.nearest_creatives("v", np.ones((1, DIM)), 3) == [[]]
    names = ids(40)
    vectors = rng.normal(size=(40, DIM)).astype(np.float32)
    index.upsert_creatives("v", names[:20], vectors[:20], [{"label_id": 3, "account_id": 7, "created_at": 1.5}] * 20)
    assert index.count_creatives("v") == 20  # builds the in-memory table
    index.upsert_creatives("v", names[20:], vectors[20:])  # after the table exists: kept in step
    assert index.count_creatives("v") == 40
    check_searches(index, names, vectors, rng)
    stored = index.creative_vectors("v", [names[3], "f" * 32])
    assert list(stored) == [names[3]] and np.allclose(stored[names[3]], vectors[3] / np.linalg.norm(vectors[3]),
                                                      atol=1e-5)
    point = index.client.retrieve(index.creatives_collection("v"), ids=[str(__import__("uuid").UUID(names[0]))],
                                  with_payload=True)[0]
    assert point.payload == {"label_id": 3, "account_id": 7, "created_at": 1.5}

    index.delete_creatives("v", names[30:])
    names, vectors = names[:30], vectors[:30]
    assert index.count_creatives("v") == 30
    index.client.close()

    again = LabelIndex(open_qdrant(None, path), "t")  # the table rebuilt from disk
    assert again.count_creatives("v") == 30
    check_searches(again, names, vectors, np.random.default_rng(5))
    again.is_server = True  # the requests a server is sent, evaluated by qdrant-client itself
    check_searches(again, names, vectors, np.random.default_rng(5))
    again.drop_version("v")
    assert again.count_creatives("v") == 0


def test_a_deleted_creative_is_forgotten_by_the_traffic_window_and_the_creatives_kept_mirrors_too(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    path, names = tmp_path / "qdrant", ids(12)
    vectors = rng.normal(size=(12, DIM)).astype(np.float32)
    index = LabelIndex(open_qdrant(None, path), "t")
    index.ensure_version("v", DIM)
    index.upsert_creatives("v", names, vectors)
    index.record_traffic("v", names, vectors, window=100)
    assert index.count_creatives("v") == 12 and len(index.traffic_window("v")[0]) == 12  # the mirrors exist
    index.forget("v", names[:3])
    index.forget("v2", names[:3])  # a version without collections: nothing to do
    assert index.traffic_window("v")[0] == names[3:]
    hits = index.nearest_creatives("v", vectors[:3], 12)
    assert all(h.creative_id not in names[:3] for row in hits for h in row) and len(hits[0]) == 9
    index.client.close()
    again = LabelIndex(open_qdrant(None, path), "t")  # and on disk
    assert again.count_creatives("v") == 9 and again.traffic_window("v")[0] == names[3:]


def test_local_mode_stores_float32_arrays_and_reopens_what_plain_qdrant_client_stored_beside_them(
        tmp_path: Path) -> None:
    import pickle
    import sqlite3
    import uuid

    from qdrant_client import models

    rng = np.random.default_rng(9)
    path = tmp_path / "qdrant"
    index = LabelIndex(open_qdrant(None, path), "t")
    names = ids(30)
    vectors = rng.normal(size=(30, DIM)).astype(np.float32)
    index.upsert_creatives("v", names[:20], vectors[:20], [{"label_id": 2}] * 20)
    collection = index.creatives_collection("v")
    # As a store written before vectors were kept as arrays: qdrant-client's own lists of floats.
    index.client.upsert(collection, [models.PointStruct(id=str(uuid.UUID(name)), vector=vector.tolist(),
                                                        payload={"label_id": 5}) for name, vector
                                     in zip(names[20:], vectors[20:], strict=True)])
    index.delete_creatives("v", [names[0], names[25]])
    names, vectors = names[1:25] + names[26:], np.concatenate([vectors[1:25], vectors[26:]])
    index.client.close()

    with sqlite3.connect(path / "collection" / collection / "storage.sqlite") as db:
        stored = {str(point.id): point.vector for point in
                  (pickle.loads(blob) for (blob,) in db.execute("SELECT point FROM points"))}
    assert len(stored) == 28
    ours = stored[str(uuid.UUID(names[5]))]
    # Unpickled on every open: 384 Python floats a point held 22 KB of memory after it (docs/benchmarks.md).
    assert isinstance(ours, dict) and ours[""].dtype == np.float32 and np.allclose(ours[""], vectors[5])
    assert isinstance(stored[str(uuid.UUID(names[-1]))], list)

    again = LabelIndex(open_qdrant(None, path), "t")
    assert again.count_creatives("v") == 28
    check_searches(again, names, vectors, np.random.default_rng(9))
    # The mirror read from local mode's own arrays holds exactly what a scroll reads.
    fast = again._read_mirror(collection, DIM)
    scrolled = again._read_mirror_scrolled(collection, DIM)
    assert fast[:3] == scrolled[:3] and np.array_equal(fast[3], scrolled[3])
    assert sorted(fast[1]) == [2] * 19 + [5] * 9
    again.is_server = True  # what a server is asked, evaluated by qdrant-client over the reopened store
    check_searches(again, names, vectors, np.random.default_rng(9))
