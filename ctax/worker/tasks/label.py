"""Labelling tasks: take creative ids, label whatever of them is still waiting, in batches."""

from __future__ import annotations

import logging

from celery import shared_task
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm.exc import StaleDataError

from ctax.creatives import intake as creatives
from ctax.creatives.images import decode_rgb
from ctax.jobs import LABEL_CREATIVES
from ctax.labelling.flagging import flag_for_review
from ctax.labelling.labeller import Labeller, LabelOutcome, LabelRequest
from ctax.labelling.sweep import sweep
from ctax.store.models import Creative, utcnow
from ctax.worker.runtime import Runtime, current

log = logging.getLogger(__name__)


@shared_task(name=LABEL_CREATIVES, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def label_creatives(ids: list[str]) -> dict[str, int]:
    return run(current(), ids)


def run(rt: Runtime, ids: list[str]) -> dict[str, int]:
    """Idempotent: ids already labelled, failed or held by a live worker are skipped."""
    settings = rt.settings
    with rt.db.write() as session:
        claimed = creatives.claim(session, ids, rt.name, settings.lease_s)
    counts = {"claimed": len(claimed), "labelled": 0, "failed": 0, "requeued": 0}
    if not claimed:
        return counts
    try:
        labeller = rt.labeller()
    except Exception as exc:  # no active version yet (first start still building): hand the work back
        _fail_all(rt, claimed, f"labeller not ready: {exc}", counts)
        return counts
    size = settings.label_batch_size
    for start in range(0, len(claimed), size):
        chunk = claimed[start : start + size]
        with rt.db.write() as session:
            rows = list(session.scalars(select(Creative).where(Creative.id.in_(chunk))))
        requests, broken = [], []
        for row in rows:
            try:
                image = decode_rgb(rt.blobs.get(row.image_sha256)) if row.image_sha256 else None
            except Exception as exc:  # a stored image that no longer decodes will not decode on retry either
                broken.append((row.id, f"stored image cannot be read: {exc}"))
                continue
            requests.append(LabelRequest(row.id, row.texts or [], image, row.ocr_text, row.asserted_label_id))
        try:
            outcomes = labeller.label(requests) if requests else []
        except Exception as exc:
            log.exception("labelling a batch of %d failed", len(requests))
            _fail_all(rt, [r.creative_id for r in requests], f"labelling failed: {exc!r}", counts)
            outcomes = []
        try:
            _store_retrying(rt, labeller.version, outcomes, broken, counts)
        except OperationalError as exc:
            log.exception("storing results failed")
            _fail_all(rt, [o.creative_id for o in outcomes], f"storing results failed: {exc!r}", counts)
    _maybe_sweep(rt, labeller, counts)
    return counts


def _maybe_sweep(rt: Runtime, labeller: Labeller, counts: dict[str, int]) -> None:
    """Re-decide the traffic window once every `novelty_sweep_every` creatives this process labelled."""
    every = rt.settings.novelty_sweep_every
    rt.labelled_since_sweep += counts["labelled"]
    if every <= 0 or rt.settings.novelty_traffic_window <= 0 or rt.labelled_since_sweep < every:
        return
    rt.labelled_since_sweep = 0
    try:
        counts["raised_by_sweep"] = sweep(rt.db, labeller).raised
    except (OperationalError, IntegrityError, StaleDataError):
        # Another worker's sweep or a reviewer got there first; the labels stand and the next sweep covers it.
        log.exception("novelty sweep failed")


def _store_retrying(rt: Runtime, version: str, outcomes: list[LabelOutcome], broken: list[tuple[str, str]],
                    counts: dict[str, int], attempts: int = 3) -> None:
    """A reviewer deciding an item while its creative is re-flagged bumps the item's version under us
    (StaleDataError); the whole transaction rolled back, so storing again from scratch is safe."""
    for attempt in range(attempts):
        trial = dict.fromkeys(counts, 0)
        try:
            _store(rt, version, outcomes, broken, trial)
        except StaleDataError:
            if attempt == attempts - 1:
                raise
            log.info("review item changed while storing results; retrying")
            continue
        for key, value in trial.items():
            counts[key] += value
        return


def _store(rt: Runtime, version: str, outcomes: list[LabelOutcome], broken: list[tuple[str, str]],
           counts: dict[str, int]) -> None:
    """One transaction per batch; results land only where this worker still holds the claim."""
    with rt.db.write() as session:
        labelled = [o for o in outcomes if o.decision is not None]
        asserted = dict(session.execute(
            select(Creative.id, Creative.asserted_label_id).where(Creative.id.in_([o.creative_id for o in labelled]))
        ).all()) if labelled else {}
        now = utcnow()
        rows = [{
            "b_id": o.creative_id, "status": "labelled", "prediction": o.prediction, "flag": o.decision.flag,
            "decided_label_id": o.decision.decided_label_id, "model_version_id": version, "labelled_at": now,
            "error": None, "ocr_text": o.ocr_text, "claimed_at": None, "claimed_by": None, "updated_at": now,
        } for o in labelled if o.decision is not None]
        if rows:
            # executemany: one statement for the batch instead of one round trip per creative
            session.connection().execute(
                update(Creative.__table__)
                .where(Creative.__table__.c.id == bindparam("b_id"), Creative.__table__.c.claimed_by == rt.name,
                       Creative.__table__.c.status == "processing"),
                rows,
            )
            stored = set(session.scalars(select(Creative.id).where(
                Creative.id.in_([r["b_id"] for r in rows]), Creative.status == "labelled",
                Creative.model_version_id == version, Creative.labelled_at == now)))
            counts["labelled"] += len(stored)
            for outcome in labelled:
                if outcome.creative_id in stored and outcome.decision is not None and outcome.decision.flag != "none":
                    flag_for_review(session, outcome.creative_id, outcome.decision, version,
                                    asserted.get(outcome.creative_id))
        for outcome in outcomes:
            if outcome.decision is None:
                status = creatives.fail(session, outcome.creative_id, rt.name, outcome.error or "unknown error",
                                        retryable=False, max_attempts=rt.settings.max_attempts)
                counts["failed"] += status == "failed"
        for creative_id, reason in broken:
            creatives.fail(session, creative_id, rt.name, reason, retryable=False,
                           max_attempts=rt.settings.max_attempts)
            counts["failed"] += 1


def _fail_all(rt: Runtime, ids: list[str], reason: str, counts: dict[str, int]) -> None:
    with rt.db.write() as session:
        for creative_id in ids:
            status = creatives.fail(
                session, creative_id, rt.name, reason, retryable=True, max_attempts=rt.settings.max_attempts
            )
            counts["requeued" if status == "queued" else "failed"] += 1
