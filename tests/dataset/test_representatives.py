"""The exemplar budget's rule: at most N representatives per label, each the member nearest a k-means centre of the
label's sample, whatever order the creatives come in."""

from __future__ import annotations

import numpy as np

from ctax.dataset.representatives import draw_sample, medoids, representatives, sample_size


def blobs(centres: np.ndarray, spread: float = 0.01) -> tuple[np.ndarray, list[int]]:
    """Around each centre, the centre itself and pairs of opposite offsets along the last three axes (which the
    centres must not use: the rule compares directions), so that each blob's mean direction is its centre member's.
    Returns the vectors and the row numbers of the centre members."""
    dim = centres.shape[1]
    rows, centre_rows = [], []
    for centre in centres:
        for axis in range(dim - 3, dim):
            offset = np.zeros(dim)
            offset[axis] = spread
            rows += [centre + offset, centre - offset]
            if axis == dim - 2:  # in the middle of its blob, not first or last
                centre_rows.append(len(rows))
                rows.append(centre)
    return np.asarray(rows, dtype=np.float32), centre_rows


def test_each_kept_creative_is_the_member_nearest_a_cluster_centre() -> None:
    # Four far-apart regions of one label, seven creatives each: a budget of 4 keeps one per region, its middle.
    centres = 10 * np.eye(8, dtype=np.float32)[:4]
    vectors, centre_rows = blobs(centres)
    assert medoids(vectors, 4) == centre_rows


def test_at_most_the_budget_per_label_and_small_labels_keep_everything() -> None:
    rng = np.random.default_rng(0)
    labels = [1] * 40 + [2] * 3 + [3] * 9
    vectors = rng.normal(size=(len(labels), 16)).astype(np.float32)
    keys = [f"{n:04d}" for n in range(len(labels))]
    kept = representatives(keys, labels, vectors, 5)
    per_label = {label: sum(1 for n in kept if labels[n] == label) for label in (1, 2, 3)}
    assert per_label == {1: 5, 2: 3, 3: 5}
    assert representatives(keys, labels, vectors, 0) == list(range(len(labels)))  # no budget: every creative


def test_the_choice_does_not_depend_on_the_order_creatives_arrive_in() -> None:
    rng = np.random.default_rng(1)
    labels = [1] * 30 + [2] * 25
    vectors = rng.normal(size=(len(labels), 8)).astype(np.float32)
    keys = [f"{rng.random():.12f}" for _ in labels]
    chosen = {keys[n] for n in representatives(keys, labels, vectors, 4)}
    order = rng.permutation(len(labels))
    shuffled = representatives([keys[n] for n in order], [labels[n] for n in order], vectors[order], 4)
    assert {keys[order[n]] for n in shuffled} == chosen


def test_the_sample_is_the_members_with_the_smallest_keys() -> None:
    budget = 2
    size = sample_size(budget)
    keys = [f"{n:03d}" for n in range(3 * size)][::-1]  # arriving largest key first
    labels = [7] * len(keys)
    sample = draw_sample(keys, labels, budget)[7]
    assert [keys[n] for n in sample] == [f"{n:03d}" for n in range(size)]  # the smallest, in key order
    # A member with a larger key than the whole sample leaves it as it was; a smaller one enters it.
    assert draw_sample([*keys, "999"], [*labels, 7], budget)[7] == sample
    assert draw_sample([*keys, "!"], [*labels, 7], budget)[7][0] == len(keys)
