"""The novelty sweep: re-decide recently labelled creatives once more of the traffic around them has arrived.

A new kind of creative (a product line the taxonomy lacks) arrives as many creatives over days. The first of them
are labelled before there is any traffic like them, so the traffic feature of the learned novelty score (novelty.py)
cannot speak for them; once their fellows have arrived it can. The sweep takes the young creatives of the active
version's traffic window (the `novelty_sweep_young` labelled most recently), recomputes their fit against the whole
window (later arrivals included) and raises `new_label` on those that now fit no label. Only the young: a crowd's
first members are what the sweep is for, by its third sweep a creative has seen the arrivals of two to three sweep
intervals after it, and re-deciding the whole window at every sweep was over half of the labelling task's cost
(docs/benchmarks.md, "The sweep re-decides only young creatives"). It never lowers a flag (a reviewer decides those)
and never touches a creative a reviewer has already decided. Each swept prediction keeps its fit at arrival beside
the new one (`scores.fit_at_arrival`), and a raised one its flag at arrival (`flag_at_arrival`, with
`raised_by_sweep`), so what the sweep changed stays visible.

Members of a near-duplicate group are not in the window (a group counts once), so the sweep re-decides their root,
and the members, which carry their group's decision, take the root's flag, decided label and prediction again
(store/repos/groups.follow_roots): raised with it, their evidence brought up to date with it. The group's one
review item is the root's: opened (or, while open, re-flagged) as a single creative's would be, counting the
members; a group a reviewer decided is left alone like any reviewed creative.

Only what the traffic could still raise is re-decided (unless `refresh`, as `ctax eval` asks, which reads every
creative's final fit): a creative whose flag may not be raised is left as it is, and so is one whose fit stays
above the threshold even with the traffic feature at the most its neighbours allow (sweep_bound.py). Counting
each campaign once, the whole decision and rewriting the prediction were most of the sweep, and on a calibrated
Pitt window nine young creatives in ten cannot be raised (docs/benchmarks.md, "The sweep bounds a fit first").
Those keep the fit of their last re-decision (or arrival) in their prediction; the flags come out the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ctax.enums import Flag
from ctax.labelling.flagging import flag_for_review
from ctax.labelling.labeller import Labeller
from ctax.labelling.sweep_bound import (
    RAISABLE,
    campaign_of,
    label_scores,
    may_raise_among,
    text_source_of,
)
from ctax.labelling.trigger import Decision, Evidence
from ctax.store.models import Creative
from ctax.store.repos import creatives as repo
from ctax.store.repos import groups
from ctax.store.session import Database, Session
from ctax.store.types import utcnow

log = logging.getLogger(__name__)
SWEPT_REASON = "raised by the novelty sweep: creatives like it kept arriving after it was labelled"


@dataclass
class SweepReport:
    version: str
    window: int = 0  # creatives in the traffic window
    swept: int = 0  # of its young ones, those still labelled by this version, undecided by reviewers, re-decided
    skipped: int = 0  # of those, left as they were: their flag may not be raised, or no traffic could raise it
    raised: int = 0  # newly flagged new_label
    members: int = 0  # duplicates that took a swept root's decision again
    members_raised: int = 0  # of those, raised to new_label with their root


def sweep(db: Database, labeller: Labeller, young: int = 0, batch_size: int = 512,
          refresh: bool = False) -> SweepReport:
    """Re-decide the `young` creatives of the window labelled most recently (0: all of it) against the whole
    window, arrivals after them included: those the traffic could raise, or (`refresh`) every one."""
    version = labeller.version
    if not labeller.reads_traffic:  # nothing it could change: every decision would come out as it was
        log.info("novelty sweep of %s: nothing to re-decide, its decisions read no traffic", version)
        return SweepReport(version, window=labeller.index.count_traffic(version))
    ids, vectors = labeller.index.traffic_window(version)  # oldest first
    report = SweepReport(version, window=len(ids))
    if 0 < young < len(ids):
        ids, vectors = ids[-young:], vectors[-young:]
    for kept in (labeller.swept_label_scores, labeller.swept_fits, labeller.swept_ceilings):
        for gone in set(kept).difference(ids):  # grown old or left the window: never swept again
            del kept[gone]
    for start in range(0, len(ids), batch_size):
        chunk_ids, chunk_vectors = ids[start : start + batch_size], vectors[start : start + batch_size]
        with db.write() as session:
            decided = repo.reviewed_among(session, chunk_ids)
            brief = repo.labelled_briefly(session, chunk_ids, version)
            candidates = [n for n, cid in enumerate(chunk_ids) if cid in brief and cid not in decided]
            keep = candidates if refresh else may_raise_among(labeller, chunk_vectors, chunk_ids, brief, candidates)
            report.skipped += len(candidates) - len(keep)
            if keep:  # the same rows, whole (one relabelled meanwhile by another worker's version drops out)
                rows = repo.labelled_by(session, [chunk_ids[n] for n in keep], version)
                keep = [n for n in keep if chunk_ids[n] in rows]
                _redecide_all(session, labeller, [rows[chunk_ids[n]] for n in keep], chunk_vectors[keep], report)
    log.info("novelty sweep of %s: %d in the window, %d re-decided (%d could not be raised), %d raised to new_label "
             "(and %d of their duplicates)", version, report.window, report.swept, report.skipped, report.raised,
             report.members_raised)
    return report


def _redecide_all(session: Session, labeller: Labeller, rows: list[Creative], vectors: np.ndarray,
                  report: SweepReport) -> None:
    """Re-decide these creatives against the whole window, and their groups' members after them."""
    if not rows:
        return
    ids, asserted = [row.id for row in rows], [row.asserted_label_id for row in rows]
    label_scores(labeller, vectors, ids, asserted)
    traffic, windows = labeller.full_window_traffic(vectors, ids, [campaign_of(row) for row in rows])
    evidence = labeller.evidence(vectors, asserted, traffic, windows, sources=[text_source_of(row) for row in rows],
                                 label_scores=[labeller.swept_label_scores[cid] for cid in ids])
    raised = {row.id for row, seen in zip(rows, evidence, strict=True)
              if _redecide(session, labeller, row, _novelty(labeller, row, seen))}
    # Members carry their group's decision: after the root's, theirs (the root's item counts them).
    followed = groups.follow_roots(session, rows)
    report.raised += len(raised)
    report.members += sum(followed.values())
    report.members_raised += sum(n for root, n in followed.items() if root in raised)
    report.swept += len(rows)


@dataclass(frozen=True)
class _Novelty:
    """A swept creative's novelty evidence now, and the trigger's whole decision where it may raise the flag."""

    fit: float | None
    recent_like_it: int | None
    decision: Decision | None


def _novelty(labeller: Labeller, row: Creative, evidence: Evidence) -> _Novelty:
    """The fit, and the whole decision only where it can raise the creative: a raisable flag and a fit below the
    threshold (or no label left to fit). The rest of a decision (ranking, leaf, assertion and their reasons)
    cannot have changed since arrival, as only the traffic did, and was most of the sweep's trigger time."""
    trigger = labeller.trigger
    if not any(lid in trigger.taxonomy for lid in evidence.label_scores):  # decided new_label, with no fit
        return _Novelty(None, None, trigger.decide(evidence) if row.flag in RAISABLE else None)
    fit = trigger.fit(evidence)
    may_raise = row.flag in RAISABLE and fit < trigger.thresholds.new_label_threshold(evidence.text_source)
    return _Novelty(fit, trigger.recent_like_it(evidence), trigger.decide(evidence) if may_raise else None)


def _redecide(session: Session, labeller: Labeller, row: Creative, novelty: _Novelty) -> bool:
    """Bring one creative's novelty evidence up to date; raise it to new_label (and flag it for review) if it now
    fits no label and its flag may be raised. Returns whether it was raised."""
    old: dict[str, Any] = dict(row.prediction or {})
    old_scores = dict(old.get("scores") or {})
    arrival = old_scores.get("fit_at_arrival", old_scores.get("fit"))
    decision = novelty.decision
    raised = decision is not None and decision.flag == Flag.NEW_LABEL
    if decision is not None and raised:
        prediction = labeller.prediction(decision, old.get("modalities") or {}, old.get("modalities_used") or [])
        prediction["reasons"] = [*prediction["reasons"], SWEPT_REASON]
        prediction["raised_by_sweep"], prediction["flag_at_arrival"] = True, row.flag
        # The asserted label's gap and the like were measured at arrival and stay meaningful.
        prediction["scores"] = {**old_scores, **prediction["scores"]}
        row.flag, row.decided_label_id = Flag.NEW_LABEL, None
        flag_for_review(session, row.id, decision, labeller.version, row.asserted_label_id)
    else:  # the label and flag stand; only the novelty evidence is brought up to date
        prediction = old
        prediction["scores"] = {**old_scores, "fit": novelty.fit, **(
            {"recent_like_it": novelty.recent_like_it} if novelty.recent_like_it is not None else {})}
    prediction["scores"] = {**prediction["scores"], "fit_at_arrival": arrival}
    prediction["novelty_swept_at"] = utcnow().isoformat()
    row.prediction = prediction
    return raised
