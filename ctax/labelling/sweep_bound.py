"""Which young creatives the novelty sweep (sweep.py) can leave as they are: those whose flag may not be raised,
and those whose fit stays above the threshold even with the traffic feature at the most their neighbours allow
(may_raise). Exact: the bound never skips a creative the sweep would raise (tests/labelling/test_sweep.py,
tests/worker/test_novelty_sweep.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from ctax.enums import Flag
from ctax.index.points import campaign_key
from ctax.labelling.labeller import Labeller
from ctax.labelling.novelty import MAX_TRAFFIC_K, traffic_ceiling, traffic_k
from ctax.labelling.trigger import OCR, TEXT, Trigger

RAISABLE = (Flag.NONE, Flag.LOW_CONFIDENCE)
# A creative is left unswept only where its least fit clears the threshold by more than this: the bound and the
# fit sum their floats in another order, and the fit without traffic kept at arrival read the exemplars from the
# arriving vector, the decision from the window's stored unit vector (their last bits differ, and the learned
# score's weights scale that up): one at the threshold must not be skipped for a last digit.
BOUND_SLACK = 1e-4


class Bounded(Protocol):
    """What the sweep reads of a creative to bound its fit (repo.BOUNDED_COLUMNS; a Creative has them too)."""

    @property
    def id(self) -> str: ...
    @property
    def texts(self) -> Sequence[str] | None: ...
    @property
    def ocr_text(self) -> str | None: ...
    @property
    def asserted_label_id(self) -> int | None: ...
    @property
    def flag(self) -> Flag | None: ...
    @property
    def campaign(self) -> str | None: ...
    @property
    def account_id(self) -> int | None: ...


def may_raise_among(labeller: Labeller, vectors: np.ndarray, ids: list[str], rows: Mapping[str, Bounded],
                     candidates: list[int]) -> list[int]:
    """Those of the candidates (positions in `ids`) whose flag may be raised and whose fit some traffic their
    neighbours allow could bring below the threshold (may_raise): their traffic's ceilings (_traffic_ceilings) and
    each one's fit without traffic (kept while the exemplars stand)."""
    trigger = labeller.trigger
    raisable = [n for n in candidates if rows[ids[n]].flag in RAISABLE]
    if not raisable:
        return []
    chosen = [rows[ids[n]] for n in raisable]
    bases = _fits_without_traffic(labeller, vectors[raisable], chosen)
    ceilings = _traffic_ceilings(labeller, vectors[raisable], chosen)
    return [n for n, row, base, most in zip(raisable, chosen, bases, ceilings.tolist(), strict=True)
            if may_raise(trigger, base, most, text_source_of(row))]


def _traffic_ceilings(labeller: Labeller, vectors: np.ndarray, rows: Sequence[Bounded]) -> np.ndarray:
    """The most each creative's traffic mean can read (novelty.traffic_ceiling). On a server, of one search of the
    whole window by similarity. In local mode, of the k best similarities below the variant level among all the
    window's creatives (never less than that ceiling, so no creative is skipped that it would re-decide), kept
    per creative from its arrival search (novelty.counted_seeds) and its last sweep, and brought up to date with
    only the creatives written into the window since (VectorTable.last_write), all in one search: a search of
    the whole window for each young creative at every sweep was the largest part of the sweep left
    (docs/benchmarks.md). Creatives that have left the window since stay among the kept ones: a ceiling only has
    to be at least the traffic's mean."""
    thresholds = labeller.trigger.thresholds
    window, level = labeller.full_window(), thresholds.variant_level
    k = traffic_k(window, thresholds.traffic_reference)
    index, version = labeller.index, labeller.version
    ids, campaigns = [row.id for row in rows], [campaign_of(row) for row in rows]
    mark = index.traffic_last_write(version)
    if mark is None:
        sims = index.traffic_similarities(version, vectors, labeller.fetch_limit(window), ids, campaigns)
        return traffic_ceiling(sims, k, level)
    # As many as k can ever be: the window's size moves between prunes, and k with it (novelty.traffic_k).
    kept, width = labeller.swept_ceilings, MAX_TRAFFIC_K
    since = [kept[cid][0] if cid in kept else 0 for cid in ids]
    best = np.full((len(ids), width), -np.inf)
    found = index.traffic_similarities(version, vectors, width, ids, campaigns, below=level, since=since)
    best[:, : found.shape[1]] = found  # at most `width` columns
    seen = [n for n, cid in enumerate(ids) if cid in kept]
    if seen:  # what each had seen by its mark, with what was written since
        merged = np.concatenate([np.stack([kept[ids[n]][1] for n in seen]), best[seen]], axis=1)
        best[seen] = -np.partition(-merged, width - 1, axis=1)[:, :width]
    kept.update({cid: (mark, best[n]) for n, cid in enumerate(ids)})
    return traffic_ceiling(best, k, level)


def _fits_without_traffic(labeller: Labeller, vectors: np.ndarray, rows: list[Bounded]) -> list[float | None]:
    """Each creative's fit were no traffic like it (None: no label left to fit it), as Labeller.swept_fits keeps
    it from arrival and across sweeps while the version's exemplars stand (exemplars_stamp): only the traffic
    changes between."""
    stamp, kept = labeller.index.exemplars_stamp(labeller.version), labeller.swept_fits
    missing = [n for n, row in enumerate(rows) if stamp is None or kept.get(row.id, (None, None))[0] != stamp]
    if missing:
        ids, asserted = [rows[n].id for n in missing], [rows[n].asserted_label_id for n in missing]
        label_scores(labeller, vectors[missing], ids, asserted)
        evidence = labeller.evidence(vectors[missing], asserted, [()] * len(ids), [0] * len(ids),
                                     label_scores=[labeller.swept_label_scores[cid] for cid in ids])
        trigger = labeller.trigger
        kept.update({cid: (stamp, trigger.fit(seen) if any(lid in trigger.taxonomy for lid in seen.label_scores)
                           else None) for cid, seen in zip(ids, evidence, strict=True)})
    return [kept[row.id][1] for row in rows]


def may_raise(trigger: Trigger, fit_without_traffic: float | None, most_traffic: float,
              text_source: str = TEXT) -> bool:
    """Whether some counting of campaigns among a creative's neighbours could bring its fit below its new-label
    threshold: `fit_without_traffic`, its fit were the traffic empty (None: it has no label to fit, and is decided
    new_label whatever the traffic); `most_traffic`, the most its traffic mean can read (novelty.traffic_ceiling
    of its raw neighbours).

    The learned score is linear in the traffic feature (traffic mean less exemplar mean), so where more traffic
    reads as more novel (a positive traffic weight) the fit at the most traffic is the least the creative's can
    be. Exact: no creative the sweep would raise is skipped (tests/labelling/test_sweep.py)."""
    model = trigger.novelty_model_for(text_source)
    if model is None or model.traffic_weight <= 0 or fit_without_traffic is None:
        return True
    least = fit_without_traffic - model.traffic_weight * most_traffic
    return least < trigger.thresholds.new_label_threshold(text_source) + BOUND_SLACK


def label_scores(labeller: Labeller, vectors: np.ndarray, creative_ids: list[str],
                  asserted: list[int | None]) -> None:
    """Label scores for those of these creatives the labeller has not kept since an earlier sweep: a creative is
    swept about window / sweep_every times, and only its traffic changes between sweeps."""
    known = labeller.swept_label_scores
    missing = [n for n, cid in enumerate(creative_ids) if cid not in known]
    if missing:
        scores = labeller.label_scores(vectors[missing], [asserted[n] for n in missing])
        known.update({creative_ids[n]: row for n, row in zip(missing, scores, strict=True)})


def campaign_of(row: Bounded) -> str | None:
    return campaign_key(row.account_id, row.campaign)


def text_source_of(row: Bounded) -> str:
    """As the labeller judged it: OCR when the creative had no text of its own and its image's text was read."""
    return OCR if not any(t.strip() for t in row.texts or []) and (row.ocr_text or "").strip() else TEXT
