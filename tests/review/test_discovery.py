"""Discovery's pure parts: clusters found (noise left out), parents suggested, names from contrasting terms."""

from __future__ import annotations

import numpy as np
import pytest

from ctax.review.discovery import DiscoveryParams, LabelVectors, propose, salient_terms, suggest_name
from ctax.taxonomy.paths import LabelPath
from ctax.taxonomy.tree import Taxonomy, TaxonomyNode
from ctax.vectors import normalise

PATHS = ["Product", "Product/Pets", "Product/Pets/Pet Food", "Product/Food", "Product/Food/Snacks", "Service",
         "Service/Travel", "Service/Travel/Cruises"]


def _taxonomy() -> Taxonomy:
    ids = {path: n + 1 for n, path in enumerate(PATHS)}
    return Taxonomy([TaxonomyNode(ids[p], LabelPath.parse(p), ids.get(p.rsplit("/", 1)[0]) if "/" in p else None)
                     for p in PATHS])


def _space(dim: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    axes = normalise(rng.normal(size=(len(PATHS), dim)))
    return rng, axes


def _around(rng, centre: np.ndarray, n: int, spread: float = 0.15) -> np.ndarray:
    return normalise(centre + spread * rng.normal(size=(n, centre.shape[0])))


def test_two_dense_groups_become_two_proposals_and_scattered_points_stay_noise() -> None:
    rng, axes = _space()
    taxonomy = _taxonomy()
    labels = LabelVectors([n + 1 for n in range(len(PATHS))], axes, taxonomy)
    # Dog adoption sits near Pet Food (a Pets child); river cruises near Cruises (a Travel child).
    dogs = _around(rng, normalise(axes[2:3] + 0.6 * rng.normal(size=(1, 32)) / 5.6)[0], 12)
    rivers = _around(rng, normalise(axes[7:8] + 0.6 * rng.normal(size=(1, 32)) / 5.6)[0], 9)
    noise = normalise(rng.normal(size=(6, 32)))
    vectors = np.vstack([dogs, rivers, noise])
    ids = [f"d{n}" for n in range(12)] + [f"r{n}" for n in range(9)] + [f"x{n}" for n in range(6)]
    texts = ([f"adopt a rescue dog from the shelter, puppy {n}" for n in range(12)]
             + [f"river cruise along the danube, cabins and boat deck {n}" for n in range(9)]
             + ["buy now", "best price", "limited offer", "call today", "free shipping", "new model"])
    background = ["buy this car because it is fast"] * 20 + ["drink this soda, it is fresh"] * 20

    drafts = propose(ids, vectors, texts, labels, background, DiscoveryParams(min_cluster_size=4))

    assert len(drafts) == 2
    big, small = drafts
    assert set(big.member_ids) == {f"d{n}" for n in range(12)}
    assert set(small.member_ids) == {f"r{n}" for n in range(9)}
    assert big.suggested_parent_id == 2 and small.suggested_parent_id == 7  # Product/Pets, Service/Travel
    assert any(word in " ".join(big.terms) for word in ("dog", "rescue", "shelter", "adopt"))
    assert any(word in " ".join(small.terms) for word in ("river", "cruise", "danube"))
    assert "buy" not in big.terms and big.cohesion > 0.7


def test_too_few_points_propose_nothing() -> None:
    _, axes = _space()
    labels = LabelVectors([n + 1 for n in range(len(PATHS))], axes, _taxonomy())
    assert propose(["a", "b"], axes[:2], ["x", "y"], labels, params=DiscoveryParams(min_cluster_size=5)) == []


def test_terms_contrast_with_the_rest_of_the_corpus() -> None:
    groups = [["cheap flights to rome", "flights to paris cheap", "cheap flights deals"],
              ["fresh pizza delivery", "pizza delivered hot", "order pizza tonight"]]
    background = ["buy it now because it is good"] * 10 + ["cheap prices every day"] * 10
    flights, pizza = salient_terms(groups, background, 3)
    assert flights[0] == "flights" and pizza[0] == "pizza"
    assert "cheap" not in flights[:1]  # common in the background, so it does not name the cluster


def test_names_avoid_a_sibling_that_exists() -> None:
    assert suggest_name(["pizza", "delivery"]) == "Pizza and Delivery"
    assert suggest_name(["dog"]) == "Dog"
    assert suggest_name(["pizza", "delivery", "hot"], taken=["Pizza and Delivery"]) == "Pizza and Delivery and Hot"
    assert suggest_name([]) == "New label"


@pytest.mark.slow  # UMAP compiles with numba on first use: seconds, not milliseconds
def test_with_enough_points_clusters_are_found_after_umap() -> None:
    """The service's default path: UMAP to 5 dimensions, then HDBSCAN (umap-learn is an optional dependency)."""
    pytest.importorskip("umap")
    rng, axes = _space(dim=48, seed=3)
    labels = LabelVectors([n + 1 for n in range(len(PATHS))], axes, _taxonomy())
    centres = normalise(rng.normal(size=(3, 48)))
    groups = [_around(rng, centres[g], 40, spread=0.12) for g in range(3)]
    vectors = np.vstack([*groups, normalise(rng.normal(size=(10, 48)))])
    ids = [f"g{g}-{n}" for g in range(3) for n in range(40)] + [f"x{n}" for n in range(10)]
    texts = [f"group{g} word{g} text" for g in range(3) for _ in range(40)] + ["stray"] * 10

    drafts = propose(ids, vectors, texts, labels, params=DiscoveryParams())

    assert len(drafts) == 3
    for draft in drafts:
        groups = {member.split("-")[0] for member in draft.member_ids}
        assert len(groups) == 1 and groups != {"x0"} and len(draft.member_ids) >= 30
