"""Novelty as a learned score: how unlike every known label a creative is, from the trigger's own evidence.

No single similarity separates creatives of a missing label well when the missing label has close known
relatives (docs/benchmarks.md): the best label similarity, the nearest exemplars and how peaked the label
ranking is each see part of it. Calibration fits a logistic regression over these features on validation
creatives scored twice, once as they are and once with their own label and its exemplars removed (what a
creative of a missing label looks like), and keeps it only where it beats the fixed blend under
cross-validation by label. Serving applies the stored coefficients: a dot product, no model to load.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ctax.taxonomy.tree import Taxonomy

FEATURES = (
    "best_label",  # highest label similarity
    "label_margin",  # best minus second-best label similarity
    "top5_label_mean",  # mean similarity of the 5 best labels
    "label_entropy",  # entropy of the label similarities' softmax: a flat ranking matches nothing in particular
    "exemplar_mean",  # mean similarity of the nearest labelled exemplars
    "exemplar_best",  # similarity of the nearest one
    "exemplar_agreement",  # share of the nearest exemplars filed under the best label
    "parent_minus_leaf",  # best parent minus best leaf: a creative nearer a parent than any leaf is suspect
    # Mean similarity of the nearest recently labelled creatives (traffic_k) minus that of the nearest exemplars:
    # a kind of creative the traffic has many of and the labelled data has none of is what a missing label is.
    "traffic_minus_exemplar",
)
TRAFFIC_K = 10
MAX_TRAFFIC_K = 100
# Recent creatives at least this similar to one being labelled are copies of it (the same ad posted again, resized
# or re-cut by a campaign), not evidence of a kind of creative the labelled data lacks.
DUPLICATE_SIMILARITY = 0.98
# Recent creatives this similar are variants of the one being labelled (reworded, reordered, a price or date
# changed: a campaign's burst), and are no traffic evidence at all: 200 variants of one known ad are one ad, not a
# crowd of a kind the labelled data lacks, and even one variant counted moved the learned score by ~28 logits (a
# burst's later group roots were flagged new_label for their earlier roots; docs/benchmarks.md, "Arrival patterns",
# 2026-12-03). Variants of short ads sit at 0.83-0.93 to each other (pretrained MiniLM); of 600 distinct Pitt test
# ads, 3.5% have two or more neighbours at >= 0.88 and 0.03% of pairs reach it. This is the level for a version
# calibrated without it; calibration sets each version's own (held_out.variant_level), since a trained space packs
# a label's distinct ads far above 0.88 and would leave a crowd of them out of the traffic.
VARIANT_SIMILARITY = 0.88
ENTROPY_TEMPERATURE = 0.05
# The labels the labeller fetches per creative. Features read only this many best labels, so that calibration
# (which scores every label) and serving (which also adds the asserted label's lineage) see the same ones.
LABEL_CANDIDATES = 30


def traffic_k(window: int, reference: int) -> int:
    """How many nearest recent creatives to average in a window of `window` creatives, for a score calibrated on a
    window of `reference`: TRAFFIC_K there, proportionally more in a bigger window and fewer in a smaller one.
    A label with share p of the traffic has p * window creatives in it, so the k nearest cover the same share of
    them at any size, and the feature means what calibration measured (a fixed k reads a big window as crowded
    for every creative). reference 0: TRAFFIC_K."""
    if reference <= 0:
        return TRAFFIC_K
    return int(min(max(round(TRAFFIC_K * window / reference), 1), MAX_TRAFFIC_K))


def traffic_mean(traffic: Sequence[float], k: int = TRAFFIC_K, variant: float = VARIANT_SIMILARITY) -> float:
    """Mean similarity of the k nearest recent creatives, copies and variants (from `variant` up) left out; slots
    the traffic cannot fill count as 0, so a quiet window reads as "nothing like it lately", not as novelty."""
    near = sorted((s for s in traffic if s < variant), reverse=True)[:k]
    return float(sum(near) / k)


def traffic_ceiling(similarities: np.ndarray, k: int, variant: float) -> np.ndarray:
    """Per row of a creative's neighbours' raw similarities (-inf: none), the most traffic_mean can read of them
    whichever are counted: a campaign counted once only drops neighbours, so the k best below `variant`, negatives
    and the ones left out read as 0 (empty slots count 0 there too)."""
    sims = np.asarray(similarities, dtype=np.float64)
    counted = np.where(sims < variant, np.maximum(sims, 0.0), 0.0)
    if counted.shape[1] > k:
        counted = -np.partition(-counted, k - 1, axis=1)[:, :k]
    return np.asarray(counted.sum(axis=1) / k)


def counted_seeds(rows: Sequence[Sequence[float]], variant: float, limit: int,
                  width: int = MAX_TRAFFIC_K) -> np.ndarray:
    """From each creative's best raw similarities in a window (a search for `limit`, any order; fewer found: the
    window's every one), the most each of the window's `width` best similarities below `variant` can be, best
    first, one row per creative: those below it among them, and for slots they leave empty -inf where the search
    found all, else the least found (or `variant`, if lower), which a similarity the search left out cannot pass.
    What the novelty sweep's bound starts from at arrival (sweep_bound._traffic_ceilings); a batch at once, as the
    arrival search returns it, because per creative the numpy calls cost more than the arithmetic."""
    longest = max((len(row) for row in rows), default=0)
    found = np.full((len(rows), max(longest, width)), -np.inf)
    for n, row in enumerate(rows):
        found[n, : len(row)] = row
    real = np.isfinite(found)
    complete = real.sum(axis=1) < limit
    least = np.minimum(np.where(real, found, np.inf).min(axis=1, initial=np.inf), variant)
    counted = -np.sort(-np.where(found < variant, found, -np.inf), axis=1)[:, :width]
    fill = np.where(complete, -np.inf, least)[:, None]
    return np.where(np.isfinite(counted), counted, fill)


def one_per_campaign(similarities: np.ndarray, neighbours: np.ndarray, level: float,
                     lonely: np.ndarray | None = None, fresh: np.ndarray | None = None) -> list[float]:
    """The traffic a creative's novelty reads, each campaign counted once: `similarities` of its nearest recent
    creatives to it, `neighbours` their unit vectors in the same order. A recent creative at `level` or above to
    the creative is a variant of it; one at `level` or above to such a variant, or to a nearer one already kept, is
    that campaign again. The similarities kept, best first. Pairs known to be below the level are not computed:
    `lonely[n]`, neighbour n is at the level to none of the others but the `fresh` ones, whose pairs nothing
    knows (VectorTable.social says so of the window's creatives; the batch's are fresh). None: every pair is.

    Why: a burst's loosest variants sit below the level to some of their fellows and above it to others, so the
    level alone let the 10-20 loosest of 200 back into the traffic, where they read as a crowd with no labelled
    fellows (docs/benchmarks.md, "Campaigns counted once"). Distinct creatives of one kind rarely pass the level
    to each other (it is set so: held_out.variant_level), so a crowd keeps almost all of its members. By hand: a
    greedy leader pass over at most 2 x MAX_TRAFFIC_K neighbours, which no clustering library does with the
    creative's own campaign as a given cluster."""
    sims = np.asarray(similarities, dtype=np.float64)
    if len(sims) == 0:
        return []
    order = np.argsort(-sims, kind="stable")
    sims, unit = sims[order], np.asarray(neighbours, dtype=np.float32)[order]
    # Each neighbour's fellows at the level as the bits of a Python int: the greedy pass is then a step of a few
    # integer operations per neighbour. Numpy row operations per step cost more than the search itself did, and
    # the pairs' product half of the arrival search where most of the window has no fellow (bench.fixed_cost).
    new = np.zeros(len(sims), dtype=bool) if fresh is None else np.asarray(fresh, dtype=bool)[order]
    alone = np.zeros(len(sims), dtype=bool) if lonely is None else np.asarray(lonely, dtype=bool)[order] & ~new
    if not alone.any():
        fellows = unit @ unit.T >= level
    else:  # the pairs among those not lonely (the fresh among them), and the fresh with the lonely
        fellows = np.zeros((len(sims), len(sims)), dtype=bool)
        paired, new_rows, alone_rows = np.flatnonzero(~alone), np.flatnonzero(new), np.flatnonzero(alone)
        fellows[np.ix_(paired, paired)] = unit[paired] @ unit[paired].T >= level
        if len(new_rows) and len(alone_rows):
            cross = unit[new_rows] @ unit[alone_rows].T >= level
            fellows[np.ix_(new_rows, alone_rows)] = cross
            fellows[np.ix_(alone_rows, new_rows)] = cross.T
    rows, some = np.packbits(fellows, axis=1, bitorder="little"), set(np.flatnonzero(fellows.any(axis=1)).tolist())
    seen, kept = 0, []  # bit n set: neighbour n is of a campaign already seen (the creative's or a kept one)
    for n, similarity in enumerate(sims.tolist()):
        if similarity >= level or not seen >> n & 1:
            if similarity < level:
                kept.append(similarity)
            if n in some:
                seen |= int.from_bytes(rows[n].tobytes(), "little")
    return kept


def novelty_features(
    label_scores: Mapping[int, float],
    exemplars: Sequence[tuple[int, float]],
    taxonomy: Taxonomy,
    traffic: Sequence[float] = (),
    k: int = TRAFFIC_K,
    variant: float = VARIANT_SIMILARITY,
) -> np.ndarray:
    """The FEATURES of one creative; label_scores, exemplars and traffic as in the trigger's Evidence, k as
    traffic_k gives it, variant the version's variant level (Thresholds.variant_level)."""
    items = sorted(((lid, s) for lid, s in label_scores.items() if lid in taxonomy), key=lambda item: -item[1])
    items = items[:LABEL_CANDIDATES]
    if not items:
        return np.zeros(len(FEATURES))
    sims = np.array([s for _, s in items], dtype=np.float64)  # best first
    best = float(sims[0])
    second = float(sims[1]) if len(sims) > 1 else best
    logits = (sims - best) / ENTROPY_TEMPERATURE
    weights = np.exp(logits)
    probabilities = weights / weights.sum()
    entropy = float(-(probabilities * np.log(probabilities + 1e-12)).sum())
    leaf = [s for lid, s in items if not taxonomy.children.get(lid)]
    parent = [s for lid, s in items if taxonomy.children.get(lid)]
    # Parents outside the candidates the index returned rank below all of them: the lowest candidate bounds them.
    best_parent = max(parent) if parent else float(sims.min())
    best_leaf = max(leaf) if leaf else best
    known = [(lid, s) for lid, s in exemplars if lid in taxonomy]
    if known:
        ex_sims = np.array([s for _, s in known])
        top = items[0][0]
        agreement = float(np.mean([lid == top or top in taxonomy.ancestors(lid) for lid, _ in known]))
        exemplar_mean, exemplar_best = float(ex_sims.mean()), float(ex_sims.max())
    else:
        agreement, exemplar_mean, exemplar_best = 0.0, 0.0, 0.0
    return np.array([best, best - second, float(sims[:5].mean()), entropy, exemplar_mean, exemplar_best,
                     agreement, best_parent - best_leaf, traffic_mean(traffic, k, variant) - exemplar_mean])


@dataclass(frozen=True)
class NoveltyModel:
    """A standardised logistic regression over some of FEATURES (named in ``features``, so a model stored before
    a feature was added keeps reading the ones it was fitted on); ``logit`` > 0 leans towards "new label"."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    features: tuple[str, ...] = FEATURES

    def logit(self, features: np.ndarray) -> float:
        """`features`: all of FEATURES, in order, as novelty_features computes them."""
        picked = np.asarray(features, dtype=np.float64)[[FEATURES.index(name) for name in self.features]]
        z = (picked - np.array(self.mean)) / np.array(self.scale)
        return float(z @ np.array(self.coef) + self.intercept)

    @property
    def reads_traffic(self) -> bool:
        """Whether the traffic window can move this score (a model fitted where no traffic was kept cannot)."""
        return self.traffic_weight != 0

    @property
    def traffic_weight(self) -> float:
        """How many logits the score moves per unit of the traffic feature (0 where it reads none): positive when
        more traffic like a creative reads as more novel, which is what lets the sweep bound a score from above."""
        return sum(coef / scale for name, coef, scale in zip(self.features, self.coef, self.scale, strict=True)
                   if name == "traffic_minus_exemplar")

    def to_json(self) -> dict[str, Any]:
        return {"features": list(self.features), "mean": list(self.mean), "scale": list(self.scale),
                "coef": list(self.coef), "intercept": self.intercept}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> NoveltyModel | None:
        if not data:
            return None
        names = tuple(data.get("features", []))
        unknown = [name for name in names if name not in FEATURES]
        sizes = {len(names), *(len(data.get(key) or []) for key in ("mean", "scale", "coef"))}
        if not names or unknown or len(sizes) != 1:
            # Stored by code with other features: the coefficients would be misread, and falling back to the
            # blend would compare cosines with a threshold calibrated on logits. Neither may pass silently.
            raise ValueError(f"the novelty model stored with this version reads features {list(names)}, "
                             f"this code computes {list(FEATURES)}: recalibrate the version")
        return cls(tuple(map(float, data["mean"])), tuple(map(float, data["scale"])),
                   tuple(map(float, data["coef"])), float(data["intercept"]), names)


def novelty_pipeline() -> Any:
    """The unfitted scikit-learn model behind NoveltyModel (standardise, then logistic regression)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))


MIN_ROWS = 40
MIN_LABELS = 3
FOLDS = 5


def fit_novelty_model(
    known: np.ndarray, novel: np.ndarray, labels: Sequence[int], features: Sequence[str] = FEATURES
) -> tuple[NoveltyModel, float] | None:
    """Fit on known (label present) and simulated-novel feature rows (all of FEATURES) of the same validation
    creatives, reading only `features` (the traffic feature is left out where no traffic is kept).

    Returns the model fitted on all rows and its AUROC under cross-validation grouped by label (a label's
    creatives never on both sides of a fold), or None when the data is too small to judge it."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    groups = np.r_[labels, labels]
    if len(known) < MIN_ROWS or len(set(labels)) < MIN_LABELS:
        return None
    columns = [FEATURES.index(name) for name in features]
    x = np.r_[known, novel][:, columns]
    y = np.r_[np.zeros(len(known)), np.ones(len(novel))]

    folds = GroupKFold(n_splits=min(FOLDS, len(set(labels))))
    predicted = cross_val_predict(novelty_pipeline(), x, y, groups=groups, cv=folds, method="decision_function")
    cv_auroc = float(roc_auc_score(y, predicted))
    fitted = novelty_pipeline().fit(x, y)
    scaler, regression = fitted[0], fitted[-1]
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    model = NoveltyModel(tuple(map(float, scaler.mean_)), tuple(map(float, scale)),
                         tuple(map(float, regression.coef_[0])), float(regression.intercept_[0]), tuple(features))
    return model, cv_auroc
