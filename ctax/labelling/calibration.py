"""Calibrating a version's trigger thresholds on held-out labelled creatives.

- exemplar_weight: the blend of label similarity and exemplar votes that maximises top-1 on validation.
- novelty scorer: a logistic regression over several similarities (novelty.py), fitted on the same
  leave-one-label-out simulation, replaces the blend where it scores a higher AUROC under cross-validation
  by label. Where the service keeps recent traffic, the validation creatives play that traffic for each other.
- new_label: the fit below which a creative is "new"; set so that 95% of known-label validation creatives pass.
  Its precision and recall are estimated by leave-one-label-out: each validation creative is scored again
  with its own label (and that label's exemplars) removed, which is what a creative of a missing label looks
  like. Precision assumes NOVEL_RATE of traffic is novel.
- wrong_label: a gap threshold per asserted label (where validation has enough creatives of it) and a global
  one, each maximising F1 on simulated assertions: every validation creative asserted once with its true label
  and WRONG_PER_ROW times with a random label off its lineage, weighted to a WRONG_RATE mix.
- margin: flag low_confidence where a validation creative with that margin is more often wrong than right.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ctax.labelling.novelty import FEATURES, TRAFFIC_K, fit_novelty_model, novelty_features
from ctax.labelling.trigger import Evidence, Thresholds, Trigger
from ctax.taxonomy.tree import Taxonomy

KNOWN_PASS_RATE = 0.95
NOVEL_RATE = 0.10
WRONG_RATE = 0.20
WRONG_PER_ROW = 3
MIN_PER_LABEL = 10
EXEMPLAR_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0)
EXEMPLAR_FIT_WEIGHTS = (0.0, 0.25, 0.5, 0.75)


@dataclass
class Reference:
    """What a creative is compared with: the version's label vectors and labelled exemplar vectors."""

    label_ids: list[int]
    label_vectors: np.ndarray
    exemplar_ids: list[str]
    exemplar_labels: np.ndarray
    exemplar_vectors: np.ndarray


@dataclass
class Held:
    """Held-out labelled creatives, already encoded."""

    creative_ids: list[str]
    label_ids: list[int]
    vectors: np.ndarray


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    if len(positives) == 0 or len(negatives) == 0:
        return None
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    return float(roc_auc_score(y, np.r_[positives, negatives]))


def simulated_traffic(held: Held) -> list[list[float]]:
    """What a full traffic window shows each held creative: similarities to the other held creatives, best first
    (as many as the labeller fetches). The held creatives stand in for the traffic; the novelty sweep, which
    re-decides creatives once the window has filled, sees the window the same way (novelty_sweep.py)."""
    if len(held.creative_ids) == 0:
        return []
    norms = np.linalg.norm(held.vectors, axis=1, keepdims=True)
    unit = held.vectors / np.where(norms == 0, 1.0, norms)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    limit = min(2 * TRAFFIC_K, len(sims) - 1)
    out = []
    for row in sims:
        top = np.argpartition(-row, limit - 1)[:limit] if limit > 0 else np.zeros(0, dtype=np.int64)
        out.append(sorted(row[top].tolist(), reverse=True))
    return out


def build_evidence(
    held: Held, ref: Reference, exemplar_k: int, *, drop_own_label: bool = False, taxonomy: Taxonomy | None = None,
    traffic: Sequence[Sequence[float]] | None = None,
) -> list[Evidence]:
    label_sims = held.vectors @ ref.label_vectors.T if len(ref.label_ids) else np.zeros((len(held.label_ids), 0))
    has_exemplars = len(ref.exemplar_ids) > 0
    ex_sims = held.vectors @ ref.exemplar_vectors.T if has_exemplars else None
    own = {cid: n for n, cid in enumerate(ref.exemplar_ids)}
    evidence = []
    for row, (cid, true_label) in enumerate(zip(held.creative_ids, held.label_ids, strict=True)):
        scores = dict(zip(ref.label_ids, label_sims[row].tolist(), strict=True))
        exemplars: list[tuple[int, float]] = []
        if ex_sims is not None:
            sims = ex_sims[row].copy()
            if cid in own:  # a creative is never its own neighbour
                sims[own[cid]] = -np.inf
            if drop_own_label:
                sims[ref.exemplar_labels == true_label] = -np.inf
            k = min(exemplar_k, len(sims))
            top = np.argpartition(-sims, k - 1)[:k]
            top = top[np.argsort(-sims[top])]
            exemplars = [(int(ref.exemplar_labels[j]), float(sims[j])) for j in top if np.isfinite(sims[j])]
        if drop_own_label:
            scores.pop(true_label, None)
        evidence.append(Evidence(scores, exemplars, traffic=traffic[row] if traffic is not None else (),
                                 traffic_window=len(held.creative_ids) - 1 if traffic is not None else 0))
    return evidence


def _best_f1_threshold(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> tuple[float, float, float]:
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


def calibrate(
    taxonomy: Taxonomy, held: Held, ref: Reference, *, top_k: int = 5, exemplar_k: int = 10, seed: int = 13,
    traffic_window: int = 0,
) -> tuple[Thresholds, dict[str, Any]]:
    """traffic_window: how many recent creatives the service keeps as novelty evidence (0: none, and the
    learned novelty score does without the traffic feature)."""
    if len(held.label_ids) == 0:
        return Thresholds(source="defaults (no labelled validation data)"), {"n_validation": 0}
    rng = np.random.default_rng(seed)
    traffic = simulated_traffic(held) if traffic_window > 0 else None
    evidence = build_evidence(held, ref, exemplar_k, traffic=traffic)
    novel_evidence = build_evidence(held, ref, exemplar_k, drop_own_label=True, traffic=traffic)
    truth = held.label_ids
    report: dict[str, Any] = {"n_validation": len(truth), "n_exemplars": len(ref.exemplar_ids)}

    # 1. Exemplar blend for ranking.
    def top1(thresholds: Thresholds) -> float:
        trigger = Trigger(taxonomy, thresholds, top_k)
        hits = 0
        for ev, y in zip(evidence, truth, strict=True):
            combined, _ = trigger.combined_scores(ev)
            hits += max(combined, key=combined.__getitem__) == y if combined else 0
        return hits / len(truth)

    base = Thresholds()
    weights = EXEMPLAR_WEIGHTS if len(ref.exemplar_ids) else (0.0,)
    by_weight = {w: top1(replace(base, exemplar_weight=w)) for w in weights}
    best_weight = max(by_weight, key=lambda w: (round(by_weight[w], 4), -w))
    report["exemplar_weight"] = {"chosen": best_weight, "top1_by_weight": by_weight}

    # 2. Exemplar blend for fit (novelty), by simulated novelty AUROC.
    fit_weights = EXEMPLAR_FIT_WEIGHTS if len(ref.exemplar_ids) else (0.0,)
    by_fit: dict[float, float] = {}
    for a in fit_weights:
        trigger = Trigger(taxonomy, replace(base, exemplar_fit_weight=a), top_k)
        known = [trigger.fit(ev) for ev in evidence]
        novel = [trigger.fit(ev) for ev in novel_evidence]
        by_fit[a] = auroc([-f for f in novel], [-f for f in known]) or 0.0
    best_fit_weight = max(by_fit, key=lambda a: (round(by_fit[a], 4), -a))
    thresholds = replace(base, exemplar_weight=best_weight, exemplar_fit_weight=best_fit_weight)

    # 2b. A learned novelty score over several similarities, kept only when it beats the blend across labels.
    def features_of(rows: list[Evidence]) -> np.ndarray:
        return np.array([novelty_features(ev.label_scores, ev.exemplars, taxonomy, ev.traffic) for ev in rows])

    used = FEATURES if traffic is not None else tuple(f for f in FEATURES if f != "traffic_minus_exemplar")
    learned = fit_novelty_model(features_of(evidence), features_of(novel_evidence), truth, used)
    novelty_scorer = {"blend_auroc": by_fit[best_fit_weight], "learned_cv_auroc": learned[1] if learned else None,
                      "chosen": "blend", "features": list(used)}
    if learned is not None and learned[1] > by_fit[best_fit_weight]:
        # Serving scales the traffic neighbourhood by its window's size against this one (novelty.traffic_k).
        reference = len(held.creative_ids) - 1 if traffic is not None else 0
        thresholds = replace(thresholds, novelty_model=learned[0].to_json(), traffic_reference=reference)
        novelty_scorer["chosen"] = "learned"
    trigger = Trigger(taxonomy, thresholds, top_k)

    # 3. new_label threshold.
    known_fit = np.array([trigger.fit(ev) for ev in evidence])
    novel_fit = np.array([trigger.fit(ev) for ev in novel_evidence])
    new_threshold = float(np.quantile(known_fit, 1 - KNOWN_PASS_RATE))
    recall = float((novel_fit < new_threshold).mean())
    false_rate = float((known_fit < new_threshold).mean())
    precision = NOVEL_RATE * recall / max(NOVEL_RATE * recall + (1 - NOVEL_RATE) * false_rate, 1e-12)
    report["new_label"] = {
        "threshold": new_threshold,
        "known_pass_rate": 1 - false_rate,
        "recall": recall,
        "precision": precision,
        "auroc": auroc(-novel_fit, -known_fit),
        "exemplar_fit_weight": best_fit_weight,
        "by_fit_weight": by_fit,
        "scorer": novelty_scorer,
        "method": f"leave-one-label-out on validation; precision at {NOVEL_RATE:.0%} novel traffic",
    }

    # 4. Margin for low_confidence.
    margins, wrong_top = [], []
    for ev, y in zip(evidence, truth, strict=True):
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
    report["low_confidence"] = {
        "margin": best_margin,
        "flagged_share": float(flagged.mean()),
        "error_rate_flagged": float(wrong_arr[flagged].mean()) if flagged.any() else None,
        "error_rate_unflagged": float(wrong_arr[~flagged].mean()) if (~flagged).any() else None,
    }
    thresholds = replace(thresholds, new_label=new_threshold, margin=best_margin)
    trigger = Trigger(taxonomy, thresholds, top_k)

    # 5. wrong_label thresholds, on simulated assertions.
    leaves = [lid for lid in taxonomy.leaves()]
    gaps, positive, weight, asserted_of = [], [], [], []
    for ev, y in zip(evidence, truth, strict=True):
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
    pos_arr, w_arr, asserted_arr = np.array(positive, dtype=float), np.array(weight), np.array(asserted_of)
    global_t, global_p, global_r = _best_f1_threshold(gaps_arr, pos_arr, w_arr)
    per_label: dict[int, float] = {}
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for a, p in zip(asserted_arr, pos_arr, strict=True):
        counts[int(a)][int(p)] += 1
    for lid, (n_right, n_wrong) in counts.items():
        if n_right >= MIN_PER_LABEL and n_wrong >= MIN_PER_LABEL:
            mask = asserted_arr == lid
            t, _, _ = _best_f1_threshold(gaps_arr[mask], pos_arr[mask], w_arr[mask])
            per_label[lid] = float(np.clip(t, global_t * 0.5, global_t * 2.0)) if global_t > 0 else t
    thresholds = replace(
        thresholds,
        wrong_label=global_t,
        per_label_wrong=per_label,
        source=f"calibrated on {len(truth)} validation creatives",
    )
    applied = np.array(
        [gap > thresholds.wrong_threshold(int(a)) for gap, a in zip(gaps_arr, asserted_arr, strict=True)], dtype=float
    )
    tp = (applied * pos_arr * w_arr).sum()
    fp = (applied * (1 - pos_arr) * w_arr).sum()
    report["wrong_label"] = {
        "threshold": global_t,
        "per_label": len(per_label),
        "precision": float(tp / max(tp + fp, 1e-12)),
        "recall": float(tp / max((pos_arr * w_arr).sum(), 1e-12)),
        "global_only": {"precision": global_p, "recall": global_r},
        "auroc": auroc(gaps_arr[pos_arr == 1], gaps_arr[pos_arr == 0]),
        "method": f"simulated assertions, {WRONG_RATE:.0%} wrong",
    }
    report["top1"] = by_weight[best_weight]
    return thresholds, report
