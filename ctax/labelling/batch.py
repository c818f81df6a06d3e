"""Labelling the creatives a queue message names: claim them, label them in batches, store what was decided.

Idempotent: ids already labelled, failed or held by a live worker are skipped, so a redelivered message changes
nothing. Results land only where this worker still holds the claim (a lease another worker may have taken over),
flagged creatives become review items in the same transaction, and every `novelty_sweep_every` creatives this
process labelled the novelty sweep re-decides the traffic window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from ctax.config import Settings
from ctax.creatives.images import TOWER_SHORT_SIDE, decode_rgb
from ctax.enums import CreativeStatus, Flag
from ctax.errors import ConcurrentChange, StoreUnavailable
from ctax.labelling.flagging import flag_batch
from ctax.labelling.labeller import Labeller, LabelOutcome, LabelRequest
from ctax.labelling.sweep import sweep
from ctax.store.blobs import BlobStore
from ctax.store.repos import creatives as repo
from ctax.store.session import Database

log = logging.getLogger(__name__)

STORE_ATTEMPTS = 3


class SweepCounter(Protocol):
    """Where a process counts the creatives it labelled since its last novelty sweep (it outlives one batch)."""

    labelled_since_sweep: int


@dataclass
class _Batch:
    """One batch's requests to label, and the creatives whose stored image no longer decodes (with why)."""

    requests: list[LabelRequest] = field(default_factory=list)
    broken: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class LabellingWorker:
    """What labelling needs from the process that runs it: the worker's name is the holder of its claims, and the
    labeller is asked for only once there is work (the first start may still be building a version)."""

    db: Database
    blobs: BlobStore
    settings: Settings
    name: str
    labeller: Callable[[], Labeller]
    counter: SweepCounter

    def run(self, ids: Sequence[str]) -> dict[str, int]:
        with self.db.write() as session:
            # What labelling reads of them comes back with the claim: no second query per batch.
            taken = {row.id: row for row in repo.claim_inputs(session, ids, self.name, self.settings.lease_s)}
        # In the order they arrived (the message's), not the database's: earlier creatives of a batch are the
        # traffic later ones are judged against, as if the batch had been labelled one by one.
        claimed = [taken[creative_id] for creative_id in dict.fromkeys(ids) if creative_id in taken]
        counts = {"claimed": len(claimed), "labelled": 0, "failed": 0, "requeued": 0}
        if not claimed:
            return counts
        try:
            labeller = self.labeller()
        except Exception as exc:  # no active version yet (first start still building): hand the work back
            self._fail_all([row.id for row in claimed], f"labeller not ready: {exc}", counts)
            return counts
        size = self.settings.label_batch_size
        for start in range(0, len(claimed), size):
            self._label_chunk(labeller, claimed[start : start + size], counts)
        self._maybe_sweep(labeller, counts)
        return counts

    def _label_chunk(self, labeller: Labeller, chunk: list[repo.Claimed], counts: dict[str, int]) -> None:
        batch = self._read(chunk)
        try:
            outcomes = labeller.label(batch.requests) if batch.requests else []
        except Exception as exc:
            log.exception("labelling a batch of %d failed", len(batch.requests))
            self._fail_all([r.creative_id for r in batch.requests], f"labelling failed: {exc!r}", counts)
            outcomes = []
        try:
            asserted = {r.creative_id: r.asserted_label_id for r in batch.requests}
            self._store_retrying(labeller.version, outcomes, asserted, batch.broken, counts)
        except StoreUnavailable as exc:
            log.exception("storing results failed")
            self._fail_all([o.creative_id for o in outcomes], f"storing results failed: {exc!r}", counts)

    def _read(self, rows: list[repo.Claimed]) -> _Batch:
        batch = _Batch()
        for row in rows:
            try:
                image = self._image(row)
            except Exception as exc:  # a stored image that no longer decodes will not decode on retry either
                batch.broken.append((row.id, f"stored image cannot be read: {exc}"))
                continue
            batch.requests.append(LabelRequest(row.id, row.texts, image, row.ocr_text, row.asserted_label_id,
                                               row.account_id, row.created_at.timestamp()))
        return batch

    def _image(self, row: repo.Claimed) -> Image.Image | None:
        """Decoded no larger than needed (a batch holds all its images at once): OCR reads creatives that came
        without text, up to image_decode_max_side; the image towers alone need far less."""
        if not row.image_sha256:
            return None
        needs_ocr = row.ocr_text is None and not any(t.strip() for t in row.texts)
        return decode_rgb(self.blobs.get(row.image_sha256), self.settings.image_decode_max_side,
                          short_side=None if needs_ocr else TOWER_SHORT_SIDE)

    def _maybe_sweep(self, labeller: Labeller, counts: dict[str, int]) -> None:
        """Re-decide the traffic window once every `novelty_sweep_every` creatives this process labelled."""
        every = self.settings.novelty_sweep_every
        self.counter.labelled_since_sweep += counts["labelled"]
        if every <= 0 or self.settings.novelty_traffic_window <= 0 or self.counter.labelled_since_sweep < every:
            return
        self.counter.labelled_since_sweep = 0
        try:
            counts["raised_by_sweep"] = sweep(self.db, labeller).raised
        except (StoreUnavailable, ConcurrentChange):
            # Another worker's sweep or a reviewer got there first; the labels stand and the next sweep covers it.
            log.exception("novelty sweep failed")

    def _store_retrying(self, version: str, outcomes: list[LabelOutcome], asserted: dict[str, int | None],
                        broken: list[tuple[str, str]], counts: dict[str, int]) -> None:
        """A reviewer deciding an item while its creative is re-flagged changes the item under us
        (ConcurrentChange); the whole transaction rolled back, so storing again from scratch is safe."""
        for attempt in range(STORE_ATTEMPTS):
            trial = dict.fromkeys(counts, 0)
            try:
                self._store(version, outcomes, asserted, broken, trial)
            except ConcurrentChange:
                if attempt == STORE_ATTEMPTS - 1:
                    raise
                log.info("review item changed while storing results; retrying")
                continue
            for key, value in trial.items():
                counts[key] += value
            return

    def _store(self, version: str, outcomes: list[LabelOutcome], asserted: dict[str, int | None],
               broken: list[tuple[str, str]], counts: dict[str, int]) -> None:
        """One transaction per batch; results land only where this worker still holds the claim. `asserted`:
        each creative's asserted label, as claimed (it never changes once posted)."""
        labelled = [(o, o.decision) for o in outcomes if o.decision is not None]
        with self.db.write() as session:
            stored = repo.store_results(session, self.name, version, [
                repo.LabelResult(o.creative_id, o.prediction, d.flag, d.decided_label_id, o.ocr_text)
                for o, d in labelled
            ])
            counts["labelled"] += len(stored)
            flag_batch(session, [(o.creative_id, d, asserted.get(o.creative_id)) for o, d in labelled
                                 if o.creative_id in stored and d.flag != Flag.NONE], version)
            for outcome in outcomes:
                if outcome.decision is None:
                    status = repo.fail(session, outcome.creative_id, self.name, outcome.error or "unknown error",
                                       retryable=False, max_attempts=self.settings.max_attempts)
                    counts["failed"] += status == CreativeStatus.FAILED
            for creative_id, reason in broken:
                repo.fail(session, creative_id, self.name, reason, retryable=False,
                          max_attempts=self.settings.max_attempts)
                counts["failed"] += 1

    def _fail_all(self, ids: list[str], reason: str, counts: dict[str, int]) -> None:
        """Hand the work back (or fail it once its attempts are spent)."""
        with self.db.write() as session:
            for creative_id in ids:
                status = repo.fail(session, creative_id, self.name, reason, retryable=True,
                                   max_attempts=self.settings.max_attempts)
                counts["requeued" if status == CreativeStatus.QUEUED else "failed"] += 1
