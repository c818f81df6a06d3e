"""Discovery, run by the process that owns the index: encode the open new_label creatives with the active
version's space, cluster them, and store the clusters as proposals (and their density as queue priority)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from celery import shared_task
from sqlalchemy import select

from ctax.creatives.images import decode_rgb
from ctax.embedding.space import CreativeContent
from ctax.jobs import DISCOVER
from ctax.review import proposals
from ctax.review.discovery import DiscoveryParams, LabelVectors, propose
from ctax.store.models import Creative, ReviewItem
from ctax.worker.runtime import Runtime, current

log = logging.getLogger(__name__)

BACKGROUND_SAMPLE = 2000  # other creatives whose texts the clusters' terms are contrasted with
ENCODE_BATCH = 64


@shared_task(name=DISCOVER, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def discover(options: dict[str, Any] | None = None) -> dict[str, int]:
    return run(current(), options or {})


def _text_of(texts: list[str] | None, ocr_text: str | None) -> str:
    return " ".join([*(texts or []), ocr_text or ""]).strip()


def run(rt: Runtime, options: dict[str, Any]) -> dict[str, int]:
    defaults = DiscoveryParams()
    params = DiscoveryParams(
        min_cluster_size=int(options.get("min_cluster_size") or defaults.min_cluster_size),
        min_samples=int(options["min_samples"]) if options.get("min_samples") else None,
    )
    # Runs on the training worker, which never opens the index: the label vectors come from the space itself.
    space, taxonomy = rt.active_space()
    with rt.db.write() as session:
        rows = session.execute(
            select(Creative.id, Creative.texts, Creative.ocr_text, Creative.image_sha256)
            .join(ReviewItem, ReviewItem.creative_id == Creative.id)
            .where(ReviewItem.flag == "new_label", ReviewItem.status == "open")
            .order_by(ReviewItem.id)
        ).all()
        members = {row.id for row in rows}
        background = [
            _text_of(texts, ocr)
            for cid, texts, ocr in session.execute(
                select(Creative.id, Creative.texts, Creative.ocr_text)
                .where(Creative.status == "labelled")
                .order_by(Creative.created_at.desc())
                .limit(BACKGROUND_SAMPLE + len(members))
            )
            if cid not in members
        ][:BACKGROUND_SAMPLE]
    ids: list[str] = []
    texts: list[str] = []
    vectors: list[np.ndarray] = []
    for start in range(0, len(rows), ENCODE_BATCH):
        chunk = rows[start : start + ENCODE_BATCH]
        contents = []
        for row in chunk:
            image = None
            if row.image_sha256 and space.image_ready:
                try:
                    image = decode_rgb(rt.blobs.get(row.image_sha256))
                except Exception:  # an unreadable image still has its text to cluster by
                    log.warning("image of %s unreadable; clustering it by text", row.id)
            contents.append(CreativeContent(row.texts or [], image, row.ocr_text))
        for row, encoded in zip(chunk, space.encode(contents), strict=True):
            if encoded.vector is not None:
                ids.append(row.id)
                texts.append(_text_of(row.texts, row.ocr_text))
                vectors.append(encoded.vector)
    label_ids = sorted(taxonomy.nodes)
    labels = LabelVectors(label_ids, space.encode_labels([taxonomy.path(i) for i in label_ids]), taxonomy)
    matrix = np.stack(vectors) if vectors else np.zeros((0, space.dim), np.float32)
    drafts = propose(ids, matrix, texts, labels, background, params)
    with rt.db.write() as session:
        report = proposals.store_drafts(session, drafts, space.version)
        proposals.boost_dense(session, drafts)
    counts = {
        "items": len(ids),
        "proposals": len(report.ids),
        "created": report.created,
        "updated": report.updated,
        "withdrawn": report.withdrawn,
        "dropped_as_rejected": report.dropped_as_rejected,
    }
    log.info("discovery over %d new_label creatives: %s", len(ids), counts)
    return counts
