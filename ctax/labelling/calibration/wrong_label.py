"""Step 5 of calibration (calibration.py): the wrong_label gap thresholds, chosen on simulated assertions.

Every validation creative is asserted once with its true label and WRONG_PER_ROW times with a random leaf off its
lineage, weighted to a WRONG_RATE mix; a global threshold and one per asserted label (where validation has
MIN_PER_LABEL right and wrong assertions) each maximise weighted F1.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ctax.labelling.trigger import Evidence, Thresholds, Trigger
from ctax.taxonomy.tree import Taxonomy

WRONG_RATE = 0.20
WRONG_PER_ROW = 3
MIN_PER_LABEL = 10


class ValidationSet(Protocol):
    """What the simulation reads of calibration's validation creatives."""

    @property
    def taxonomy(self) -> Taxonomy: ...
    @property
    def truth(self) -> Sequence[int]: ...
    @property
    def known(self) -> Sequence[Evidence]: ...


def best_f1_threshold(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> tuple[float, float, float]:
    """The threshold t (flag when score > t) maximising weighted F1; returns (t, precision, recall)."""
    order = np.argsort(-scores)
    s, p, w = scores[order], positive[order], weights[order]
    tp = np.cumsum(w * p)
    fp = np.cumsum(w * (1 - p))
    total_pos = (w * p).sum()
    precision = tp / np.maximum(tp + fp, 1e-12)
    recall = tp / max(total_pos, 1e-12)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    # Only cut between distinct scores.
    valid = np.r_[s[1:] < s[:-1], True]
    best = int(np.argmax(np.where(valid, f1, -1)))
    threshold = float((s[best] + s[best + 1]) / 2) if best + 1 < len(s) else float(s[best] - 1e-6)
    return threshold, float(precision[best]), float(recall[best])


@dataclass(frozen=True)
class Assertions:
    """Simulated assertions: each validation creative asserted with its true label and some wrong ones."""

    gaps: np.ndarray
    positive: np.ndarray  # 1 where the asserted label is wrong
    weight: np.ndarray
    asserted: np.ndarray


def simulated_assertions(validation: ValidationSet, trigger: Trigger, rng: np.random.Generator) -> Assertions:
    """Step 5a: every validation creative asserted once with its true label and WRONG_PER_ROW times with a random
    leaf off its lineage, weighted to a WRONG_RATE mix; a gap that cannot be measured counts as the largest."""
    taxonomy = validation.taxonomy
    leaves = [lid for lid in taxonomy.leaves()]
    gaps, positive, weight, asserted_of = [], [], [], []
    for ev, y in zip(validation.known, validation.truth, strict=True):
        combined, _ = trigger.combined_scores(ev)
        if not combined:
            continue
        top = max(combined, key=combined.__getitem__)
        lineage = {y, *taxonomy.ancestors(y)}
        right = trigger.wrong_gap(combined, top, y)
        gaps.append(np.inf if right is None else right)
        positive.append(0)
        weight.append(1 - WRONG_RATE)
        asserted_of.append(y)
        choices = [lid for lid in leaves if lid not in lineage and y not in taxonomy.ancestors(lid)]
        for wrong in rng.choice(choices, size=min(WRONG_PER_ROW, len(choices)), replace=False) if choices else []:
            gap = trigger.wrong_gap(combined, top, int(wrong))
            gaps.append(np.inf if gap is None else gap)
            positive.append(1)
            weight.append(WRONG_RATE / WRONG_PER_ROW)
            asserted_of.append(int(wrong))
    gaps_arr = np.array(gaps)
    finite_max = float(np.nanmax(np.where(np.isfinite(gaps_arr), gaps_arr, np.nan))) if len(gaps_arr) else 1.0
    gaps_arr = np.where(np.isfinite(gaps_arr), gaps_arr, finite_max + 1.0)
    return Assertions(gaps_arr, np.array(positive, dtype=float), np.array(weight), np.array(asserted_of))


def per_label_wrong_thresholds(assertions: Assertions, global_t: float) -> dict[int, float]:
    """Step 5b: a threshold per asserted label with MIN_PER_LABEL right and wrong assertions, kept within a
    factor of two of the global one."""
    per_label: dict[int, float] = {}
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for a, p in zip(assertions.asserted, assertions.positive, strict=True):
        counts[int(a)][int(p)] += 1
    for lid, (n_right, n_wrong) in counts.items():
        if n_right >= MIN_PER_LABEL and n_wrong >= MIN_PER_LABEL:
            mask = assertions.asserted == lid
            t, _, _ = best_f1_threshold(assertions.gaps[mask], assertions.positive[mask], assertions.weight[mask])
            per_label[lid] = float(np.clip(t, global_t * 0.5, global_t * 2.0)) if global_t > 0 else t
    return per_label


def wrong_label_report(assertions: Assertions, thresholds: Thresholds) -> dict[str, Any]:
    """Step 5c: precision and recall of the thresholds as applied, per-label ones included."""
    pos, w = assertions.positive, assertions.weight
    applied = np.array(
        [gap > thresholds.wrong_threshold(int(a)) for gap, a in zip(assertions.gaps, assertions.asserted, strict=True)],
        dtype=float,
    )
    tp = (applied * pos * w).sum()
    fp = (applied * (1 - pos) * w).sum()
    return {
        "threshold": thresholds.wrong_label,
        "per_label": len(thresholds.per_label_wrong),
        "precision": float(tp / max(tp + fp, 1e-12)),
        "recall": float(tp / max((pos * w).sum(), 1e-12)),
    }
