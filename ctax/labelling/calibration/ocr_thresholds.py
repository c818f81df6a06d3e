"""Calibration's step for OCR-read creatives (thresholds.calibrate, step 6): their novelty score and thresholds,
set on OCR-like readings of the validation creatives (ocr_noise.py) as the earlier steps set the
supplied-text ones on the creatives themselves.

Pure: vectors in, thresholds and a JSON-ready report out; no models, no I/O.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ctax.labelling.calibration.held_out import Held, Reference, build_evidence, simulated_traffic
from ctax.labelling.calibration.validation import (
    KNOWN_FLAG_RATE,
    Validation,
    auroc,
    feature_rows,
    new_label_threshold,
    top1_by_exemplar_weight,
)
from ctax.labelling.calibration.wrong_label import best_f1_threshold, simulated_assertions
from ctax.labelling.novelty import NoveltyModel, fit_novelty_model
from ctax.labelling.trigger import OCR, Thresholds


def ocr_thresholds(
    validation: Validation, thresholds: Thresholds, held: Held, ocr_held: Held, ref: Reference, exemplar_k: int,
    with_traffic: bool, rng: np.random.Generator, rate_confidence: float,
) -> tuple[Thresholds, dict[str, Any]]:
    """The novelty score and `new_label` and `wrong_label` thresholds of OCR-read creatives, scored with everything
    else the supplied-text calibration chose (the exemplar weights among it: one of their own, chosen on the
    readings, ranked the real OCR texts no better, docs/benchmarks.md). Their traffic is the clean
    validation creatives, their own clean text aside: an OCR-read creative arrives among creatives with
    supplied text."""
    traffic = simulated_traffic(held, ocr_held, campaigns_at=thresholds.variant_level) if with_traffic else None
    window = len(held.creative_ids) - 1
    ocr = Validation(validation.taxonomy, ocr_held.label_ids,
                     build_evidence(ocr_held, ref, exemplar_k, traffic=traffic, window=window, text_source=OCR),
                     build_evidence(ocr_held, ref, exemplar_k, drop_own_label=True, traffic=traffic, window=window,
                                    text_source=OCR),
                     validation.top_k, validation.has_exemplars)
    thresholds, scorer = _choose_ocr_novelty_scorer(ocr, thresholds)
    # OCR-read creatives keep the 5% rate: their target is looser (<= 8% flagged) and their readings noisier.
    new_threshold, new_report = new_label_threshold(ocr, ocr.trigger(thresholds), KNOWN_FLAG_RATE, rate_confidence)
    assertions = simulated_assertions(ocr, ocr.trigger(thresholds), rng)
    wrong_t, wrong_p, wrong_r = best_f1_threshold(assertions.gaps, assertions.positive, assertions.weight)
    report = {
        "n_validation": len(ocr_held.label_ids),
        "new_label": new_report | {"scorer": scorer},
        "wrong_label": {"threshold": wrong_t, "precision": wrong_p, "recall": wrong_r,
                        "auroc": auroc(assertions.gaps[assertions.positive == 1],
                                       assertions.gaps[assertions.positive == 0])},
        "top1": top1_by_exemplar_weight(ocr, (thresholds.exemplar_weight,))[thresholds.exemplar_weight],
        "method": "OCR-like readings of the validation creatives (ocr_noise.py), scored as the clean ones",
    }
    return replace(thresholds, ocr_new_label=new_threshold, ocr_wrong_label=wrong_t), report


def _choose_ocr_novelty_scorer(ocr: Validation, thresholds: Thresholds) -> tuple[Thresholds, dict[str, Any]]:
    """A learned novelty score of its own for OCR-read creatives, fitted on the readings (same features as the
    supplied-text one) and kept only where its AUROC under cross-validation by label beats the supplied-text
    score's on the same readings. That score was fitted on the clean texts of these very creatives, so its figure
    here flatters it: a separate score is kept only when it wins anyway."""
    shared = NoveltyModel.from_json(thresholds.novelty_model)
    if shared is None:
        return thresholds, {"chosen": "blend", "shared_auroc": None, "learned_cv_auroc": None}
    known, novel = (feature_rows(rows, ocr.taxonomy, thresholds) for rows in (ocr.known, ocr.novel))
    # The shared score's fit is minus its logit over these very feature rows: no need to work them out again.
    shared_auroc = auroc([shared.logit(x) for x in novel], [shared.logit(x) for x in known]) or 0.0
    learned = fit_novelty_model(known, novel, ocr.truth, shared.features)
    report = {"chosen": "shared", "shared_auroc": shared_auroc, "learned_cv_auroc": learned[1] if learned else None,
              "features": list(shared.features)}
    if learned is None or learned[1] <= shared_auroc:
        return replace(thresholds, ocr_novelty_model=None), report
    return replace(thresholds, ocr_novelty_model=learned[0].to_json()), report | {"chosen": "learned"}
