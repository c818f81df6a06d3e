"""The embedded index as labelled data grows: what the creatives collection costs the worker that owns it.

    python -m bench.creatives_growth                       # 10k and 100k creatives
    python -m bench.creatives_growth --sizes 10000 1000000 --json out.json
    python -m bench.creatives_growth --sizes 10000 --traffic 100000   # and the traffic window since a start

Every creative a version labels is written to its creatives collection (index/creatives.py), so in the embedded
profile the labelling worker, local mode's one client, holds all of them. For each size a child process fills a
local-mode collection with that many creatives (synthetic unit vectors of the MiniLM width, written through
`LabelIndex.upsert_creatives` as the backfill does, 512 a request), builds the in-memory table a search builds, and
then times what labelling does per batch once a search has run: `upsert_creatives` of --batch creatives with the
table in step (write ms per creative, the median of --batches batches), and a search of the --batch nearest
creatives per query (ms per query), and labelling's near-duplicate search (`near_duplicates_timed`). A second,
fresh child plays a restarted worker: it opens the folder and builds
the table, and reports the seconds each took, its RSS afterwards and its peak (VmHWM). Ratios are against the first
size, measured in this run. With --traffic, a child labels that many creatives through a traffic window of
--window from an empty index (`record_traffic`, as a worker since its start) and reports what local mode holds in
memory for the window (deleted points included), record ms per creative in the first and last tenth of the run,
and its RSS growth.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

VERSION = "v"
DIM = 384
FILL_REQUEST = 512


def memory_mb() -> tuple[float, float]:
    """(RSS, peak RSS) of this process in MB."""
    status = Path("/proc/self/status").read_text()
    value = {line.split(":")[0]: float(line.split()[1]) / 1024 for line in status.splitlines()
             if line.startswith(("VmRSS:", "VmHWM:"))}
    return value["VmRSS"], value["VmHWM"]


def _vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


def _creatives(rng: np.random.Generator, n: int) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    ids = [str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | int(rng.integers(0, 2**63)))) for _ in range(n)]
    payloads = [{"label_id": int(rng.integers(1, 40)), "account_id": None, "created_at": time.time()}
                for _ in range(n)]
    return ids, _vectors(rng, n), payloads


def fill_and_write(path: Path, size: int, batch: int, batches: int) -> dict[str, Any]:
    """Fill the collection to `size`, build the table, then time labelling's writes and searches (child)."""
    from ctax.index.connect import open_qdrant
    from ctax.index.qdrant import LabelIndex

    rng = np.random.default_rng(size)
    index = LabelIndex(open_qdrant(None, path))
    started = time.perf_counter()
    for start in track(range(0, size, FILL_REQUEST), description=f"filling {size:,}", console=Console(stderr=True)):
        index.upsert_creatives(VERSION, *_creatives(rng, min(FILL_REQUEST, size - start)))
    fill_s = time.perf_counter() - started
    index.nearest_creatives(VERSION, _vectors(rng, 1), limit=10)  # the first search builds the table
    writes, searches = [], []
    for _ in range(batches):
        ids, vectors, payloads = _creatives(rng, batch)
        began = time.perf_counter()
        index.upsert_creatives(VERSION, ids, vectors, payloads)
        writes.append((time.perf_counter() - began) * 1000 / batch)
        began = time.perf_counter()
        index.nearest_creatives(VERSION, _vectors(rng, batch), limit=10)
        searches.append((time.perf_counter() - began) * 1000 / batch)
    near = near_duplicates_timed(index, rng, batch, batches)
    rss, peak = memory_mb()
    stored = index.count_creatives(VERSION)
    index.client.close()
    return {"stored": stored, "fill_s": fill_s,
            "write_ms_per_creative": statistics.median(writes), "search_ms_per_query": statistics.median(searches),
            "writer_rss_mb": rss, "writer_peak_rss_mb": peak, **near}


def near_duplicates_timed(index: Any, rng: np.random.Generator, batch: int, batches: int) -> dict[str, Any]:
    """Labelling's near-duplicate search per batch (labelling.duplicates.near_duplicates at the default 0.946):
    half of each batch re-cuts of stored creatives (cosine 0.95-0.99 to one), half new creatives. Found: re-cuts
    named as their stored creative; the exact search (nearest_creatives) on the same re-cuts, for reference."""
    from ctax.index.points import point_id
    from ctax.labelling.duplicates import near_duplicates

    table = index._tables[index.creatives_collection(VERSION)]  # a bench may read the mirror
    began = time.perf_counter()
    near_duplicates(index, VERSION, _vectors(rng, 1), [str(uuid.uuid4())], 0.946)  # builds what the search reads first
    first_s = time.perf_counter() - began
    times, found, exact_found, planted = [], 0, 0, 0
    for _ in range(batches):
        rows = rng.choice(len(table), batch // 2, replace=False)
        sources = [table.point_ids[r] for r in rows]
        cosine = rng.uniform(0.95, 0.99, size=(len(rows), 1))
        noise = _vectors(rng, len(rows))
        noise -= (noise * table.vectors[rows]).sum(axis=1, keepdims=True) * table.vectors[rows]
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        recut = (cosine * table.vectors[rows] + np.sqrt(1 - cosine**2) * noise).astype(np.float32)
        queries = np.concatenate([recut, _vectors(rng, batch - len(rows))])
        ids = [str(uuid.uuid4()) for _ in range(batch)]
        began = time.perf_counter()
        roots = near_duplicates(index, VERSION, queries, ids, 0.946)
        times.append((time.perf_counter() - began) * 1000 / batch)
        planted += len(rows)
        found += sum(root is not None and point_id(root) == source
                     for root, source in zip(roots, sources, strict=False))  # the new half has no source
        exact = index.nearest_creatives(VERSION, recut, 1)
        exact_found += sum(bool(hit) and point_id(hit[0].creative_id) == source
                           for hit, source in zip(exact, sources, strict=True))
    return {"near_duplicate_ms_per_creative": statistics.median(times), "near_duplicate_first_s": first_s,
            "near_duplicates_planted": planted, "near_duplicates_found": found,
            "near_duplicates_exact_found": exact_found}


def reopen(path: Path) -> dict[str, Any]:
    """Open the folder and build the table, as a restarted worker does (child)."""
    from ctax.index.connect import open_qdrant
    from ctax.index.qdrant import LabelIndex

    before, _ = memory_mb()
    began = time.perf_counter()
    index = LabelIndex(open_qdrant(None, path))
    open_s = time.perf_counter() - began
    began = time.perf_counter()
    count = index.count_creatives(VERSION)  # local mode: the in-memory table answers, so this builds it
    table_s = time.perf_counter() - began
    rss, peak = memory_mb()
    return {"reopened": count, "open_s": open_s, "table_s": table_s, "reopen_rss_mb": rss - before,
            "reopen_peak_rss_mb": peak - before}


def traffic(path: Path, labelled: int, window: int, batch: int) -> dict[str, Any]:
    """Label `labelled` creatives through a traffic window of `window`, as a worker does from its start (child)."""
    from ctax.index.connect import open_qdrant
    from ctax.index.qdrant import LabelIndex

    rng = np.random.default_rng(labelled)
    index = LabelIndex(open_qdrant(None, path))
    before, _ = memory_mb()
    times = []
    for start in track(range(0, labelled, batch), description=f"labelling {labelled:,}",
                       console=Console(stderr=True)):
        ids, vectors, _payloads = _creatives(rng, min(batch, labelled - start))
        began = time.perf_counter()
        index.record_traffic(VERSION, ids, vectors, window)
        times.append((time.perf_counter() - began) * 1000 / len(ids))
    rss, _ = memory_mb()
    # What local mode holds in memory for the window, deleted points included (qdrant-client's internals: a bench
    # may read them).
    held = len(index.client._client.collections[index.traffic_collection(VERSION)].ids_inv)  # type: ignore[attr-defined]
    tail = times[-max(len(times) // 10, 1):]
    return {"labelled": labelled, "window": window, "live": index.count_traffic(VERSION), "held": held,
            "record_ms_first_tenth": statistics.median(times[: max(len(times) // 10, 1)]),
            "record_ms_last_tenth": statistics.median(tail), "rss_growth_mb": rss - before}


def _child(args: argparse.Namespace) -> None:
    path = Path(args.path)
    if args.child == "traffic":
        out = traffic(path, args.size, args.window, args.batch)
    else:
        out = fill_and_write(path, args.size, args.batch, args.batches) if args.child == "fill" else reopen(path)
    print("RESULT " + json.dumps(out))


def _run_child(kind: str, path: Path, size: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.creatives_growth", "--child", kind, "--path", str(path),
               "--size", str(size), "--batch", str(args.batch), "--batches", str(args.batches),
               "--window", str(args.window)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)  # progress on stderr
    line = next(line for line in reversed(done.stdout.splitlines()) if line.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--batch", type=int, default=64, help="creatives per labelling batch (the worker's)")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per size")
    parser.add_argument("--traffic", type=int, nargs="*", default=[],
                        help="also: creatives labelled since a worker started, through a traffic window of --window")
    parser.add_argument("--window", type=int, default=5000)
    parser.add_argument("--json", type=Path, help="write the rows here too")
    parser.add_argument("--dir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
                        help="where the collections are built (default /dev/shm where there is one): on a shared "
                             "disk the SQLite commits, not the index, would be what is measured")
    parser.add_argument("--child", choices=["fill", "reopen", "traffic"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    console, rows = Console(stderr=True), []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="ctax-creatives-growth-", dir=args.dir) as tmp:
            console.print(f"[bold]{size:,} creatives[/]")
            row: dict[str, Any] = {"creatives": size}
            row.update(_run_child("fill", Path(tmp) / "qdrant", size, args))
            row.update(_run_child("reopen", Path(tmp) / "qdrant", size, args))
        rows.append(row)
        _print(rows)
        if args.json:  # after every row: a run cut short keeps what it measured
            args.json.write_text(json.dumps(rows, indent=2))
    for labelled in args.traffic:
        with tempfile.TemporaryDirectory(prefix="ctax-creatives-growth-", dir=args.dir) as tmp:
            console.print(f"[bold]{labelled:,} creatives through a window of {args.window:,}[/]")
            rows.append(_run_child("traffic", Path(tmp) / "qdrant", labelled, args))
        _print_traffic([row for row in rows if "window" in row])
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))


def _print_traffic(rows: list[dict[str, Any]]) -> None:
    table = Table("labelled since start", "window", "live", "held by local mode", "record ms/creative, first tenth",
                  "last tenth", "RSS growth MB")
    for row in rows:
        table.add_row(f"{row['labelled']:,}", f"{row['window']:,}", f"{row['live']:,}", f"{row['held']:,}",
                      f"{row['record_ms_first_tenth']:.3f}", f"{row['record_ms_last_tenth']:.3f}",
                      f"{row['rss_growth_mb']:.0f}")
    Console(width=200).print(table)


def _print(rows: list[dict[str, Any]]) -> None:
    rows = [row for row in rows if "window" not in row]
    if not rows:
        return
    first = rows[0]
    table = Table("creatives", "fill s", "write ms/creative", "vs first", "search ms/query", "near-dup ms/creative",
                  "vs first", "near-dup first s", "re-cuts found / exact / planted", "writer RSS MB", "reopen s",
                  "table s", "reopened RSS MB", "reopen peak MB")
    for row in rows:
        table.add_row(f"{row['creatives']:,}", f"{row['fill_s']:.0f}", f"{row['write_ms_per_creative']:.3f}",
                      f"{row['write_ms_per_creative'] / first['write_ms_per_creative']:.2f}",
                      f"{row['search_ms_per_query']:.3f}", f"{row['near_duplicate_ms_per_creative']:.3f}",
                      f"{row['near_duplicate_ms_per_creative'] / first['near_duplicate_ms_per_creative']:.2f}",
                      f"{row['near_duplicate_first_s']:.1f}",
                      f"{row['near_duplicates_found']} / {row['near_duplicates_exact_found']} / "
                      f"{row['near_duplicates_planted']}",
                      f"{row['writer_rss_mb']:.0f}", f"{row['open_s']:.1f}",
                      f"{row['table_s']:.1f}", f"{row['reopen_rss_mb']:.0f}", f"{row['reopen_peak_rss_mb']:.0f}")
    Console(width=240).print(table)


if __name__ == "__main__":
    main()
