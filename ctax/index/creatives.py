"""Every creative a model version labelled, in Qdrant: what similar-creative search and near-duplicate grouping
look through (the exemplars are a bounded sample per label, the traffic a window of recent arrivals; neither can
answer "which labelled creatives are like this one").

One collection per version (`{prefix}_creatives_{version}`), created on the first write; a point is a creative
(its id as a UUID) with the payload a server-side filter needs and that does not change after labelling:
`label_id` (the label the version decided when it labelled it, 0 for none), `account_id` (None: no account) and
`created_at` (epoch seconds). What reviewers change later (decisions, flags, status) has its store of record in the
database, and searches that filter on it ask the database which creatives qualify (`only`). In local mode an
in-memory table mirrors the collection (table.py), as for labels and exemplars.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from qdrant_client import models

from ctax.index.exemplars import Exemplars
from ctax.index.points import CreativeHit, creative_id_of, point_id

PAYLOAD_FIELDS = {
    "label_id": models.PayloadSchemaType.INTEGER,
    "account_id": models.PayloadSchemaType.INTEGER,
    "created_at": models.PayloadSchemaType.FLOAT,
}


class Creatives(Exemplars):
    def creatives_collection(self, version: str) -> str:
        return f"{self.prefix}_creatives_{version}"

    def upsert_creatives(
        self, version: str, creative_ids: Sequence[str], vectors: np.ndarray,
        payloads: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Write (or overwrite) creatives' vectors; `payloads[i]` may carry label_id, account_id, created_at."""
        if not creative_ids:
            return
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(creative_ids), -1)
        name = self.creatives_collection(version)
        if not self.client.collection_exists(name):
            self._create(name, int(vectors.shape[1]), PAYLOAD_FIELDS)
        given = payloads or [{} for _ in creative_ids]
        payload_of: list[dict[str, Any]] = [{"label_id": int(p.get("label_id") or 0), "account_id": p.get("account_id"),
                       "created_at": float(p.get("created_at") or 0.0)} for p in given]
        ids = [point_id(cid) for cid in creative_ids]
        self._write_points(name, ids, vectors, payload_of)
        if (table := self._tables.get(name)) is not None:
            table.upsert(ids, [p["label_id"] for p in payload_of], vectors)

    def delete_creatives(self, version: str, creative_ids: Iterable[str]) -> None:
        name = self.creatives_collection(version)
        if (points := [point_id(cid) for cid in creative_ids]) and self.client.collection_exists(name):
            self._delete_points(name, points, batch=1024)

    def count_creatives(self, version: str) -> int:
        return self._count_points(self.creatives_collection(version))

    def _count_points(self, name: str) -> int:
        """The points of a creatives or traffic collection (0: none yet); in local mode the in-memory table
        answers, not a count over Qdrant."""
        if not self.client.collection_exists(name):
            return 0
        if not self.is_server:
            return len(self._table(name))
        return int(self.client.count(name, exact=True).count)

    def all_indexed(self, version: str) -> list[str]:
        """Every creative the version's collection holds (its ids: what a sweep for points without a row reads)."""
        name = self.creatives_collection(version)
        if not self.client.collection_exists(name):
            return []
        if not self.is_server:
            return [creative_id_of(pid) for pid in self._table(name).rows]
        return [creative_id_of(point.id) for point in self._scroll(name)]

    def indexed_creatives(self, version: str, creative_ids: Sequence[str]) -> set[str]:
        """Those of these creatives the version's collection holds (what a resumed backfill skips)."""
        name = self.creatives_collection(version)
        if not creative_ids or not self.client.collection_exists(name):
            return set()
        if not self.is_server:
            table = self._table(name)
            return {cid for cid in creative_ids if point_id(cid) in table.rows}
        found: set[str] = set()
        ids = [point_id(cid) for cid in creative_ids]
        for start in range(0, len(ids), 1024):
            found |= {creative_id_of(p.id) for p in self.client.retrieve(
                name, ids=ids[start : start + 1024], with_payload=False, with_vectors=False)}
        return found

    def creative_vectors(self, version: str, creative_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those of these creatives the version labelled (the others are left out)."""
        name = self.creatives_collection(version)
        if not creative_ids or not self.client.collection_exists(name):
            return {}
        ids = [point_id(cid) for cid in creative_ids]
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(ids), 1024):
            for point in self.client.retrieve(name, ids=ids[start : start + 1024], with_payload=False,
                                              with_vectors=True):
                found[creative_id_of(point.id)] = np.asarray(point.vector, dtype=np.float32)
        return found

    def most_alike_creatives(self, version: str, vectors: np.ndarray, exclude: Sequence[str | None]
                             ) -> list[CreativeHit | None]:
        """Per vector, the labelled creative most alike to it (never `exclude[i]`), None where there is none: the
        search near-duplicate detection makes of every creative labelled, whose cost must not grow with the
        creatives labelled (Collections._most_alike: coarse cells in local mode)."""
        name = self.creatives_collection(version)
        if len(vectors) == 0 or not self.client.collection_exists(name):
            return [None] * len(vectors)
        skip = [point_id(cid) if cid else None for cid in exclude]
        return [None if hit is None else CreativeHit(creative_id_of(hit[0]), hit[1])
                for hit in self._most_alike(name, vectors, skip)]

    def prepare_near_duplicates(self, version: str) -> None:
        """Build now what most_alike_creatives reads (local mode: the collection's mirror and, past CELLS_FROM, its
        cells), so that a restarted worker's first batch does not wait for it: ~30 s at 1M creatives here."""
        name = self.creatives_collection(version)
        if self.client.collection_exists(name):
            self._cells(name)

    def nearest_creatives(
        self, version: str, vectors: np.ndarray, limit: int,
        only: Sequence[Sequence[str] | None] | None = None, exclude: Sequence[str | None] | None = None,
    ) -> list[list[CreativeHit]]:
        """The labelled creatives nearest each vector, best first; `only[i]` restricts row i to those creatives
        (None: all), `exclude[i]` is never returned for row i (a creative is not its own neighbour)."""
        name = self.creatives_collection(version)
        if len(vectors) == 0 or limit <= 0 or not self.client.collection_exists(name):
            return [[] for _ in range(len(vectors))]
        skip = [point_id(cid) if cid else None for cid in exclude] if exclude else [None] * len(vectors)
        allowed = [None if ids is None else [point_id(cid) for cid in ids] for ids in only] if only else None
        rows = self._nearest_points(name, vectors, limit, skip, allowed)
        return [[CreativeHit(creative_id_of(point), score) for point, score in row] for row in rows]
