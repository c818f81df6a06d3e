"""bench.creatives_fill shapes its synthetic labelled creatives like real ones: unit vectors turned from a real
ad's vector by a bounded angle, so none is a near-duplicate of the ad it was turned from."""

from __future__ import annotations

import numpy as np

from bench.creatives_fill import turned


def test_fill_creatives_are_unit_vectors_turned_from_their_centre_by_cosine_0_6_to_0_9() -> None:
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((5, 384)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = turned(np.random.default_rng(4), centres, 2_000)
    assert out.shape == (2_000, 384) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # each row's nearest centre is the one it was turned from, at the drawn cosine
    best = (out @ centres.T).max(axis=1)
    assert best.min() >= 0.6 - 1e-5 and best.max() <= 0.9 + 1e-5
    assert best.std() > 0.05  # drawn, not one angle for all
    # the fill's own rows are not near-duplicates of each other (labelling's 0.946)
    within = out[:500] @ out[:500].T
    np.fill_diagonal(within, -1)
    assert within.max() < 0.946
