"""LabelIndex over real Qdrant local mode: versions, atomic alias swaps, exemplars, and the one-process lock."""

from __future__ import annotations

import itertools
import subprocess
import sys
import uuid

import numpy as np
import pytest

from ctax.errors import IndexLocked, NotFound
from ctax.index.connect import open_qdrant
from ctax.index.qdrant import LabelIndex


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_versions_labels_exemplars_and_alias_swap(tmp_path) -> None:
    index = LabelIndex(open_qdrant(None, tmp_path / "qdrant"), "t")
    for version in ("v1", "v2"):
        index.ensure_version(version, 3)
    index.upsert_labels("v1", [1, 2], np.stack([unit(1, 0, 0), unit(0, 1, 0)]), [{"path": "A"}, {"path": "B"}])
    index.upsert_labels("v2", [1, 2], np.stack([unit(0, 1, 0), unit(1, 0, 0)]), [{"path": "A"}, {"path": "B"}])
    query = np.stack([unit(1, 0.1, 0)])
    assert index.nearest("v1", query, 2)[0][0].label_id == 1
    assert index.nearest("v2", query, 2)[0][0].label_id == 2
    assert index.nearest("v1", query, 2, only=[[2]])[0][0].label_id == 2

    with pytest.raises(NotFound):
        index.activate("v3")
    index.activate("v1")
    assert index.active_version() == "v1"
    index.activate("v2")
    assert index.active_version() == "v2"
    aliases = {a.alias_name: a.collection_name for a in index.client.get_aliases().aliases}
    assert aliases == {"t_labels": "t_labels_v2", "t_exemplars": "t_exemplars_v2"}

    ids = ["0" * 31 + "1", "f" * 32]
    index.upsert_exemplars("v1", ids, [1, 2], np.stack([unit(1, 0, 0), unit(0, 0, 1)]))
    assert index.exemplar_labels("v1") == {ids[0]: 1, ids[1]: 2}
    hits = index.nearest_exemplars("v1", query, 5)[0]
    assert hits[0].creative_id == ids[0] and hits[0].label_id == 1
    index.delete_exemplars("v1", [ids[0]])
    index.delete_labels("v1", [2])
    assert index.count_exemplars("v1") == 1 and list(index.label_payloads("v1")) == [1]
    index.drop_version("v1")
    assert not index.has_version("v1")


def test_a_second_process_cannot_open_the_embedded_index(tmp_path) -> None:
    path = tmp_path / "qdrant"
    index = LabelIndex(open_qdrant(None, path))
    index.ensure_version("v1", 3)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from ctax.errors import IndexLocked\n"
        "from ctax.index.connect import open_qdrant\n"
        "try:\n"
        f"    open_qdrant(None, Path({str(path)!r}))\n"
        "except IndexLocked as exc:\n"
        "    print(exc.message); sys.exit(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "CTAX_QDRANT_URL" in result.stdout and "worker owns it" in result.stdout
    assert issubclass(IndexLocked, Exception) and IndexLocked("x").status_code == 503


def _qdrant_ranking(index: LabelIndex, collection: str, queries: np.ndarray, limit: int,
                    only: list[list[int]] | None = None) -> list[list[tuple[object, float]]]:
    """What Qdrant itself answers, bypassing the in-memory tables of local mode."""
    from qdrant_client import models

    requests = [
        models.QueryRequest(
            query=q.tolist(), limit=limit, with_payload=False,
            filter=models.Filter(must=[models.HasIdCondition(has_id=only[n])]) if only and only[n] else None,
        )
        for n, q in enumerate(queries)
    ]
    responses = index.client.query_batch_points(collection, requests=requests)
    return [[(p.id, p.score) for p in r.points] for r in responses]


def test_local_mode_search_ranks_exactly_as_qdrant_through_writes_and_reopening(tmp_path) -> None:
    rng = np.random.default_rng(0)
    dim, path = 16, tmp_path / "qdrant"
    index = LabelIndex(open_qdrant(None, path), "t")
    index.ensure_version("v1", dim)
    label_ids = list(range(1, 41))
    index.upsert_labels("v1", label_ids, rng.normal(size=(40, dim)), [{"path": str(i)} for i in label_ids])
    creatives = [f"{i:032x}" for i in range(300)]
    index.upsert_exemplars("v1", creatives, [1 + i % 40 for i in range(300)], rng.normal(size=(300, dim)))
    queries = rng.normal(size=(8, dim)).astype(np.float32)

    def check(ix: LabelIndex) -> None:
        only = [[3, 7, 11], [], [40], [1, 2], [5], [6, 9], [], [20, 21, 22, 23]]
        for restrict in (None, only):
            ours = ix.nearest("v1", queries, 10, only=restrict)
            theirs = _qdrant_ranking(ix, ix.labels_collection("v1"), queries, 10, restrict)
            assert [[h.label_id for h in row] for row in ours] == [[int(p) for p, _ in row] for row in theirs]
            assert np.allclose([h.score for row in ours for h in row], [s for row in theirs for _, s in row],
                               atol=1e-5)
        ours_ex = ix.nearest_exemplars("v1", queries, 7)
        theirs_ex = _qdrant_ranking(ix, ix.exemplars_collection("v1"), queries, 7)
        assert [[h.creative_id for h in row] for row in ours_ex] == [
            [uuid.UUID(str(p)).hex for p, _ in row] for row in theirs_ex
        ]
        labels_of = ix.exemplar_labels("v1")
        assert all(h.label_id == labels_of[h.creative_id] for row in ours_ex for h in row)

    check(index)  # builds the in-memory tables from what Qdrant holds
    # Writes after the tables exist: replaced vectors, new points, deletions, a relabelled exemplar.
    index.upsert_labels("v1", [5, 41], rng.normal(size=(2, dim)), [{"path": "5"}, {"path": "41"}])
    index.delete_labels("v1", [3, 40])
    index.upsert_exemplars("v1", [*creatives[:50], "f" * 32], [2] * 51, rng.normal(size=(51, dim)))
    index.delete_exemplars("v1", creatives[100:150])
    check(index)
    assert index.nearest("v1", queries, 10, only=[[3]] * 8) == [[]] * 8  # a deleted label is gone
    index.client.close()
    check(LabelIndex(open_qdrant(None, path), "t"))  # a new process reads the same state back from disk


def test_local_mode_search_of_empty_and_dropped_collections(tmp_path) -> None:
    index = LabelIndex(open_qdrant(None, tmp_path / "qdrant"), "t")
    index.ensure_version("v1", 3)
    assert index.nearest("v1", np.stack([unit(1, 0, 0)]), 5) == [[]]
    assert index.nearest_exemplars("v1", np.stack([unit(1, 0, 0)]), 5) == [[]]
    index.upsert_labels("v1", [1], np.stack([unit(1, 0, 0)]), [{"path": "A"}])
    assert index.nearest("v1", np.stack([unit(0, 1, 0)]), 5)[0][0].label_id == 1
    index.drop_version("v1")
    index.ensure_version("v1", 3)  # recreated empty: nothing of the dropped collection survives in memory
    assert index.nearest("v1", np.stack([unit(1, 0, 0)]), 5) == [[]]


def test_traffic_window_keeps_the_most_recent_creatives_and_never_returns_the_query_itself(tmp_path) -> None:
    rng = np.random.default_rng(1)
    dim, path = 8, tmp_path / "qdrant"
    index = LabelIndex(open_qdrant(None, path), "t")
    index.ensure_version("v1", dim)
    query = rng.normal(size=(1, dim)).astype(np.float32)
    assert index.traffic_neighbours("v1", query, 5)[0][0] == []  # nothing labelled yet
    ids = [f"{i:032x}" for i in range(30)]
    vectors = rng.normal(size=(30, dim)).astype(np.float32)
    for start in range(0, 30, 10):  # three batches, oldest first
        index.record_traffic("v1", ids[start : start + 10], vectors[start : start + 10], window=100)
    assert index.count_traffic("v1") == 30

    # What the novelty feature reads: each query's neighbours' similarities, best first, and their unit vectors,
    # never the query's own creative; from the in-memory table and from the requests a server would be sent
    # (evaluated by qdrant-client itself).
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = []
    for n in range(2):
        others = [m for m in range(30) if m != n]
        order = sorted(others, key=lambda m: -float(unit[n] @ unit[m]))
        expected.append(([float(unit[n] @ unit[m]) for m in order], unit[order]))
    for server in (False, True):
        index.is_server = server
        near = index.traffic_neighbours("v1", vectors[:2], 30, exclude=ids[:2])
        for (scores, units, _), (want_scores, want_units) in zip(near, expected, strict=True):
            assert len(scores) == 29 and np.allclose(scores, want_scores, atol=1e-5)
            assert np.allclose(units, want_units, atol=1e-5)
        # Without vectors (a version that does not count campaigns once): the same similarities, no vectors.
        bare = index.traffic_neighbours("v1", vectors[:2], 30, exclude=ids[:2], with_vectors=False)
        assert [found.units for found in bare] == [None, None]
        assert all(np.allclose(a.similarities, b.similarities, atol=1e-6) for a, b in zip(bare, near, strict=True))
    index.is_server = False
    for scores, units, _ in index.traffic_neighbours("v2", vectors[:2], 30):  # a version with no traffic yet
        assert scores == [] and units is not None and units.shape == (0, dim)

    # Over the window (plus its slack) the oldest are forgotten, in arrival order.
    index.record_traffic("v1", [f"{i:032x}" for i in range(30, 40)], vectors[:10] * -1, window=25)
    assert index.count_traffic("v1") == 25
    kept = set(index.traffic_window("v1")[0])
    assert kept == {f"{i:032x}" for i in range(15, 40)}
    index.client.close()

    again = LabelIndex(open_qdrant(None, path), "t")  # read back from disk into a fresh in-memory table
    assert set(again.traffic_window("v1")[0]) == kept
    assert again.prune_traffic("v1", 5) == 20 and again.count_traffic("v1") == 5
    assert set(again.traffic_window("v1")[0]) == {f"{i:032x}" for i in range(35, 40)}
    again.drop_version("v1")
    assert again.count_traffic("v1") == 0
    again.record_traffic("v1", ids[:1], vectors[:1], window=0)  # a window of 0 keeps nothing
    assert again.count_traffic("v1") == 0


def test_the_sweeps_window_is_the_traffic_window_oldest_first_from_the_mirror_or_from_qdrant(tmp_path) -> None:
    rng = np.random.default_rng(2)
    path = tmp_path / "qdrant"
    index = LabelIndex(open_qdrant(None, path), "t")
    index.ensure_version("v1", 8)
    assert index.traffic_window("v1")[0] == []  # nothing labelled yet
    # Random ids, so that the order of point ids (a scroll's) is not the order of arrival.
    ids = [uuid.UUID(int=int(rng.integers(2**62)) << 64 | int(rng.integers(2**62))).hex for _ in range(40)]
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    for start in range(0, 40, 10):
        index.record_traffic("v1", ids[start : start + 10], vectors[start : start + 10], window=25)
    index.traffic_neighbours("v1", vectors[:1], 3)  # the in-memory mirror is read
    windows = {}
    for server in (False, True):  # the mirror, and a scroll as a server is read
        index.is_server = server
        got_ids, got = index.traffic_window("v1")
        windows[server] = dict(zip(got_ids, got, strict=True))
    # The sweep takes the newest off the end: both read the window oldest first.
    assert list(windows[False]) == list(windows[True]) == index.traffic_vectors("v1")[0] == ids[-25:]
    assert len(windows[False]) == index.count_traffic("v1") == 25
    unit_of = {cid: v / np.linalg.norm(v) for cid, v in zip(ids, vectors, strict=True)}
    for window in windows.values():
        assert all(np.allclose(vector, unit_of[cid], atol=1e-5) for cid, vector in window.items())
    index.is_server = False
    index.record_traffic("v1", ids[20:21], vectors[20:21], window=25)  # labelled again: it arrived again
    assert index.traffic_window("v1")[0] == [*ids[15:20], *ids[21:], ids[20]]
    index.client.close()

    again = LabelIndex(open_qdrant(None, path), "t")  # a fresh mirror, read back from disk in the same order
    assert again.traffic_window("v1")[0] == [*ids[15:20], *ids[21:], ids[20]]
    again.client.close()


def test_traffic_search_leaves_out_the_creatives_own_campaign_in_the_mirror_on_a_server_and_after_a_restart(
        tmp_path) -> None:
    rng = np.random.default_rng(5)
    path = tmp_path / "qdrant"
    index = LabelIndex(open_qdrant(None, path), "t")
    index.ensure_version("v1", 8)
    centre = rng.normal(size=8)
    vectors = (centre + 0.1 * rng.normal(size=(12, 8))).astype(np.float32)  # all alike: each other's nearest
    ids = [f"{n:032x}" for n in range(12)]
    campaigns = ["spring"] * 5 + ["autumn"] * 4 + [None] * 3
    index.record_traffic("v1", ids[:6], vectors[:6], window=100, campaigns=campaigns[:6])
    index.record_traffic("v1", ids[6:], vectors[6:], window=100, campaigns=campaigns[6:])
    asked = [None, "spring", "autumn", "winter"]  # none; the two campaigns in the window; one it has never seen
    expected = {None: 11, "spring": 7, "autumn": 8, "winter": 11}  # of the 11 others (the creative itself aside)

    def found(index: LabelIndex) -> list[int]:
        queries, skip = vectors[[0, 1, 5, 9]], [ids[0], ids[1], ids[5], ids[9]]
        for limit in (3, 20):  # fewer than qualify, and more
            near = index.traffic_neighbours("v1", queries, limit, exclude=skip, campaigns=asked)
            # The sweep's bound reads the same similarities as one matrix, -inf where fewer qualify.
            matrix = index.traffic_similarities("v1", queries, limit, skip, asked)
            for (scores, *_), row in zip(near, matrix, strict=True):
                assert np.allclose(np.sort(row[np.isfinite(row)])[::-1], scores, atol=1e-6)
        return [len(found.similarities) for found in near]

    want = [expected[campaign] for campaign in asked]
    assert found(index) == want  # the in-memory mirror
    index.is_server = True
    assert found(index) == want  # a payload filter, as a Qdrant server runs it
    index.is_server = False
    # Nearest first, and only the others: the scores are those of the creatives left.
    scores, units, _ = index.traffic_neighbours("v1", vectors[:1], 3, exclude=ids[:1], campaigns=["spring"])[0]
    others = vectors[5:] / np.linalg.norm(vectors[5:], axis=1, keepdims=True)
    best = np.sort(others @ (vectors[0] / np.linalg.norm(vectors[0])))[::-1][:3]
    assert np.allclose(scores, best, atol=1e-5) and units is not None and units.shape == (3, 8)
    index.client.close()
    again = LabelIndex(open_qdrant(None, path), "t")  # a fresh mirror knows each point's campaign from disk
    assert found(again) == want
    again.client.close()


def test_local_writes_are_kept_when_the_process_is_killed_without_closing(tmp_path) -> None:
    # Local mode's writes commit once per request, in a WAL journal (collections.py): a worker killed right after
    # a write must find all of it, and nothing it deleted, when the index is opened again.
    path = tmp_path / "qdrant"
    code = (
        "import os, signal\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "from ctax.index.connect import open_qdrant\n"
        "from ctax.index.qdrant import LabelIndex\n"
        f"index = LabelIndex(open_qdrant(None, Path({str(path)!r})), 't')\n"
        "index.ensure_version('v1', 4)\n"
        "vectors = np.random.default_rng(3).normal(size=(700, 4)).astype(np.float32)\n"
        "index.upsert_labels('v1', [1, 2, 3], vectors[:3], [{'path': 'a'}, {'path': 'b'}, {'path': 'c'}])\n"
        "ids = [f'{i:032x}' for i in range(700)]\n"
        "index.upsert_exemplars('v1', ids, [1 + i % 3 for i in range(700)], vectors)\n"  # two requests of 512
        "index.delete_exemplars('v1', ids[:10])\n"
        "index.record_traffic('v1', ids[:64], vectors[:64], window=1000)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == -9, result.stderr
    index = LabelIndex(open_qdrant(None, path), "t")
    assert sorted(index.label_payloads("v1")) == [1, 2, 3]
    assert set(index.exemplar_labels("v1")) == {f"{i:032x}" for i in range(10, 700)}
    assert index.count_traffic("v1") == 64
    index.upsert_labels("v1", [4], np.ones((1, 4), dtype=np.float32), [{"path": "d"}])  # and it writes on
    assert index.nearest("v1", np.ones((1, 4), dtype=np.float32), 1)[0][0].label_id == 4


def test_a_traffic_window_rolled_over_many_times_is_reloaded_and_keeps_its_creatives(tmp_path, monkeypatch) -> None:
    from ctax.index import local_mode

    monkeypatch.setattr(local_mode, "RELOAD_DEAD", 200)  # reloaded after 200 deleted points, not 10,000
    rng = np.random.default_rng(4)
    path = tmp_path / "qdrant"
    index = LabelIndex(open_qdrant(None, path), "t")
    index.ensure_version("v1", 8)
    ids = [uuid.UUID(int=int(rng.integers(2**62)) << 64 | int(rng.integers(2**62))).hex for _ in range(1200)]
    vectors = rng.normal(size=(1200, 8)).astype(np.float32)
    name = index.traffic_collection("v1")
    held = []
    for start in range(0, 1200, 20):
        index.record_traffic("v1", ids[start : start + 20], vectors[start : start + 20], window=50)
        held.append(len(index.client._client.collections[name].ids_inv))
    # Local mode keeps deleted points in memory (1,200 by the end without a reload); reloaded, it holds what is
    # live and at most the deleted ones since the last reload.
    assert any(after < before for before, after in itertools.pairwise(held))
    assert max(held) < 300
    window = ids[-index.count_traffic("v1"):]
    assert index.traffic_window("v1")[0] == window and len(window) >= 50
    query = vectors[-1:] * -1
    mirror = index.traffic_neighbours("v1", query, 5)
    index.is_server = True  # the same search asked of the reloaded collection itself
    assert index.traffic_neighbours("v1", query, 5)[0].similarities == pytest.approx(mirror[0].similarities, abs=1e-5)
    assert index.traffic_window("v1")[0] == window
    index.is_server = False
    index.client.close()
    again = LabelIndex(open_qdrant(None, path), "t")
    assert again.traffic_window("v1")[0] == window
    again.client.close()
