"""The Qdrant collections behind LabelIndex: creating them, scrolling and deleting their points, and the in-memory
tables that mirror them in local mode (table.py), kept in step with every write this process makes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from ctax.index.points import normal_point_id
from ctax.index.table import VectorTable

LOCAL_SCROLL_PAGE = 16_384


class Collections:
    def __init__(self, client: QdrantClient, prefix: str = "ctax") -> None:
        from qdrant_client.local.qdrant_local import QdrantLocal

        self.client = client
        self.prefix = prefix
        self.is_server = not isinstance(getattr(client, "_client", None), QdrantLocal)
        # Local mode only: collections mirrored in memory for fast exact search (see table.py).
        self._tables: dict[str, VectorTable] = {}

    def _create(self, name: str, dim: int, fields: dict[str, models.PayloadSchemaType]) -> None:
        """A cosine collection of `dim`-vectors, its payload `fields` indexed on a server."""
        self._tables.pop(name, None)
        self.client.create_collection(
            name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
        )
        if self.is_server:  # local mode ignores payload indexes (and warns)
            for field, schema in fields.items():
                self.client.create_payload_index(name, field, schema)

    def _delete_points(self, collection: str, ids: Sequence[int | str], batch: int | None = None) -> None:
        """Delete points (in requests of `batch`, else in one) from the collection and its in-memory mirror."""
        step = batch or max(len(ids), 1)
        for start in range(0, len(ids), step):
            chunk: list[models.ExtendedPointId] = list(ids[start : start + step])
            self.client.delete(collection, points_selector=models.PointIdsList(points=chunk))
        if (table := self._tables.get(collection)) is not None:
            table.delete(ids)

    def _table(self, collection: str) -> VectorTable:
        """The in-memory mirror of a local-mode collection, read from Qdrant the first time it is searched;
        every later write goes through this object, which keeps it in step."""
        table = self._tables.get(collection)
        if table is None:
            params = self.client.get_collection(collection).config.params.vectors
            table = VectorTable(int(params.size))  # type: ignore[union-attr]
            # Exemplars outside their label's representatives are kept for re-choosing, never searched.
            points = [point for point in self._scroll(collection, with_vectors=True)
                      if (point.payload or {}).get("representative", True) is not False]
            if points:
                table.upsert(
                    [normal_point_id(point.id) for point in points],
                    # Traffic points carry no label: 0 stands in.
                    [int((point.payload or {}).get("label_id", point.id if isinstance(point.id, int) else 0))
                     for point in points],
                    np.asarray([point.vector for point in points], dtype=np.float32),
                )
            self._tables[collection] = table
        return table

    def _scroll(self, collection: str, with_vectors: bool = False) -> Iterable[Any]:
        # Local mode sorts every point id and walks past the offset for each page, so a whole scroll costs
        # points^2 / page: larger pages (bench.exemplar_scaling, docs/benchmarks.md). A server pages by index.
        page = 1024 if self.is_server else LOCAL_SCROLL_PAGE
        offset = None
        while True:
            points, offset = self.client.scroll(
                collection, limit=page, offset=offset, with_payload=True, with_vectors=with_vectors
            )
            yield from points
            if offset is None:
                return
