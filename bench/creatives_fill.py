"""A version's creatives collection filled with many labelled creatives before a bench labels, as a worker's is
after months of traffic (bench.fixed_cost --creatives N): what labelling then costs is issue 15's flat-cost
question, asked of the whole task rather than of one search.

The creatives are synthetic but shaped like real ones: each is a real Pitt ad's vector in the version's own space
(ads not among the bench's payloads' first pass, encoded once) turned by a random angle, its cosine to that ad
drawn between 0.6 and 0.9, so the collection is clustered as labelled creatives are, and none is a near-duplicate
(0.946) of a payload or of another fill creative by construction. They are written as the index backfill writes,
through `LabelIndex.upsert_creatives`, in a child process so that the labelling process's memory is its own.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import track

from bench import backends as bench_backends
from bench.throughput import texts

REQUEST = 512  # creatives per upsert, as the index backfill writes them
CENTRES = 2_000  # real ads encoded to turn the fill's creatives from


def turned(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    """n unit vectors, each a random centre turned by a random angle: cosine 0.6-0.9 to it."""
    picked = centres[rng.integers(0, len(centres), n)]
    noise = rng.standard_normal(picked.shape).astype(np.float32)
    noise -= (noise * picked).sum(axis=1, keepdims=True) * picked  # orthogonal to the centre
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    cosine = rng.uniform(0.6, 0.9, size=(n, 1)).astype(np.float32)
    out: np.ndarray = cosine * picked + np.sqrt(1 - cosine**2) * noise
    return out


def fill(work: Path, batch_size: int, n: int, seed: int, overrides: dict[str, Any]) -> None:
    """Write n labelled creatives to the active version's creatives collection (child process)."""
    from sqlalchemy import select

    from ctax.jobs import LABEL_QUEUE
    from ctax.store.models import Label
    from ctax.vectors import normalise
    from ctax.worker.runtime import Runtime

    rt = Runtime(bench_backends.settings_for("text", work, "torch", batch_size, "cpu", **overrides),
                 [LABEL_QUEUE], owns_index=True)
    rt.start()
    try:
        version = rt.info["model_version"]
        with rt.db.read() as session:
            label_ids = list(session.scalars(select(Label.id)))
        centres = normalise(rt.labeller().space.encode_texts(texts(CENTRES, seed + 1)))
        rng = np.random.default_rng(seed)
        now = time.time()
        before = rt.index.count_creatives(version)
        for start in track(range(0, n, REQUEST), description=f"filling the creatives collection to {n:,}",
                           console=Console(stderr=True)):
            size = min(REQUEST, n - start)
            ids = [str(uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | int(rng.integers(0, 2**62))))
                   for _ in range(size)]
            payloads = [{"label_id": int(label_ids[rng.integers(len(label_ids))]) if label_ids else None,
                         "account_id": None, "created_at": now} for _ in range(size)]
            rt.index.upsert_creatives(version, ids, turned(rng, centres, size), payloads)
        held = rt.index.count_creatives(version)
        Console(stderr=True).print(f"the creatives collection of {version} holds {held:,} creatives")
        assert held == before + n, f"{held - before:,} of {n:,} creatives written"
    finally:
        rt.stop()
        rt.index.client.close()


def fill_in_child(work: Path, batch_size: int, n: int, seed: int, overrides: dict[str, Any]) -> None:
    child = multiprocessing.get_context("spawn").Process(target=fill, args=(work, batch_size, n, seed, overrides))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"filling the creatives collection failed (exit {child.exitcode})")
