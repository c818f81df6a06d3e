"""Coarse cells over a large in-memory table, for the one search labelling makes of every creative it labels:
which creative labelled before is most alike to it (near-duplicate detection, labelling/duplicates.py).

Why: the table (table.py) searches exactly, one product with every row, and the creatives collection holds every
creative a version labelled, so that search grew with them where the rest of labelling stays flat (docs/
benchmarks.md, "Near-duplicates among many labelled creatives"). The cells are faiss's inverted file: k-means
cells over a sample of the rows, each row filed under its nearest cell, a query reading the rows of its PROBE
nearest cells only. A near-duplicate sits at 0.946 or more to its creative (an angle of 19 degrees or less), so it
falls in the query's cell or a neighbouring one; the bench measures how often the cells miss one that the exact
search finds. Rows are kept as 4-bit product-quantised codes read by faiss's fast scan (SIMD table look-ups: 26
bytes a MiniLM row, a fifteenth of the table's memory, and a code read in a nanosecond or two where an 8-bit scalar
code took ~50 ns here, so a query reads its cells in 0.06 ms at 1M rows against 0.42 ms: docs/benchmarks.md), and
every candidate is scored again exactly from the table, so a hit's cosine is the table's own. By a library
(faiss), not by hand.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ctax.index.table import VectorTable

CELLS_FROM = 5_000  # rows: below this the exact search costs no more than reading the cells
PROBE = 16  # cells read per query
CANDIDATES = 16  # rows handed back per query, to be scored again exactly
TRAIN_PER_CELL = 40  # sample rows per cell for the k-means (faiss warns below 39)


class Cells:
    """The cells of one table: built from its rows, then told of every row written to it or deleted from it."""

    def __init__(self, table: VectorTable, seed: int = 0) -> None:
        import faiss  # here, not at the top: 0.4 s and 15 MB for every process that imports the index

        # Built on every core, searched on one: a batch's search is a few thousand codes per query, and idle
        # OpenMP threads spin where the worker's encoder wants the cores (as ONNX Runtime's did: engines.py).
        faiss.omp_set_num_threads(len(os.sched_getaffinity(0)))
        rows = len(table)
        cells = int(np.clip(np.sqrt(rows), 16, 4096))
        # A 4-bit code per 8 dimensions (48 for MiniLM's 384), per fewer where that would make under 32 codes.
        width = next((w for w in (8, 4, 2) if table.dim % w == 0 and table.dim // w >= 32), 1)
        parts = table.dim // width
        self._index = faiss.index_factory(table.dim, f"IVF{cells},PQ{parts}x4fs", faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(self._index)
        ivf.cp.niter, ivf.cp.seed = 10, seed
        # Codes of the vectors themselves, not of their offsets from their cells' centres: a query then needs one
        # look-up table, not one per cell it reads (the same recall at 100k and 1M rows in bench.creatives_growth).
        ivf.by_residual = False
        sample = np.random.default_rng(seed).choice(rows, min(rows, cells * TRAIN_PER_CELL), replace=False)
        self._index.train(np.ascontiguousarray(table.vectors[np.sort(sample)]))
        ivf.nprobe = min(PROBE, cells)
        # faiss files rows under int64 keys, handed out in order, so a key's point is found by position (a 1M-entry
        # dict lookup per candidate cost as much as the fast scan itself). A point written again is filed again
        # under a new key and its old code left unanswered (faiss's removal reads every cell).
        self._key_of: dict[Any, int] = {}
        self._point_at: list[Any] = []  # None where the key's point was forgotten since
        self.add(table.point_ids, table.vectors)
        faiss.omp_set_num_threads(1)

    def __len__(self) -> int:
        return len(self._key_of)

    @property
    def stale(self) -> int:
        """Codes faiss holds for points deleted or written again since."""
        return len(self._point_at) - len(self._key_of)

    def add(self, point_ids: Sequence[Any], unit_vectors: np.ndarray) -> None:
        first = len(self._point_at)
        self._point_at.extend(point_ids)
        for key, point_id in enumerate(point_ids, start=first):
            self.forget([point_id])
            self._key_of[point_id] = key
        if len(point_ids):
            keys = np.arange(first, len(self._point_at), dtype=np.int64)
            self._index.add_with_ids(np.ascontiguousarray(unit_vectors, dtype=np.float32), keys)

    def forget(self, point_ids: Iterable[Any]) -> None:
        for point_id in point_ids:
            key = self._key_of.pop(point_id, None)
            if key is not None:
                self._point_at[key] = None

    def candidates(self, unit_queries: np.ndarray, limit: int = CANDIDATES) -> list[list[Any]]:
        """Per query, up to `limit` points of the cells nearest it, by their 4-bit codes' cosine."""
        _, keys = self._index.search(np.ascontiguousarray(unit_queries, dtype=np.float32), limit)
        point_at = self._point_at
        return [[point for key in row if key >= 0 and (point := point_at[key]) is not None]  # -1: none there
                for row in keys.tolist()]
