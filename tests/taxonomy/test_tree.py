"""The label tree in memory."""

from __future__ import annotations

from ctax.taxonomy.paths import LabelPath
from ctax.taxonomy.tree import Taxonomy, TaxonomyNode


def tree(*paths: str) -> Taxonomy:
    ids = {path: n + 1 for n, path in enumerate(paths)}
    return Taxonomy([TaxonomyNode(ids[p], LabelPath.parse(p), ids.get(p.rpartition("/")[0])) for p in paths])


def test_a_labels_subtree_is_itself_and_everything_below_it_tier_by_tier_and_its_ancestors_parent_first() -> None:
    labels = tree("Service", "Service/Vehicles", "Service/Vehicles/Maintenance", "Service/Vehicles/Rental",
                  "Service/Food", "Product")
    assert labels.subtree(1) == [1, 2, 5, 3, 4]
    assert labels.subtree(2) == [2, 3, 4]
    assert labels.subtree(3) == [3] and labels.subtree(6) == [6]
    assert labels.ancestors(3) == [2, 1] and labels.ancestors(1) == []
    assert labels.is_leaf(4) and not labels.is_leaf(2)
