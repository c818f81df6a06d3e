"""The distance trigger: similarities in, a decision out. Pure: no models, no I/O.

Scores
- label similarity s(l): cosine between the creative vector and label l's vector.
- exemplar share v(l): the share of the creative's nearest labelled exemplars (weighted by similarity) whose
  label is l or a descendant of l (a child's creatives are its parent's creatives too).
- combined c(l) = s(l) + exemplar_weight * v(l); labels are ranked by c.
- fit = (1 - w) max s(l) + w * mean similarity of the nearest exemplars (w = exemplar_fit_weight), or, where
  calibration found it better, minus the logit of the version's learned novelty model (novelty.py), which also
  weighs how much nearer the creatives labelled recently (traffic) are than any labelled exemplar; a creative
  "fits" the taxonomy when fit is at least the `new_label` threshold; novelty = -fit, so higher means newer.
- wrong-label gap = c(top label) - c(asserted label, or its best descendant); flagged when above the
  asserted label's threshold.
Thresholds and weights belong to a model version (version_thresholds.py) and are calibrated on held-out data
(calibration/thresholds.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ctax.enums import Flag
from ctax.labelling.novelty import (
    DUPLICATE_SIMILARITY,
    NoveltyModel,
    novelty_features,
    traffic_k,
    traffic_mean,
)
from ctax.labelling.version_thresholds import OCR, TEXT, Thresholds
from ctax.taxonomy.tree import Taxonomy

# Thresholds and the text sources are the trigger's inputs; callers import them from here.
__all__ = ["OCR", "TEXT", "Decision", "Evidence", "RankedLabel", "Thresholds", "Trigger"]


@dataclass(frozen=True)
class Evidence:
    label_scores: Mapping[int, float]
    exemplars: Sequence[tuple[int, float]] = ()  # (label_id, similarity) of the nearest labelled exemplars
    asserted_label_id: int | None = None
    traffic: Sequence[float] = ()  # similarities of the nearest creatives labelled recently, best first
    traffic_window: int = 0  # how many recent creatives those were the nearest of
    text_source: str = TEXT  # OCR when the text compared was read from the creative's image


@dataclass(frozen=True)
class RankedLabel:
    label_id: int
    score: float
    similarity: float
    exemplar_share: float


@dataclass(frozen=True)
class Decision:
    ranked: list[RankedLabel]
    decided_label_id: int | None
    flag: Flag
    scores: dict[str, float | None]
    reasons: list[str]

    @property
    def top_label_id(self) -> int | None:
        return self.ranked[0].label_id if self.ranked else None


class Trigger:
    def __init__(self, taxonomy: Taxonomy, thresholds: Thresholds, top_k: int = 5) -> None:
        self.taxonomy = taxonomy
        self.thresholds = thresholds
        self.top_k = top_k
        self.novelty_model = NoveltyModel.from_json(thresholds.novelty_model)
        self.ocr_novelty_model = NoveltyModel.from_json(thresholds.ocr_novelty_model)

    def novelty_model_for(self, text_source: str = TEXT) -> NoveltyModel | None:
        """The learned novelty score that judges a creative whose text came from `text_source`."""
        if text_source == OCR and self.ocr_novelty_model is not None:
            return self.ocr_novelty_model
        return self.novelty_model

    def _name(self, label_id: int | None) -> str:
        if label_id is None or label_id not in self.taxonomy:
            return f"label {label_id}"
        return str(self.taxonomy.path(label_id))

    def exemplar_shares(self, exemplars: Sequence[tuple[int, float]]) -> dict[int, float]:
        weights = [(label_id, max(score, 0.0)) for label_id, score in exemplars if label_id in self.taxonomy]
        total = sum(weight for _, weight in weights)
        shares: dict[int, float] = {}
        if total <= 0:
            return shares
        for label_id, weight in weights:
            for credited in (label_id, *self.taxonomy.ancestors(label_id)):
                shares[credited] = shares.get(credited, 0.0) + weight / total
        return shares

    def combined_scores(self, evidence: Evidence) -> tuple[dict[int, float], dict[int, float]]:
        shares = self.exemplar_shares(evidence.exemplars)
        weight = self.thresholds.exemplar_weight
        combined = {
            label_id: similarity + weight * shares.get(label_id, 0.0)
            for label_id, similarity in evidence.label_scores.items()
            if label_id in self.taxonomy
        }
        return combined, shares

    def fit(self, evidence: Evidence) -> float:
        """(1 - w) * best label similarity + w * mean similarity of the nearest exemplars (w: exemplar_fit_weight).

        The mean over the neighbours, not the best one, measured best for novelty (docs/text_training_study.md):
        a new kind of creative may sit near one stray exemplar, rarely near ten. With a learned novelty model
        the fit is minus its logit instead."""
        model = self.novelty_model_for(evidence.text_source)
        if model is not None:
            k = traffic_k(evidence.traffic_window, self.thresholds.traffic_reference)
            return -model.logit(
                novelty_features(evidence.label_scores, evidence.exemplars, self.taxonomy, evidence.traffic, k,
                                 self.thresholds.variant_level)
            )
        best_label = max((s for lid, s in evidence.label_scores.items() if lid in self.taxonomy), default=-1.0)
        weight = self.thresholds.exemplar_fit_weight
        if not evidence.exemplars or weight <= 0:
            return best_label
        mean_exemplar = sum(s for _, s in evidence.exemplars) / len(evidence.exemplars)
        return (1 - weight) * best_label + weight * mean_exemplar

    def fit_without_traffic(self, evidence: Evidence, fit: float | None) -> float | None:
        """The fit `evidence` would have with no traffic, given `fit`, the fit it has (None: no label to fit).
        The learned score is linear in the traffic feature, so this is the fit plus the traffic's share of it:
        working the score out again without the traffic costs as much as the decision's own (bench.fixed_cost)."""
        model = self.novelty_model_for(evidence.text_source)
        if fit is None or model is None or model.traffic_weight == 0:
            return fit
        k = traffic_k(evidence.traffic_window, self.thresholds.traffic_reference)
        return fit + model.traffic_weight * traffic_mean(evidence.traffic, k, self.thresholds.variant_level)

    @staticmethod
    def recent_like_it(evidence: Evidence) -> int:
        """How many recent creatives (copies aside) are nearer to this one than every labelled exemplar: the
        reviewer's hint that a kind of creative is arriving that the labelled data does not have."""
        nearest_exemplar = max((s for _, s in evidence.exemplars), default=-1.0)
        return sum(1 for s in evidence.traffic if nearest_exemplar < s < DUPLICATE_SIMILARITY)

    def wrong_gap(self, combined: Mapping[int, float], top: int, asserted: int) -> float | None:
        """How far the asserted label trails the top label; None when it lies on the top label's lineage."""
        if asserted == top or asserted in self.taxonomy.ancestors(top):
            return 0.0
        candidates = [asserted, *[lid for lid in combined if asserted in self.taxonomy.ancestors(lid)]]
        scored = [combined[lid] for lid in candidates if lid in combined]
        if not scored:
            return None
        return combined[top] - max(scored)

    def decide(self, evidence: Evidence) -> Decision:
        combined, shares = self.combined_scores(evidence)
        if not combined:
            return Decision([], None, Flag.NEW_LABEL, {"fit": None}, ["no active labels to compare with"])
        order = sorted(combined, key=lambda lid: combined[lid], reverse=True)
        ranked = [
            RankedLabel(lid, combined[lid], float(evidence.label_scores[lid]), shares.get(lid, 0.0))
            for lid in order[: self.top_k]
        ]
        top = order[0]
        fit = self.fit(evidence)
        lineage = {top, *self.taxonomy.ancestors(top)}
        rivals = [lid for lid in order[1:] if lid not in lineage and top not in self.taxonomy.ancestors(lid)]
        margin = combined[top] - combined[rivals[0]] if rivals else float("inf")
        new_threshold = self.thresholds.new_label_threshold(evidence.text_source)
        scores: dict[str, float | None] = {
            "fit": fit,
            "new_label_threshold": new_threshold,
            "top_score": combined[top],
            "margin": None if margin == float("inf") else margin,
            "margin_threshold": self.thresholds.margin,
        }
        if self.novelty_model is not None and "traffic_minus_exemplar" in self.novelty_model.features:
            scores["recent_like_it"] = self.recent_like_it(evidence)
        if fit < new_threshold:
            return Decision(ranked, None, Flag.NEW_LABEL, scores,
                            self._novelty_reasons(fit, top, scores, new_threshold, evidence.text_source))

        decided, flag, reasons = self._settle_leaf(combined, top, rivals, margin)
        if evidence.asserted_label_id is not None:
            flag = self._check_assertion(combined, top, evidence.asserted_label_id, flag, scores, reasons,
                                         evidence.text_source)
        return Decision(ranked, decided, flag, scores, reasons)

    def _novelty_reasons(self, fit: float, top: int, scores: Mapping[str, float | None], threshold: float,
                         text_source: str) -> list[str]:
        which = "OCR-text " if text_source == OCR and self.thresholds.ocr_new_label is not None else ""
        reasons = [
            f"fits no existing label: {'learned ' if self.novelty_model else ''}fit {fit:.3f} is below the "
            f"{which}new-label threshold {threshold:.3f}"
            f" (nearest: {self._name(top)})"
        ]
        if scores.get("recent_like_it"):
            reasons.append(f"{scores['recent_like_it']} recently labelled creatives are nearer to it than its "
                           f"nearest labelled exemplar")
        return reasons

    def _settle_leaf(
        self, combined: Mapping[int, float], top: int, rivals: Sequence[int], margin: float
    ) -> tuple[int | None, Flag, list[str]]:
        """The decided label: the top one, or, when a rival off its lineage is within the margin, their deepest
        common ancestor (flagged low_confidence either way)."""
        t = self.thresholds
        if margin < t.margin:
            close = [lid for lid in rivals if combined[top] - combined[lid] < t.margin]
            common = self._common_ancestor([top, *close])
            if common is not None:
                return common, Flag.LOW_CONFIDENCE, [
                    f"leaf uncertain: {self._name(top)} ({combined[top]:.3f}) and {self._name(close[0])} "
                    f"({combined[close[0]]:.3f}) are within {t.margin:.3f}; decided their common parent "
                    f"{self._name(common)}"
                ]
            return top, Flag.LOW_CONFIDENCE, [
                f"uncertain: {self._name(top)} ({combined[top]:.3f}) and {self._name(close[0])} "
                f"({combined[close[0]]:.3f}) are within {t.margin:.3f} and share no parent"
            ]
        return top, Flag.NONE, [f"nearest label {self._name(top)} ({combined[top]:.3f}), margin {margin:.3f}"]

    def _check_assertion(
        self, combined: Mapping[int, float], top: int, asserted: int, flag: Flag,
        scores: dict[str, float | None], reasons: list[str], text_source: str = TEXT,
    ) -> Flag:
        """Scores the asserted label against the top one (into `scores` and `reasons`); wrong_label overrides
        the flag so far when it trails by more than its threshold or is nowhere near."""
        gap = self.wrong_gap(combined, top, asserted)
        threshold = self.thresholds.wrong_threshold(asserted, text_source)
        scores["asserted_score"] = combined.get(asserted)
        scores["wrong_label_gap"] = gap
        scores["wrong_label_threshold"] = threshold
        if gap is None:
            reasons.append(f"asserted label {self._name(asserted)} is not among the labels near this creative")
            return Flag.WRONG_LABEL
        if gap > threshold:
            reasons.append(
                f"asserted label {self._name(asserted)} trails {self._name(top)} by {gap:.3f}, more than its "
                f"threshold {threshold:.3f}"
            )
            return Flag.WRONG_LABEL
        reasons.append(f"asserted label {self._name(asserted)} is consistent (gap {gap:.3f} ≤ {threshold:.3f})")
        return flag

    def _common_ancestor(self, label_ids: Sequence[int]) -> int | None:
        chains = [[lid, *self.taxonomy.ancestors(lid)] for lid in label_ids]
        shared = set(chains[0]).intersection(*chains[1:])
        for lid in chains[0]:  # deepest first
            if lid in shared:
                return lid
        return None
