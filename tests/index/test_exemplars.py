"""Exemplars that are not representatives stay stored but are never searched: not by the worker's in-memory table
(live or rebuilt from disk), not by the filter a Qdrant server is queried with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qdrant_client import models

from ctax.index.connect import open_qdrant
from ctax.index.exemplars import REPRESENTATIVES_ONLY
from ctax.index.qdrant import LabelIndex

DIM = 8


def searched(index: LabelIndex, query: np.ndarray) -> set[str]:
    return {hit.creative_id for hit in index.nearest_exemplars("v", query, 1000)[0]}


def qdrant_searched(index: LabelIndex, query: np.ndarray) -> set[str]:
    """What qdrant-client's own search returns under the filter server mode sends (local mode evaluates it too)."""
    response = index.client.query_points(index.exemplars_collection("v"), query=query[0].tolist(), limit=1000,
                                         query_filter=REPRESENTATIVES_ONLY)
    return {str(point.id).replace("-", "") for point in response.points}


def test_only_representatives_are_searched_live_after_reopening_and_under_the_server_filter(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    path = tmp_path / "qdrant"
    index = LabelIndex(open_qdrant(None, path), "t", exemplars_per_label=2)
    index.ensure_version("v", DIM)
    query = rng.normal(size=(1, DIM)).astype(np.float32)
    old = [f"{n:032x}" for n in range(3)]
    index.upsert_exemplars("v", old, [1, 1, 1], rng.normal(size=(3, DIM)))  # written before budgets: searched
    assert searched(index, query) == set(old)  # builds the in-memory table

    ids = [f"{n:032x}" for n in range(10, 20)]
    flags = [n % 3 == 0 for n in range(10)]
    index.upsert_exemplars("v", ids, [2] * 10, rng.normal(size=(10, DIM)), representative=flags, budget=2)
    kept = {cid for cid, flag in zip(ids, flags, strict=True) if flag}
    assert searched(index, query) == set(old) | kept  # the live table
    assert qdrant_searched(index, query) == set(old) | kept
    assert index.count_exemplars("v") == 13 and index.count_exemplars("v", representatives_only=True) == 7

    # A representative demoted, and one of the others promoted, through the same writes a sync makes.
    index.upsert_exemplars("v", [ids[0], ids[1]], [2, 2], index.exemplar_vectors("v", [ids[0], ids[1]]),
                           representative=[False, True], budget=2)
    kept = (kept - {ids[0]}) | {ids[1]}
    assert searched(index, query) == set(old) | kept
    index.client.close()

    again = LabelIndex(open_qdrant(None, path), "t", exemplars_per_label=2)  # the table rebuilt from disk
    assert searched(again, query) == set(old) | kept == qdrant_searched(again, query)
    assert len(again._tables[again.exemplars_collection("v")]) == len(old) + len(kept)
    stored = again.stored_exemplars("v")
    assert len(stored) == 13 and stored[ids[0]].representative is False and stored[ids[0]].budget == 2
    assert stored[old[0]].representative and stored[old[0]].budget is None
    points = again.exemplar_points("v", DIM)
    assert int(points.representative.sum()) == len(old) + len(kept) and points.vectors.shape == (13, DIM)
    again.client.close()


def test_the_server_filter_lets_points_without_the_flag_through() -> None:
    # Points written before budgets carry no `representative` field: must_not(False) keeps them, must(True) would
    # not. Checked against qdrant's own filter evaluation in memory.
    index = LabelIndex(open_qdrant(None, None), "t")
    index.ensure_version("v", DIM)
    index.client.upsert(index.exemplars_collection("v"), points=[
        models.PointStruct(id=1, vector=[1.0] * DIM, payload={"label_id": 1}),
        models.PointStruct(id=2, vector=[1.0] * DIM, payload={"label_id": 1, "representative": False}),
        models.PointStruct(id=3, vector=[1.0] * DIM, payload={"label_id": 1, "representative": True}),
    ])
    response = index.client.query_points(index.exemplars_collection("v"), query=[1.0] * DIM, limit=10,
                                         query_filter=REPRESENTATIVES_ONLY)
    assert sorted(int(point.id) for point in response.points) == [1, 3]
