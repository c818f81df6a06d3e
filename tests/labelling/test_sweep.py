"""The novelty sweep's bound: which young creatives no traffic could raise (the sweep itself: tests/worker)."""

from __future__ import annotations

import numpy as np

from ctax.labelling.novelty import FEATURES, NoveltyModel, one_per_campaign, traffic_ceiling, traffic_k
from ctax.labelling.sweep import may_raise
from ctax.labelling.trigger import Evidence, Thresholds, Trigger
from ctax.taxonomy.paths import LabelPath
from ctax.taxonomy.tree import Taxonomy, TaxonomyNode
from tests.conftest import random_neighbourhood

TREE = Taxonomy([
    TaxonomyNode(1, LabelPath.parse("A"), None),
    TaxonomyNode(2, LabelPath.parse("A/x"), 1),
    TaxonomyNode(3, LabelPath.parse("A/y"), 1),
    TaxonomyNode(4, LabelPath.parse("B"), None),
    TaxonomyNode(5, LabelPath.parse("B/z"), 4),
])


def trigger_for(rng: np.random.Generator, level: float, new_label: float, traffic_weight: float) -> Trigger:
    """A learned score over every feature with random weights, `traffic_weight` on the traffic feature."""
    coef = rng.normal(size=len(FEATURES))
    coef[FEATURES.index("traffic_minus_exemplar")] = traffic_weight
    model = NoveltyModel(tuple(rng.normal(scale=0.1, size=len(FEATURES))), tuple(rng.uniform(0.05, 1.0,
                         size=len(FEATURES))), tuple(coef), float(rng.normal()))
    return Trigger(TREE, Thresholds(new_label=new_label, novelty_model=model.to_json(), traffic_reference=10,
                                    variant_similarity=level, campaigns_once=True))


def test_no_creative_the_traffic_would_raise_is_skipped_and_most_that_it_cannot_are() -> None:
    """On random neighbourhoods, score weights and windows (k from 1 to 100, often more than the neighbours below
    the level): with the threshold just above a creative's true fit (campaigns counted once), the bound from its
    raw neighbours always leaves it to be re-decided; with the threshold well below, it mostly does not."""
    rng = np.random.default_rng(17)
    skipped_below = 0
    trials = 0
    for trial in range(400):
        sims, near = random_neighbourhood(rng)
        order = np.argsort(-sims, kind="stable")  # as the search returns them, best first
        sims, near = sims[order], near[order]
        level = float(rng.choice([0.6, 0.8, 0.9]))
        window = int(rng.integers(1, 120))
        evidence = Evidence(label_scores={2: float(rng.uniform(0, 0.8)), 3: float(rng.uniform(0, 0.8)),
                                          5: float(rng.uniform(0, 0.8))},
                            exemplars=[(int(rng.choice([2, 3, 5])), float(rng.uniform(0, 0.9))) for _ in range(5)],
                            traffic=sims.tolist(), traffic_window=window)
        # Mostly a score that reads more traffic like a creative as more novel (as calibration fits it), some
        # the other way round or blind to the traffic: those cannot be bounded so, and nothing may be skipped.
        weight = float(rng.choice([rng.uniform(0.1, 30.0), rng.uniform(-30.0, 0.0), 0.0], p=[0.7, 0.2, 0.1]))
        trigger = trigger_for(rng, level, 0.0, weight)
        counted = Evidence(**{**evidence.__dict__, "traffic": one_per_campaign(sims, near, level)})
        fit = trigger.fit(counted)
        # What the sweep bounds it by: its fit with no traffic (searched once, kept) and its raw neighbours.
        alone = trigger.fit(Evidence(**{**evidence.__dict__, "traffic": ()}))
        most = float(traffic_ceiling(sims[None, :], traffic_k(window, 10), level)[0])
        just_above = Trigger(TREE, Thresholds(**{**trigger.thresholds.__dict__, "new_label": fit + 1e-7}))
        assert may_raise(just_above, alone, most), (trial, fit, traffic_k(window, 10))
        well_below = Trigger(TREE, Thresholds(**{**trigger.thresholds.__dict__, "new_label": fit - 2.0}))
        if weight > 0:
            skipped_below += not may_raise(well_below, alone, most)
            trials += 1
        else:
            assert may_raise(well_below, alone, most)
        assert may_raise(well_below, None, most)  # no label to fit: new_label whatever comes
    assert skipped_below >= trials // 2  # the bound is tight enough to skip what it should
