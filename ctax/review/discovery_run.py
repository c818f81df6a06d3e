"""A discovery run over the database: encode the open new_label creatives with the active version's space, cluster
them (discovery.propose), and store the clusters as proposals and their density as queue priority.

It needs no index: the label vectors come from the space itself, so the training worker can run it while the
labelling worker holds the index (local-mode Qdrant lets one process open it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ctax.creatives.images import decode_rgb
from ctax.embedding.space import CreativeContent, SharedSpace
from ctax.review import proposals
from ctax.review.discovery import DiscoveryParams, LabelVectors, propose
from ctax.store.blobs import BlobStore
from ctax.store.repos import proposals as rows
from ctax.store.session import Database
from ctax.taxonomy.tree import Taxonomy

log = logging.getLogger(__name__)

BACKGROUND_SAMPLE = 2000  # other creatives whose texts the clusters' terms are contrasted with
ENCODE_BATCH = 64


@dataclass
class Encoded:
    """The creatives that could be encoded, with the text their clusters are named from."""

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)


def params_from(options: Mapping[str, Any]) -> DiscoveryParams:
    defaults = DiscoveryParams()
    return DiscoveryParams(
        min_cluster_size=int(options.get("min_cluster_size") or defaults.min_cluster_size),
        min_samples=int(options["min_samples"]) if options.get("min_samples") else None,
    )


def _text_of(texts: list[str] | None, ocr_text: str | None) -> str:
    return " ".join([*(texts or []), ocr_text or ""]).strip()


def _read(db: Database) -> tuple[list[Any], list[str]]:
    """The open new_label creatives, and the texts of recent other creatives to contrast their terms with."""
    with db.read() as session:
        members = rows.open_new_label_contents(session)
        wanted = {row.id for row in members}
        recent = rows.recent_labelled_texts(session, BACKGROUND_SAMPLE + len(wanted))
    background = [_text_of(texts, ocr) for cid, texts, ocr in recent if cid not in wanted][:BACKGROUND_SAMPLE]
    return members, background


def _encode(space: SharedSpace, blobs: BlobStore, members: Sequence[Any]) -> Encoded:
    out = Encoded()
    for start in range(0, len(members), ENCODE_BATCH):
        chunk = members[start : start + ENCODE_BATCH]
        contents = []
        for row in chunk:
            image = None
            if row.image_sha256 and space.image_ready:
                try:
                    image = decode_rgb(blobs.get(row.image_sha256))
                except Exception:  # an unreadable image still has its text to cluster by
                    log.warning("image of %s unreadable; clustering it by text", row.id)
            contents.append(CreativeContent(row.texts or [], image, row.ocr_text))
        for row, encoded in zip(chunk, space.encode(contents), strict=True):
            if encoded.vector is not None:
                out.ids.append(row.id)
                out.texts.append(_text_of(row.texts, row.ocr_text))
                out.vectors.append(encoded.vector)
    return out


def run_discovery(
    db: Database, blobs: BlobStore, space: SharedSpace, taxonomy: Taxonomy, options: Mapping[str, Any]
) -> dict[str, int]:
    """Cluster the open new_label creatives into proposals; returns what changed."""
    params = params_from(options)
    members, background = _read(db)
    encoded = _encode(space, blobs, members)
    label_ids = sorted(taxonomy.nodes)
    labels = LabelVectors(label_ids, space.encode_labels([taxonomy.path(i) for i in label_ids]), taxonomy)
    matrix = np.stack(encoded.vectors) if encoded.vectors else np.zeros((0, space.dim), np.float32)
    drafts = propose(encoded.ids, matrix, encoded.texts, labels, background, params)
    with db.write() as session:
        report = proposals.store_drafts(session, drafts, space.version)
        proposals.boost_dense(session, drafts)
    counts = {
        "items": len(encoded.ids),
        "proposals": len(report.ids),
        "created": report.created,
        "updated": report.updated,
        "withdrawn": report.withdrawn,
        "dropped_as_rejected": report.dropped_as_rejected,
    }
    log.info("discovery over %d new_label creatives: %s", len(encoded.ids), counts)
    return counts
