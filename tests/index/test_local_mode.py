"""What ctax does to qdrant-client's local mode beyond its public API (index/local_mode.py): the results are local
mode's own, only cheaper."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import models

from ctax.index.connect import open_qdrant
from ctax.index.local_mode import _appendable
from ctax.index.qdrant import LabelIndex


def test_appending_into_the_room_gives_what_numpy_append_gives_dtype_included() -> None:
    rng = np.random.default_rng(1)
    for start in (np.zeros(5, dtype=bool), np.arange(7, dtype=np.int64)):
        plain, ours = start.copy(), _appendable(start.copy(), 100)
        buffers = set()
        for step in range(150):  # past the room: numpy's own append from there on
            value = int(rng.integers(0, 2))
            plain, ours = np.append(plain, value), np.append(ours, value)
            buffers.add(np.asarray(ours).__array_interface__["data"][0])
            if step % 7 == 0:  # local mode marks points deleted in place
                plain[step % len(plain)] = ours[step % len(ours)] = 1
            assert plain.dtype == ours.dtype and np.array_equal(plain, ours)
        assert len(buffers) < 150 // 2  # filled in place while the room lasted, not copied per append


def test_local_modes_per_point_bookkeeping_is_not_copied_per_point_and_reads_back_the_same(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    index = LabelIndex(open_qdrant(None, tmp_path / "qdrant"), "t")
    names = [uuid.UUID(int=n + 1).hex for n in range(600)]
    vectors = rng.normal(size=(600, 8)).astype(np.float32)
    index.upsert_creatives("v", names[:100], vectors[:100])
    stored = index.client._client.collections[index.creatives_collection("v")]
    addresses = []
    for start in range(100, 600, 50):
        index.upsert_creatives("v", names[start : start + 50], vectors[start : start + 50])
        addresses.append(stored.deleted.__array_interface__["data"][0])
        assert type(stored.deleted) is np.ndarray  # a plain array again once the request is done
    assert len(set(addresses)) <= 4  # grown by doubling, not a copy per point
    index.delete_creatives("v", names[::3])
    kept = [n for n in range(600) if n % 3]
    assert index.count_creatives("v") == len(kept)
    index.is_server = True  # local mode's own search over its own bookkeeping
    query = rng.normal(size=(1, 8)).astype(np.float32)
    unit = vectors[kept] / np.linalg.norm(vectors[kept], axis=1, keepdims=True)
    best = [names[kept[r]] for r in np.argsort(-(unit @ (query[0] / np.linalg.norm(query[0]))))[:5]]
    assert [hit.creative_id for hit in index.nearest_creatives("v", query, 5)[0]] == best
    index.client.close()
    again = LabelIndex(open_qdrant(None, tmp_path / "qdrant"), "t")
    assert again.count_creatives("v") == len(kept)
    assert [hit.creative_id for hit in again.nearest_creatives("v", query, 5)[0]] == best
    again.client.close()


def test_an_append_to_an_older_array_over_the_room_leaves_the_newest_as_it_was() -> None:
    first = _appendable(np.arange(3, dtype=np.int64), 10)
    newest = np.append(np.append(first, 7), 8)
    older = np.append(first, 9)  # not what local mode does; numpy's own copy, not a write over `newest`
    assert newest.tolist() == [0, 1, 2, 7, 8] and older.tolist() == [0, 1, 2, 9]
    assert np.append(newest, 5).tolist() == [0, 1, 2, 7, 8, 5]


def test_local_mode_is_handed_float32_rows_and_a_server_lists_of_floats(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    index = LabelIndex(open_qdrant(None, tmp_path / "qdrant"), "t")
    requests: list[list[models.PointStruct]] = []
    upsert = index.client.upsert

    def recording(collection: str, points: list[models.PointStruct], **kwargs: object) -> object:
        requests.append(list(points))
        return upsert(collection, points=points, **kwargs)

    index.client.upsert = recording  # type: ignore[method-assign]
    names = [uuid.UUID(int=n + 1).hex for n in range(6)]
    vectors = rng.normal(size=(6, 8)).astype(np.float64)
    index.upsert_creatives("v", names[:3], vectors[:3])
    index.record_traffic("v", names[:3], vectors[:3], window=100)
    for point in (p for request in requests for p in request):
        assert isinstance(point.vector, dict) and set(point.vector) == {""}
        assert point.vector[""].dtype == np.float32 and point.vector[""].shape == (8,)
    requests.clear()
    index.is_server = True  # what a Qdrant server would be sent: the API's lists of floats
    index.upsert_creatives("v", names[3:], vectors[3:])
    assert all(isinstance(p.vector, list) and isinstance(p.vector[0], float) for p in requests[0])
    index.is_server = False
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    got = index.creative_vectors("v", names)  # as local mode read them back, normalised
    assert sorted(got) == sorted(names)
    assert all(np.allclose(got[name], unit[n], atol=1e-6) for n, name in enumerate(names))


def test_a_local_write_with_a_bad_vector_is_refused_whole_and_what_was_stored_stays(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    index = LabelIndex(open_qdrant(None, tmp_path / "qdrant"), "t")
    names = [uuid.UUID(int=n + 1).hex for n in range(5)]
    vectors = rng.normal(size=(5, 8)).astype(np.float32)
    index.upsert_creatives("v", names[:2], vectors[:2])
    bad = vectors[2:].copy()
    bad[1, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        index.upsert_creatives("v", names[2:], bad)
    with pytest.raises(ValueError, match="expected dim: 8, got 5"):
        index.upsert_creatives("v", names[2:], rng.normal(size=(3, 5)))
    assert index.count_creatives("v") == 2
    index.client.close()
    again = LabelIndex(open_qdrant(None, tmp_path / "qdrant"), "t")
    assert again.count_creatives("v") == 2
    assert [hit.creative_id for hit in again.nearest_creatives("v", vectors[:1], 1)[0]] == names[:1]
    again.client.close()
