"""bench.campaign_pairs times the two ways of counting campaigns and refuses figures whose traffic differs."""

from __future__ import annotations

import numpy as np

from bench.campaign_pairs import measure


def test_both_ways_read_the_same_traffic_and_the_share_of_social_creatives_is_reported() -> None:
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(8, 32))
    picks = rng.integers(0, 8, 700)
    vectors = centres[picks] + rng.uniform(0.05, 1.5, size=(700, 1)) * rng.normal(size=(700, 32))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    figures = measure(vectors[:500], vectors[500:], turns=1)
    assert 0 < figures["social_share"] < 1
    assert figures["every_pair_ms"] > 0 and figures["lonely_skipped_ms"] > 0
