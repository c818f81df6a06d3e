"""An in-memory copy of one embedded-mode Qdrant collection, searched exactly with one matrix product per batch.

Why by hand: qdrant-client's local mode is a Python brute-force search that re-normalises every stored vector,
deep-copies the request and builds pydantic objects for each query. `python -m bench.index_search` measured
0.87 ms per creative for the 30 nearest of 54 labels and 7.7 ms for the 10 nearest of 4,000 exemplars, more than
encoding the creative (docs/benchmarks.md). The same exact cosine
ranking over the same vectors is one (64 x d) @ (d x n) product. Local mode is single-process (the owning
worker is its only client), so a table kept in step with that process's own writes is never stale. Qdrant
itself stays the store of record and serves every query in server mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import count
from typing import TYPE_CHECKING, Any

import numpy as np

from ctax.vectors import normalise

if TYPE_CHECKING:
    from ctax.index.cells import Cells

# Every table's contents, as they change, get a new stamp: what was computed from a table is still valid while
# its stamp is (the novelty sweep keeps each creative's fit while the exemplars it was searched among stand).
_STAMPS = count(1)
# Every write marks the rows it wrote with the next of these, across all tables: a caller that searched a table up
# to a mark can later search only the rows written since (best_scores, `since`), and a table built afresh marks
# all its rows after every earlier mark.
_WRITES = count(1)
# A row counts as having a fellow from this far below the level asked: products of other shapes round the same
# cosine differently in the last float32 digits, and a row taken for lonely must have no fellow at the level.
FELLOW_SLACK = 1e-4
FELLOW_CHUNK = 1024  # rows per product when a table's fellows are first worked out (memory: chunk x rows floats)


class VectorTable:
    """Rows live in arrays with room to spare, grown by doubling: labelling appends every creative it labels to the
    creatives collection's table, and copying the whole table per batch cost more per creative than the rest of the
    labelling task at 100k creatives (docs/benchmarks.md, "The embedded index as labelled data grows")."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.stamp = next(_STAMPS)
        self.point_ids: list[Any] = []
        self._label_ids = np.zeros(0, dtype=np.int64)
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._written = np.zeros(0, dtype=np.int64)  # per row, the mark of the write that last set it (_WRITES)
        self.last_write = 0
        self._row: dict[Any, int] = {}
        # (level, per row: whether another row may sit at the level or above to it), kept in step by upsert once
        # asked for (social). Deletes leave their fellows marked: a row marked without cause only costs a product.
        self._social: tuple[float, np.ndarray] | None = None
        # Coarse cells over the rows (cells.Cells), told of every write and delete once a search has built them.
        self.cells: Cells | None = None

    def __len__(self) -> int:
        return len(self.point_ids)

    @property
    def rows(self) -> dict[Any, int]:
        """Point id -> row: which points the table holds."""
        return self._row

    @property
    def vectors(self) -> np.ndarray:
        """The rows' unit vectors (a view: rows written later are not in it)."""
        return self._vectors[: len(self)]

    @property
    def label_ids(self) -> np.ndarray:
        return self._label_ids[: len(self)]

    @property
    def written(self) -> np.ndarray:
        return self._written[: len(self)]

    def upsert(self, point_ids: Sequence[Any], label_ids: Sequence[int], vectors: np.ndarray) -> None:
        vectors = normalise(np.asarray(vectors, dtype=np.float32).reshape(len(point_ids), self.dim))
        self.stamp = next(_STAMPS)
        self.last_write = mark = next(_WRITES)
        new: dict[Any, tuple[int, np.ndarray]] = {}  # a point written twice in one call keeps its last value
        for point_id, label_id, vector in zip(point_ids, label_ids, vectors, strict=True):
            row = self._row.get(point_id)
            if row is None:
                new[point_id] = (int(label_id), vector)
            else:
                self._vectors[row] = vector
                self._label_ids[row] = int(label_id)
                self._written[row] = mark
        if new:
            first = len(self)
            self._make_room(first + len(new))
            end = first + len(new)
            self._label_ids[first:end] = [lab for lab, _ in new.values()]
            self._vectors[first:end] = np.stack([vec for _, vec in new.values()])
            self._written[first:end] = mark
            for offset, point_id in enumerate(new):
                self._row[point_id] = first + offset
            self.point_ids += list(new)
        if self._social is not None:
            level, social = self._social
            social = np.concatenate([social, np.zeros(len(self) - len(social), dtype=bool)])
            self._social = (level, social | self._fellows_of([self._row[p] for p in dict.fromkeys(point_ids)], level))
        if self.cells is not None:
            self.cells.add(point_ids, vectors)

    def _make_room(self, rows: int) -> None:
        if rows <= len(self._vectors):
            return
        capacity = max(rows, 2 * len(self._vectors), 64)
        used = len(self)
        for name in ("_vectors", "_label_ids", "_written"):
            old = getattr(self, name)
            grown = np.zeros((capacity, *old.shape[1:]), dtype=old.dtype)
            grown[:used] = old[:used]
            setattr(self, name, grown)

    def delete(self, point_ids: Iterable[Any]) -> None:
        point_ids = list(point_ids)
        drop = [self._row[p] for p in point_ids if p in self._row]
        if not drop:
            return
        if self.cells is not None:
            self.cells.forget(point_ids)
        self.stamp = next(_STAMPS)
        keep = np.ones(len(self.point_ids), dtype=bool)
        keep[drop] = False
        self._label_ids, self._vectors, self._written = self.label_ids[keep], self.vectors[keep], self.written[keep]
        self.point_ids = [point_id for point_id, kept in zip(self.point_ids, keep, strict=True) if kept]
        if self._social is not None:
            self._social = (self._social[0], self._social[1][keep])
        self._row = {point_id: row for row, point_id in enumerate(self.point_ids)}

    def social(self, level: float) -> np.ndarray:
        """Per row, whether another row may sit at `level` or above to it (never False for one that does): of a
        creative's neighbours, pairs of rows both without are never at the level to each other, so counting each
        campaign once need not compute them (novelty.one_per_campaign). Worked out the first time a level is
        asked (one product of the table with itself), then kept in step with every upsert."""
        if self._social is None or self._social[0] != level:
            self._social = (level, self._fellows_of(range(len(self)), level))
        return self._social[1]

    def _fellows_of(self, rows: Iterable[int], level: float) -> np.ndarray:
        """Per row of the table, whether it sits within FELLOW_SLACK of `level` or above to one of `rows` (these
        rows themselves marked where they have such a fellow): the other rows' side of the pairs as well."""
        rows = np.fromiter(rows, dtype=np.int64)
        marked = np.zeros(len(self), dtype=bool)
        for start in range(0, len(rows), FELLOW_CHUNK):
            chunk = rows[start : start + FELLOW_CHUNK]
            near = self.vectors[chunk] @ self.vectors.T >= level - FELLOW_SLACK
            near[np.arange(len(chunk)), chunk] = False  # a row is not its own fellow
            marked[chunk] |= near.any(axis=1)
            marked |= near.any(axis=0)
        return marked

    def nearest(
        self, queries: np.ndarray, limit: int, only: Sequence[Sequence[Any] | None] | None = None
    ) -> list[list[tuple[Any, int, float]]]:
        """(point id, label id, cosine) of the `limit` nearest points per query, best first; `only[i]`
        restricts query i to those point ids, as a Qdrant has_id filter would."""
        if len(self) == 0:
            return [[] for _ in range(len(queries))]
        scores = normalise(np.asarray(queries, dtype=np.float32)) @ self.vectors.T
        filters = list(only) if only is not None else [None] * len(scores)
        out: list[list[tuple[Any, int, float]]] = [[] for _ in range(len(scores))]
        free = [n for n, allowed in enumerate(filters) if not allowed]
        if free and limit > 0:
            labels = self.label_ids.tolist()
            for n, (best, row_scores) in zip(free, self._best_rows(scores[free], limit), strict=True):
                out[n] = [(self.point_ids[r], labels[r], score) for r, score in zip(best, row_scores, strict=True)]
        for n, allowed in enumerate(filters):
            if allowed:
                rows = np.array([self._row[p] for p in allowed if p in self._row], dtype=np.int64)
                out[n] = self._nearest_among(scores[n], rows, limit)
        return out

    def nearest_rows(self, queries: np.ndarray, limit: int, unlike: Sequence[int] | None = None
                     ) -> list[tuple[list[int], list[float]]]:
        """(rows, cosines) of the `limit` nearest points per query, best first: for callers that read the rows'
        vectors (`self.vectors[rows]`) rather than point ids. `unlike[i]` (0: none) leaves out the points whose
        label slot holds it (a traffic table keeps campaign codes there), as a Qdrant must_not filter would."""
        if len(self) == 0 or limit <= 0:
            return [([], []) for _ in range(len(queries))]
        scores = normalise(np.asarray(queries, dtype=np.float32)) @ self.vectors.T
        masked = [n for n, code in enumerate(unlike or []) if code]
        if not masked:
            return self._best_rows(scores, limit)
        codes = list(unlike or [])
        for n in masked:
            scores[n, self.label_ids == codes[n]] = -np.inf
        out = []
        for rows, row_scores in self._best_rows(scores, limit):
            kept = [s for s in row_scores if s != -np.inf]  # a row with fewer other points than `limit`
            out.append((rows[: len(kept)], kept))
        return out

    def best_scores(self, queries: np.ndarray, limit: int, unlike: Sequence[int], own: Sequence[Any],
                    below: float | None = None, since: Sequence[int] | None = None) -> np.ndarray:
        """The `limit` best cosines per query as one (queries x limit) matrix, in no order, -inf where fewer points
        qualify: what nearest_rows finds (`unlike` as there), less point `own[i]` for query i, without turning
        each row into Python lists (the novelty sweep bounds 3,000 creatives' traffic at a time from it). Only
        cosines below `below` where given, and for query i only rows written after mark `since[i]` (last_write;
        0: every row)."""
        marks = np.zeros(len(queries), dtype=np.int64) if since is None else np.asarray(since, dtype=np.int64)
        lowest = int(marks.min()) if len(marks) else 0
        rows = np.flatnonzero(self.written > lowest) if lowest else None
        if limit <= 0 or (len(self) if rows is None else len(rows)) == 0:
            return np.full((len(queries), 0), -np.inf)
        vectors, codes = (self.vectors, self.label_ids) if rows is None else (self.vectors[rows], self.label_ids[rows])
        scores: np.ndarray = normalise(np.asarray(queries, dtype=np.float32)) @ vectors.T
        for n, code in enumerate(unlike):
            if code:
                scores[n, codes == code] = -np.inf
        if marks.any():
            written = self.written if rows is None else self.written[rows]
            scores[written[None, :] <= marks[:, None]] = -np.inf
        mine = [(n, self._row[point]) for n, point in enumerate(own) if point in self._row]
        if mine and rows is not None:  # rows of the table -> columns of `scores` (rows is sorted)
            at = np.searchsorted(rows, [row for _, row in mine])
            mine = [(n, int(col)) for (n, row), col in zip(mine, at.tolist(), strict=True)
                    if col < len(rows) and rows[col] == row]
        if mine:
            scores[tuple(np.array(mine).T)] = -np.inf
        if below is not None:
            scores[scores >= below] = -np.inf
        if scores.shape[1] <= limit:
            return scores
        return np.take_along_axis(scores, np.argpartition(-scores, limit - 1, axis=1)[:, :limit], axis=1)

    def _best_rows(self, scores: np.ndarray, limit: int) -> list[tuple[list[int], list[float]]]:
        # Every query in one go (a batch's per-row numpy calls and numpy scalars cost more than the product
        # itself); per row exactly what _nearest_among gives over every point.
        if len(self) > limit:
            chosen = np.argpartition(-scores, limit - 1, axis=1)[:, :limit]
        else:
            chosen = np.broadcast_to(np.arange(len(self)), scores.shape)
        chosen_scores = np.take_along_axis(scores, chosen, axis=1)
        order = np.argsort(-chosen_scores, axis=1, kind="stable")
        return list(zip(np.take_along_axis(chosen, order, axis=1).tolist(),
                        np.take_along_axis(chosen_scores, order, axis=1).tolist(), strict=True))

    def _nearest_among(self, row_scores: np.ndarray, rows: np.ndarray, limit: int) -> list[tuple[Any, int, float]]:
        if len(rows) > limit:  # argpartition: the top `limit` without sorting every exemplar
            rows = rows[np.argpartition(-row_scores[rows], limit - 1)[:limit]]
        best = rows[np.argsort(-row_scores[rows], kind="stable")]
        return [(self.point_ids[r], int(self.label_ids[r]), float(row_scores[r])) for r in best]
