"""What the pictures of a model card or an evaluation are drawn from: the trigger's scores on held-out creatives
reduced to a few kilobytes (histograms on shared bins, precision/recall sampled along the threshold, per-label
top-1), so a version keeps them with its metrics instead of thousands of raw scores.

Pure: scores in, plain JSON-ready dicts out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ctax.labelling.trigger import Evidence, Trigger
from ctax.taxonomy.tree import Taxonomy

BINS = 40
CURVE_POINTS = 80


def histograms(groups: Mapping[str, Sequence[float] | np.ndarray], bins: int = BINS) -> dict[str, Any]:
    """Counts of each group on one set of bin edges spanning all of them (so the bars line up)."""
    arrays = {name: np.asarray(values, dtype=np.float64) for name, values in groups.items()}
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays.values()] or [np.zeros(0)])
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    out: dict[str, Any] = {"edges": [round(float(e), 6) for e in edges]}
    for name, values in arrays.items():
        # Values past the edges (infinite gaps stand for "cannot be measured") fall in the outermost bins.
        clipped = np.clip(values[~np.isnan(values)], low, high)
        out[name] = np.histogram(clipped, bins=edges)[0].astype(int).tolist()
    return out


def pr_curve(positives: Sequence[float] | np.ndarray, negatives: Sequence[float] | np.ndarray,
             positive_weight: float = 1.0, negative_weight: float = 1.0,
             points: int = CURVE_POINTS) -> dict[str, list[float]]:
    """Precision and recall of "flag when score > t" for t along the scores' quantiles; the weights stand for a
    mix of positives and negatives other than the one measured (calibration simulates 10% novel traffic)."""
    pos, neg = np.asarray(positives, dtype=np.float64), np.asarray(negatives, dtype=np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return {"threshold": [], "precision": [], "recall": []}
    both = np.r_[pos, neg]
    cuts = np.unique(np.quantile(both[np.isfinite(both)], np.linspace(0, 1, points)))
    precision, recall = [], []
    for t in cuts:
        tp = float((pos > t).sum()) * positive_weight
        fp = float((neg > t).sum()) * negative_weight
        recall.append(float((pos > t).mean()))
        precision.append(tp / (tp + fp) if tp + fp > 0 else 1.0)
    return {"threshold": [round(float(t), 6) for t in cuts], "precision": [round(p, 5) for p in precision],
            "recall": [round(r, 5) for r in recall]}


def novelty_figure(known_fit: Sequence[float] | np.ndarray, novel_fit: Sequence[float] | np.ndarray,
                   threshold: float | None, novel_share: float | None = None) -> dict[str, Any]:
    """The fit of creatives whose label is known and of (simulated or held-out) new ones; "new" is fit below the
    threshold. novel_share: the share of new creatives precision assumes (None: as measured)."""
    known, novel = np.asarray(known_fit, dtype=np.float64), np.asarray(novel_fit, dtype=np.float64)
    weights = (1.0, 1.0)
    if novel_share is not None and len(known) and len(novel):
        weights = (novel_share / len(novel), (1 - novel_share) / len(known))
    point = None
    if threshold is not None and len(known) and len(novel):
        tp = float((novel < threshold).sum()) * weights[0]
        fp = float((known < threshold).sum()) * weights[1]
        point = {"precision": tp / (tp + fp) if tp + fp else 1.0, "recall": float((novel < threshold).mean())}
    return {"hist": histograms({"known": known, "novel": novel}), "threshold": threshold,
            "curve": pr_curve(-novel, -known, *weights), "point": point, "novel_share": novel_share,
            "n_known": len(known), "n_novel": len(novel)}


def wrong_label_figure(right_gaps: Sequence[float] | np.ndarray, wrong_gaps: Sequence[float] | np.ndarray,
                       threshold: float | None, wrong_share: float | None = None,
                       point: Mapping[str, float | None] | None = None) -> dict[str, Any]:
    """The gap of right and of wrong asserted labels; "wrong" is a gap above the threshold. point: the operating
    point as the service applies it (per-label thresholds included), when known."""
    right, wrong = np.asarray(right_gaps, dtype=np.float64), np.asarray(wrong_gaps, dtype=np.float64)
    weights = (1.0, 1.0)
    if wrong_share is not None and len(right) and len(wrong):
        weights = (wrong_share / len(wrong), (1 - wrong_share) / len(right))
    if point is None and threshold is not None and len(right) and len(wrong):
        tp = float((wrong > threshold).sum()) * weights[0]
        fp = float((right > threshold).sum()) * weights[1]
        point = {"precision": tp / (tp + fp) if tp + fp else 1.0, "recall": float((wrong > threshold).mean())}
    return {"hist": histograms({"right": right, "wrong": wrong}), "threshold": threshold,
            "curve": pr_curve(wrong, right, *weights), "point": dict(point) if point else None,
            "wrong_share": wrong_share, "n_right": len(right), "n_wrong": len(wrong)}


def per_label_accuracy(truth: Sequence[int], predicted: Sequence[int | None],
                       names: Mapping[int, str]) -> list[dict[str, Any]]:
    """Top-1 accuracy of each true label, fewest right first."""
    counts: dict[int, list[int]] = {}
    for y, p in zip(truth, predicted, strict=True):
        entry = counts.setdefault(int(y), [0, 0])
        entry[0] += 1
        entry[1] += int(p == y)
    rows = [{"label_id": lid, "label": names.get(lid, str(lid)), "n": n, "correct": c, "accuracy": c / n}
            for lid, (n, c) in counts.items()]
    return sorted(rows, key=lambda row: (row["accuracy"], -row["n"], row["label"]))


def calibration_figures(trigger: Trigger, known: Sequence[Evidence], novel: Sequence[Evidence], truth: Sequence[int],
                        taxonomy: Taxonomy, assertions: tuple[np.ndarray, np.ndarray], report: Mapping[str, Any],
                        novel_share: float, wrong_share: float) -> dict[str, Any]:
    """What a model card's pictures are drawn from, at the thresholds calibration chose: the validation creatives
    scored as they are (known) and with their own label removed (novel), and the simulated assertions (gaps, and
    1 where the asserted label is wrong)."""
    gaps, wrong = assertions
    chosen = report["wrong_label"]
    names = {lid: str(taxonomy.path(lid)) for lid in set(truth) if lid in taxonomy}
    return {
        "new_label": novelty_figure([trigger.fit(ev) for ev in known], [trigger.fit(ev) for ev in novel],
                                    report["new_label"]["threshold"], novel_share),
        "wrong_label": wrong_label_figure(gaps[wrong == 0], gaps[wrong == 1], chosen["threshold"], wrong_share,
                                          {"precision": chosen["precision"], "recall": chosen["recall"]}),
        "per_label": per_label_accuracy(truth, [trigger.decide(ev).top_label_id for ev in known], names),
        "source": "calibration",
    }
