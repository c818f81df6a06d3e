"""bench.variant_geometry on vectors whose geometry we set: a tight burst against loose distinct ads."""

from __future__ import annotations

import numpy as np

from bench.variant_geometry import geometry


def test_a_tight_burst_sits_above_distinct_ads_and_the_levels_cut_its_pairs() -> None:
    rng = np.random.default_rng(3)

    def unit(v: np.ndarray) -> np.ndarray:
        return np.asarray(v / np.linalg.norm(v, axis=1, keepdims=True))

    source = rng.normal(size=32)
    variants = unit(source + 0.25 * rng.normal(size=(50, 32)))
    ads = unit(np.repeat(rng.normal(size=(4, 32)), 30, axis=0) + 0.9 * rng.normal(size=(120, 32)))
    figures = geometry(variants, ads, [str(n // 30) for n in range(120)], [0.5, 0.95])
    assert figures["variant pairs q10%"] > figures["distinct same-label pairs q99%"]
    assert figures["variant pairs q10%"] <= figures["variant pairs q50%"] <= figures["variant pairs q90%"]
    assert figures["variant pairs >= 0.5"] == 1.0 and 0 < figures["variant pairs >= 0.95"] < 1
    sims = variants @ variants.T
    assert np.isclose(figures["variant pairs >= 0.95"], np.mean(sims[np.triu_indices(50, 1)] >= 0.95))
