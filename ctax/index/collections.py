"""The Qdrant collections behind LabelIndex: creating them, writing, scrolling and deleting their points, and the
in-memory tables that mirror them in local mode (table.py), kept in step with every write this process makes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from ctax.index.cells import CELLS_FROM, Cells
from ctax.index.local_mode import live_points, one_commit, reload_if_mostly_deleted
from ctax.index.points import TrafficNeighbours, campaign_code, normal_point_id
from ctax.index.table import VectorTable
from ctax.vectors import normalise

LOCAL_SCROLL_PAGE = 16_384
UPSERT_BATCH = 512


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

    def _write_points(self, collection: str, ids: Sequence[int | str], vectors: np.ndarray,
                      payloads: Sequence[dict[str, Any]]) -> None:
        """Upsert points (ids[i], vectors[i], payloads[i]) in requests of UPSERT_BATCH (the in-memory mirror is the
        caller's to keep in step). The one way this package writes points: in local mode each request is one
        SQLite transaction (`_local_writes`).

        A server is sent each vector as the list of floats its API carries. Local mode is handed it as a float32
        row under its default vector name, in a point pydantic has not validated, and pickles it as that row:
        - local mode validates every point itself before it applies any (id, vector size and NaN, payload:
          `LocalCollection._validate_point`), and a pydantic point of 384 Python floats, turned back into an array
          by local mode, cost a third of a local write (docs/benchmarks.md, "Local writes hand over arrays");
        - local mode unpickles every point of every collection when it opens, and a list of floats came back as
          384 float objects a point: 22 KB of worker memory per point after a restart, against 8 KB as arrays
          (docs/benchmarks.md, "The embedded index as labelled data grows"). qdrant-client reads both forms."""
        rows = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        for start in range(0, len(ids), UPSERT_BATCH):
            end = start + UPSERT_BATCH
            columns = zip(ids[start:end], rows[start:end], payloads[start:end], strict=True)
            if self.is_server:
                request = [models.PointStruct(id=pid, vector=row.tolist(), payload=payload)
                           for pid, row, payload in columns]
            else:
                request = [models.PointStruct.model_construct(id=pid, vector={"": row}, payload=payload)
                           for pid, row, payload in columns]
            with self._local_writes(collection, adding=len(request)):
                self.client.upsert(collection, points=request, wait=True)

    @contextmanager
    def _local_writes(self, collection: str, adding: int = 0) -> Iterator[None]:
        """Local mode: the writes inside commit once (local_mode.one_commit)."""
        if self.is_server:
            yield
            return
        with one_commit(self.client, collection, adding):
            yield

    def _delete_points(self, collection: str, ids: Sequence[int | str], batch: int | None = None) -> None:
        """Delete points (in requests of `batch`, else in one) from the collection and its in-memory mirror."""
        step = batch or max(len(ids), 1)
        for start in range(0, len(ids), step):
            chunk: list[models.ExtendedPointId] = list(ids[start : start + step])
            with self._local_writes(collection):
                self.client.delete(collection, points_selector=models.PointIdsList(points=chunk))
        if (table := self._tables.get(collection)) is not None:
            table.delete(ids)
        if not self.is_server:
            reload_if_mostly_deleted(self.client, collection)

    def _table(self, collection: str) -> VectorTable:
        """The in-memory mirror of a local-mode collection, read from Qdrant the first time it is searched;
        every later write goes through this object, which keeps it in step."""
        table = self._tables.get(collection)
        if table is None:
            params = self.client.get_collection(collection).config.params.vectors
            table = VectorTable(int(params.size))  # type: ignore[union-attr]
            ids, slots, seen, vectors = self._read_mirror(collection, table.dim)
            if ids:
                # A traffic window's mirror is kept oldest first (later writes append): the novelty sweep reads its
                # newest creatives off the end. Other points carry no "seen" and keep their order.
                order = np.argsort(np.asarray(seen), kind="stable")
                table.upsert([ids[n] for n in order], [slots[n] for n in order], vectors[order])
            self._tables[collection] = table
        return table

    def _read_mirror(self, collection: str, dim: int) -> tuple[list[Any], list[int], list[float], np.ndarray]:
        """A local collection's searchable points for its mirror: ids, label slots, "seen" and float32 vectors.

        Read from local mode's own arrays where they are the ones expected: a scroll hands every vector over as
        Python floats in pydantic records, ~25 KB a point while a page is held, and sorts every id per page
        (docs/benchmarks.md, "The embedded index as labelled data grows"). Otherwise scrolled."""
        held = live_points(self.client, collection, dim)
        if held is None:
            return self._read_mirror_scrolled(collection, dim)
        return self._mirror_rows(*held)

    def _read_mirror_scrolled(self, collection: str, dim: int) -> tuple[list[Any], list[int], list[float], np.ndarray]:
        points, vectors, page = [], [], []
        for point in self._scroll(collection, with_vectors=True):
            points.append((point.id, point.payload))
            page.append(point.vector)
            if len(page) == LOCAL_SCROLL_PAGE:  # Python floats a page at a time, not all at once
                vectors.append(np.asarray(page, dtype=np.float32))
                page = []
        vectors.append(np.asarray(page, dtype=np.float32).reshape(-1, dim))
        return self._mirror_rows(points, np.concatenate(vectors))

    @staticmethod
    def _mirror_rows(points: Sequence[tuple[Any, dict[str, Any] | None]], vectors: np.ndarray
                     ) -> tuple[list[Any], list[int], list[float], np.ndarray]:
        ids: list[Any] = []
        slots: list[int] = []
        seen: list[float] = []
        kept: list[int] = []
        for n, (pid, payload) in enumerate(points):
            payload = payload or {}
            # Exemplars outside their label's representatives are kept for re-choosing, never searched.
            if payload.get("representative", True) is False:
                continue
            kept.append(n)
            ids.append(normal_point_id(pid))
            # Traffic points carry no label: their campaign's code stands in (0 for none).
            slots.append(int(payload.get("label_id", pid if isinstance(pid, int)
                                         else campaign_code(payload.get("campaign")))))
            seen.append(float(payload.get("seen", 0.0)))
        return ids, slots, seen, vectors[kept]

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

    def _most_alike(self, collection: str, vectors: np.ndarray, skip: Sequence[str | None]
                    ) -> list[tuple[Any, float] | None]:
        """Per vector, the point most alike to it (never point `skip[i]`) and their cosine; None where none is. In
        local mode a table of CELLS_FROM rows or more is read through its coarse cells (cells.py), built the first
        time it is asked and again once more of what they hold is stale than live; a server reads its own index."""
        if (cells := self._cells(collection)) is None:
            return [row[0] if row else None for row in self._nearest_points(collection, vectors, 1, skip)]
        table = self._table(collection)
        row_of = table.rows
        unit = normalise(np.asarray(vectors, dtype=np.float32))
        found: list[tuple[Any, float] | None] = []
        for query, own, points in zip(unit, skip, cells.candidates(unit), strict=True):
            rows = [row for point in points if point != own and (row := row_of.get(point)) is not None]
            scores = table.vectors[rows] @ query  # the table's own cosines, not the cells' 4-bit codes' ones
            best = int(np.argmax(scores)) if rows else -1
            found.append((table.point_ids[rows[best]], float(scores[best])) if rows else None)
        return found

    def _cells(self, collection: str) -> Cells | None:
        """The coarse cells of a local collection's mirror of CELLS_FROM rows or more, built now where there are
        none yet or more of what they hold is stale than live; None where the search is exact (a server, or a
        smaller collection)."""
        if self.is_server or len(table := self._table(collection)) < CELLS_FROM:
            return None
        if table.cells is None or table.cells.stale > len(table):
            table.cells = Cells(table)
        return table.cells

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
