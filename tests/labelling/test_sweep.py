"""The novelty sweep's bound: which young creatives no traffic could raise (the sweep itself: tests/worker)."""

from __future__ import annotations

import numpy as np

from ctax.labelling.novelty import FEATURES, NoveltyModel, one_per_campaign, traffic_ceiling, traffic_k
from ctax.labelling.sweep_bound import may_raise
from ctax.labelling.trigger import OCR, TEXT, Evidence, Thresholds, Trigger
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


def test_an_ocr_read_creative_is_bounded_by_the_versions_ocr_novelty_score() -> None:
    """A version with a novelty score of its own for OCR-read creatives: the bound reads that score's traffic
    weight and the OCR threshold for them, the supplied-text ones for the rest."""
    rng = np.random.default_rng(3)
    sims, near = random_neighbourhood(rng)
    order = np.argsort(-sims, kind="stable")
    sims, near = sims[order], near[order]
    text_only = trigger_for(rng, 0.8, 0.0, 0.0)  # supplied text: a score blind to the traffic, never bounded
    by_traffic = trigger_for(rng, 0.8, 0.0, 12.0).thresholds.novelty_model
    evidence = Evidence({2: 0.5, 3: 0.3, 5: 0.2}, [(2, 0.6), (3, 0.4)], traffic=sims.tolist(), traffic_window=10,
                        text_source=OCR)
    for ocr_new_label_offset, skippable in ((1e-7, False), (-2.0, True)):
        probe = Trigger(TREE, Thresholds(**{**text_only.thresholds.__dict__, "ocr_novelty_model": by_traffic}))
        fit = probe.fit(Evidence(**{**evidence.__dict__, "traffic": one_per_campaign(sims, near, 0.8)}))
        trigger = Trigger(TREE, Thresholds(**{**probe.thresholds.__dict__, "new_label": fit - 2.0,
                                              "ocr_new_label": fit + ocr_new_label_offset}))
        alone = trigger.fit(Evidence(**{**evidence.__dict__, "traffic": ()}))
        most = float(traffic_ceiling(sims[None, :], traffic_k(10, 10), 0.8)[0])
        assert may_raise(trigger, alone, most, OCR) is not skippable
        assert may_raise(trigger, alone, most, TEXT)  # the supplied-text score reads no traffic: always re-decided


def test_the_fit_without_traffic_follows_from_the_decisions_fit() -> None:
    """What labelling keeps for the sweep's bound: worked out from the fit the decision read (the score is linear
    in the traffic feature), equal to the fit worked out again with no traffic, for either text source's score."""
    rng = np.random.default_rng(11)
    for trial in range(200):
        sims, _ = random_neighbourhood(rng)
        sims = np.sort(sims)[::-1]
        level = float(rng.choice([0.6, 0.8, 0.9]))
        weight = float(rng.choice([rng.uniform(-30.0, 30.0), 0.0]))
        trigger = trigger_for(rng, level, 0.0, weight)
        ocr = trigger_for(rng, level, 0.0, float(rng.uniform(-30.0, 30.0))).thresholds.novelty_model
        trigger = Trigger(TREE, Thresholds(**{**trigger.thresholds.__dict__, "ocr_novelty_model": ocr}))
        evidence = Evidence({2: float(rng.uniform(0, 0.8)), 3: float(rng.uniform(0, 0.8))},
                            [(int(rng.choice([2, 3, 5])), float(rng.uniform(0, 0.9))) for _ in range(5)],
                            traffic=sims.tolist(), traffic_window=int(rng.integers(1, 120)),
                            text_source=str(rng.choice([TEXT, OCR])))
        alone = trigger.fit(Evidence(**{**evidence.__dict__, "traffic": (), "traffic_window": 0}))
        assert abs(trigger.fit_without_traffic(evidence, trigger.fit(evidence)) - alone) < 1e-9, trial
    assert trigger.fit_without_traffic(evidence, None) is None  # no label to fit
