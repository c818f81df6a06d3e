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
from functools import partial
from typing import Protocol

from PIL import Image

from ctax.config import Settings
from ctax.creatives.images import TOWER_SHORT_SIDE, decode_rgb
from ctax.enums import CreativeStatus, Flag
from ctax.errors import ConcurrentChange, StoreUnavailable
from ctax.labelling import duplicates
from ctax.labelling.flagging import flag_batch
from ctax.labelling.labeller import EncodedBatch, Labeller, LabelOutcome, LabelRequest
from ctax.labelling.sweep import sweep
from ctax.store import leases
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
    keys: dict[str, str | None] = field(default_factory=dict)  # text keys (duplicates.text_key)
    needs_ocr: set[str] = field(default_factory=set)  # image-only creatives without OCR text yet
    # Exact duplicates (creative -> an already-labelled creative, or an earlier one of the batch, with the same
    # content): they take their group's decision and are neither read by OCR nor encoded.
    exact: dict[str, str] = field(default_factory=dict)

    def to_label(self) -> list[LabelRequest]:
        return [r for r in self.requests if r.creative_id not in self.exact]


@dataclass
class _Encoded:
    """A chunk between its encoding and its finishing; `error` where it cannot be labelled."""

    batch: _Batch
    vectors: EncodedBatch | None
    error: str | None = None


class Behind(Protocol):
    """Where a worker finishes its chunks behind its encoding (ctax/worker/finisher.py): one at a time, in order."""

    def submit(self, work: Callable[[], None]) -> None: ...

    def settle(self) -> None: ...


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
    pipelines: Callable[[Labeller], bool] | None = None  # asked of the labeller whether to use `behind`

    def run(self, ids: Sequence[str], behind: Behind | None = None) -> dict[str, int]:
        """Label what of `ids` is free to take. With `behind` (unless `pipelines` declines it for the labeller),
        each chunk is only encoded here and finished (index, trigger, store, sweep) on the finisher's thread while
        the next chunk, or the next message's, is encoded: the counts then cover only what was finished here
        (retries), and a worker that dies before its finisher stored a chunk leaves it claimed until the lease
        expires and the dispatcher sends it again."""
        with self.db.write() as session:
            given_up = leases.give_up(session, ids, self.settings.lease_s, self.settings.max_attempts)
            # What labelling reads of them comes back with the claim: no second query per batch.
            taken = {row.id: row for row in leases.claim_inputs(session, ids, self.name, self.settings.lease_s)}
        if given_up:
            log.warning("gave up on %d creatives whose every attempt ended with its worker gone: %s", len(given_up),
                        ", ".join(given_up[:10]))
        # The message's order, not the database's: earlier creatives are later ones' traffic, as if one by one.
        claimed = [taken[creative_id] for creative_id in dict.fromkeys(ids) if creative_id in taken]
        counts = {"claimed": len(claimed), "labelled": 0, "failed": len(given_up), "requeued": 0}
        if not claimed:
            return counts
        try:
            labeller = self.labeller()
        except Exception as exc:  # no active version yet (first start still building): hand the work back
            # Nothing tried: the claim's attempts are taken back (a long first build fails none, makes no retries).
            log.info("labeller not ready (%s): %d creatives handed back", exc, len(claimed))
            with self.db.write() as session:
                counts["requeued"] += leases.hand_back(session, self.name, [r.id for r in claimed if not r.retry],
                                                       [r.id for r in claimed if r.retry])
            return counts
        if behind is not None and self.pipelines is not None and not self.pipelines(labeller):
            behind.settle()
            behind = None
        size = self.settings.label_batch_size
        fresh = [row for row in claimed if not row.retry]
        for start in range(0, len(fresh), size):
            encoded = self._encode(labeller, fresh[start : start + size])
            if behind is None:
                self._finish(labeller, encoded, counts)
            else:
                behind.submit(partial(self._finish_behind, labeller, encoded))
        retries = [row for row in claimed if row.retry]
        if retries and behind is not None:
            behind.settle()  # nothing runs beside a retry, and the sweep below has the finisher's thread to itself
        for row in retries:
            # A retry may be what stopped the last worker: alone, its attempt counted (and committed) first, so
            # only its own count rises if it stops this one too (store/leases.py).
            with self.db.write() as session:
                held = leases.count_attempt(session, row.id, self.name)
            if held:
                self._finish(labeller, self._encode(labeller, [row]), counts)
        if behind is None or retries:
            self._maybe_sweep(labeller, counts)
        return counts

    def _finish_behind(self, labeller: Labeller, encoded: _Encoded) -> None:
        """On the finisher's thread: the chunk, then the sweep when due (it sees every batch before: in order)."""
        counts = dict.fromkeys(("labelled", "failed", "requeued"), 0)
        self._finish(labeller, encoded, counts)
        self._maybe_sweep(labeller, counts)
        log.debug("finished behind: %s", counts)

    def _encode(self, labeller: Labeller, chunk: list[leases.Claimed]) -> _Encoded:
        """The chunk read and encoded: the part of its labelling that another batch's finishing may overlap."""
        batch = self._read(chunk)
        requests = batch.to_label()
        try:
            return _Encoded(batch, labeller.encode(requests) if requests else None)
        except Exception as exc:
            log.exception("encoding a batch of %d failed", len(requests))
            return _Encoded(batch, None, f"labelling failed: {exc!r}")

    def _finish(self, labeller: Labeller, encoded: _Encoded, counts: dict[str, int]) -> None:
        """The encoded chunk decided (index, trigger) and stored, in one transaction."""
        batch, outcomes, error = encoded.batch, [], encoded.error
        try:
            outcomes = labeller.finish(encoded.vectors) if error is None and encoded.vectors else []
        except Exception as exc:
            log.exception("labelling a batch of %d failed", len(batch.requests))
            error = f"labelling failed: {exc!r}"
        if error is not None:
            self._fail_all([r.creative_id for r in batch.requests], error, counts)
            outcomes, batch.exact = [], {}
        try:
            members = self._store_retrying(labeller.version, outcomes, batch, counts)
        except StoreUnavailable as exc:
            log.exception("storing results failed")
            self._fail_all([o.creative_id for o in outcomes] + list(batch.exact), f"storing results failed: {exc!r}",
                           counts)
            return
        near = [o.creative_id for o in outcomes if o.duplicate_of]
        if (members or near) and labeller.index_creatives:
            duplicates.index_after_store(labeller.index, labeller.version, labeller.traffic_window, members,
                                         batch.exact, {r.creative_id: r for r in batch.requests}, near)

    def _read(self, rows: list[leases.Claimed]) -> _Batch:
        """The chunk's requests, exact duplicates found first so that their images are not even decoded."""
        batch = _Batch()
        for row in rows:
            batch.keys[row.id] = duplicates.text_key(row.texts or [])
            if _needs_ocr(row):
                batch.needs_ocr.add(row.id)
        if self.settings.duplicate_groups:
            with self.db.read() as session:
                batch.exact = duplicates.exact_matches(session, [duplicates.Content(
                    row.id, row.asserted_label_id, batch.keys[row.id], row.image_sha256) for row in rows])
        for row in rows:
            try:
                image = None if row.id in batch.exact else self._image(row)
            except Exception as exc:  # a stored image that no longer decodes will not decode on retry either
                batch.broken.append((row.id, f"stored image cannot be read: {exc}"))
                continue
            batch.requests.append(LabelRequest(row.id, row.texts, image, row.ocr_text, row.asserted_label_id,
                                               row.account_id, row.created_at.timestamp(), row.campaign))
        return batch

    def _image(self, row: leases.Claimed) -> Image.Image | None:
        """Decoded no larger than needed (a batch holds all its images at once): OCR reads creatives that came
        without text, up to image_decode_max_side; the image towers alone need far less."""
        if not row.image_sha256:
            return None
        return decode_rgb(self.blobs.get(row.image_sha256), self.settings.image_decode_max_side,
                          short_side=None if _needs_ocr(row) else TOWER_SHORT_SIDE)

    def _maybe_sweep(self, labeller: Labeller, counts: dict[str, int]) -> None:
        """Re-decide the traffic window once every `novelty_sweep_every` creatives this process labelled."""
        every = self.settings.novelty_sweep_every
        self.counter.labelled_since_sweep += counts["labelled"]
        if every <= 0 or self.settings.novelty_traffic_window <= 0 or self.counter.labelled_since_sweep < every:
            return
        self.counter.labelled_since_sweep = 0
        try:
            counts["raised_by_sweep"] = sweep(self.db, labeller, self.settings.novelty_sweep_young,
                                              refresh=self.settings.novelty_sweep_refresh).raised
        except (StoreUnavailable, ConcurrentChange):
            # Another worker's sweep or a reviewer got there first; the labels stand and the next sweep covers it.
            log.exception("novelty sweep failed")

    def _store_retrying(self, version: str, outcomes: list[LabelOutcome], batch: _Batch,
                        counts: dict[str, int]) -> dict[str, duplicates.Root]:
        """A reviewer deciding an item while its creative is re-flagged changes the item under us
        (ConcurrentChange); the whole transaction rolled back, so storing again from scratch is safe."""
        for attempt in range(STORE_ATTEMPTS):
            trial = dict.fromkeys(counts, 0)
            try:
                members = self._store(version, outcomes, batch, trial)
            except ConcurrentChange:
                if attempt == STORE_ATTEMPTS - 1:
                    raise
                log.info("review item changed while storing results; retrying")
                continue
            for key, value in trial.items():
                counts[key] = counts.get(key, 0) + value
            return members
        return {}

    def _store(self, version: str, outcomes: list[LabelOutcome], batch: _Batch,
               counts: dict[str, int]) -> dict[str, duplicates.Root]:
        """One transaction per batch; results land only where this worker still holds the claim. Creatives that
        are not duplicates first (a group's root may be in the batch), then the duplicates with their groups'
        decisions (ctax/labelling/duplicates.py); returns the duplicates stored, with their roots."""
        labelled = [(o, o.decision) for o in outcomes if o.decision is not None]
        grouping = self.settings.duplicate_groups
        near = {o.creative_id: o.duplicate_of for o, _ in labelled if grouping and o.duplicate_of}
        keys = batch.keys
        with self.db.write() as session:
            asserted = {r.creative_id: r.asserted_label_id for r in batch.requests}  # as claimed: never changes
            own = [(o, d) for o, d in labelled if o.creative_id not in near]
            stored = repo.store_results(session, self.name, version, [
                repo.LabelResult(o.creative_id, o.prediction, d.flag, d.decided_label_id, o.ocr_text,
                                 keys.get(o.creative_id)) for o, d in own])
            roots = duplicates.resolve_roots(session, {**near, **batch.exact}) if near or batch.exact else {}
            # A near duplicate the group's verdict is not about is labelled on its own (exact ones were matched so).
            roots = {cid: root for cid, root in roots.items() if cid in batch.exact or duplicates.may_join(
                asserted.get(cid), root.asserted_label_id, root.decided_label_id, root.flag)}
            alone = [(o, d) for o, d in labelled if o.creative_id in near and o.creative_id not in roots]
            stored |= repo.store_results(session, self.name, version, [
                repo.LabelResult(o.creative_id, o.prediction, d.flag, d.decided_label_id, o.ocr_text,
                                 keys.get(o.creative_id)) for o, d in alone])
            ocr_of = {o.creative_id: o.ocr_text for o, _ in labelled}
            joined = repo.store_results(session, self.name, version, [
                repo.LabelResult(cid, root.prediction, root.flag, root.decided_label_id,
                                 ocr_of.get(cid) or (root.ocr_text if cid in batch.needs_ocr else None), keys.get(cid),
                                 root.creative_id) for cid, root in roots.items()])
            counts["labelled"] += len(stored) + len(joined)
            flag_batch(session, [(o.creative_id, d, asserted.get(o.creative_id)) for o, d in own + alone
                                 if o.creative_id in stored and d.flag != Flag.NONE], version)
            duplicates.join(session, {cid: roots[cid].creative_id for cid in joined})
            for creative_id in batch.exact:
                if creative_id not in roots:  # its group's root was not stored (another worker took it over)
                    status = repo.fail(session, creative_id, self.name, "its duplicate group's root was not labelled",
                                       retryable=True, max_attempts=self.settings.max_attempts)
                    counts["requeued" if status == CreativeStatus.QUEUED else "failed"] += status is not None
            for outcome in outcomes:
                if outcome.decision is None:
                    status = repo.fail(session, outcome.creative_id, self.name, outcome.error or "unknown error",
                                       retryable=False, max_attempts=self.settings.max_attempts)
                    counts["failed"] += status == CreativeStatus.FAILED
            for creative_id, reason in batch.broken:
                repo.fail(session, creative_id, self.name, reason, retryable=False,
                          max_attempts=self.settings.max_attempts)
                counts["failed"] += 1
        return {cid: root for cid, root in roots.items() if cid in joined}

    def _fail_all(self, ids: list[str], reason: str, counts: dict[str, int]) -> None:
        """Hand the work back (or fail it once its attempts are spent)."""
        with self.db.write() as session:
            for creative_id in ids:
                status = repo.fail(session, creative_id, self.name, reason, retryable=True,
                                   max_attempts=self.settings.max_attempts)
                counts["requeued" if status == CreativeStatus.QUEUED else "failed"] += 1


def _needs_ocr(row: leases.Claimed) -> bool:
    return row.image_sha256 is not None and row.ocr_text is None and not any(t.strip() for t in row.texts or [])
