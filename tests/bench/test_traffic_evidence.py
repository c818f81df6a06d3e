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


def test_variant_levels_fall_as_the_share_grows_and_the_fixed_levels_share_matches_them() -> None:
    from bench.traffic_evidence import VARIANT_SHARES, variant_levels
    from ctax.labelling.calibration.held_out import Held, Reference

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(5, 16))
    vectors = np.repeat(centres, 60, axis=0) + 0.6 * rng.normal(size=(300, 16))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    held = Held([f"h{n}" for n in range(100)], [n % 5 for n in range(100)], vectors[:100])
    ref = Reference([], np.zeros((0, 16)), [f"e{n}" for n in range(200)], np.zeros(200, dtype=int), vectors[100:])
    levels = variant_levels(held, ref)
    by_share = [levels[f"variant level at {share:.0%}"] for share in VARIANT_SHARES]
    assert by_share == sorted(by_share, reverse=True) and by_share[0] > by_share[-1]
    sims = held.vectors @ np.vstack([held.vectors, ref.exemplar_vectors]).T
    sims[np.arange(100), np.arange(100)] = -1
    sims[sims >= 0.98] = -1  # copies aside, as for the near-duplicate floor
    nearest = sims.max(axis=1)
    for share, level in zip(VARIANT_SHARES, by_share, strict=True):
        assert abs(np.mean(nearest >= level) - share) <= 0.011  # that share of creatives has a neighbour above it
    assert levels["share at 0.88"] == np.mean(nearest >= 0.88)


def test_mahalanobis_finds_the_nearest_labels_cloud_and_leaves_the_own_label_out_when_asked() -> None:
    from bench.traffic_evidence import mahalanobis
    from ctax.labelling.calibration.held_out import Held, Reference

    rng = np.random.default_rng(2)
    centres = 3 * rng.normal(size=(3, 8))
    exemplars = np.repeat(centres, 80, axis=0) + rng.normal(size=(240, 8))
    ref = Reference([], np.zeros((0, 8)), [f"e{n}" for n in range(240)], np.repeat([0, 1, 2], 80), exemplars)
    held = Held(["near 0", "far"], [0, 0], np.vstack([centres[0] + 0.1 * rng.normal(size=8), 40 * np.ones(8)]))
    plain = mahalanobis(held, ref, drop_own=False)
    assert plain[0, 0] < 30 < plain[1, 0]  # ~chi-squared with 8 degrees of freedom inside its cloud
    without_own = mahalanobis(held, ref, drop_own=True)
    assert without_own[0, 0] > 5 * plain[0, 0]  # its own label left out, the nearest other cloud is far
    # Relative: less the distance to one Gaussian of all exemplars, which is far for neither.
    assert np.allclose(plain[:, 0] - plain[:, 1], without_own[:, 0] - without_own[:, 1])
