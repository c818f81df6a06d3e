"""A model version's labelled exemplars in Qdrant: per label, a bounded sample of its labelled creatives, of which
the representatives (ctax/dataset/representatives.py) are what the labeller searches.

Each point's payload says its label, whether it is a representative, and the per-label budget it was chosen under,
so that a sync sees at once which labels a changed budget concerns. The sample's other members are kept (with
their vectors) so that a label's representatives can be chosen again when it gains data without re-encoding them;
calibration scores them as held-out creatives (lifecycle.held_from_index). Points written before budgets existed
carry neither field and count as representatives, as they were.

In local mode only the representatives are mirrored in memory (table.py): the worker's table and its per-batch
search are bounded by labels x budget, whatever the number of labelled creatives.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from ctax.index.collections import UPSERT_BATCH as UPSERT_BATCH  # where callers have imported it from
from ctax.index.collections import Collections
from ctax.index.points import ExemplarHit, creative_id_of, point_id

# Points a search may return only if this is not false: points without the field predate budgets.
REPRESENTATIVES_ONLY = models.Filter(
    must_not=[models.FieldCondition(key="representative", match=models.MatchValue(value=False))]
)


@dataclass(frozen=True)
class StoredExemplar:
    label_id: int
    representative: bool
    budget: int | None  # the per-label budget it was chosen under; None: written before budgets existed


@dataclass
class ExemplarPoints:
    """Every stored exemplar of a version with its vector, as calibration reads them."""

    creative_ids: list[str]
    label_ids: np.ndarray
    representative: np.ndarray  # bool per point
    vectors: np.ndarray


def _is_representative(payload: dict[str, Any] | None) -> bool:
    return (payload or {}).get("representative", True) is not False


class Exemplars(Collections):
    def __init__(self, client: QdrantClient, prefix: str = "ctax", exemplars_per_label: int = 0) -> None:
        """exemplars_per_label: the representatives a sync keeps per label (0: every labelled creative)."""
        super().__init__(client, prefix)
        self.exemplars_per_label = exemplars_per_label

    def exemplars_collection(self, version: str) -> str:
        return f"{self.prefix}_exemplars_{version}"

    def upsert_exemplars(
        self, version: str, creative_ids: Sequence[str], label_ids: Sequence[int], vectors: np.ndarray,
        representative: Sequence[bool] | None = None, budget: int | None = None,
    ) -> None:
        """Write exemplars; `representative[i]` False keeps one in the sample without searching it (default: all
        searched), `budget` records the per-label budget they were chosen under."""
        if not creative_ids:
            return
        flags = [True] * len(creative_ids) if representative is None else [bool(f) for f in representative]
        extra = {} if budget is None else {"budget": int(budget)}
        ids = [point_id(cid) for cid in creative_ids]
        name = self.exemplars_collection(version)
        self._write_points(name, ids, vectors, [{"label_id": int(lid), "representative": flag, **extra}
                                                for lid, flag in zip(label_ids, flags, strict=True)])
        if (table := self._tables.get(name)) is not None:
            keep = [n for n, flag in enumerate(flags) if flag]
            table.delete([ids[n] for n in range(len(ids)) if not flags[n]])
            table.upsert([ids[n] for n in keep], [int(label_ids[n]) for n in keep],
                         np.asarray(vectors)[keep].reshape(len(keep), table.dim))

    def delete_exemplars(self, version: str, creative_ids: Iterable[str]) -> None:
        if points := [point_id(cid) for cid in creative_ids]:
            self._delete_points(self.exemplars_collection(version), points, batch=1024)

    def exemplar_labels(self, version: str) -> dict[str, int]:
        """Every stored exemplar (representative or not) and its label."""
        return {cid: stored.label_id for cid, stored in self.stored_exemplars(version).items()}

    def stored_exemplars(self, version: str) -> dict[str, StoredExemplar]:
        out = {}
        for point in self._scroll(self.exemplars_collection(version)):
            payload = point.payload or {}
            budget = payload.get("budget")
            out[creative_id_of(point.id)] = StoredExemplar(int(payload["label_id"]), _is_representative(payload),
                                                           None if budget is None else int(budget))
        return out

    def exemplar_vectors(self, version: str, creative_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of these exemplars, in the order given; KeyError names one that is not stored."""
        found: dict[str, Any] = {}
        ids = [point_id(cid) for cid in creative_ids]
        for start in range(0, len(ids), 1024):
            for point in self.client.retrieve(self.exemplars_collection(version), ids=ids[start : start + 1024],
                                              with_payload=False, with_vectors=True):
                found[creative_id_of(point.id)] = point.vector
        missing = [cid for cid in creative_ids if cid not in found]
        if missing:
            raise KeyError(f"exemplar {missing[0]} is not stored for version {version}")
        return np.asarray([found[cid] for cid in creative_ids], dtype=np.float32).reshape(len(creative_ids), -1)

    def exemplar_points(self, version: str, dim: int) -> ExemplarPoints:
        points = list(self._scroll(self.exemplars_collection(version), with_vectors=True))
        return ExemplarPoints(
            [creative_id_of(p.id) for p in points],
            np.array([int((p.payload or {})["label_id"]) for p in points], dtype=np.int64),
            np.array([_is_representative(p.payload) for p in points], dtype=bool),
            np.asarray([p.vector for p in points], dtype=np.float32).reshape(len(points), dim),
        )

    def count_exemplars(self, version: str, representatives_only: bool = False) -> int:
        """Stored exemplars (the labels' samples), or only the representatives the labeller searches."""
        query_filter = REPRESENTATIVES_ONLY if representatives_only else None
        return int(self.client.count(self.exemplars_collection(version), count_filter=query_filter,
                                     exact=True).count)

    def exemplars_stamp(self, version: str) -> int | None:
        """Changes whenever the version's searched exemplars do (local mode, where this process is the only
        writer); None on a server, where another process may change them unseen."""
        return None if self.is_server else self._table(self.exemplars_collection(version)).stamp

    def nearest_exemplars(self, version: str, vectors: np.ndarray, limit: int) -> list[list[ExemplarHit]]:
        """The nearest representatives of each vector, best first."""
        if len(vectors) == 0:
            return []
        if not self.is_server:
            hits = self._table(self.exemplars_collection(version)).nearest(vectors, limit)
            return [[ExemplarHit(creative_id_of(point), label, score) for point, label, score in row] for row in hits]
        requests = [models.QueryRequest(query=vector.tolist(), limit=limit, with_payload=["label_id"],
                                        filter=REPRESENTATIVES_ONLY) for vector in vectors]
        responses = self.client.query_batch_points(self.exemplars_collection(version), requests=requests)
        return [
            [
                ExemplarHit(creative_id_of(p.id), int((p.payload or {})["label_id"]), float(p.score))
                for p in response.points
            ]
            for response in responses
        ]
