"""Calibrating a version's trigger thresholds on held-out labelled creatives.

- exemplar_weight: the blend of label similarity and exemplar votes that maximises top-1 on validation.
- novelty scorer: a logistic regression over several similarities (novelty.py), fitted on the same
  leave-one-label-out simulation, replaces the blend where it scores a higher AUROC under cross-validation
  by label. Where the service keeps recent traffic, the validation creatives play that traffic for each other,
  each campaign counted once at the version's variant level (novelty.one_per_campaign).
- new_label: the fit below which a creative is "new"; set so that at most `known_flag_rate` of known-label
  creatives fall below it (5% by default, where the pretrained version is calibrated; trained versions are given
  CTAX_NEW_LABEL_KNOWN_RATE, 3%), vouched for at `rate_confidence` (CTAX_NEW_LABEL_RATE_CONFIDENCE, 0.9) from
  the validation creatives (known_rate_cut).
  Its precision and recall are estimated by leave-one-label-out: each validation creative is scored again
  with its own label (and that label's exemplars) removed, which is what a creative of a missing label looks
  like. Precision assumes NOVEL_RATE of traffic is novel.
- wrong_label: a gap threshold per asserted label (where validation has enough creatives of it) and a global
  one, each maximising F1 on simulated assertions: every validation creative asserted once with its true label
  and WRONG_PER_ROW times with a random label off its lineage, weighted to a WRONG_RATE mix.
- margin: flag low_confidence where a validation creative with that margin is more often wrong than right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ctax.labelling.calibration import curves
from ctax.labelling.calibration.held_out import (
    Held,
    Reference,
    build_evidence,
    known_rate_cut,
    simulated_traffic,
    with_duplicate_floor,
    with_variant_level,
)
from ctax.labelling.calibration.wrong_label import (
    WRONG_RATE,
    best_f1_threshold,
    per_label_wrong_thresholds,
    simulated_assertions,
    wrong_label_report,
)
from ctax.labelling.novelty import FEATURES, NoveltyModel, fit_novelty_model, novelty_features, traffic_k
from ctax.labelling.trigger import OCR, Evidence, Thresholds, Trigger
from ctax.taxonomy.tree import Taxonomy

# Held, Reference and build_evidence are calibrate's inputs; callers import them from the package (__init__).
__all__ = ["Held", "Reference", "auroc", "build_evidence", "calibrate", "simulated_traffic"]

KNOWN_FLAG_RATE = 0.05  # the pretrained version's: its evidence is weaker, a new user's queue still not flooded
RATE_CONFIDENCE = 0.9
NOVEL_RATE = 0.10
EXEMPLAR_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0)
EXEMPLAR_FIT_WEIGHTS = (0.0, 0.25, 0.5, 0.75)


def auroc(positives: Sequence[float] | np.ndarray, negatives: Sequence[float] | np.ndarray) -> float | None:
    if len(positives) == 0 or len(negatives) == 0:
        return None
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    return float(roc_auc_score(y, np.r_[positives, negatives]))


@dataclass(frozen=True)
class _Validation:
    """The validation creatives scored twice: as they are, and with their own label and its exemplars removed
    (what a creative of a missing label looks like)."""

    taxonomy: Taxonomy
    truth: list[int]
    known: list[Evidence]
    novel: list[Evidence]
    top_k: int
    has_exemplars: bool

    def trigger(self, thresholds: Thresholds) -> Trigger:
        return Trigger(self.taxonomy, thresholds, self.top_k)


def calibrate(
    taxonomy: Taxonomy, held: Held, ref: Reference, *, top_k: int = 5, exemplar_k: int = 10, seed: int = 13,
    traffic_window: int = 0, ocr_held: Held | None = None, known_flag_rate: float = KNOWN_FLAG_RATE,
    rate_confidence: float = RATE_CONFIDENCE) -> tuple[Thresholds, dict[str, Any]]:
    """traffic_window: how many recent creatives the service keeps as novelty evidence (0: none, and the
    learned novelty score does without the traffic feature). ocr_held: OCR-like readings of (some of) the held
    creatives (ocr_noise.py), same ids and labels; the thresholds for OCR-read creatives are set on them."""
    if len(held.label_ids) == 0:
        return Thresholds(source="defaults (no labelled validation data)"), {"n_validation": 0}
    rng = np.random.default_rng(seed)
    thresholds, variants = with_variant_level(Thresholds(), held, ref, traffic_window > 0)
    traffic = simulated_traffic(held, campaigns_at=thresholds.variant_level) if traffic_window > 0 else None
    validation = _Validation(
        taxonomy, held.label_ids, build_evidence(held, ref, exemplar_k, traffic=traffic),
        build_evidence(held, ref, exemplar_k, drop_own_label=True, traffic=traffic), top_k, len(ref.exemplar_ids) > 0)
    report: dict[str, Any] = {"n_validation": len(held.label_ids), "n_exemplars": len(ref.exemplar_ids),
                              "variants": variants}

    by_weight = _top1_by_exemplar_weight(validation)
    best_weight = max(by_weight, key=lambda w: (round(by_weight[w], 4), -w))
    report["exemplar_weight"] = {"chosen": best_weight, "top1_by_weight": by_weight}
    by_fit = _novelty_auroc_by_fit_weight(validation)
    best_fit_weight = max(by_fit, key=lambda a: (round(by_fit[a], 4), -a))
    thresholds = replace(thresholds, exemplar_weight=best_weight, exemplar_fit_weight=best_fit_weight)
    # Serving scales the traffic neighbourhood by its window's size against this one (novelty.traffic_k).
    traffic_reference = len(held.creative_ids) - 1 if traffic is not None else None
    thresholds, scorer = _choose_novelty_scorer(validation, thresholds, by_fit[best_fit_weight], traffic_reference)
    trigger = validation.trigger(thresholds)
    new_threshold, report["new_label"] = _new_label_threshold(validation, trigger, known_flag_rate, rate_confidence)
    report["new_label"] |= {
        "exemplar_fit_weight": best_fit_weight,
        "by_fit_weight": by_fit,
        "scorer": scorer,
        "method": f"leave-one-label-out on validation; precision at {NOVEL_RATE:.0%} novel traffic",
    }
    best_margin, report["low_confidence"] = _low_confidence_margin(validation, trigger)
    thresholds = replace(thresholds, new_label=new_threshold, margin=best_margin)

    assertions = simulated_assertions(validation, validation.trigger(thresholds), rng)
    global_t, global_p, global_r = best_f1_threshold(assertions.gaps, assertions.positive, assertions.weight)
    thresholds = replace(
        thresholds,
        wrong_label=global_t,
        per_label_wrong=per_label_wrong_thresholds(assertions, global_t),
        source=f"calibrated on {len(held.label_ids)} validation creatives",
    )
    report["wrong_label"] = wrong_label_report(assertions, thresholds) | {
        "global_only": {"precision": global_p, "recall": global_r},
        "auroc": auroc(assertions.gaps[assertions.positive == 1], assertions.gaps[assertions.positive == 0]),
        "method": f"simulated assertions, {WRONG_RATE:.0%} wrong",
    }
    report["top1"] = by_weight[best_weight]
    thresholds, report["duplicates"] = with_duplicate_floor(thresholds, held, ref)
    if ocr_held is not None and len(ocr_held.label_ids) > 0:
        thresholds, report["ocr"] = _ocr_thresholds(validation, thresholds, held, ocr_held, ref, exemplar_k,
                                                    traffic is not None, rng, rate_confidence)
    report["figures"] = curves.calibration_figures(
        validation.trigger(thresholds), validation.known, validation.novel, validation.truth, validation.taxonomy,
        (assertions.gaps, assertions.positive), report, NOVEL_RATE, WRONG_RATE)
    return thresholds, report


def _ocr_thresholds(
    validation: _Validation, thresholds: Thresholds, held: Held, ocr_held: Held, ref: Reference, exemplar_k: int,
    with_traffic: bool, rng: np.random.Generator, rate_confidence: float,
) -> tuple[Thresholds, dict[str, Any]]:
    """Step 6: the `new_label` and `wrong_label` thresholds of OCR-read creatives, set as steps 3 and 5 set the
    supplied-text ones but on OCR-like readings of the validation creatives, scored with everything else the
    calibration chose (weights, novelty scorer). Their traffic is the clean validation creatives, their own
    clean text aside: an OCR-read creative arrives among creatives with supplied text."""
    traffic = simulated_traffic(held, ocr_held, campaigns_at=thresholds.variant_level) if with_traffic else None
    window = len(held.creative_ids) - 1
    ocr = _Validation(validation.taxonomy, ocr_held.label_ids,
                      build_evidence(ocr_held, ref, exemplar_k, traffic=traffic, window=window, text_source=OCR),
                      build_evidence(ocr_held, ref, exemplar_k, drop_own_label=True, traffic=traffic, window=window,
                                     text_source=OCR),
                      validation.top_k, validation.has_exemplars)
    thresholds, scorer = _choose_ocr_novelty_scorer(ocr, thresholds)
    # OCR-read creatives keep the 5% rate: their target is looser (<= 8% flagged) and their readings noisier.
    new_threshold, new_report = _new_label_threshold(ocr, ocr.trigger(thresholds), KNOWN_FLAG_RATE, rate_confidence)
    assertions = simulated_assertions(ocr, ocr.trigger(thresholds), rng)
    wrong_t, wrong_p, wrong_r = best_f1_threshold(assertions.gaps, assertions.positive, assertions.weight)
    top1 = _top1_by_exemplar_weight(ocr, (thresholds.exemplar_weight,))[thresholds.exemplar_weight]
    report = {
        "n_validation": len(ocr_held.label_ids),
        "new_label": new_report | {"scorer": scorer},
        "wrong_label": {"threshold": wrong_t, "precision": wrong_p, "recall": wrong_r,
                        "auroc": auroc(assertions.gaps[assertions.positive == 1],
                                       assertions.gaps[assertions.positive == 0])},
        "top1": top1,
        "method": "OCR-like readings of the validation creatives (ocr_noise.py), scored as the clean ones",
    }
    return replace(thresholds, ocr_new_label=new_threshold, ocr_wrong_label=wrong_t), report


def _top1_by_exemplar_weight(
    validation: _Validation, weights: Sequence[float] | None = None
) -> dict[float, float]:
    """Step 1, the exemplar blend for ranking: validation top-1 for each candidate weight."""
    def top1(thresholds: Thresholds) -> float:
        trigger = validation.trigger(thresholds)
        hits = 0
        for ev, y in zip(validation.known, validation.truth, strict=True):
            combined, _ = trigger.combined_scores(ev)
            hits += max(combined, key=combined.__getitem__) == y if combined else 0
        return hits / len(validation.truth)

    if weights is None:
        weights = EXEMPLAR_WEIGHTS if validation.has_exemplars else (0.0,)
    return {w: top1(replace(Thresholds(), exemplar_weight=w)) for w in weights}


def _novelty_auroc_by_fit_weight(validation: _Validation) -> dict[float, float]:
    """Step 2, the exemplar blend for fit (novelty): simulated novelty AUROC for each candidate weight."""
    by_fit: dict[float, float] = {}
    for a in EXEMPLAR_FIT_WEIGHTS if validation.has_exemplars else (0.0,):
        trigger = validation.trigger(replace(Thresholds(), exemplar_fit_weight=a))
        known = [trigger.fit(ev) for ev in validation.known]
        novel = [trigger.fit(ev) for ev in validation.novel]
        by_fit[a] = auroc([-f for f in novel], [-f for f in known]) or 0.0
    return by_fit


def _feature_rows(rows: Sequence[Evidence], taxonomy: Taxonomy, thresholds: Thresholds) -> np.ndarray:
    """All of FEATURES for each of `rows`, read as serving reads them under `thresholds`."""
    return np.array([novelty_features(ev.label_scores, ev.exemplars, taxonomy, ev.traffic,
                                      traffic_k(ev.traffic_window, thresholds.traffic_reference),
                                      thresholds.variant_level) for ev in rows])


def _choose_novelty_scorer(
    validation: _Validation, thresholds: Thresholds, blend_auroc: float, traffic_reference: int | None
) -> tuple[Thresholds, dict[str, Any]]:
    """Step 2b: a learned novelty score over several similarities, kept only when it beats the blend across
    labels. traffic_reference: the simulated traffic window, None where no traffic is kept."""
    used = FEATURES if traffic_reference is not None else tuple(f for f in FEATURES if f != "traffic_minus_exemplar")
    learned = fit_novelty_model(_feature_rows(validation.known, validation.taxonomy, thresholds),
                                _feature_rows(validation.novel, validation.taxonomy, thresholds),
                                validation.truth, used)
    scorer = {"blend_auroc": blend_auroc, "learned_cv_auroc": learned[1] if learned else None,
              "chosen": "blend", "features": list(used)}
    if learned is not None and learned[1] > blend_auroc:
        thresholds = replace(thresholds, novelty_model=learned[0].to_json(), traffic_reference=traffic_reference or 0)
        scorer["chosen"] = "learned"
    return thresholds, scorer


def _choose_ocr_novelty_scorer(ocr: _Validation, thresholds: Thresholds) -> tuple[Thresholds, dict[str, Any]]:
    """Step 6a: a learned novelty score of its own for OCR-read creatives, fitted on the readings (same features
    as the supplied-text one) and kept only where its AUROC under cross-validation by label beats the supplied-text
    score's on the same readings. That score was fitted on the clean texts of these very creatives, so its figure
    here flatters it: a separate score is kept only when it wins anyway."""
    shared = NoveltyModel.from_json(thresholds.novelty_model)
    if shared is None:
        return thresholds, {"chosen": "blend", "shared_auroc": None, "learned_cv_auroc": None}
    known, novel = (_feature_rows(rows, ocr.taxonomy, thresholds) for rows in (ocr.known, ocr.novel))
    # The shared score's fit is minus its logit over these very feature rows: no need to work them out again.
    shared_auroc = auroc([shared.logit(x) for x in novel], [shared.logit(x) for x in known]) or 0.0
    learned = fit_novelty_model(known, novel, ocr.truth, shared.features)
    report = {"chosen": "shared", "shared_auroc": shared_auroc, "learned_cv_auroc": learned[1] if learned else None,
              "features": list(shared.features)}
    if learned is None or learned[1] <= shared_auroc:
        return replace(thresholds, ocr_novelty_model=None), report
    return replace(thresholds, ocr_novelty_model=learned[0].to_json()), report | {"chosen": "learned"}


def _new_label_threshold(validation: _Validation, trigger: Trigger, known_flag_rate: float, confidence: float
                         ) -> tuple[float, dict[str, Any]]:
    """Step 3: the fit below which at most `known_flag_rate` of known creatives fall (known_rate_cut), with its
    simulated recall and precision."""
    known_fit = np.array([trigger.fit(ev) for ev in validation.known])
    novel_fit = np.array([trigger.fit(ev) for ev in validation.novel])
    threshold = known_rate_cut(known_fit, known_flag_rate, confidence)
    recall = float((novel_fit < threshold).mean())
    false_rate = float((known_fit < threshold).mean())
    precision = NOVEL_RATE * recall / max(NOVEL_RATE * recall + (1 - NOVEL_RATE) * false_rate, 1e-12)
    return threshold, {
        "threshold": threshold,
        "target_known_rate": known_flag_rate,
        "rate_confidence": confidence,
        "known_pass_rate": 1 - false_rate,
        "recall": recall,
        "precision": precision,
        "auroc": auroc(-novel_fit, -known_fit),
    }


def _low_confidence_margin(validation: _Validation, trigger: Trigger) -> tuple[float, dict[str, Any]]:
    """Step 4: the margin below which a validation creative's top label is more often wrong than right."""
    margins, wrong_top = [], []
    for ev, y in zip(validation.known, validation.truth, strict=True):
        decision = trigger.decide(ev)
        margin = decision.scores.get("margin")
        margins.append(np.inf if margin is None else margin)
        wrong_top.append(decision.top_label_id != y)
    margins_arr, wrong_arr = np.array(margins), np.array(wrong_top, dtype=float)
    best_margin, best_gain = 0.0, 0.0
    for m in np.unique(np.round(margins_arr[np.isfinite(margins_arr)], 4)):
        flagged = margins_arr < m
        gain = wrong_arr[flagged].sum() - (1 - wrong_arr[flagged]).sum()
        if gain > best_gain:
            best_margin, best_gain = float(m), float(gain)
    flagged = margins_arr < best_margin
    return best_margin, {
        "margin": best_margin,
        "flagged_share": float(flagged.mean()),
        "error_rate_flagged": float(wrong_arr[flagged].mean()) if flagged.any() else None,
        "error_rate_unflagged": float(wrong_arr[~flagged].mean()) if (~flagged).any() else None,
    }


