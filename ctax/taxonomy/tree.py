"""The label tree in memory: ancestors, children, leaves and tiers of the active labels, for the trigger and
training. Pure: built from (id, path, parent id) rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ctax.taxonomy.paths import LabelPath


@dataclass
class TaxonomyNode:
    id: int
    path: LabelPath
    parent_id: int | None


class Taxonomy:
    """An in-memory view of the active labels, for the trigger and training (ancestors, siblings, tiers)."""

    def __init__(self, nodes: Sequence[TaxonomyNode]) -> None:
        self.nodes = {node.id: node for node in nodes}
        self.by_path = {node.path: node for node in nodes}
        self.children: dict[int | None, list[int]] = {}
        for node in nodes:
            self.children.setdefault(node.parent_id, []).append(node.id)
        # The trigger asks for a label's ancestors tens of times per creative; the tree never changes once built.
        self._ancestors: dict[int, tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, label_id: object) -> bool:
        return label_id in self.nodes

    def path(self, label_id: int) -> LabelPath:
        return self.nodes[label_id].path

    def ancestors(self, label_id: int) -> list[int]:
        """Parent first."""
        chain = self._ancestors.get(label_id)
        if chain is None:
            out: list[int] = []
            parent = self.nodes[label_id].parent_id
            while parent is not None and parent in self.nodes:
                out.append(parent)
                parent = self.nodes[parent].parent_id
            chain = self._ancestors[label_id] = tuple(out)
        return list(chain)

    def subtree(self, label_id: int) -> list[int]:
        """The label and every label below it, tier by tier."""
        out, frontier = [label_id], [label_id]
        while frontier:
            frontier = [child for lid in frontier for child in self.children.get(lid, [])]
            out += frontier
        return out

    def is_leaf(self, label_id: int) -> bool:
        return not self.children.get(label_id)

    def leaves(self) -> list[int]:
        return [label_id for label_id in self.nodes if self.is_leaf(label_id)]

    def tier1(self, label_id: int) -> int:
        chain = [label_id, *self.ancestors(label_id)]
        return chain[-1]
