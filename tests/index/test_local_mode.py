"""What ctax does to qdrant-client's local mode beyond its public API (index/local_mode.py): the results are local
mode's own, only cheaper."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

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
