"""The in-memory mirror local mode searches: Qdrant's semantics for upserts, deletions and id filters."""

from __future__ import annotations

import numpy as np

from ctax.index.table import VectorTable


def test_upsert_replaces_and_the_last_write_of_a_point_wins() -> None:
    table = VectorTable(2)
    table.upsert([1, 2], [10, 20], np.array([[1.0, 0.0], [0.0, 1.0]]))
    table.upsert([3, 3, 1], [30, 31, 11], np.array([[1.0, 0.0], [0.0, 5.0], [0.0, 1.0]]))
    assert len(table) == 3
    hits = table.nearest(np.array([[0.0, 1.0]]), 3)[0]
    assert {point: label for point, label, _ in hits} == {1: 11, 2: 20, 3: 31}
    assert all(abs(score - 1.0) < 1e-6 for _, _, score in hits)  # stored unit vectors, as Qdrant's cosine does


def test_delete_filters_and_limits() -> None:
    table = VectorTable(2)
    table.upsert(["a", "b", "c"], [1, 2, 3], np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]))
    query = np.array([[1.0, 0.1]])
    assert [p for p, _, _ in table.nearest(query, 2)[0]] == ["a", "b"]
    assert [p for p, _, _ in table.nearest(query, 5, only=[["c", "zzz"]])[0]] == ["c"]
    table.delete(["a", "missing"])
    assert [p for p, _, _ in table.nearest(query, 5)[0]] == ["b", "c"]
    table.delete(["b", "c"])
    assert table.nearest(query, 5) == [[]]
