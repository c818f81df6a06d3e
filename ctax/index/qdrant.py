"""LabelIndex: label vectors and labelled exemplars (exemplars.py) in Qdrant, one pair of collections per model
version, plus a window of the creatives each version labelled recently (its traffic, a novelty signal: trigger.py)
and every creative it labelled (creatives.py: search and near-duplicate grouping).

Collections are named `{prefix}_labels_{version}` / `{prefix}_exemplars_{version}`; the aliases
`{prefix}_labels` / `{prefix}_exemplars` point at the active version's pair and are swapped in one
`update_collection_aliases` call, so a promotion is atomic for readers of the alias and a rollback is one call.
The labelling pipeline queries the versioned collections by name: a batch is encoded by one version's
encoders, so it must be compared with that same version's vectors even while an alias swap happens.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from qdrant_client import models

from ctax.errors import NotFound
from ctax.index.creatives import Creatives
from ctax.index.points import (
    LabelHit,
    TrafficNeighbours,
    campaign_code,
    creative_id_of,
    normal_point_id,
    point_id,
)


class LabelIndex(Creatives):
    # -- names -------------------------------------------------------------------------------------------
    def labels_collection(self, version: str) -> str:
        return f"{self.prefix}_labels_{version}"

    def traffic_collection(self, version: str) -> str:
        return f"{self.prefix}_traffic_{version}"

    @property
    def labels_alias(self) -> str:
        return f"{self.prefix}_labels"

    @property
    def exemplars_alias(self) -> str:
        return f"{self.prefix}_exemplars"

    # -- lifecycle ---------------------------------------------------------------------------------------
    def ensure_version(self, version: str, dim: int) -> None:
        label_id = {"label_id": models.PayloadSchemaType.INTEGER}
        if not self.client.collection_exists(name := self.labels_collection(version)):
            self._create(name, dim, label_id)
        if not self.client.collection_exists(name := self.exemplars_collection(version)):
            # The labeller's searches filter on `representative` (exemplars.py).
            self._create(name, dim, {**label_id, "representative": models.PayloadSchemaType.BOOL})

    def has_version(self, version: str) -> bool:
        return self.client.collection_exists(self.labels_collection(version)) and self.client.collection_exists(
            self.exemplars_collection(version)
        )

    def drop_version(self, version: str) -> None:
        for name in (self.labels_collection(version), self.exemplars_collection(version),
                     self.traffic_collection(version), self.creatives_collection(version)):
            self._tables.pop(name, None)
            if self.client.collection_exists(name):
                self.client.delete_collection(name)

    def activate(self, version: str) -> None:
        """Point both aliases at this version in one request."""
        if not self.has_version(version):
            raise NotFound(f"model version {version} has no collections in the index")
        operations: list[Any] = []
        current = {alias.alias_name for alias in self.client.get_aliases().aliases}
        for alias, collection in (
            (self.labels_alias, self.labels_collection(version)),
            (self.exemplars_alias, self.exemplars_collection(version)),
        ):
            if alias in current:
                operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
            operations.append(
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)
                )
            )
        self.client.update_collection_aliases(change_aliases_operations=operations)

    def active_version(self) -> str | None:
        for alias in self.client.get_aliases().aliases:
            if alias.alias_name == self.labels_alias:
                return alias.collection_name.removeprefix(f"{self.prefix}_labels_")
        return None

    # -- labels ------------------------------------------------------------------------------------------
    def upsert_labels(
        self, version: str, ids: Sequence[int], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]
    ) -> None:
        if not ids:
            return
        self._write_points(self.labels_collection(version), [int(label_id) for label_id in ids], vectors,
                           [{"label_id": int(label_id), **p} for label_id, p in zip(ids, payloads, strict=True)])
        if (table := self._tables.get(self.labels_collection(version))) is not None:
            table.upsert([int(i) for i in ids], [int(i) for i in ids], vectors)

    def delete_labels(self, version: str, ids: Iterable[int]) -> None:
        if points := [int(i) for i in ids]:
            self._delete_points(self.labels_collection(version), points)

    def label_payloads(self, version: str) -> dict[int, dict[str, Any]]:
        return {int(point.id): dict(point.payload or {}) for point in self._scroll(self.labels_collection(version))}

    def label_vectors(self, version: str) -> tuple[list[int], np.ndarray]:
        points = list(self._scroll(self.labels_collection(version), with_vectors=True))
        ids = [int(point.id) for point in points]
        vectors = np.asarray([point.vector for point in points], dtype=np.float32)
        return ids, vectors

    def nearest(
        self, version: str, vectors: np.ndarray, limit: int, only: Sequence[Sequence[int] | None] | None = None
    ) -> list[list[LabelHit]]:
        """The nearest labels of each vector; `only[i]`, when given, restricts row i to those label ids."""
        if not self.is_server:
            hits = self._table(self.labels_collection(version)).nearest(vectors, limit, only)
            return [[LabelHit(int(point), score) for point, _, score in row] for row in hits]
        requests = []
        for row, vector in enumerate(vectors):
            ids = only[row] if only is not None else None
            query_filter = models.Filter(must=[models.HasIdCondition(has_id=list(ids))]) if ids else None
            requests.append(
                models.QueryRequest(query=vector.tolist(), limit=limit, filter=query_filter, with_payload=False)
            )
        if not requests:
            return []
        responses = self.client.query_batch_points(self.labels_collection(version), requests=requests)
        return [[LabelHit(int(p.id), float(p.score)) for p in response.points] for response in responses]

    # -- traffic -----------------------------------------------------------------------------------------
    def record_traffic(self, version: str, creative_ids: Sequence[str], vectors: np.ndarray, window: int,
                       campaigns: Sequence[str | None] | None = None) -> None:
        """Remember creatives this version just labelled, keeping about the `window` most recent (a few more
        between prunes, so that pruning is not a scroll per batch), each with its poster's campaign (if any)."""
        if not creative_ids or window <= 0:
            return
        name = self.traffic_collection(version)
        if not self.client.collection_exists(name):  # versions built before traffic was kept get it lazily
            self._create(name, int(vectors.shape[1]), {"seen": models.PayloadSchemaType.FLOAT,
                                                       "campaign": models.PayloadSchemaType.KEYWORD})
        seen = time.time()
        # Later rows of a batch arrived later: the order breaks ties in the window.
        named = list(campaigns) if campaigns is not None else [None] * len(creative_ids)
        ids = [point_id(cid) for cid in creative_ids]
        self._write_points(name, ids, vectors, [{"seen": seen + n * 1e-6, **({"campaign": c} if c else {})}
                                                for n, c in enumerate(named)])
        if (table := self._tables.get(name)) is not None:
            table.delete(ids)  # a creative labelled again arrived again: to the end, where the window is newest
            table.upsert(ids, [campaign_code(c) for c in named], vectors)
        if self.count_traffic(version) > window + max(window // 10, 1):
            self.prune_traffic(version, window)

    def forget(self, version: str, creative_ids: Sequence[str]) -> None:
        """Deleted creatives: out of the version's traffic window and its creatives collection (mirrors too)."""
        points = [point_id(cid) for cid in creative_ids]
        if points and self.client.collection_exists(name := self.traffic_collection(version)):
            self._delete_points(name, points, batch=1024)
        self.delete_creatives(version, creative_ids)

    def prune_traffic(self, version: str, window: int) -> int:
        """Forget all but the `window` most recently labelled creatives; returns how many were forgotten."""
        name = self.traffic_collection(version)
        if not self.client.collection_exists(name):
            return 0
        if self.is_server:
            points = sorted(self._scroll(name), key=lambda point: float((point.payload or {}).get("seen", 0.0)))
            stale = [normal_point_id(point.id) for point in points[: max(len(points) - window, 0)]]
        else:  # the mirror is kept oldest first: a scroll and sort of the window was half of record_traffic
            held = self._table(name).point_ids
            stale = held[: max(len(held) - window, 0)]
        if stale:
            self._delete_points(name, stale, batch=1024)
        return len(stale)

    def traffic_vectors(self, version: str) -> tuple[list[str], np.ndarray]:
        """The creatives in the version's traffic window and their vectors, oldest first."""
        name = self.traffic_collection(version)
        if not self.client.collection_exists(name):
            return [], np.zeros((0, 0), dtype=np.float32)
        points = sorted(self._scroll(name, with_vectors=True),
                        key=lambda point: float((point.payload or {}).get("seen", 0.0)))
        return ([creative_id_of(point.id) for point in points],
                np.asarray([point.vector for point in points], dtype=np.float32))

    def traffic_window(self, version: str) -> tuple[list[str], np.ndarray]:
        """The creatives in the version's traffic window and their unit vectors, oldest first: what the novelty
        sweep re-decides. Local mode reads its in-memory mirror, kept in that order: a scroll of the window and a
        sort by arrival were a sixth of the sweep (bench.fixed_cost)."""
        name = self.traffic_collection(version)
        if self.is_server or not self.client.collection_exists(name):
            return self.traffic_vectors(version)
        table = self._table(name)
        return [creative_id_of(point) for point in table.point_ids], table.vectors.copy()

    def traffic_last_write(self, version: str) -> int | None:
        """The mark of the last write into the version's traffic window (VectorTable.last_write), from which
        traffic_similarities can search only what was written since; None on a server (another process writes
        there unseen) or where the version keeps no window."""
        name = self.traffic_collection(version)
        if self.is_server or not self.client.collection_exists(name):
            return None
        return self._table(name).last_write

    def count_traffic(self, version: str) -> int:
        """Asked on every labelled batch: in local mode the in-memory table answers, not a count over Qdrant."""
        return self._count_points(self.traffic_collection(version))

    def traffic_similarities(self, version: str, vectors: np.ndarray, limit: int, exclude: Sequence[str],
                             campaigns: Sequence[str | None], below: float | None = None,
                             since: Sequence[int] | None = None) -> np.ndarray:
        """The similarities traffic_neighbours would return, as one (vectors x limit) matrix, in no order, -inf
        where fewer qualify. Local mode can also leave out those at `below` or above, and search for vector i only
        the creatives written into the window after mark `since[i]` (traffic_last_write); a server cannot."""
        name = self.traffic_collection(version)
        if len(vectors) == 0 or not self.client.collection_exists(name):
            return np.full((len(vectors), 0), -np.inf)
        if not self.is_server:
            return self._table(name).best_scores(vectors, limit, [campaign_code(c) for c in campaigns],
                                                 [point_id(cid) for cid in exclude], below, since)
        if below is not None or (since is not None and any(since)):
            raise ValueError("a Qdrant server searches the whole window by similarity alone")
        near = self._server_nearest(name, vectors, limit, [point_id(cid) for cid in exclude], None,
                                    with_vector=False, campaigns=campaigns)
        out = np.full((len(vectors), limit), -np.inf)
        for n, points in enumerate(near):
            out[n, : len(points)] = [float(p.score) for p in points]
        return out

    def traffic_neighbours(
        self, version: str, vectors: np.ndarray, limit: int, exclude: Sequence[str] = (), with_vectors: bool = True,
        campaigns: Sequence[str | None] | None = None, pair_level: float | None = None,
    ) -> list[TrafficNeighbours]:
        """Per vector, the similarities of its `limit` nearest recently labelled creatives, best first, and their
        unit vectors (what the novelty feature reads: novelty.one_per_campaign tells a campaign's variants apart
        by them; None unless `with_vectors`); row i never returns exclude[i], nor a creative its poster said was
        of campaign `campaigns[i]` (a campaign's own creatives are no evidence of a kind arriving from many).
        With `pair_level` (the version's variant level), local mode also says which of them have no other recent
        creative at that level, whose pairs the counting of campaigns can skip."""
        name = self.traffic_collection(version)
        dim = int(vectors.shape[1]) if vectors.ndim == 2 else 0
        if len(vectors) == 0 or not self.client.collection_exists(name):
            return [TrafficNeighbours([], np.zeros((0, dim), dtype=np.float32) if with_vectors else None)
                    for _ in range(len(vectors))]
        skip = [point_id(cid) for cid in exclude] if exclude else [None] * len(vectors)
        return self._nearest_vectors(name, vectors, limit, skip, with_vectors, campaigns, pair_level)
