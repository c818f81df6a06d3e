"""The Qdrant collections behind LabelIndex: creating them, writing, scrolling and deleting their points, and the
in-memory tables that mirror them in local mode (table.py), kept in step with every write this process makes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from ctax.index.points import TrafficNeighbours, campaign_code, normal_point_id
from ctax.index.table import VectorTable
from ctax.vectors import normalise

LOCAL_SCROLL_PAGE = 16_384
UPSERT_BATCH = 512


class _OneCommit:
    """Stands in for a local-mode collection's SQLite connection while one write request runs: qdrant-client's
    local mode commits every point by itself (`with connection:` per point, an fsync each); here the request
    commits once (`Collections._local_writes`). Everything but the commit goes to the connection."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def __enter__(self) -> _OneCommit:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def commit(self) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


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

    def _write_points(self, collection: str, points: Sequence[models.PointStruct]) -> None:
        """Upsert points in requests of UPSERT_BATCH (the in-memory mirror is the caller's to keep in step). The
        one way this package writes points: in local mode each request is one SQLite transaction
        (`_local_writes`)."""
        for start in range(0, len(points), UPSERT_BATCH):
            with self._local_writes(collection):
                self.client.upsert(collection, points=list(points[start : start + UPSERT_BATCH]), wait=True)

    @contextmanager
    def _local_writes(self, collection: str) -> Iterator[None]:
        """Local mode: the writes inside commit once, in a WAL journal without an fsync per commit.

        Why by hand: qdrant-client's local mode stores each point in its own SQLite transaction in a rollback
        journal, an fsync per point; recording a batch's traffic cost ~1-5 ms per creative, more than a fast
        text encoder took to encode it (docs/benchmarks.md, "fixed cost"). WAL with synchronous=NORMAL is what
        our own SQLite database runs: a killed process loses no committed write, an OS crash or power cut may
        lose the last commits. Nothing here needs more: labels and exemplars are re-synced from the database by
        diff, and the traffic window is evidence, not a record. Where qdrant-client's internals are not the
        ones expected, writes go through unchanged (slower, same result)."""
        local = None if self.is_server else getattr(self.client, "_client", None)
        persistence = getattr(getattr(local, "collections", {}).get(collection), "storage", None)
        connection = getattr(persistence, "storage", None)
        if not isinstance(connection, sqlite3.Connection):
            yield
            return
        connection.execute("PRAGMA journal_mode=WAL")  # kept by the file; asking again costs nothing
        connection.execute("PRAGMA synchronous=NORMAL")  # per connection
        persistence.storage = _OneCommit(connection)  # type: ignore[union-attr]
        try:
            yield
        finally:
            persistence.storage = connection  # type: ignore[union-attr]
            # What was applied in memory is stored, as qdrant-client would have (it stores point by point).
            connection.commit()

    def _delete_points(self, collection: str, ids: Sequence[int | str], batch: int | None = None) -> None:
        """Delete points (in requests of `batch`, else in one) from the collection and its in-memory mirror."""
        step = batch or max(len(ids), 1)
        for start in range(0, len(ids), step):
            chunk: list[models.ExtendedPointId] = list(ids[start : start + step])
            with self._local_writes(collection):
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
            # A traffic window's mirror is kept oldest first (later writes append): the novelty sweep reads its
            # newest creatives off the end. Other points carry no "seen" and keep their order.
            points.sort(key=lambda point: float((point.payload or {}).get("seen", 0.0)))
            if points:
                table.upsert(
                    [normal_point_id(point.id) for point in points],
                    # Traffic points carry no label: their campaign's code stands in (0 for none).
                    [int((point.payload or {}).get("label_id", point.id if isinstance(point.id, int)
                                                   else campaign_code((point.payload or {}).get("campaign"))))
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

    def _nearest_points(
        self, collection: str, vectors: np.ndarray, limit: int, skip: Sequence[str | None],
        allowed: Sequence[Sequence[str] | None] | None = None,
    ) -> list[list[tuple[Any, float]]]:
        """(point id, cosine) of the `limit` points nearest each vector, best first, in the in-memory mirror in
        local mode, else in one batch of server queries. Row i never returns point `skip[i]` (None: none skipped);
        `allowed[i]` restricts row i to those points (None: all; empty: none qualify)."""
        if not self.is_server:
            rows = self._table(collection).nearest(vectors, limit + 1, allowed)
            return [
                # An empty allow-list means "none qualify"; the table reads it as "no restriction".
                [] if allowed is not None and allowed[n] is not None and not allowed[n]
                else [(point, score) for point, _, score in row if point != own][:limit]
                for n, (row, own) in enumerate(zip(rows, skip, strict=True))
            ]
        responses = self._server_nearest(collection, vectors, limit, skip, allowed, with_vector=False)
        return [[(p.id, float(p.score)) for p in points] for points in responses]

    def _nearest_vectors(
        self, collection: str, vectors: np.ndarray, limit: int, skip: Sequence[str | None], with_vectors: bool = True,
        campaigns: Sequence[str | None] | None = None, pair_level: float | None = None,
    ) -> list[TrafficNeighbours]:
        """As _nearest_points, with the points' unit vectors (None unless `with_vectors`) in place of their ids;
        row i never returns a point of campaign `campaigns[i]`. With `pair_level`, local mode also says which of
        the points have no other point at that level (VectorTable.social). Local mode reads the mirror's rows
        without going through point ids, which costs more than the search itself (bench.fixed_cost)."""
        dim = int(vectors.shape[1])
        if not self.is_server:
            table = self._table(collection)
            social = table.social(pair_level) if pair_level is not None else None
            out: list[TrafficNeighbours] = []
            unlike = [campaign_code(c) for c in campaigns] if campaigns is not None else None
            for (rows, scores), own in zip(table.nearest_rows(vectors, limit + 1, unlike), skip, strict=True):
                own_row = table.rows.get(own) if own is not None else None
                keep = [n for n, row in enumerate(rows) if row != own_row][:limit]
                kept = [rows[n] for n in keep]
                out.append(TrafficNeighbours([scores[n] for n in keep],
                                             table.vectors[kept].reshape(-1, dim) if with_vectors else None,
                                             ~social[kept] if social is not None else None))
            return out
        return [TrafficNeighbours([float(p.score) for p in points],
                                  normalise(np.asarray([p.vector for p in points], dtype=np.float32).reshape(-1, dim))
                                  if with_vectors else None)
                for points in self._server_nearest(collection, vectors, limit, skip, None, with_vector=with_vectors,
                                                   campaigns=campaigns)]

    def _server_nearest(
        self, collection: str, vectors: np.ndarray, limit: int, skip: Sequence[str | None],
        allowed: Sequence[Sequence[str] | None] | None, with_vector: bool,
        campaigns: Sequence[str | None] | None = None,
    ) -> list[list[Any]]:
        """One batch of server queries, one per vector: the scored points of each, [] where none qualify."""
        asked, requests = [], []
        for n, (vector, own) in enumerate(zip(vectors, skip, strict=True)):
            must: list[Any] = []
            if allowed is not None and allowed[n] is not None:
                if not allowed[n]:  # none qualify: nothing to ask
                    continue
                must.append(models.HasIdCondition(has_id=list(allowed[n])))  # type: ignore[arg-type]
            must_not: list[Any] = [models.HasIdCondition(has_id=[own])] if own else []
            if campaigns is not None and (campaign := campaigns[n]):
                must_not.append(models.FieldCondition(key="campaign", match=models.MatchValue(value=campaign)))
            asked.append(n)
            requests.append(models.QueryRequest(
                query=vector.tolist(), limit=limit, with_payload=False, with_vector=with_vector,
                filter=models.Filter(must=must or None, must_not=must_not or None) if must or must_not else None))
        out: list[list[Any]] = [[] for _ in range(len(vectors))]
        if requests:
            for n, response in zip(asked, self.client.query_batch_points(collection, requests=requests), strict=True):
                out[n] = list(response.points)
        return out
