"""Held-out labelled creatives as the trigger sees them: the evidence that calibration (and the studies in bench/)
score offline, built from vectors instead of from the index the labeller queries, and the levels set from them.

Pure: vectors in, Evidence out; no models, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ctax.labelling.novelty import DUPLICATE_SIMILARITY, TRAFFIC_K, VARIANT_SIMILARITY, one_per_campaign
from ctax.labelling.trigger import TEXT, Evidence, Thresholds
from ctax.taxonomy.tree import Taxonomy


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


def simulated_traffic(held: Held, readers: Held | None = None, campaigns_at: float | None = None
                      ) -> list[list[float]]:
    """What a full traffic window shows each held creative: similarities to the other held creatives, best first
    (as many as the labeller fetches). The held creatives stand in for the traffic; the novelty sweep, which
    re-decides creatives once the window has filled, sees the window the same way (novelty_sweep.py).

    readers: other creatives looking at the same window (OCR-like readings of held ones), one row each; a
    reader's own creative is left out of its window, as a held creative's is. campaigns_at: the variant level at
    which each campaign counts once (novelty.one_per_campaign), as the labeller reads a version that does so."""
    if len(held.creative_ids) == 0:
        return []
    unit = _unit(held.vectors)
    queries = readers if readers is not None else held
    sims = _unit(queries.vectors) @ unit.T
    position = {cid: n for n, cid in enumerate(held.creative_ids)}
    for row, cid in enumerate(queries.creative_ids):
        if cid in position:
            sims[row, position[cid]] = -np.inf
    limit = min(2 * TRAFFIC_K, len(held.creative_ids) - 1)
    out = []
    for row in sims:
        top = np.argpartition(-row, limit - 1)[:limit] if limit > 0 else np.zeros(0, dtype=np.int64)
        top = top[np.argsort(-row[top], kind="stable")]
        if campaigns_at is None:
            out.append(row[top].tolist())
        else:
            out.append(one_per_campaign(row[top], unit[top], campaigns_at))
    return out


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def build_evidence(
    held: Held, ref: Reference, exemplar_k: int, *, drop_own_label: bool = False, taxonomy: Taxonomy | None = None,
    traffic: Sequence[Sequence[float]] | None = None, window: int | None = None, text_source: str = TEXT,
) -> list[Evidence]:
    """window: the size of the traffic window `traffic` was drawn from (default: the held creatives less one);
    text_source: where the held creatives' text came from (OCR for readings, so that they are scored as served)."""
    window = len(held.creative_ids) - 1 if window is None else window
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
            # Nor are its copies (the same ad filed twice, on both sides of a split): serving compares a creative
            # with exemplars it is new to, and a copy among them would make known creatives look surer than they
            # are, setting the `new_label` threshold too high.
            sims[sims >= DUPLICATE_SIMILARITY] = -np.inf
            if drop_own_label:
                sims[ref.exemplar_labels == true_label] = -np.inf
            k = min(exemplar_k, len(sims))
            top = np.argpartition(-sims, k - 1)[:k]
            top = top[np.argsort(-sims[top])]
            exemplars = [(int(ref.exemplar_labels[j]), float(sims[j])) for j in top if np.isfinite(sims[j])]
        if drop_own_label:
            scores.pop(true_label, None)
        evidence.append(Evidence(scores, exemplars, traffic=traffic[row] if traffic is not None else (),
                                 traffic_window=window if traffic is not None else 0, text_source=text_source))
    return evidence


# Share of distinct labelled creatives a version's near-duplicate threshold may put in another's group: the
# precision target of grouping (docs/benchmarks.md, "Near-duplicate groups") read as a false-group rate.
FALSE_GROUP_SHARE = 0.01


def duplicate_floor(held: Held, ref: Reference, share: float = FALSE_GROUP_SHARE) -> float | None:
    """The similarity above which only `share` of the held creatives have a different labelled creative (another
    held one, or an exemplar), copies (>= DUPLICATE_SIMILARITY: the same ad filed twice) aside.

    Why per version: the near-duplicate threshold was calibrated on the pretrained space (bench/duplicates.py); a
    trained space pulls a label's creatives together, and distinct ads of one label could then pass it and be
    grouped. None without enough creatives to tell (fewer than 1/share)."""
    if len(held.creative_ids) < round(1 / share):
        return None
    return float(np.quantile(nearest_distinct(held, ref), 1 - share, method="higher"))


def nearest_distinct(held: Held, ref: Reference) -> np.ndarray:
    """Per held creative: its similarity to the nearest other labelled creative (held or exemplar), copies
    (>= DUPLICATE_SIMILARITY) and itself aside."""
    others = np.concatenate([held.vectors, ref.exemplar_vectors]) if len(ref.exemplar_ids) else held.vectors
    positions: dict[str, list[int]] = {}
    for n, other in enumerate([*held.creative_ids, *ref.exemplar_ids]):
        positions.setdefault(other, []).append(n)
    nearest = np.empty(len(held.creative_ids), dtype=np.float32)
    for start in range(0, len(held.creative_ids), 512):  # bounded memory: 512 rows of similarities at a time
        sims = held.vectors[start : start + 512] @ others.T
        for row, creative_id in enumerate(held.creative_ids[start : start + 512]):
            sims[row, positions[creative_id]] = -1.0  # itself (as a held creative, and as an exemplar if it is one)
        sims[sims >= DUPLICATE_SIMILARITY] = -1.0
        nearest[start : start + 512] = sims.max(axis=1)
    return nearest


# Share of validation creatives whose nearest distinct labelled creative a version counts as a variant of it: the
# share that the level set on burst variants in the pretrained space (novelty.VARIANT_SIMILARITY, 0.88) cuts on
# the Pitt split, measured in docs/benchmarks.md ("Variant level per version").
VARIANT_SHARE = 0.28


def variant_level(held: Held, ref: Reference) -> float | None:
    """The similarity from which a recent creative is a variant of the one scored and no traffic evidence, for this
    version's space: where only VARIANT_SHARE of the validation creatives have a distinct labelled creative, and
    never below novelty.VARIANT_SIMILARITY.

    Why per version: a trained space pulls a label's distinct creatives together, far above the pretrained 0.88;
    a fixed level then leaves a crowd of a new kind out of the traffic as if it were one campaign's burst, and the
    traffic feature says nothing. Why a floor: with fewer labelled creatives each one's nearest is further away, so
    a small calibration set would read the same space as sparser and count more of its traffic as variants.
    None without enough creatives to tell (VARIANT_SIMILARITY serves)."""
    level = duplicate_floor(held, ref, VARIANT_SHARE)
    return None if level is None else max(level, VARIANT_SIMILARITY)


def known_rate_cut(known_fit: np.ndarray, rate: float, confidence: float) -> float:
    """The fit below which at most `rate` of known creatives fall: the highest cut between validation fits whose
    one-sided Clopper-Pearson bound on that share stays within `rate` at `confidence` (0: the plain quantile).
    A validation quantile is itself an estimate, and the test streams' known creatives fell below a plain 3%
    quantile 3.1% of the time at full size and 4-8% on reduced splits (docs/benchmarks.md). With too few
    creatives to vouch even for none flagged: the least of their fits (none of them flagged)."""
    if confidence <= 0:
        return float(np.quantile(known_fit, rate))
    from scipy.stats import binom  # slow to import, and only calibration needs it

    ranked = np.sort(np.asarray(known_fit, dtype=np.float64))
    # The bound for k of n flagged is within `rate` exactly where P(Binomial(n, rate) <= k) <= 1 - confidence.
    allowed = np.flatnonzero(binom.cdf(np.arange(len(ranked)), len(ranked), rate) <= 1 - confidence)
    flagged = int(allowed[-1]) if allowed.size else 0
    return float(ranked[0] if flagged == 0 else (ranked[flagged - 1] + ranked[flagged]) / 2)


def with_variant_level(thresholds: Thresholds, held: Held, ref: Reference, keeps_traffic: bool
                       ) -> tuple[Thresholds, dict[str, Any]]:
    """Calibration's step 0: from which similarity recent creatives are variants of the one scored, in this
    version's space (variant_level); before the simulated traffic is drawn, which counts each campaign once at it."""
    level = variant_level(held, ref) if keeps_traffic else None
    return replace(thresholds, variant_similarity=level, campaigns_once=keeps_traffic), {
        "similarity": level, "share": VARIANT_SHARE, "campaigns_once": keeps_traffic,
        "method": "nearest other labelled creative of each validation creative, copies aside"}


def with_duplicate_floor(thresholds: Thresholds, held: Held, ref: Reference) -> tuple[Thresholds, dict[str, Any]]:
    """Calibration's step 7: the version's floor for near-duplicate grouping (duplicate_floor)."""
    floor = duplicate_floor(held, ref)
    return replace(thresholds, duplicate_similarity=floor), {
        "similarity_floor": floor, "false_group_share": FALSE_GROUP_SHARE,
        "method": "nearest other labelled creative of each validation creative, copies aside"}
