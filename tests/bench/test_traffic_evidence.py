"""bench.traffic_evidence's trickle window: a held-out creative sees only a share of its own label's fellows."""

from __future__ import annotations

import numpy as np

from bench.traffic_evidence import window


def test_a_trickle_window_hides_a_creatives_fellows_and_never_shows_it_itself() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 8))
    vectors[:10] += 4 * np.eye(8)[0]  # group "a": ten creatives close to each other
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    groups = np.array(["a"] * 10 + ["b"] * 30)
    sims = vectors @ vectors.T

    crowd = window(vectors, groups, np.ones(40), rng)
    alone = window(vectors, groups, np.r_[np.zeros(10), np.ones(30)], rng)
    outside = np.sort(sims[0, 10:])[::-1][:20]
    assert np.allclose(alone[0], outside)  # none of its fellows, only the other group
    fellows = np.sort(np.r_[sims[0, 1:10], sims[0, 10:]])[::-1][:20]
    assert np.allclose(crowd[0], fellows)  # all of them, but never itself (its similarity 1.0 is absent)
    assert max(crowd[0]) < 0.9999
    assert np.allclose(alone[15], crowd[15])  # creatives kept in full see the same window
