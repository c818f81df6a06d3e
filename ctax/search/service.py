"""Similar-creative search in the active version's space: a query (text, image, both, or a stored creative) is
encoded by the version's towers, then its nearest labels and its nearest indexed creatives are read from the index
and shown with what the database says of them now (decided label, flag, status, review item).

Runs on the process that owns the index (the API reaches it through a task: docs/architecture.md, "Search").

Filters. The index's payload holds only what never changes after labelling; decisions, flags, statuses and review
states live in the database. So every filter is answered by the database, in one of two ways chosen per query:
- a selective filter (at most ONLY_CAP creatives qualify) hands the qualifying ids to the index as `only`, which
  searches exactly those: exact whatever their rank;
- a broad one searches unfiltered for more than asked (OVERFETCH x limit), keeps the hits the database lets
  through, and asks again for four times as many while too few survive.
Passing a broad filter's ids costs a query returning all of them plus a per-id lookup in the index, growing with
the creatives that qualify, while over-fetching against a broad filter almost always ends in its first round:
`python -m bench.search` times both at 100k creatives (docs/benchmarks.md, "Search") and ONLY_CAP sits where
they cost the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ctax.creatives.images import decode_rgb
from ctax.embedding.ocr import OcrReader
from ctax.embedding.space import CreativeContent, SharedSpace
from ctax.errors import InvalidInput, NotFound
from ctax.index.points import CreativeHit
from ctax.index.qdrant import LabelIndex
from ctax.search.query import SearchQuery
from ctax.store.blobs import BlobStore
from ctax.store.repos import search as rows
from ctax.store.repos.search import HitRow, SearchFilter
from ctax.store.session import Database
from ctax.taxonomy.catalog import labels_by_ids
from ctax.versions.sync import encode_stored

ONLY_CAP = 20_000  # at most this many qualifying creatives are searched by id; a broader filter over-fetches
OVERFETCH = 4
EXCERPT_CHARS = 200


@dataclass
class Searcher:
    """What a search needs on the index owner: the database, the index, the active version's towers."""

    db: Database
    index: LabelIndex
    space: SharedSpace
    blobs: BlobStore
    ocr: OcrReader | None = None
    only_cap: int = ONLY_CAP

    @property
    def version(self) -> str:
        return self.space.version

    def search(self, query: SearchQuery) -> dict[str, Any]:
        started = time.perf_counter()
        vector, modalities = self.query_vector(query)
        answer = self.search_vector(vector, modalities, query)
        answer["search_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return answer

    def search_vector(self, vector: np.ndarray, modalities: list[str], query: SearchQuery) -> dict[str, Any]:
        """Everything after the query's encoding: the index and the database."""
        labels = self.nearest_labels(vector, query.labels_limit)
        hits = self.nearest_creatives(vector, query)
        with self.db.read() as session:
            shown = rows.hit_rows(session, [hit.creative_id for hit in hits])
            total = rows.searchable_count(session)
        creatives = [creative_view(shown[hit.creative_id], hit.score) for hit in hits if hit.creative_id in shown]
        return {
            "model_version": self.version,
            "query": {"kind": query.kind, "creative_id": query.creative_id, "modalities_used": modalities},
            "creatives": creatives[: query.limit],
            "labels": labels,
            "indexed": {"creatives": self.index.count_creatives(self.version), "total": total},
        }

    # -- the query -----------------------------------------------------------------------------------------
    def query_vector(self, query: SearchQuery) -> tuple[np.ndarray, list[str]]:
        if query.creative_id:
            return self._creative_vector(query.creative_id), ["stored"]
        image = None
        if query.image:
            try:
                image = decode_rgb(query.image)
            except Exception as exc:  # the API checked it; a decode failure here is still the client's image
                raise InvalidInput(f"image: cannot be decoded ({exc})", field="image_base64") from exc
        texts = [query.text] if query.text and query.text.strip() else []
        ocr_text = None
        if image is not None and not texts and not self.space.image_ready and self.ocr is not None:
            # A version without a trained image projection reads an image query as labelling reads an image
            # creative: by its text.
            ocr_text = self.ocr.read(image)
        [encoded] = self.space.encode([CreativeContent(texts=texts, image=image, ocr_text=ocr_text)])
        if encoded.vector is None:
            raise InvalidInput(
                f"the query has nothing version {self.version} can encode (image: {encoded.modalities['image']}; "
                f"text read from it: {encoded.modalities['ocr']})", field="image_base64")
        return encoded.vector, encoded.used

    def _creative_vector(self, creative_id: str) -> np.ndarray:
        stored = self.index.creative_vectors(self.version, [creative_id]).get(creative_id)
        if stored is not None:
            return stored
        # Not indexed by this version yet (a backfill is under way, or it is not labelled): from its content.
        with self.db.read() as session:
            row = rows.stored_creative(session, creative_id)
        if row is None:
            raise NotFound(f"no creative with id {creative_id}", field="creative_id")
        encoded = encode_stored(self.space, self.blobs, [row])
        if not encoded:
            raise InvalidInput(f"creative {creative_id} has nothing version {self.version} can encode",
                               field="creative_id")
        return encoded[0][1]

    # -- the answers ---------------------------------------------------------------------------------------
    def nearest_labels(self, vector: np.ndarray, limit: int) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        [hits] = self.index.nearest(self.version, vector[None, :], limit)
        with self.db.read() as session:
            paths = {lid: label.path for lid, label in labels_by_ids(session, [h.label_id for h in hits]).items()}
        return [{"id": h.label_id, "path": paths[h.label_id], "similarity": round(h.score, 6)}
                for h in hits if h.label_id in paths]

    def nearest_creatives(self, vector: np.ndarray, query: SearchQuery) -> list[CreativeHit]:
        f, limit, own = query.filter, query.limit, query.creative_id
        vectors = vector[None, :]
        if f.empty:
            return self.index.nearest_creatives(self.version, vectors, limit, exclude=[own])[0]
        with self.db.read() as session:
            qualifying = rows.qualifying_ids(session, f, self.only_cap)
        if len(qualifying) <= self.only_cap:
            return self.index.nearest_creatives(self.version, vectors, limit, only=[qualifying], exclude=[own])[0]
        return self._overfetch(vectors, f, limit, own)

    def _overfetch(self, vectors: np.ndarray, f: SearchFilter, limit: int, own: str | None) -> list[CreativeHit]:
        asked = limit * OVERFETCH
        indexed = self.index.count_creatives(self.version)
        while True:
            hits = self.index.nearest_creatives(self.version, vectors, asked, exclude=[own])[0]
            with self.db.read() as session:
                kept = rows.keep_qualifying(session, f, [hit.creative_id for hit in hits])
            found = [hit for hit in hits if hit.creative_id in kept]
            if len(found) >= limit or len(hits) < asked or asked >= indexed:
                return found[:limit]
            asked *= 4


def creative_view(row: HitRow, similarity: float) -> dict[str, Any]:
    text = " ".join(t for t in row.texts if t.strip()) or (row.ocr_text or "")
    return {
        "id": row.id,
        "similarity": round(float(similarity), 6),
        "decided_label": {"id": row.decided_label_id, "path": row.decided_label_path}
        if row.decided_label_id is not None else None,
        "flag": row.flag,
        "status": row.status,
        "review_item_id": row.review_item_id,
        "review_status": row.review_status,
        "image_url": f"/v1/creatives/{row.id}/image" if row.has_image else None,
        "text_excerpt": text[:EXCERPT_CHARS] if text else None,
        "created_at": row.created_at.isoformat(),
        "account_id": row.account_id,
    }

