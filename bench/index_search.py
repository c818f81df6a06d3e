"""Label and exemplar search in embedded (local) mode: LabelIndex against qdrant-client's own local search.

    python -m bench.index_search                         # 54 labels, 0 / 4,000 / 20,000 exemplars, batches of 64
    python -m bench.index_search --exemplars 0 50000

Both answer the same queries over the same collections (random unit vectors of MiniLM's 384 dimensions); the
figures are milliseconds per creative of a 64-creative batch, the unit the labelling worker queries in. The
rankings are checked to agree before anything is timed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from qdrant_client import models
from rich.console import Console
from rich.table import Table

from ctax.index.connect import open_qdrant
from ctax.index.qdrant import LabelIndex

console = Console()


def qdrant_local(index: LabelIndex, collection: str, queries: np.ndarray, limit: int, payload: bool) -> list:
    requests = [models.QueryRequest(query=q.tolist(), limit=limit, with_payload=payload) for q in queries]
    return index.client.query_batch_points(collection, requests=requests)


def per_creative_ms(call, batch: int, repeats: int) -> float:  # type: ignore[no-untyped-def]
    call()
    started = time.perf_counter()
    for _ in range(repeats):
        call()
    return 1000 * (time.perf_counter() - started) / repeats / batch


def timings(index: LabelIndex, queries: np.ndarray, repeats: int) -> list[tuple[str, tuple[float, float]]]:
    """(query, (qdrant-client local ms, LabelIndex ms)) per creative."""
    batch = len(queries)
    labels, exemplars = index.labels_collection("v"), index.exemplars_collection("v")
    return [
        ("30 nearest labels", (
            per_creative_ms(lambda: qdrant_local(index, labels, queries, 30, False), batch, repeats),
            per_creative_ms(lambda: index.nearest("v", queries, 30), batch, repeats),
        )),
        ("10 nearest exemplars", (
            per_creative_ms(lambda: qdrant_local(index, exemplars, queries, 10, True), batch, repeats),
            per_creative_ms(lambda: index.nearest_exemplars("v", queries, 10), batch, repeats),
        )),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=int, default=54)
    parser.add_argument("--exemplars", type=int, nargs="*", default=[0, 4000, 20000])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    dim = 384
    table = Table("labels", "exemplars", "query", "qdrant-client local ms/creative", "LabelIndex ms/creative",
                  "speed-up")
    for n_exemplars in args.exemplars:
        index = LabelIndex(open_qdrant(None, Path(tempfile.mkdtemp()) / "qdrant"), "bench")
        index.ensure_version("v", dim)
        label_ids = list(range(1, args.labels + 1))
        index.upsert_labels("v", label_ids, rng.normal(size=(args.labels, dim)), [{} for _ in label_ids])
        creatives = [f"{i:032x}" for i in range(n_exemplars)]
        index.upsert_exemplars("v", creatives, rng.integers(1, args.labels + 1, n_exemplars).tolist(),
                               rng.normal(size=(n_exemplars, dim)))
        queries = rng.normal(size=(args.batch, dim)).astype(np.float32)
        ours = [[h.label_id for h in row] for row in index.nearest("v", queries, 30)]
        theirs = [[int(p.id) for p in r.points] for r in qdrant_local(index, index.labels_collection("v"), queries,
                                                                       30, False)]
        assert ours == theirs, "rankings differ"
        for what, ms in timings(index, queries, args.repeats):
            table.add_row(str(args.labels), str(n_exemplars), what, f"{ms[0]:.3f}", f"{ms[1]:.3f}",
                          f"{ms[0] / ms[1]:.0f}x" if ms[1] >= 0.001 else "-")
        index.client.close()
    console.print(table)


if __name__ == "__main__":
    main()
