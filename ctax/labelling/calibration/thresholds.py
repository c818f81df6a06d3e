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
- OCR-read creatives (ocr_thresholds.py): their own novelty score (where the readings find it better), new_label
  and wrong_label thresholds, set the same way on OCR-like readings of the validation creatives.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ctax.labelling.calibration import curves
from ctax.labelling.calibration.held_out import (
    Held,
    Reference,
    build_evidence,
    simulated_traffic,
    with_duplicate_floor,
    with_variant_level,
)
from ctax.labelling.calibration.ocr_thresholds import ocr_thresholds
from ctax.labelling.calibration.validation import (
    KNOWN_FLAG_RATE,
    NOVEL_RATE,
    Validation,
    auroc,
    feature_rows,
    new_label_threshold,
    top1_by_exemplar_weight,
)
from ctax.labelling.calibration.wrong_label import (
    WRONG_RATE,
    best_f1_threshold,
    per_label_wrong_thresholds,
    simulated_assertions,
    wrong_label_report,
)
from ctax.labelling.novelty import FEATURES, fit_novelty_model
from ctax.labelling.trigger import Thresholds, Trigger
from ctax.taxonomy.tree import Taxonomy

__all__ = ["calibrate"]

RATE_CONFIDENCE = 0.9
EXEMPLAR_FIT_WEIGHTS = (0.0, 0.25, 0.5, 0.75)


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
    validation = Validation(
        taxonomy, held.label_ids, build_evidence(held, ref, exemplar_k, traffic=traffic),
        build_evidence(held, ref, exemplar_k, drop_own_label=True, traffic=traffic), top_k, len(ref.exemplar_ids) > 0)
    report: dict[str, Any] = {"n_validation": len(held.label_ids), "n_exemplars": len(ref.exemplar_ids),
                              "variants": variants}

    by_weight = top1_by_exemplar_weight(validation)
    best_weight = max(by_weight, key=lambda w: (round(by_weight[w], 4), -w))
    report["exemplar_weight"] = {"chosen": best_weight, "top1_by_weight": by_weight}
    by_fit = _novelty_auroc_by_fit_weight(validation)
    best_fit_weight = max(by_fit, key=lambda a: (round(by_fit[a], 4), -a))
    thresholds = replace(thresholds, exemplar_weight=best_weight, exemplar_fit_weight=best_fit_weight)
    # Serving scales the traffic neighbourhood by its window's size against this one (novelty.traffic_k).
    traffic_reference = len(held.creative_ids) - 1 if traffic is not None else None
    thresholds, scorer = _choose_novelty_scorer(validation, thresholds, by_fit[best_fit_weight], traffic_reference)
    trigger = validation.trigger(thresholds)
    new_threshold, report["new_label"] = new_label_threshold(validation, trigger, known_flag_rate, rate_confidence)
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
        thresholds, report["ocr"] = ocr_thresholds(validation, thresholds, held, ocr_held, ref, exemplar_k,
                                                    traffic is not None, rng, rate_confidence)
    report["figures"] = curves.calibration_figures(
        validation.trigger(thresholds), validation.known, validation.novel, validation.truth, validation.taxonomy,
        (assertions.gaps, assertions.positive), report, NOVEL_RATE, WRONG_RATE)
    return thresholds, report


def _novelty_auroc_by_fit_weight(validation: Validation) -> dict[float, float]:
    """Step 2, the exemplar blend for fit (novelty): simulated novelty AUROC for each candidate weight."""
    by_fit: dict[float, float] = {}
    for a in EXEMPLAR_FIT_WEIGHTS if validation.has_exemplars else (0.0,):
        trigger = validation.trigger(replace(Thresholds(), exemplar_fit_weight=a))
        known = [trigger.fit(ev) for ev in validation.known]
        novel = [trigger.fit(ev) for ev in validation.novel]
        by_fit[a] = auroc([-f for f in novel], [-f for f in known]) or 0.0
    return by_fit


def _choose_novelty_scorer(
    validation: Validation, thresholds: Thresholds, blend_auroc: float, traffic_reference: int | None
) -> tuple[Thresholds, dict[str, Any]]:
    """Step 2b: a learned novelty score over several similarities, kept only when it beats the blend across
    labels. traffic_reference: the simulated traffic window, None where no traffic is kept."""
    used = FEATURES if traffic_reference is not None else tuple(f for f in FEATURES if f != "traffic_minus_exemplar")
    learned = fit_novelty_model(feature_rows(validation.known, validation.taxonomy, thresholds),
                                feature_rows(validation.novel, validation.taxonomy, thresholds),
                                validation.truth, used)
    scorer = {"blend_auroc": blend_auroc, "learned_cv_auroc": learned[1] if learned else None,
              "chosen": "blend", "features": list(used)}
    if learned is not None and learned[1] > blend_auroc:
        thresholds = replace(thresholds, novelty_model=learned[0].to_json(), traffic_reference=traffic_reference or 0)
        scorer["chosen"] = "learned"
    return thresholds, scorer


def _low_confidence_margin(validation: Validation, trigger: Trigger) -> tuple[float, dict[str, Any]]:
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


