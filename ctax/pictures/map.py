"""The /map page's data: the active version's label strings and its recent creatives (the traffic window the
index keeps for novelty) laid out in 2-D, each creative with its decided label, flag, text and review item.

Run by the process that owns the index (a worker task, on request and after a promotion); written as one JSON
file (Settings.map_path) that the API serves as it is."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ctax.config import Settings
from ctax.errors import NotFound
from ctax.index.qdrant import LabelIndex
from ctax.pictures.projection import project
from ctax.store.models import Creative
from ctax.store.repos import creatives, labels, review, versions
from ctax.store.session import Database

TEXT_CHARS = 240


def _text(creative: Creative) -> str:
    text = " · ".join(t for t in creative.texts or [] if t) or creative.ocr_text or ""
    return text[:TEXT_CHARS]


def compute_map(db: Database, index: LabelIndex, settings: Settings) -> dict[str, Any]:
    """The map of the active version: every label of its index and up to settings.map_creatives recent
    creatives, with coordinates in [0, 1]."""
    with db.read() as session:
        version = versions.active(session)
        if version is None:
            raise NotFound("no active model version yet: nothing to map")
        version_id = version.id
    label_ids, label_vectors = index.label_vectors(version_id)
    creative_ids, creative_vectors = index.traffic_vectors(version_id)
    limit = settings.map_creatives
    creative_ids, creative_vectors = creative_ids[-limit:] if limit else [], creative_vectors[-limit:]
    with db.read() as session:
        rows = {c.id: c for c in creatives.by_ids(session, creative_ids)}
        kept = [n for n, cid in enumerate(creative_ids) if cid in rows]  # a creative deleted since is left out
        decided = {lid for n in kept if (lid := rows[creative_ids[n]].decided_label_id) is not None}
        names = {lid: label.path for lid, label in labels.by_ids(session, [*label_ids, *decided]).items()}
        items = {creative_id: item.id for creative_id, item in
                 review.items_of_creatives(session, [creative_ids[n] for n in kept]).items()}
    on_map = [n for n, lid in enumerate(label_ids) if lid in names]
    dim = label_vectors.shape[1] if len(label_vectors) else 0
    vectors = np.vstack([label_vectors[on_map].reshape(len(on_map), dim),
                         creative_vectors[kept].reshape(len(kept), dim) if kept else np.zeros((0, dim), np.float32)])
    layout = project(vectors, settings.train_seed)
    xy = np.round(layout.xy, 5).tolist()
    label_points = [{"id": label_ids[n], "path": names[label_ids[n]], "x": x, "y": y}
                    for n, (x, y) in zip(on_map, xy[: len(on_map)], strict=True)]
    creative_points = []
    for n, (x, y) in zip(kept, xy[len(on_map):], strict=True):
        c = rows[creative_ids[n]]
        creative_points.append({
            "id": c.id, "x": x, "y": y, "text": _text(c), "label_id": c.decided_label_id,
            "label": names.get(c.decided_label_id) if c.decided_label_id else None,
            "flag": str(c.flag) if c.flag else "none", "status": str(c.status), "review_item_id": items.get(c.id),
            "has_image": bool(c.image_sha256),
        })
    return {"version": version_id, "computed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "method": layout.method, "note": layout.note, "labels": label_points, "creatives": creative_points}


def write_map(data: dict[str, Any], path: Path) -> None:
    """Written whole or not at all: the API may read it at any moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data))
    os.replace(partial, path)


def refresh_map(db: Database, index: LabelIndex, settings: Settings) -> dict[str, Any]:
    data = compute_map(db, index, settings)
    write_map(data, settings.map_path)
    return data
