"""Keeping a model version's collections in step with the database: labels and labelled exemplars, and the
recent traffic a version inherits when it is activated.

Both syncs are diffs, so they are idempotent and one run covers any number of changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ctax.creatives.images import decode_rgb
from ctax.dataset.labelled import LabelledCreative, current_annotations
from ctax.embedding.ocr import OcrReader
from ctax.embedding.space import CreativeContent, SharedSpace
from ctax.index.qdrant import LabelIndex
from ctax.store.blobs import BlobStore
from ctax.store.repos import creatives, labels
from ctax.store.session import Database
from ctax.taxonomy.paths import LabelPath

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    upserted: int = 0
    deleted: int = 0
    unchanged: int = 0


def sync_labels(db: Database, space: SharedSpace, index: LabelIndex) -> SyncReport:
    """Reads the labels in a short transaction; encoding and index writes happen outside it, so the database
    is never locked while a model runs."""
    version = space.version
    index.ensure_version(version, space.dim)
    with db.read() as session:
        active = {label.id: (label.path, label.depth) for label in labels.active(session)}
    stored = index.label_payloads(version)
    wanted = {lid: (path, space.phrase(LabelPath.parse(path))) for lid, (path, _) in active.items()}
    changed = [
        lid
        for lid, (path, phrase) in wanted.items()
        if stored.get(lid, {}).get("phrase") != phrase or stored.get(lid, {}).get("path") != path
    ]
    gone = [lid for lid in stored if lid not in active]
    if changed:
        vectors = space.text.encode([wanted[lid][1] for lid in changed])
        payloads = [{"path": wanted[lid][0], "phrase": wanted[lid][1], "depth": active[lid][1]} for lid in changed]
        index.upsert_labels(version, changed, vectors, payloads)
    index.delete_labels(version, gone)
    report = SyncReport(len(changed), len(gone), len(wanted) - len(changed))
    log.info("labels of %s synced: %s", version, report)
    return report


def content_of(item: LabelledCreative, blobs: BlobStore, space: SharedSpace, ocr: OcrReader | None) -> CreativeContent:
    image = None
    if item.image_sha256 and space.image_ready:
        image = decode_rgb(blobs.get(item.image_sha256))
    ocr_text = item.ocr_text
    if not item.texts and not ocr_text and item.image_sha256 and ocr is not None:
        ocr_text = ocr.read(image or decode_rgb(blobs.get(item.image_sha256)))
    return CreativeContent(texts=item.texts, image=image, ocr_text=ocr_text)


def sync_exemplars(
    db: Database,
    space: SharedSpace,
    index: LabelIndex,
    blobs: BlobStore,
    ocr: OcrReader | None = None,
    batch_size: int = 64,
) -> SyncReport:
    version = space.version
    index.ensure_version(version, space.dim)
    with db.read() as session:
        wanted = {item.creative_id: item for item in current_annotations(session)}
    stored = index.exemplar_labels(version)
    changed = [cid for cid, item in wanted.items() if stored.get(cid) != item.label_id]
    gone = [cid for cid in stored if cid not in wanted]
    index.delete_exemplars(version, gone)
    for start in tqdm(
        range(0, len(changed), batch_size),
        desc=f"exemplars {version}",
        unit="batch",
        disable=len(changed) < 4 * batch_size,
    ):
        chunk = [wanted[cid] for cid in changed[start : start + batch_size]]
        encoded = space.encode([content_of(item, blobs, space, ocr) for item in chunk])
        keep = [(item, e.vector) for item, e in zip(chunk, encoded, strict=True) if e.vector is not None]
        if keep:
            index.upsert_exemplars(
                version,
                [item.creative_id for item, _ in keep],
                [item.label_id for item, _ in keep],
                np.stack([v for _, v in keep]),
            )
    report = SyncReport(len(changed), len(gone), len(wanted) - len(changed))
    log.info("exemplars of %s synced: %s", version, report)
    return report


def inherit_traffic(
    db: Database,
    space: SharedSpace,
    index: LabelIndex,
    blobs: BlobStore,
    window: int,
    batch_size: int = 64,
) -> int:
    """A version about to be activated takes over the active version's recent traffic, re-encoded by its own
    towers in the order it arrived, so that novelty keeps its traffic evidence across a promotion or rollback.
    Returns how many creatives it inherited."""
    version, active = space.version, index.active_version()
    if window <= 0 or active is None or active == version:
        return 0
    ids = index.traffic_vectors(active)[0][-window:]
    inherited = 0
    for start in tqdm(range(0, len(ids), batch_size), desc=f"traffic {version}", unit="batch",
                      disable=len(ids) < 4 * batch_size):
        chunk = ids[start : start + batch_size]
        with db.read() as session:
            rows = {c.id: c for c in creatives.by_ids(session, chunk)}
        contents, kept = [], []
        for cid in chunk:
            row = rows.get(cid)
            if row is None:  # deleted since
                continue
            image = None
            if row.image_sha256 and space.image_ready:
                try:
                    image = decode_rgb(blobs.get(row.image_sha256))
                except Exception:  # its text still counts; the label task reports unreadable images
                    image = None
            contents.append(CreativeContent(texts=row.texts or [], image=image, ocr_text=row.ocr_text))
            kept.append(cid)
        encoded = space.encode(contents) if contents else []
        usable = [(cid, e.vector) for cid, e in zip(kept, encoded, strict=True) if e.vector is not None]
        if usable:
            index.record_traffic(version, [cid for cid, _ in usable], np.stack([v for _, v in usable]), window)
            inherited += len(usable)
    log.info("%s inherited %d creatives of traffic from %s", version, inherited, active)
    return inherited
