"""Coarse cells over a large in-memory table, for the one search labelling makes of every creative it labels:
which creative labelled before is most alike to it (near-duplicate detection, labelling/duplicates.py).

Why: the table (table.py) searches exactly, one product with every row, and the creatives collection holds every
creative a version labelled, so that search grew with them where the rest of labelling stays flat (docs/
benchmarks.md, "Near-duplicates among many labelled creatives"). The cells are faiss's inverted file: k-means
cells over a sample of the rows, each row filed under its nearest cell, a query reading the rows of its PROBE
nearest cells only. A near-duplicate sits at 0.946 or more to its creative (an angle of 19 degrees or less), so it
falls in the query's cell or a neighbouring one; the bench measures how often the cells miss one that the exact
search finds. Rows are kept as 8-bit codes (a quarter of the table's memory), and every candidate is scored again
exactly from the table, so a hit's cosine is the table's own. By a library (faiss), not by hand.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ctax.index.table import VectorTable

CELLS_FROM = 5_000  # rows: below this the exact search costs no more than reading the cells
PROBE = 12  # cells read per query
CANDIDATES = 8  # rows handed back per query, to be scored again exactly
TRAIN_PER_CELL = 40  # sample rows per cell for the k-means (faiss warns below 39)


class Cells:
    """The cells of one table: built from its rows, then told of every row written to it or deleted from it."""

    def __init__(self, table: VectorTable, seed: int = 0) -> None:
        import faiss  # here, not at the top: 0.4 s and 15 MB for every process that imports the index

        # Built on every core, searched on one: a batch's search is a few thousand codes per query, and idle
        # OpenMP threads spin where the worker's encoder wants the cores (as ONNX Runtime's did: engines.py).
        faiss.omp_set_num_threads(len(os.sched_getaffinity(0)))
        rows = len(table)
        self.dim = table.dim
        cells = int(np.clip(np.sqrt(rows), 16, 4096))
        self._index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(self.dim), self.dim, cells,
                                                    faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        self._index.cp.niter, self._index.cp.seed = 10, seed
        # Codes of the vectors themselves, not of their offsets from their cells' centres: a query is then scored
        # against the codes without a residual per cell (a quarter of the time at 100k rows, the same recall).
        self._index.by_residual = False
        sample = np.random.default_rng(seed).choice(rows, min(rows, cells * TRAIN_PER_CELL), replace=False)
        self._index.train(np.ascontiguousarray(table.vectors[np.sort(sample)]))
        self._index.nprobe = min(PROBE, cells)
        # faiss files rows under int64 keys; a point written again is filed again under a new key and its old
        # code left unanswered (faiss's removal reads every cell).
        self._key_of: dict[Any, int] = {}
        self._point_of: dict[int, Any] = {}
        self._next_key = 0
        self.add(table.point_ids, table.vectors)
        faiss.omp_set_num_threads(1)

    def __len__(self) -> int:
        return len(self._point_of)

    @property
    def stale(self) -> int:
        """Codes faiss holds for points deleted or written again since."""
        return int(self._index.ntotal) - len(self._point_of)

    def add(self, point_ids: Sequence[Any], unit_vectors: np.ndarray) -> None:
        keys = np.arange(self._next_key, self._next_key + len(point_ids), dtype=np.int64)
        self._next_key += len(point_ids)
        for point_id, key in zip(point_ids, keys.tolist(), strict=True):
            self.forget([point_id])
            self._key_of[point_id], self._point_of[key] = key, point_id
        if len(keys):
            self._index.add_with_ids(np.ascontiguousarray(unit_vectors, dtype=np.float32), keys)

    def forget(self, point_ids: Iterable[Any]) -> None:
        for point_id in point_ids:
            key = self._key_of.pop(point_id, None)
            if key is not None:
                del self._point_of[key]

    def candidates(self, unit_queries: np.ndarray, limit: int = CANDIDATES) -> list[list[Any]]:
        """Per query, up to `limit` points of the cells nearest it, by their 8-bit codes' cosine."""
        _, keys = self._index.search(np.ascontiguousarray(unit_queries, dtype=np.float32), limit)
        point_of = self._point_of
        return [[point_of[key] for key in row if key in point_of] for row in keys.tolist()]  # -1: none there
