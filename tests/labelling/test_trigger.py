"""The trigger is a pure function of similarities: tested without models."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ctax.labelling.trigger import OCR, Evidence, Thresholds, Trigger
from ctax.taxonomy.paths import LabelPath
from ctax.taxonomy.tree import Taxonomy, TaxonomyNode

PATHS = {
    1: "Product", 2: "Product/Vehicles", 3: "Product/Vehicles/Cars", 4: "Product/Vehicles/Motorbikes",
    5: "Product/Food", 6: "Product/Food/Snacks", 7: "PSA", 8: "PSA/Animal Rights",
}


@pytest.fixture
def taxonomy() -> Taxonomy:
    nodes = []
    by_path = {v: k for k, v in PATHS.items()}
    for label_id, path in PATHS.items():
        parsed = LabelPath.parse(path)
        nodes.append(TaxonomyNode(label_id, parsed, by_path.get(str(parsed.parent)) if parsed.parent else None))
    return Taxonomy(nodes)


def decide(taxonomy: Taxonomy, scores: dict[int, float], thresholds: Thresholds | None = None,
           exemplars: list[tuple[int, float]] | None = None, asserted: int | None = None):
    trigger = Trigger(taxonomy, thresholds or Thresholds(new_label=0.3, wrong_label=0.1, margin=0.02), top_k=3)
    return trigger.decide(Evidence(scores, exemplars or [], asserted))


def test_clear_winner_is_decided_without_flag(taxonomy) -> None:
    decision = decide(taxonomy, {3: 0.8, 2: 0.6, 4: 0.5, 6: 0.2})
    assert decision.decided_label_id == 3 and decision.flag == "none"
    assert [r.label_id for r in decision.ranked] == [3, 2, 4]
    assert decision.scores["margin"] == pytest.approx(0.3)  # against Motorbikes: Vehicles is Cars' own parent
    assert "Product/Vehicles/Cars" in decision.reasons[0]


def test_nothing_close_is_a_new_label(taxonomy) -> None:
    decision = decide(taxonomy, {3: 0.21, 6: 0.2, 8: 0.1})
    assert decision.flag == "new_label" and decision.decided_label_id is None
    assert "below the new-label threshold 0.300" in decision.reasons[0]


def test_uncertain_leaf_falls_back_to_the_confident_parent(taxonomy) -> None:
    decision = decide(taxonomy, {3: 0.70, 4: 0.69, 6: 0.3})
    assert decision.flag == "low_confidence"
    assert decision.decided_label_id == 2
    assert "common parent Product/Vehicles" in decision.reasons[0]


def test_uncertain_across_branches_keeps_the_top_label(taxonomy) -> None:
    decision = decide(taxonomy, {3: 0.70, 8: 0.695})
    assert decision.flag == "low_confidence" and decision.decided_label_id == 3
    assert "share no parent" in decision.reasons[0]


def test_asserted_label_far_below_the_top_is_wrong(taxonomy) -> None:
    decision = decide(taxonomy, {3: 0.8, 6: 0.4, 8: 0.35}, asserted=6)
    assert decision.flag == "wrong_label"
    assert decision.scores["wrong_label_gap"] == pytest.approx(0.4)
    assert "Product/Food/Snacks" in decision.reasons[-1]


def test_asserted_ancestor_or_close_label_is_consistent(taxonomy) -> None:
    assert decide(taxonomy, {3: 0.8, 2: 0.5}, asserted=2).flag == "none"  # the parent of the top label
    assert decide(taxonomy, {3: 0.8, 4: 0.75}, asserted=4).flag == "none"  # within the threshold
    # An asserted parent whose child tops the ranking is judged by its best descendant.
    assert decide(taxonomy, {4: 0.8, 1: 0.3}, asserted=1).flag == "none"


def test_per_label_wrong_threshold_overrides_the_global_one(taxonomy) -> None:
    loose = Thresholds(new_label=0.3, wrong_label=0.1, margin=0.02, per_label_wrong={6: 0.5})
    assert decide(taxonomy, {3: 0.8, 6: 0.4}, loose, asserted=6).flag == "none"
    assert decide(taxonomy, {3: 0.8, 6: 0.4}, asserted=6).flag == "wrong_label"


def test_exemplar_votes_reorder_and_count_for_ancestors(taxonomy) -> None:
    thresholds = Thresholds(new_label=0.3, wrong_label=0.1, margin=0.0, exemplar_weight=0.5)
    neighbours = [(4, 0.9), (4, 0.85), (3, 0.5)]
    decision = decide(taxonomy, {3: 0.70, 4: 0.65}, thresholds, exemplars=neighbours)
    assert decision.decided_label_id == 4
    top = decision.ranked[0]
    assert top.exemplar_share == pytest.approx(1.75 / 2.25)
    trigger = Trigger(taxonomy, thresholds)
    assert trigger.exemplar_shares(neighbours)[2] == pytest.approx(1.0)  # Vehicles gets all its children's votes


def test_exemplar_fit_weight_rescues_creatives_near_labelled_examples(taxonomy) -> None:
    thresholds = Thresholds(new_label=0.5, exemplar_fit_weight=0.5)
    assert decide(taxonomy, {3: 0.3}, thresholds, exemplars=[(3, 0.9)]).flag != "new_label"
    assert decide(taxonomy, {3: 0.3}, thresholds, exemplars=[(3, 0.2)]).flag == "new_label"


def test_unknown_or_empty_inputs(taxonomy) -> None:
    assert decide(taxonomy, {}).flag == "new_label"
    assert decide(taxonomy, {99: 0.9}).flag == "new_label"  # a label no longer in the taxonomy is ignored


def test_thresholds_round_trip_through_json() -> None:
    original = Thresholds(new_label=0.41, wrong_label=0.2, per_label_wrong={3: 0.3}, margin=0.05,
                          exemplar_weight=0.2, exemplar_fit_weight=0.25, source="calibrated")
    assert Thresholds.from_json(original.to_json()) == original
    assert Thresholds.from_json(None) == Thresholds()


def test_ocr_read_creatives_are_judged_by_the_ocr_thresholds(taxonomy) -> None:
    thresholds = Thresholds(new_label=0.3, wrong_label=0.1, margin=0.02, per_label_wrong={8: 0.1},
                            ocr_new_label=0.2, ocr_wrong_label=0.3)
    trigger = Trigger(taxonomy, thresholds, top_k=3)
    # Fit 0.25: below the supplied-text new_label threshold, above the OCR one.
    scores = {3: 0.25, 4: 0.1}
    assert trigger.decide(Evidence(scores, [])).flag == "new_label"
    read = trigger.decide(Evidence(scores, [], text_source=OCR))
    assert read.flag == "none" and read.scores["new_label_threshold"] == 0.2
    # The asserted label trails by 0.2: wrong against its per-label threshold (0.1) for supplied text, within the
    # OCR one (0.3), which replaces the per-label ones fitted on supplied text.
    scores = {3: 0.45, 4: 0.1, 8: 0.25}
    assert trigger.decide(Evidence(scores, [], 8)).flag == "wrong_label"
    read = trigger.decide(Evidence(scores, [], 8, text_source=OCR))
    assert read.flag == "none" and read.scores["wrong_label_threshold"] == 0.3
    assert Thresholds.from_json(thresholds.to_json()) == thresholds


def test_without_ocr_thresholds_ocr_read_creatives_use_the_supplied_text_ones(taxonomy) -> None:
    stored_before = {"new_label": 0.3, "wrong_label": 0.1, "margin": 0.02}  # a version calibrated before
    trigger = Trigger(taxonomy, Thresholds.from_json(stored_before), top_k=3)
    read = trigger.decide(Evidence({3: 0.25, 4: 0.1}, [], None, text_source=OCR))
    assert read.flag == "new_label" and read.scores["new_label_threshold"] == 0.3


def test_ocr_read_creatives_are_scored_by_the_versions_ocr_novelty_score_where_it_has_one(taxonomy) -> None:
    from ctax.labelling.novelty import FEATURES, NoveltyModel, novelty_features

    ones = (0.0,) * len(FEATURES), (1.0,) * len(FEATURES)
    # The supplied-text score leans on the best label similarity, the OCR one on the nearest exemplars'.
    by_label = NoveltyModel(*ones, tuple(-1.0 if f == "best_label" else 0.0 for f in FEATURES), 0.0)
    by_exemplars = NoveltyModel(*ones, tuple(-1.0 if f == "exemplar_mean" else 0.0 for f in FEATURES), 0.0)
    thresholds = Thresholds(new_label=0.3, ocr_new_label=0.3, novelty_model=by_label.to_json(),
                            ocr_novelty_model=by_exemplars.to_json())
    trigger = Trigger(taxonomy, thresholds, top_k=3)
    supplied = Evidence({3: 0.6, 4: 0.1}, [(3, 0.2), (4, 0.1)])
    read = replace(supplied, text_source=OCR)
    features = novelty_features(supplied.label_scores, supplied.exemplars, taxonomy)
    assert trigger.fit(supplied) == pytest.approx(features[FEATURES.index("best_label")]) == pytest.approx(0.6)
    assert trigger.fit(read) == pytest.approx(features[FEATURES.index("exemplar_mean")]) == pytest.approx(0.15)
    assert trigger.decide(supplied).flag != "new_label" and trigger.decide(read).flag == "new_label"
    assert Thresholds.from_json(thresholds.to_json()) == thresholds
    # A version without an OCR score of its own judges both by the supplied-text one.
    shared = Trigger(taxonomy, replace(thresholds, ocr_novelty_model=None), top_k=3)
    assert shared.fit(read) == shared.fit(supplied) == trigger.fit(supplied)
    assert shared.novelty_model_for(OCR) is shared.novelty_model
