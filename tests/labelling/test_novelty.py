"""The learned novelty score: its features, its stored form, and when calibration picks it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ctax.labelling.calibration import Held, Reference, auroc, build_evidence, calibrate, simulated_traffic
from ctax.labelling.novelty import (
    DUPLICATE_SIMILARITY,
    FEATURES,
    LABEL_CANDIDATES,
    MAX_TRAFFIC_K,
    TRAFFIC_K,
    VARIANT_SIMILARITY,
    NoveltyModel,
    fit_novelty_model,
    novelty_features,
    one_per_campaign,
    traffic_k,
    traffic_mean,
)
from ctax.labelling.trigger import Evidence, Thresholds, Trigger
from ctax.taxonomy.paths import LabelPath
from ctax.taxonomy.tree import Taxonomy, TaxonomyNode
from tests.conftest import campaign_neighbourhood, random_neighbourhood


def _tree() -> Taxonomy:
    return Taxonomy([
        TaxonomyNode(1, LabelPath.parse("A"), None),
        TaxonomyNode(2, LabelPath.parse("A/x"), 1),
        TaxonomyNode(3, LabelPath.parse("A/y"), 1),
        TaxonomyNode(4, LabelPath.parse("B"), None),
        TaxonomyNode(5, LabelPath.parse("B/z"), 4),
    ])


def test_features_are_computed_from_the_evidence() -> None:
    taxonomy = _tree()
    scores = {2: 0.8, 3: 0.5, 1: 0.6, 5: 0.1, 99: 0.99}  # 99 is not in the taxonomy: ignored
    exemplars = [(2, 0.7), (2, 0.5), (5, 0.3), (99, 0.9)]
    features = dict(zip(FEATURES, novelty_features(scores, exemplars, taxonomy), strict=True))
    assert features["best_label"] == pytest.approx(0.8)
    assert features["label_margin"] == pytest.approx(0.8 - 0.6)
    assert features["top5_label_mean"] == pytest.approx((0.8 + 0.6 + 0.5 + 0.1) / 4)
    weights = np.exp((np.array([0.8, 0.5, 0.6, 0.1]) - 0.8) / 0.05)
    p = weights / weights.sum()
    assert features["label_entropy"] == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-6)
    assert features["exemplar_mean"] == pytest.approx(0.5)
    assert features["exemplar_best"] == pytest.approx(0.7)
    assert features["exemplar_agreement"] == pytest.approx(2 / 3)
    assert features["parent_minus_leaf"] == pytest.approx(0.6 - 0.8)
    # An exemplar of a child counts as agreeing with its parent when the parent ranks first.
    parent_first = dict(zip(FEATURES, novelty_features({1: 0.9, 2: 0.5}, [(2, 0.4), (3, 0.4)], taxonomy),
                            strict=True))
    assert parent_first["exemplar_agreement"] == 1.0 and parent_first["parent_minus_leaf"] == pytest.approx(0.4)
    assert not novelty_features({}, [], taxonomy).any()


def test_model_round_trips_through_json_and_refuses_other_features() -> None:
    model = NoveltyModel(tuple(0.1 * i for i in range(len(FEATURES))), (1.0,) * len(FEATURES),
                         tuple(float(i) for i in range(len(FEATURES))), -0.5)
    again = NoveltyModel.from_json(model.to_json())
    assert again == model
    x = np.arange(len(FEATURES), dtype=float)
    expected = sum((x[i] - 0.1 * i) * i for i in range(len(FEATURES))) - 0.5
    assert model.logit(x) == pytest.approx(expected)
    with pytest.raises(ValueError, match="recalibrate"):
        NoveltyModel.from_json({**model.to_json(), "features": ["best_label"]})
    assert NoveltyModel.from_json(None) is None


def test_fit_separates_and_refuses_too_little_data() -> None:
    rng = np.random.default_rng(0)
    known = rng.normal(size=(200, len(FEATURES)))
    novel = known + np.r_[2.0, np.zeros(len(FEATURES) - 1)]  # shifted along the first feature
    labels = list(rng.integers(0, 8, size=200))
    fitted = fit_novelty_model(known, novel, labels)
    assert fitted is not None
    model, cv_auroc = fitted
    assert cv_auroc > 0.85
    assert model.coef[0] > 0 and all(abs(c) < abs(model.coef[0]) for c in model.coef[1:])
    assert fit_novelty_model(known[:10], novel[:10], labels[:10]) is None
    assert fit_novelty_model(known, novel, [0, 1] * 100) is None  # two labels cannot be cross-validated by label


def _sibling_pairs(seed: int = 0, pairs: int = 5, per_label: int = 30):
    """Labels in pairs of near-identical siblings: with its own label gone, a creative still sits close to the
    sibling's phrase, so the best label similarity barely moves; the ranking's shape is what changes."""
    rng = np.random.default_rng(seed)
    dim = 32
    nodes, label_vectors, label_ids = [], [], []
    for p in range(pairs):
        parent = 1000 + p
        nodes.append(TaxonomyNode(parent, LabelPath.parse(f"P{p}"), None))
        base = rng.normal(size=dim)
        for s in range(2):
            lid = 2 * p + s
            nodes.append(TaxonomyNode(lid, LabelPath.parse(f"P{p}/L{s}"), parent))
            v = base + 0.25 * rng.normal(size=dim)
            label_vectors.append(v / np.linalg.norm(v))
            label_ids.append(lid)
    label_vectors_arr = np.array(label_vectors, dtype=np.float32)

    def sample(label: int, n: int) -> np.ndarray:
        v = label_vectors_arr[label] + 0.9 * rng.normal(size=(n, dim)) / np.sqrt(dim)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    n_labels = 2 * pairs
    exemplars = np.vstack([sample(i, per_label) for i in range(n_labels)])
    ref = Reference(label_ids, label_vectors_arr, [f"e{i}-{j}" for i in range(n_labels) for j in range(per_label)],
                    np.repeat(np.arange(n_labels), per_label), exemplars)
    held = Held([f"v{i}-{j}" for i in range(n_labels) for j in range(20)], list(np.repeat(np.arange(n_labels), 20)),
                np.vstack([sample(i, 20) for i in range(n_labels)]))
    return Taxonomy(nodes), held, ref, sample


def test_calibration_picks_the_learned_score_where_it_separates_better_and_the_trigger_uses_it() -> None:
    taxonomy, held, ref, sample = _sibling_pairs()
    thresholds, report = calibrate(taxonomy, held, ref, seed=1)
    scorer = report["new_label"]["scorer"]
    assert scorer["chosen"] == "learned", scorer
    assert scorer["learned_cv_auroc"] > scorer["blend_auroc"] + 0.05
    assert thresholds.novelty_model is not None
    assert report["new_label"]["known_pass_rate"] >= 0.95  # at most 5% of known creatives flagged, vouched for

    # The stored thresholds survive JSON, and the trigger's fit is minus the model's logit.
    stored = Thresholds.from_json(thresholds.to_json())
    trigger = Trigger(taxonomy, stored)
    assert trigger.novelty_model is not None
    [evidence] = build_evidence(Held(["q"], [3], sample(3, 1)), ref, 10)
    expected = -trigger.novelty_model.logit(novelty_features(evidence.label_scores, evidence.exemplars, taxonomy))
    assert math.isclose(trigger.fit(evidence), expected)

    # Fresh creatives of a label missing from the index are told apart from known ones better than the blend does.
    fresh = Held([f"n{i}" for i in range(100)], list(np.repeat(np.arange(10), 10)),
                 np.vstack([sample(i, 10) for i in range(10)]))
    known = build_evidence(fresh, ref, 10)
    novel = build_evidence(fresh, ref, 10, drop_own_label=True)
    blend = Trigger(taxonomy, Thresholds(exemplar_fit_weight=thresholds.exemplar_fit_weight))
    learned_auroc = auroc([-trigger.fit(e) for e in novel], [-trigger.fit(e) for e in known])
    blend_auroc = auroc([-blend.fit(e) for e in novel], [-blend.fit(e) for e in known])
    assert learned_auroc is not None and blend_auroc is not None and learned_auroc > blend_auroc + 0.05


def test_features_read_only_the_labels_the_labeller_fetches() -> None:
    # Calibration scores every label; serving fetches LABEL_CANDIDATES and adds the asserted label's lineage.
    # Both must give the same features, so labels ranked below the candidates do not count.
    nodes = [TaxonomyNode(1000, LabelPath.parse("P"), None)]
    nodes += [TaxonomyNode(i, LabelPath.parse(f"P/L{i}"), 1000) for i in range(LABEL_CANDIDATES + 10)]
    taxonomy = Taxonomy(nodes)
    every = {i: 0.9 - 0.01 * i for i in range(LABEL_CANDIDATES + 10)}
    every[1000] = 0.1  # the parent ranks last
    fetched = {i: s for i, s in every.items() if i < LABEL_CANDIDATES}
    exemplars = [(0, 0.8), (3, 0.6)]
    assert np.allclose(novelty_features(every, exemplars, taxonomy), novelty_features(fetched, exemplars, taxonomy))
    with_lineage = {**fetched, 1000: 0.1, LABEL_CANDIDATES + 5: every[LABEL_CANDIDATES + 5]}
    assert np.allclose(novelty_features(with_lineage, exemplars, taxonomy),
                       novelty_features(fetched, exemplars, taxonomy))


def test_traffic_feature_compares_recent_creatives_with_exemplars_and_ignores_copies() -> None:
    taxonomy = _tree()
    scores, exemplars = {2: 0.8, 3: 0.5}, [(2, 0.4)] * 10

    def traffic_feature(traffic: list[float]) -> float:
        return float(novelty_features(scores, exemplars, taxonomy, traffic)[FEATURES.index("traffic_minus_exemplar")])

    assert traffic_feature([]) == pytest.approx(-0.4)  # a quiet window: nothing like it lately
    assert traffic_feature([0.7] * 12) == pytest.approx(0.7 - 0.4)  # only the TRAFFIC_K nearest count
    assert traffic_feature([0.7] * 3) == pytest.approx(0.21 - 0.4)  # unfilled slots count as 0
    # The same ad posted again (similarity >= DUPLICATE_SIMILARITY) is not a crowd of new creatives.
    assert traffic_feature([0.995] * 8 + [0.7] * 3) == pytest.approx(traffic_feature([0.7] * 3))
    assert traffic_mean([0.5] * 10) == pytest.approx(0.5) and TRAFFIC_K == 10
    assert DUPLICATE_SIMILARITY < 1.0


def test_variants_of_one_creative_are_not_traffic_evidence() -> None:
    # A campaign's burst: reworded variants of one ad (or of an earlier variant), each nearer to the others than
    # distinct ads almost ever are. Not one of them counts: a single one moved the learned score by ~28 logits.
    burst = [0.97, 0.93, 0.91, 0.9, 0.89] * 4
    assert traffic_mean(burst) == 0.0  # the rest of the window quiet
    assert traffic_mean(burst + [0.7] * 9) == pytest.approx(0.7 * 9 / TRAFFIC_K)
    # A crowd of distinct creatives of one kind (below VARIANT_SIMILARITY) counts in full.
    crowd = [0.87, 0.86, 0.85, 0.85, 0.8] * 4
    assert traffic_mean(crowd) == pytest.approx(np.mean(sorted(crowd, reverse=True)[:TRAFFIC_K]))
    assert DUPLICATE_SIMILARITY > VARIANT_SIMILARITY > 0.85


def test_each_campaign_in_the_traffic_counts_once_and_the_creatives_own_not_at_all() -> None:
    creative, _, near = campaign_neighbourhood()
    sims = near @ creative[0]
    # At the level alone the looser variant b and both of d's campaign count; counted once, d alone does.
    assert traffic_mean(sims.tolist(), k=4, variant=0.9) == pytest.approx((0.85 + 0.8 + 0.78) / 4)
    assert one_per_campaign(sims, near, 0.9) == pytest.approx([0.8])
    assert one_per_campaign(sims[::-1], near[::-1], 0.9) == pytest.approx([0.8])  # any order in, best first out
    # Below every pair's similarity nothing is told apart but the creative's own; above them, nothing is merged.
    assert one_per_campaign(sims, near, 0.5) == []
    assert one_per_campaign(sims, near, 0.99) == pytest.approx(sims.tolist())
    assert one_per_campaign(np.zeros(0), np.zeros((0, 8)), 0.9) == []


def greedy_leaders(similarities: np.ndarray, neighbours: np.ndarray, level: float) -> list[float]:
    """The rule one_per_campaign implements, a step per neighbour: best first, a variant of the creative or a
    neighbour not at the level to any earlier one of those or kept one is kept (the variants are not counted)."""
    order = np.argsort(-similarities, kind="stable")
    sims, unit = similarities[order], neighbours[order].astype(np.float32)
    pairwise = unit @ unit.T
    same, kept = np.zeros(len(sims), dtype=bool), []
    for n in range(len(sims)):
        if sims[n] >= level or not same[n]:
            kept += [] if sims[n] >= level else [float(sims[n])]
            same |= pairwise[n] >= level
    return kept


def test_counting_each_campaign_once_keeps_exactly_what_the_greedy_rule_keeps() -> None:
    """On neighbourhoods of campaigns of every looseness, variants of the creative among them, at several levels:
    the same similarities, in the same order, as the rule applied one neighbour at a time."""
    rng = np.random.default_rng(11)
    merged_some = 0
    for trial in range(60):
        sims, near = random_neighbourhood(rng)
        for level in (0.6, 0.8, 0.9):
            expected = greedy_leaders(sims, near, level)
            assert one_per_campaign(sims, near, level) == expected, (trial, level)
            merged_some += 0 < len(expected) < len(sims) - int(np.sum(sims >= level))
    assert merged_some >= 120  # the draws exercise campaigns merged, not only all kept or all dropped


def test_counting_campaigns_skips_only_pairs_of_lonely_neighbours() -> None:
    """Told which neighbours are at the level to none of the others but the fresh ones (a window's creatives
    without a fellow in it; the batch's pairs, which the window knows nothing of, fresh), the pass keeps what
    it keeps computing every pair, a lonely one's pairs with the fresh included; told all are lonely and none
    fresh, it merges none."""
    rng = np.random.default_rng(12)
    for trial in range(60):
        sims, near = random_neighbourhood(rng)
        for level in (0.6, 0.8, 0.9):
            pairs = near @ near.T >= level
            np.fill_diagonal(pairs, False)
            fresh = rng.random(len(sims)) < 0.2  # the batch's creatives: pairs the window knows nothing of
            lonely = ~(pairs & ~fresh).any(axis=1)  # those of the batch read as not lonely, whatever this says
            expected = greedy_leaders(sims, near, level)
            assert one_per_campaign(sims, near, level, lonely, fresh) == expected, (trial, level)
            assert one_per_campaign(sims, near, level, lonely & ~fresh, fresh) == expected, (trial, level)
            everyone = one_per_campaign(sims, near, level, np.ones(len(sims), dtype=bool))
            assert everyone == sorted((s for s in sims.tolist() if s < level), reverse=True)


def test_a_burst_of_one_campaign_reads_as_one_creative_and_a_crowd_of_one_kind_as_a_crowd() -> None:
    rng = np.random.default_rng(3)
    dim, level = 64, 0.92

    def around(centre: np.ndarray, spread: np.ndarray) -> np.ndarray:
        out = centre + spread[:, None] * rng.normal(size=(len(spread), dim)) / math.sqrt(dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    centre = rng.normal(size=dim)
    centre /= np.linalg.norm(centre)
    # 200 variants of one ad, some barely changed, some reworded throughout; the loosest one is being labelled.
    burst = around(centre, np.linspace(0.1, 0.5, 200))
    creative, others = burst[-1], burst[:-1]
    sims = others @ creative
    nearest = np.argsort(-sims)[: 2 * TRAFFIC_K]  # what the labeller fetches
    assert np.all(sims < level)  # the level alone takes all of them for distinct creatives: a crowd
    assert traffic_mean(sims[nearest].tolist(), variant=level) > 0.85
    counted = one_per_campaign(sims[nearest], others[nearest], level)
    assert len(counted) <= 2 and traffic_mean(counted, variant=level) < 0.2
    # Distinct creatives of one kind sit below the level to each other: every one of them counts.
    crowd = around(centre, np.full(21, 1.0))  # ~0.5 to each other
    sims = crowd[1:] @ crowd[0]
    assert one_per_campaign(sims, crowd[1:], level) == pytest.approx(sorted(sims.tolist(), reverse=True))


def test_a_model_stored_before_the_traffic_feature_keeps_reading_its_own_features() -> None:
    old = list(FEATURES[:8])
    stored = {"features": old, "mean": [0.5] * 8, "scale": [2.0] * 8, "coef": [float(i) for i in range(8)],
              "intercept": 0.25}
    model = NoveltyModel.from_json(stored)
    assert model is not None and model.features == tuple(old) and model.to_json()["features"] == old
    x = np.arange(len(FEATURES), dtype=float)  # all features, as the trigger computes them now
    assert model.logit(x) == pytest.approx(sum((x[i] - 0.5) / 2.0 * i for i in range(8)) + 0.25)
    with pytest.raises(ValueError, match="recalibrate"):
        NoveltyModel.from_json({**stored, "features": [*old[:7], "shoe_size"]})
    with pytest.raises(ValueError, match="recalibrate"):
        NoveltyModel.from_json({**stored, "coef": [1.0] * 9})


def test_the_trigger_says_how_many_recent_creatives_resemble_a_new_one() -> None:
    taxonomy = _tree()
    only_traffic = {"features": ["traffic_minus_exemplar"], "mean": [0.0], "scale": [1.0], "coef": [10.0],
                    "intercept": 0.0}
    trigger = Trigger(taxonomy, Thresholds(new_label=0.0, novelty_model=only_traffic))
    evidence = Evidence({2: 0.3, 3: 0.2}, [(2, 0.35)] * 10, traffic=[0.999, 0.8, 0.7, 0.6, 0.5] + [0.3] * 10)
    decision = trigger.decide(evidence)
    assert trigger.recent_like_it(evidence) == 4  # above the nearest exemplar (0.35), copies aside
    assert decision.flag == "new_label" and decision.scores["recent_like_it"] == 4
    assert any("4 recently labelled creatives are nearer" in reason for reason in decision.reasons)
    quiet = trigger.decide(Evidence({2: 0.3, 3: 0.2}, [(2, 0.35)] * 10))
    assert quiet.flag != "new_label" and quiet.scores["recent_like_it"] == 0


def test_calibration_lets_the_validation_creatives_play_the_traffic_window() -> None:
    taxonomy, held, ref, _ = _sibling_pairs()
    traffic = simulated_traffic(held)
    unit = held.vectors / np.linalg.norm(held.vectors, axis=1, keepdims=True)
    for row in (0, 57, len(held.creative_ids) - 1):
        others = np.delete(unit @ unit[row], row)  # never itself
        assert np.allclose(traffic[row], np.sort(others)[::-1][: 2 * TRAFFIC_K], atol=1e-5)
        # Read as a version that counts each campaign once: the same neighbours, told apart at the level.
        nearest = np.argsort(-(unit @ unit[row]))[1 : 2 * TRAFFIC_K + 1]
        once = simulated_traffic(held, campaigns_at=0.9)[row]
        assert np.allclose(once, one_per_campaign(unit[nearest] @ unit[row], unit[nearest], 0.9), atol=1e-5)
    with_once, with_traffic = calibrate(taxonomy, held, ref, seed=1, traffic_window=5000)
    thresholds, without = calibrate(taxonomy, held, ref, seed=1, traffic_window=0)
    assert with_once.campaigns_once and with_traffic["variants"]["campaigns_once"]
    assert not thresholds.campaigns_once and not Thresholds().campaigns_once  # and a version fitted before
    assert "traffic_minus_exemplar" in with_traffic["new_label"]["scorer"]["features"]
    assert "traffic_minus_exemplar" not in without["new_label"]["scorer"]["features"]
    assert thresholds.novelty_model is not None
    assert "traffic_minus_exemplar" not in thresholds.novelty_model["features"]


def test_the_model_card_says_when_the_novelty_score_leans_on_recent_traffic(tmp_path) -> None:
    from ctax.store.models import ModelVersion
    from ctax.versions.card import write_model_card

    def card(features: list[str]) -> str:
        scorer = {"chosen": "learned", "blend_auroc": 0.9, "learned_cv_auroc": 0.95, "features": features}
        version = ModelVersion(id="v7-trained", kind="trained", status="candidate", artefact_dir=str(tmp_path),
                               config={}, metrics={"top1": 0.9, "calibration": {"new_label": {
                                   "threshold": 0.1, "precision": 0.7, "recall": 0.9, "auroc": 0.95,
                                   "scorer": scorer}}})
        return write_model_card(version).read_text()

    assert "recent traffic" in card(list(FEATURES)) and "novelty sweep" in card(list(FEATURES))
    assert "recent traffic" not in card([f for f in FEATURES if f != "traffic_minus_exemplar"])


def test_the_traffic_neighbourhood_grows_with_the_window_calibration_compares_it_with() -> None:
    assert traffic_k(716, 716) == TRAFFIC_K and traffic_k(5000, 0) == TRAFFIC_K  # no reference: fixed
    assert traffic_k(1432, 716) == 2 * TRAFFIC_K and traffic_k(100, 716) == 1 and traffic_k(0, 716) == 1
    assert traffic_k(10**6, 716) == MAX_TRAFFIC_K
    taxonomy = _tree()
    only_traffic = {"features": ["traffic_minus_exemplar"], "mean": [0.0], "scale": [1.0], "coef": [1.0],
                    "intercept": 0.0}
    trigger = Trigger(taxonomy, Thresholds(novelty_model=only_traffic, traffic_reference=100))
    traffic = [0.85] * 10 + [0.5] * 10
    exemplars = [(2, 0.4)] * 10
    # Calibrated on a window of 100: in one of 100 the 10 nearest count, in one of 200 the 20 nearest.
    assert trigger.fit(Evidence({2: 0.5}, exemplars, traffic=traffic, traffic_window=100)) == pytest.approx(-0.45)
    assert trigger.fit(Evidence({2: 0.5}, exemplars, traffic=traffic, traffic_window=200)) == pytest.approx(-0.275)
    taxonomy, held, ref, _ = _sibling_pairs()
    thresholds, report = calibrate(taxonomy, held, ref, seed=1, traffic_window=5000)
    assert report["new_label"]["scorer"]["chosen"] == "learned"
    assert thresholds.traffic_reference == len(held.creative_ids) - 1


def test_the_sweeps_seeds_from_arrival_searches_are_never_below_the_windows_best_similarities_below_the_level() -> None:
    from ctax.labelling.novelty import counted_seeds

    rng = np.random.default_rng(11)
    width, level = 20, 0.88
    for trial in range(100):
        limit = int(rng.integers(1, 60))
        windows = [rng.uniform(-0.3, 1.0, size=int(rng.integers(0, 120))) for _ in range(int(rng.integers(1, 8)))]
        found = [np.sort(window)[::-1][:limit] for window in windows]  # what a search for the `limit` best returns
        seeds = counted_seeds([list(row) for row in found], level, limit, width)
        assert seeds.shape == (len(windows), width), trial
        for window, row, seed in zip(windows, found, seeds, strict=True):  # each row as if searched alone
            complete = len(row) < limit or len(row) == len(window)
            truth = np.full(width, -np.inf)
            below = np.sort(window[window < level])[::-1][:width]
            truth[: len(below)] = below
            assert np.array_equal(seed, np.sort(seed)[::-1]), trial
            assert np.all(seed >= truth), trial  # a bound: never less than any slot can hold
            if complete or (row < level).sum() >= width:
                assert np.array_equal(seed[np.isfinite(truth)], truth[np.isfinite(truth)]), trial
            if len(row) < limit:  # the window's every one: nothing left out, so empty slots hold nothing
                assert np.array_equal(seed, truth), trial
            elif (row < level).sum() < width:  # the search was cut: empty slots read the least it found
                assert seed[-1] == min(row.min(), level), trial
