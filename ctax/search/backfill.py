"""A version's creatives collection filled with the creatives stored before it existed, and rid of points whose
creative is gone.

The labelling worker indexes what a version labels; a new version (the pretrained one at first start, a trained
candidate) starts empty and would find nothing labelled before it. The backfill walks the stored, labelled
creatives in (created_at, id) order a chunk at a time, skips those the collection already holds and encodes the
rest with the version's towers (versions.sync.encode_stored, as a promotion's inherited traffic is). A chunk is one
task, so labelling runs between chunks; a chain cut short (a worker killed) is started again from the beginning
and skips what is done, so the walk is resumable without any stored cursor.

A deleted creative's points go by a FORGET_CREATIVES message; on the SQLite broker a message fetched by a worker
that is then killed is lost (the transport deletes it on delivery), and its points would stay. So when a walk
ends with more points than searchable creatives, `forget_orphans` drops the points that have no row (the walk runs
at every start of the index owner, so after any crash).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import numpy as np

from ctax.embedding.space import SharedSpace
from ctax.index.qdrant import LabelIndex
from ctax.store.blobs import BlobStore
from ctax.store.repos import search as rows
from ctax.store.session import Database
from ctax.versions.sync import encode_stored

log = logging.getLogger(__name__)

Cursor = tuple[dt.datetime, str]


@dataclass(frozen=True)
class BackfillStep:
    after: Cursor | None  # where the next chunk starts; None when the walk is done
    scanned: int
    added: int
    indexed: int  # the version's collection after this step
    total: int  # searchable creatives stored

    @property
    def done(self) -> bool:
        return self.after is None


def backfill_chunk(
    db: Database, space: SharedSpace, index: LabelIndex, blobs: BlobStore, after: Cursor | None, chunk: int,
) -> BackfillStep:
    version = space.version
    with db.read() as session:
        total = rows.searchable_count(session)
        page = rows.searchable_page(session, after, chunk) if index.count_creatives(version) < total or after else []
    if not page:
        return BackfillStep(None, 0, 0, _without_orphans(db, index, version, total), total)
    have = index.indexed_creatives(version, [row.id for row in page])
    missing = [row for row in page if row.id not in have]
    added = 0
    for start in range(0, len(missing), space.text_batch):
        part = missing[start : start + space.text_batch]
        encoded = dict(encode_stored(space, blobs, part))
        kept = [row for row in part if row.id in encoded]
        if kept:
            index.upsert_creatives(version, [row.id for row in kept], np.stack([encoded[row.id] for row in kept]), [
                {"label_id": row.decided_label_id, "account_id": row.account_id,
                 "created_at": row.created_at.timestamp()} for row in kept])
            added += len(kept)
    last = page[-1]
    indexed = _without_orphans(db, index, version, total) if len(page) < chunk else index.count_creatives(version)
    step = BackfillStep((last.created_at, last.id) if len(page) == chunk else None, len(page), added, indexed, total)
    log.info("creatives of %s backfilled: +%d of %d scanned, %d of %d indexed%s", version, added, len(page),
             indexed, total, "" if step.done else " (continuing)")
    return step


def _without_orphans(db: Database, index: LabelIndex, version: str, total: int) -> int:
    """At the walk's end: the collection's points, once those without a row are gone (looked for only when there
    are more points than searchable creatives)."""
    indexed = index.count_creatives(version)
    return indexed - forget_orphans(db, index, version) if indexed > total else indexed


def forget_orphans(db: Database, index: LabelIndex, version: str) -> int:
    """Drop the version's points whose creative has no row any more; how many."""
    held = index.all_indexed(version)
    with db.read() as session:
        stored = rows.stored_among(session, held)
    orphans = [creative_id for creative_id in held if creative_id not in stored]
    if orphans:
        index.forget(version, orphans)
        # Deleted creatives whose FORGET_CREATIVES was lost with a killed worker, or is still queued behind this.
        log.warning("%d points of %s had no creative (deleted; their forget job lost or still queued): forgotten",
                    len(orphans), version)
    return len(orphans)


def backfill(db: Database, space: SharedSpace, index: LabelIndex, blobs: BlobStore, chunk: int = 512) -> int:
    """The whole walk in this call (tests, benches, `ctax` commands); the worker runs it a chunk per task."""
    after: Cursor | None = None
    added = 0
    while True:
        step = backfill_chunk(db, space, index, blobs, after, chunk)
        added += step.added
        if step.done:
            return added
        after = step.after
