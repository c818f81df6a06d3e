"""Calibration on synthetic vectors whose geometry we control."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from ctax.labelling.calibration import Held, Reference, auroc, build_evidence, calibrate, simulated_traffic
from ctax.labelling.calibration.held_out import known_rate_cut
from ctax.labelling.trigger import OCR, TEXT, Trigger
from ctax.taxonomy.paths import LabelPath
from ctax.taxonomy.tree import Taxonomy, TaxonomyNode


def _world(seed: int = 0, n_labels: int = 6, per_label: int = 40, noise: float = 0.35):
    rng = np.random.default_rng(seed)
    dim = 32
    centres = rng.normal(size=(n_labels, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    nodes = [TaxonomyNode(100, LabelPath.parse("Root"), None)]
    nodes += [TaxonomyNode(i, LabelPath.parse(f"Root/L{i}"), 100) for i in range(n_labels)]
    taxonomy = Taxonomy(nodes)

    def sample(label: int, n: int) -> np.ndarray:
        v = centres[label] + noise * rng.normal(size=(n, dim)) / np.sqrt(dim) * 3
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    root = centres.mean(axis=0)
    label_vectors = np.vstack([centres, root / np.linalg.norm(root)]).astype(np.float32)
    ex = [sample(i, per_label) for i in range(n_labels)]
    ref = Reference([*list(range(n_labels)), 100], label_vectors,
                    [f"{i:016x}{j:016x}" for i in range(n_labels) for j in range(per_label)],
                    np.repeat(np.arange(n_labels), per_label), np.vstack(ex))
    val = [sample(i, 20) for i in range(n_labels)]
    held = Held([f"v{i}-{j}" for i in range(n_labels) for j in range(20)],
                list(np.repeat(np.arange(n_labels), 20)), np.vstack(val))
    return taxonomy, held, ref, sample


def test_thresholds_let_95_percent_of_known_creatives_pass_and_catch_novel_ones() -> None:
    taxonomy, held, ref, sample = _world()
    thresholds, report = calibrate(taxonomy, held, ref, seed=1, rate_confidence=0.0)
    assert 0.93 <= report["new_label"]["known_pass_rate"] <= 0.97
    assert report["new_label"]["auroc"] > 0.9
    assert report["wrong_label"]["auroc"] > 0.95
    assert report["top1"] > 0.95
    assert thresholds.source.startswith("calibrated on 120")

    # A creative from a region no label covers is flagged new; a typical known one is not.
    trigger = Trigger(taxonomy, thresholds)
    rng = np.random.default_rng(5)
    stranger = rng.normal(size=(1, 32)).astype(np.float32)
    stranger /= np.linalg.norm(stranger)
    [far] = build_evidence(Held(["x"], [-1], stranger), ref, 10)
    assert trigger.decide(far).flag == "new_label"
    [near] = build_evidence(Held(["y"], [2], sample(2, 1)), ref, 10)
    assert trigger.decide(near).decided_label_id == 2


def test_a_lower_known_flag_rate_flags_fewer_known_creatives_at_a_lower_threshold() -> None:
    """A trained version is given CTAX_NEW_LABEL_KNOWN_RATE (3%) instead of the pretrained version's 5%."""
    taxonomy, held, ref, _ = _world()
    default, default_report = calibrate(taxonomy, held, ref, seed=1, rate_confidence=0.0)
    strict, strict_report = calibrate(taxonomy, held, ref, seed=1, known_flag_rate=0.03, rate_confidence=0.0)
    assert strict.new_label < default.new_label
    assert 0.96 <= strict_report["new_label"]["known_pass_rate"] <= 0.98  # 120 validation creatives: 3-4 flagged
    assert strict_report["new_label"]["known_pass_rate"] > default_report["new_label"]["known_pass_rate"]
    assert strict_report["new_label"]["recall"] <= default_report["new_label"]["recall"]


def test_the_known_rate_is_vouched_for_by_default_so_a_validation_sample_rarely_lets_more_through() -> None:
    """A plain 5% quantile of 120 validation fits lets more than 5% of the next known creatives through about half
    the time; the default cut (a 90% one-sided bound) about a tenth of the time, at a lower threshold."""
    from scipy.stats import norm

    over = {0.0: 0, 0.9: 0}
    draws = 400
    for seed in range(draws):
        fits = np.random.default_rng(seed).normal(size=120)
        for confidence in over:
            over[confidence] += norm.cdf(known_rate_cut(fits, 0.05, confidence)) > 0.05
    assert 0.35 <= over[0.0] / draws <= 0.65
    assert over[0.9] / draws <= 0.13

    taxonomy, held, ref, _ = _world()
    plain, plain_report = calibrate(taxonomy, held, ref, seed=1, rate_confidence=0.0)
    vouched, report = calibrate(taxonomy, held, ref, seed=1)
    assert vouched.new_label < plain.new_label
    assert report["new_label"]["rate_confidence"] == 0.9 and report["new_label"]["target_known_rate"] == 0.05
    assert plain_report["new_label"]["known_pass_rate"] < report["new_label"]["known_pass_rate"] < 1.0


def test_the_vouched_cut_nears_the_quantile_with_more_validation_creatives_and_flags_none_with_too_few() -> None:
    rng = np.random.default_rng(0)
    gaps = []
    for n in (200, 2000, 20000):
        fits = rng.normal(size=n)
        cut = known_rate_cut(fits, 0.03, 0.9)
        assert (fits < cut).mean() <= 0.03
        gaps.append(np.quantile(fits, 0.03) - cut)
    assert gaps[0] > gaps[1] > gaps[2] > 0
    few = rng.normal(size=40)  # no share of 40 can be vouched to stay within 3%: the cut flags none of them
    assert known_rate_cut(few, 0.03, 0.9) == few.min()
    assert known_rate_cut(few, 0.03, 0.0) == np.quantile(few, 0.03)


def test_no_validation_data_gives_documented_defaults() -> None:
    taxonomy, _, ref, _ = _world()
    thresholds, report = calibrate(taxonomy, Held([], [], np.zeros((0, 32), np.float32)), ref)
    assert thresholds.source.startswith("defaults") and report["n_validation"] == 0


def test_auroc_orders_scores() -> None:
    assert auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auroc([0.1], [0.9]) == 0.0
    assert auroc([], [0.3]) is None


def _known_flagged_new_rate(taxonomy: Taxonomy, thresholds, ref: Reference, sample, n_labels: int = 6) -> float:
    trigger = Trigger(taxonomy, thresholds)
    fresh = [Held([f"f{i}-{j}" for j in range(50)], [i] * 50, sample(i, 50)) for i in range(n_labels)]
    flags = [trigger.decide(ev).flag for held in fresh for ev in build_evidence(held, ref, 10)]
    return sum(flag == "new_label" for flag in flags) / len(flags)


def test_copies_of_exemplars_among_the_validation_creatives_do_not_raise_the_new_label_threshold() -> None:
    # The same ads filed twice, once on each side of the split: every validation creative has a copy among the
    # exemplars. Scored against its copy it would look surer of its label than any new creative can, and the
    # threshold set on it would flag far more than 5% of new known-label creatives.
    taxonomy, _, ref, sample = _world()
    rng = np.random.default_rng(3)
    rows = np.r_[[np.arange(i * 40, i * 40 + 20) for i in range(6)]].ravel()
    copies = ref.exemplar_vectors[rows] + 0.002 * rng.normal(size=(len(rows), 32)).astype(np.float32)
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    held = Held([f"copy{n}" for n in rows], [int(ref.exemplar_labels[n]) for n in rows], copies)
    assert (np.sum(copies * ref.exemplar_vectors[rows], axis=1) > 0.98).all()
    thresholds, _ = calibrate(taxonomy, held, ref, seed=1)
    assert _known_flagged_new_rate(taxonomy, thresholds, ref, sample) <= 0.10


def _reader(noise: float, seed: int = 4) -> Callable[[np.ndarray], np.ndarray]:
    """OCR readings of creatives' vectors: each pulled towards noise (seeded, drawn afresh at each call)."""
    rng = np.random.default_rng(seed)

    def read(vectors: np.ndarray) -> np.ndarray:
        v = vectors + noise * rng.normal(size=vectors.shape).astype(np.float32)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    return read


def test_ocr_thresholds_are_set_on_ocr_like_readings_of_the_validation_creatives() -> None:
    # OCR text says less about the label than a summary: a reading is its creative pulled towards noise.
    taxonomy, held, ref, sample = _world()
    read = _reader(0.25)

    readings = Held(held.creative_ids, held.label_ids, read(held.vectors))
    thresholds, report = calibrate(taxonomy, held, ref, seed=1, ocr_held=readings, rate_confidence=0.0)
    assert report["ocr"]["n_validation"] == len(held.creative_ids)
    assert thresholds.ocr_new_label is not None and thresholds.ocr_wrong_label is not None
    assert thresholds.ocr_new_label < thresholds.new_label
    assert 0.93 <= report["ocr"]["new_label"]["known_pass_rate"] <= 0.97

    # New known-label OCR creatives: judged by the OCR threshold, about 5% are flagged; by the supplied-text one,
    # far more.
    trigger = Trigger(taxonomy, thresholds)
    fresh = [Held([f"f{i}-{j}" for j in range(50)], [i] * 50, read(sample(i, 50))) for i in range(6)]
    evidence = [replace(ev, text_source=OCR) for h in fresh for ev in build_evidence(h, ref, 10)]
    by_ocr = np.mean([trigger.decide(ev).flag == "new_label" for ev in evidence])
    by_text = np.mean([trigger.decide(replace(ev, text_source=TEXT)).flag == "new_label" for ev in evidence])
    assert by_ocr <= 0.10 and by_text >= 2 * by_ocr + 0.05


def test_ocr_read_creatives_get_a_novelty_score_of_their_own_where_it_judges_their_readings_better() -> None:
    # Readings far noisier than their creatives: the score fitted on clean validation creatives misjudges them.
    taxonomy, held, ref, sample = _world()
    read = _reader(0.5)

    readings = Held(held.creative_ids, held.label_ids, read(held.vectors))
    thresholds, report = calibrate(taxonomy, held, ref, seed=1, ocr_held=readings, rate_confidence=0.0)
    scorer = report["ocr"]["new_label"]["scorer"]
    assert scorer["chosen"] == "learned" and thresholds.ocr_novelty_model is not None
    assert scorer["learned_cv_auroc"] > scorer["shared_auroc"] + 0.05
    assert thresholds.ocr_novelty_model["features"] == thresholds.novelty_model["features"]

    # Fresh readings, of known labels and of a label removed: the OCR score tells them apart better than the
    # shared one would, and its own threshold lets about 95% of the known ones pass.
    fresh = Held([f"f{n}" for n in range(300)], [n % 6 for n in range(300)],
                 read(np.vstack([sample(n % 6, 1) for n in range(300)])))
    known = build_evidence(fresh, ref, 10, text_source=OCR)
    novel = build_evidence(fresh, ref, 10, drop_own_label=True, text_source=OCR)
    own, shared = Trigger(taxonomy, thresholds), Trigger(taxonomy, replace(thresholds, ocr_novelty_model=None))

    def novelty_auroc(trigger: Trigger) -> float:
        return auroc([-trigger.fit(ev) for ev in novel], [-trigger.fit(ev) for ev in known]) or 0.0

    assert novelty_auroc(own) > novelty_auroc(shared) + 0.05
    assert 0.90 <= np.mean([own.decide(ev).flag != "new_label" for ev in known]) <= 0.99
    # Supplied-text creatives are still scored by the shared score.
    [clean] = build_evidence(Held(["c"], [2], sample(2, 1)), ref, 10)
    assert own.fit(clean) == shared.fit(clean)


def test_no_ocr_readings_leave_the_ocr_thresholds_unset() -> None:
    taxonomy, held, ref, _ = _world()
    thresholds, report = calibrate(taxonomy, held, ref, seed=1)
    assert thresholds.ocr_new_label is None and thresholds.ocr_wrong_label is None and "ocr" not in report


def test_an_ocr_reading_sees_the_traffic_window_without_its_own_creative() -> None:
    _, held, _, _ = _world()
    readings = Held(held.creative_ids[:5], held.label_ids[:5], held.vectors[:5])
    traffic = simulated_traffic(held, readings)
    assert len(traffic) == 5
    assert np.allclose(traffic, simulated_traffic(held)[:5])  # a reading identical to its creative: the same window


def test_a_space_that_packs_distinct_creatives_close_raises_the_versions_near_duplicate_similarity() -> None:
    from ctax.labelling.calibration.held_out import duplicate_floor
    from ctax.labelling.trigger import Thresholds

    # Spread: distinct creatives of a label sit far apart, so the setting (0.931) keeps grouping as it is.
    taxonomy, held, ref, _ = _world(noise=0.35)
    spread, report = calibrate(taxonomy, held, ref, seed=1)
    assert spread.duplicate_similarity is not None and spread.duplicate_similarity < 0.9
    assert report["duplicates"]["similarity_floor"] == spread.duplicate_similarity
    assert spread.near_duplicate_similarity(0.931) == 0.931
    # Packed, as training pulls a label's creatives together: distinct creatives' nearest others pass 0.931,
    # so the version's floor takes over (and 1% of them at most would still group).
    taxonomy, held, ref, _ = _world(noise=0.12)
    packed, _ = calibrate(taxonomy, held, ref, seed=1)
    floor = packed.duplicate_similarity
    assert floor is not None and 0.95 < floor < 0.98
    assert packed.near_duplicate_similarity(0.931) == floor
    others = np.vstack([held.vectors, ref.exemplar_vectors])
    sims = held.vectors @ others.T
    sims[np.arange(len(held.vectors)), np.arange(len(held.vectors))] = -1
    assert 0 < np.mean(sims.max(axis=1) > floor) <= 0.01 + 1 / len(held.vectors)
    assert np.mean(sims.max(axis=1) > 0.931) > 0.5  # what the setting alone would have grouped
    # 0 (exact duplicates only) stays 0; the value travels with the version's thresholds.
    assert packed.near_duplicate_similarity(0.0) == 0.0
    assert Thresholds.from_json(packed.to_json()).duplicate_similarity == floor
    # Copies of an exemplar (the same ad filed twice) are not distinct creatives: they do not raise the floor.
    copies = Held([f"c{n}" for n in range(120)], held.label_ids, ref.exemplar_vectors[:120].copy())
    floor_of_copies = duplicate_floor(copies, ref)
    assert floor_of_copies is not None and floor_of_copies < 0.98
    # Too few creatives to tell: no floor, the setting serves.
    assert duplicate_floor(Held(held.creative_ids[:50], held.label_ids[:50], held.vectors[:50]), ref) is None
    assert Thresholds().near_duplicate_similarity(0.931) == 0.931


def test_a_packed_space_sets_its_own_variant_level_so_a_crowd_of_one_kind_still_counts_as_traffic() -> None:
    from ctax.labelling.calibration.held_out import VARIANT_SHARE
    from ctax.labelling.novelty import FEATURES, VARIANT_SIMILARITY, NoveltyModel, one_per_campaign, traffic_mean
    from ctax.labelling.trigger import Evidence, Thresholds

    taxonomy, held, ref, sample = _world(noise=0.35)
    spread, _ = calibrate(taxonomy, held, ref, seed=1, traffic_window=100)
    taxonomy, held, ref, sample = _world(noise=0.12)
    packed, report = calibrate(taxonomy, held, ref, seed=1, traffic_window=100)
    level = packed.variant_similarity
    assert spread.variant_similarity is not None and level is not None
    # Training packs a space; the level follows it, never below the pretrained space's 0.88.
    assert spread.variant_similarity == VARIANT_SIMILARITY < level
    assert report["variants"]["similarity"] == level and report["variants"]["share"] == VARIANT_SHARE
    others = np.vstack([held.vectors, ref.exemplar_vectors])
    sims = held.vectors @ others.T
    sims[np.arange(len(held.vectors)), np.arange(len(held.vectors))] = -1
    assert abs(np.mean(sims.max(axis=1) >= level) - VARIANT_SHARE) <= 1 / len(held.vectors)
    # A crowd of one kind of creative in the packed space: at the fixed 0.88 its nearest fellows are "variants" and
    # the window reads as half empty; at the version's level they are the traffic evidence the novelty score reads.
    crowd = sample(0, 12)
    fellows = sorted((crowd[1:] @ crowd[0]).tolist(), reverse=True)
    assert traffic_mean(fellows) < 0.5 < 0.85 < traffic_mean(fellows, variant=level)
    # Counted once per campaign at that level, the crowd keeps (almost) every member: they are distinct ads.
    assert packed.campaigns_once
    assert len(one_per_campaign(crowd[1:] @ crowd[0], crowd[1:], level)) >= len(crowd) - 3
    # A learned score serves with the version's level: the same crowd reads as newer than at the fixed 0.88.
    weights = tuple(float(name == "traffic_minus_exemplar") for name in FEATURES)
    packed = replace(packed, traffic_reference=100, novelty_model=NoveltyModel(
        (0.0,) * len(FEATURES), (1.0,) * len(FEATURES), weights, 0.0).to_json())
    [evidence] = build_evidence(Held(["q"], [0], crowd[:1]), ref, 10, drop_own_label=True, taxonomy=taxonomy)
    evidence = Evidence(evidence.label_scores, evidence.exemplars, traffic=fellows, traffic_window=100)
    at_fixed = replace(packed, variant_similarity=None)
    assert at_fixed.variant_level == VARIANT_SIMILARITY
    assert Trigger(taxonomy, packed).fit(evidence) < Trigger(taxonomy, at_fixed).fit(evidence) - 0.3
    assert Thresholds.from_json(packed.to_json()).variant_level == level
    # No traffic kept: nothing to leave out, no level calibrated.
    assert calibrate(taxonomy, held, ref, seed=1)[0].variant_similarity is None
