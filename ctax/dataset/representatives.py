"""Which labelled creatives serve as a label's exemplars: at most a budget per label, so that the labelling worker's
memory and per-batch search stay flat however much labelled data accumulates (docs/benchmarks.md, "A flat cost as
labelled data grows").

The rule, in two steps, both functions of the label's members alone (never of the order they arrived in):

1. **Sample.** Per label, the `sample_size(budget)` members with the smallest draw keys (a seeded hash of their
   content, `LabelledCreative.draw_key(SAMPLE_SEED)`): a uniform random sample that a new member enters only if its
   key is small enough, so a label gaining data changes its sample (and costs an encoding) with probability
   sample / members, and the vectors kept stay bounded per label.
2. **Medoids.** The sample, in key order, is clustered by k-means into `budget` clusters (scikit-learn's KMeans with
   a fixed seed, on unit vectors, where Euclidean and cosine rank alike) and the member nearest each centre is kept:
   a representative that is a real labelled creative, one per region of the label's distribution, so rare styles
   keep an exemplar that a random subsample would drop. True k-medoids (PAM) would need a dependency we do not
   have and all pairwise distances; the nearest member of each k-means centre is its usual approximation.

A label with no more members than the budget keeps them all; a budget of 0 keeps every labelled creative.
Pure: keys, labels and vectors in, row indices out.
"""

from __future__ import annotations

import heapq
import warnings
from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from ctax.vectors import normalise

# Candidates per representative: k-means over 8 members a cluster places its centres by the label's density,
# while the sample (vectors kept per label) stays a small multiple of the budget.
SAMPLE_PER_REPRESENTATIVE = 8
# The seed of the draw keys that order a label's members for its sample, and of k-means. Fixed, not a setting:
# calibration and serving must choose the same creatives (validation.py, lifecycle.held_from_index).
SAMPLE_SEED = 0
KMEANS_SEED = 0


def sample_size(budget: int) -> int:
    """How many of a label's members its representatives are chosen from (0: all of them)."""
    return budget * SAMPLE_PER_REPRESENTATIVE


def draw_sample(keys: Sequence[Any], labels: Sequence[int], budget: int) -> dict[int, list[int]]:
    """Per label, the row indices of its sample: its `sample_size(budget)` members with the smallest keys, in key
    order (all of them, in key order, when the budget is 0 or the label has fewer)."""
    by_label: dict[int, list[tuple[Any, int]]] = defaultdict(list)
    for row, (key, label) in enumerate(zip(keys, labels, strict=True)):
        by_label[int(label)].append((key, row))
    size = sample_size(budget)
    out: dict[int, list[int]] = {}
    for label, members in by_label.items():
        chosen = sorted(members) if size == 0 or len(members) <= size else heapq.nsmallest(size, members)
        out[label] = [row for _, row in chosen]
    return out


def medoids(vectors: np.ndarray, budget: int) -> list[int]:
    """The rows of one label's sample (in key order) kept as its representatives, ascending: all of them when they
    are no more than the budget, else the member nearest each of `budget` k-means centres."""
    count = len(vectors)
    if budget == 0 or count <= budget:
        return list(range(count))
    from sklearn.cluster import KMeans  # imported here: only a sync or a calibration over a full label pays for it

    unit = normalise(np.asarray(vectors, dtype=np.float32))
    with warnings.catch_warnings():
        # Fewer distinct vectors than clusters (copies of one creative): some clusters repeat, kept once below.
        warnings.simplefilter("ignore")
        fitted = KMeans(n_clusters=budget, n_init=1, random_state=KMEANS_SEED).fit(unit)
    assigned = np.asarray(fitted.labels_)
    centres = np.asarray(fitted.cluster_centers_, dtype=np.float32)
    chosen: set[int] = set()
    for cluster in range(budget):
        members = np.flatnonzero(assigned == cluster)
        if len(members):
            distances = ((unit[members] - centres[cluster]) ** 2).sum(axis=1)
            chosen.add(int(members[int(np.argmin(distances))]))  # ties: the member first in key order
    return sorted(chosen)


def representatives(keys: Sequence[Hashable], labels: Sequence[int], vectors: np.ndarray, budget: int) -> list[int]:
    """The whole rule over a set of labelled creatives: row indices of the exemplars kept, ascending."""
    kept: list[int] = []
    for rows in draw_sample(keys, labels, budget).values():
        kept += [rows[n] for n in medoids(vectors[rows], budget)]
    return sorted(kept)
