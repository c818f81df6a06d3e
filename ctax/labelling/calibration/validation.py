"""The validation creatives as calibration's steps read them (thresholds.py, ocr_thresholds.py): scored as they
are and with their own label removed, and what those steps measure on them.

Pure: evidence in, figures out; no models, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ctax.labelling.calibration.held_out import known_rate_cut
from ctax.labelling.novelty import novelty_features, traffic_k
from ctax.labelling.trigger import Evidence, Thresholds, Trigger
from ctax.taxonomy.tree import Taxonomy

KNOWN_FLAG_RATE = 0.05  # the pretrained version's: its evidence is weaker, a new user's queue still not flooded
EXEMPLAR_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0)
NOVEL_RATE = 0.10


def auroc(positives: Sequence[float] | np.ndarray, negatives: Sequence[float] | np.ndarray) -> float | None:
    if len(positives) == 0 or len(negatives) == 0:
        return None
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    return float(roc_auc_score(y, np.r_[positives, negatives]))


@dataclass(frozen=True)
class Validation:
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


def top1_by_exemplar_weight(validation: Validation, weights: Sequence[float] | None = None) -> dict[float, float]:
    """The exemplar blend for ranking: validation top-1 for each candidate weight."""
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


def feature_rows(rows: Sequence[Evidence], taxonomy: Taxonomy, thresholds: Thresholds) -> np.ndarray:
    """All of FEATURES for each of `rows`, read as serving reads them under `thresholds`."""
    return np.array([novelty_features(ev.label_scores, ev.exemplars, taxonomy, ev.traffic,
                                      traffic_k(ev.traffic_window, thresholds.traffic_reference),
                                      thresholds.variant_level) for ev in rows])


def new_label_threshold(validation: Validation, trigger: Trigger, known_flag_rate: float, confidence: float
                        ) -> tuple[float, dict[str, Any]]:
    """The fit below which at most `known_flag_rate` of known creatives fall (known_rate_cut), with its
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
