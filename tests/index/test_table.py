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
    assert table.nearest_rows(query, 5) == [([], [])]


def test_a_batch_of_queries_ranks_as_each_query_alone_ties_included() -> None:
    rng = np.random.default_rng(5)
    table = VectorTable(4)
    base = rng.normal(size=(30, 4))
    table.upsert([f"p{i}" for i in range(90)], [i % 7 for i in range(90)], np.concatenate([base, base, base]))
    queries = np.concatenate([rng.normal(size=(6, 4)), base[:2]])  # the last two meet three equal points each
    everything = [[f"p{i}" for i in range(90)]] * len(queries)
    for limit in (1, 5, 40, 90, 200):
        batch = table.nearest(queries, limit)
        assert batch == table.nearest(queries, limit, only=everything)  # the one-query-at-a-time path
        assert [len(row) for row in batch] == [min(limit, 90)] * len(queries)
        assert all(isinstance(label, int) and isinstance(score, float) for row in batch for _, label, score in row)
        # The rows variant ranks the same points, and its rows index the table's vectors.
        by_rows = table.nearest_rows(queries, limit)
        assert [[table.point_ids[r] for r in rows] for rows, _ in by_rows] == [[p for p, _, _ in row] for row in batch]
        assert [scores for _, scores in by_rows] == [[s for _, _, s in row] for row in batch]
        rows, _ = by_rows[-1]
        assert np.allclose(table.vectors[rows[0]], base[1] / np.linalg.norm(base[1]), atol=1e-6)
    # Filtered and free rows in one call (scores compared loosely: BLAS may round a 3-row product differently).
    mixed = table.nearest(queries[:3], 5, only=[None, ["p1", "p2"], []])
    for n in (0, 2):
        assert np.allclose([s for _, _, s in mixed[n]], [s for _, _, s in table.nearest(queries[n : n + 1], 5)[0]])
    assert sorted(p for p, _, _ in mixed[1]) == ["p1", "p2"] and mixed[1][0][2] >= mixed[1][1][2]


def test_social_marks_exactly_the_rows_with_a_fellow_at_the_level_and_keeps_up_with_writes() -> None:
    rng = np.random.default_rng(9)
    centres = rng.normal(size=(5, 16))
    points = centres[rng.integers(0, 5, 120)] + rng.uniform(0.05, 1.5, size=(120, 1)) * rng.normal(size=(120, 16))

    def truth(table: VectorTable, level: float) -> np.ndarray:
        near = table.vectors @ table.vectors.T >= level
        np.fill_diagonal(near, False)
        return near.any(axis=1)

    table = VectorTable(16)
    table.upsert(list(range(60)), [0] * 60, points[:60])
    first = table.social(0.9).copy()
    assert np.array_equal(first, truth(table, 0.9)) and 0 < first.sum() < 60  # some lonely, some not
    table.upsert(list(range(60, 120)), [0] * 60, points[60:])  # kept in step: as if worked out afresh
    assert np.array_equal(table.social(0.9), truth(table, 0.9))
    table.upsert([3], [0], points[70:71])  # a point rewritten next to another is that one's fellow
    assert table.social(0.9)[table.rows[3]] and table.social(0.9)[table.rows[70]]
    assert np.array_equal(table.social(0.9), truth(table, 0.9) | table.social(0.9))
    table.delete([n for n in range(120) if n % 3 == 0])
    # Deletes may leave a row marked whose fellows are gone (it then only costs a product), never the reverse.
    assert len(table.social(0.9)) == len(table) and not np.any(truth(table, 0.9) & ~table.social(0.9))
    assert np.array_equal(table.social(0.5), truth(table, 0.5))  # another level is worked out afresh


def test_best_scores_since_a_write_reads_only_the_rows_written_after_it_and_below_a_level() -> None:
    rng = np.random.default_rng(3)
    table = VectorTable(8)
    first = rng.normal(size=(40, 8)).astype(np.float32)
    table.upsert([f"a{n}" for n in range(40)], [n % 3 for n in range(40)], first)
    mark = table.last_write
    later = rng.normal(size=(25, 8)).astype(np.float32)
    table.upsert([f"b{n}" for n in range(25)], [n % 3 for n in range(25)], later)
    table.upsert(["a5"], [0], rng.normal(size=(1, 8)).astype(np.float32))  # rewritten: written since too
    table.delete(["a7", "b3"])
    assert table.last_write > mark and len(table.written) == len(table)
    queries = rng.normal(size=(6, 8)).astype(np.float32)
    unlike, own = [0, 1, 0, 2, 0, 0], ["b0", "a5", "zz", "b1", "a1", "b4"]
    level = 0.4

    got = table.best_scores(queries, 5, unlike, own, below=level, since=[mark] * 6)
    # By hand: every cosine to a row written since the mark, less the query's own point and campaign, below level.
    since = [r for r, point in enumerate(table.point_ids) if point.startswith("b") or point == "a5"]
    unit = table.vectors / np.linalg.norm(table.vectors, axis=1, keepdims=True)
    cos = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    for n in range(len(queries)):
        kept = [cos[n, r] for r in since if table.point_ids[r] != own[n] and cos[n, r] < level
                and not (unlike[n] and table.label_ids[r] == unlike[n])]
        assert np.allclose(np.sort(got[n][np.isfinite(got[n])])[::-1], sorted(kept, reverse=True)[:5], atol=1e-6)
    # Each query its own mark: 0 is every row, as without marks; a query whose mark is the last write finds none.
    marks = [0, mark, 0, table.last_write, mark, 0]
    each = table.best_scores(queries, 5, unlike, own, below=level, since=marks)
    for n, alone in enumerate(marks):
        by_itself = table.best_scores(queries[n : n + 1], 5, unlike[n : n + 1], own[n : n + 1], below=level,
                                      since=[alone])
        assert np.allclose(np.sort(each[n][np.isfinite(each[n])]), np.sort(by_itself[0][np.isfinite(by_itself[0])]))
    assert not np.isfinite(each[3]).any()
    assert np.allclose(np.sort(table.best_scores(queries, 5, unlike, own), axis=1),
                       np.sort(table.best_scores(queries, 5, unlike, own, since=[0] * 6), axis=1))
    assert table.best_scores(queries, 5, unlike, own, since=[table.last_write] * 6).shape == (6, 0)


def test_rows_added_one_batch_at_a_time_are_not_copied_each_time_and_read_back_as_written() -> None:
    rng = np.random.default_rng(11)
    table = VectorTable(4)
    written = rng.normal(size=(1000, 4)).astype(np.float32)
    buffers = set()
    for n in range(1000):  # as labelling appends each batch to the creatives collection's table
        table.upsert([f"c{n}"], [n % 5], written[n : n + 1])
        buffers.add(table.vectors.__array_interface__["data"][0])
    # Grown by doubling: a copy of the whole table per write made every batch cost more as creatives piled up.
    assert len(buffers) <= 12
    assert len(table) == 1000 and table.vectors.shape == (1000, 4) and table.label_ids.tolist() == [
        n % 5 for n in range(1000)]
    assert np.allclose(table.vectors, written / np.linalg.norm(written, axis=1, keepdims=True), atol=1e-6)
    assert len(set(table.written.tolist())) == 1000  # each row carries the mark of its own write
    table.upsert(["c3", "new"], [9, 8], written[:2])  # an update in place and an append in one call
    table.delete([f"c{n}" for n in range(0, 1000, 2)])
    assert len(table) == 501 and table.rows["c3"] == 1 and table.label_ids[1] == 9
    hits = table.nearest(written[7:8], 1)[0]
    assert hits[0][0] == "c7" and abs(hits[0][2] - 1.0) < 1e-5
    table.upsert(["after"], [4], written[7:8])
    assert table.rows["after"] == 501 and table.label_ids[-1] == 4 and len(table.written) == 502
