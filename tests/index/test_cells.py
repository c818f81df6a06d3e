"""Near-duplicate search through coarse cells (index/cells.py): the creative most alike to a vector, as the exact
search finds it, kept in step with every write and delete, never the vector's own creative."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ctax.index.collections
from ctax.index.connect import open_qdrant
from ctax.index.qdrant import LabelIndex

DIM = 32
CLUSTERS = 40


def names(n: int, start: int = 0) -> list[str]:
    return [f"{k:032x}" for k in range(start, start + n)]


def clustered(rng: np.random.Generator, n: int) -> np.ndarray:
    """Creatives of CLUSTERS kinds, as labelled creatives are: each near its kind's centre, not near each other."""
    centres = np.random.default_rng(0).normal(size=(CLUSTERS, DIM))
    vectors = centres[rng.integers(0, CLUSTERS, n)] + rng.normal(scale=0.5, size=(n, DIM))
    unit: np.ndarray = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    return unit


def variants(rng: np.random.Generator, of: np.ndarray, cosine: float) -> np.ndarray:
    """A re-cut of each vector: at about `cosine` to it."""
    noise = rng.normal(size=of.shape)
    noise -= (noise * of).sum(axis=1, keepdims=True) * of  # orthogonal to the original
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    out: np.ndarray = (cosine * of + np.sqrt(1 - cosine**2) * noise).astype(np.float32)
    return out


@pytest.fixture
def cells_from_600(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cells from 600 rows rather than 20,000, so that a test table of a few thousand is read through them."""
    monkeypatch.setattr(ctax.index.collections, "CELLS_FROM", 600)


def exact_best(index: LabelIndex, queries: np.ndarray, exclude: list[str | None]) -> list[tuple[str, float]]:
    rows = [index.nearest_creatives("v", queries[n : n + 1], 1, exclude=[exclude[n]])[0][0]
            for n in range(len(queries))]
    return [(hit.creative_id, hit.score) for hit in rows]


def test_the_cells_find_the_near_duplicates_the_exact_search_finds_with_its_cosine(
        tmp_path: Path, cells_from_600: None) -> None:
    rng = np.random.default_rng(1)
    index = LabelIndex(open_qdrant(None, tmp_path / "qdrant"), "t")
    stored = clustered(rng, 3000)
    index.upsert_creatives("v", names(3000), stored)
    sources = rng.choice(3000, 200, replace=False)
    queries = np.concatenate([variants(rng, stored[sources[:100]], 0.95), variants(rng, stored[sources[100:]], 0.99)])
    got = index.most_alike_creatives("v", queries, [None] * 200)
    assert index._tables[index.creatives_collection("v")].cells is not None  # read through the cells
    want = exact_best(index, queries, [None] * 200)
    assert [hit.creative_id for hit in got if hit] == [creative for creative, _ in want]
    assert np.allclose([hit.score for hit in got if hit], [score for _, score in want], atol=1e-6)
    # A creative is never its own near-duplicate: asked for itself, the one most alike but itself.
    own = names(3000)[:5]
    assert [hit.creative_id for hit in index.most_alike_creatives("v", stored[:5], own) if hit] == [
        creative for creative, _ in exact_best(index, stored[:5], list(own))]


def test_the_cells_follow_writes_and_deletes_and_are_built_again_once_mostly_stale(
        tmp_path: Path, cells_from_600: None) -> None:
    rng = np.random.default_rng(2)
    index = LabelIndex(open_qdrant(None, tmp_path / "qdrant"), "t")
    stored = clustered(rng, 2000)
    index.upsert_creatives("v", names(2000), stored)
    index.most_alike_creatives("v", stored[:1], [None])  # builds the cells
    table = index._tables[index.creatives_collection("v")]
    built = table.cells
    later = clustered(rng, 300)
    index.upsert_creatives("v", names(300, start=5000), later)  # labelled after the cells were built
    assert [hit.creative_id for hit in index.most_alike_creatives("v", variants(rng, later[:50], 0.97), [None] * 50)
            if hit] == names(50, start=5000)
    index.delete_creatives("v", names(50))  # deleted: never answered again
    moved = clustered(rng, 20)
    index.upsert_creatives("v", names(20, start=100), moved)  # written again elsewhere: found where it is now
    queries = np.concatenate([variants(rng, stored[:50], 0.99), variants(rng, moved, 0.99)])
    got = index.most_alike_creatives("v", queries, [None] * 70)
    assert not {hit.creative_id for hit in got if hit} & set(names(50))
    assert [hit.creative_id for hit in got[50:] if hit] == names(20, start=100)
    # Where the exact search's best is a near-duplicate (labelling's 0.946), the cells give it with its cosine; for
    # a deleted creative's re-cut the best left is a mere neighbour, which the codes need only rank approximately.
    exact = exact_best(index, queries, [None] * 70)
    near = [n for n, (_, score) in enumerate(exact) if score >= 0.946]
    assert len(near) >= 20
    assert [(got[n].creative_id, round(got[n].score, 5)) for n in near] == [
        (exact[n][0], round(exact[n][1], 5)) for n in near]
    assert table.cells is built
    index.delete_creatives("v", names(1500, start=100))  # most of what the cells hold is now stale
    rest = np.concatenate([stored[50:100], later])
    got = index.most_alike_creatives("v", variants(rng, rest, 0.98), [None] * len(rest))
    assert table.cells is not built and len(table.cells) == len(table) == 50 + 300 + 400
    assert [hit.creative_id for hit in got if hit] == names(50, start=50) + names(300, start=5000)


def test_a_small_collection_and_a_server_are_searched_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    index = LabelIndex(open_qdrant(None, tmp_path / "qdrant"), "t")
    stored = clustered(rng, 500)
    index.upsert_creatives("v", names(500), stored)
    queries = variants(rng, stored[:20], 0.9)
    for server in (False, True):
        index.is_server = server
        got = index.most_alike_creatives("v", queries, [names(1)[0]] * 20)
        assert [(hit.creative_id, round(hit.score, 5)) for hit in got if hit] == [
            (creative, round(score, 5)) for creative, score in exact_best(index, queries, [names(1)[0]] * 20)]
    index.is_server = False
    assert index._tables[index.creatives_collection("v")].cells is None
    assert index.most_alike_creatives("w", queries, [None] * 20) == [None] * 20  # a version with none labelled
