"""What the pictures cost the process that draws them: a model card's figures, and the /map projection.

    python -m bench.pictures                              # map of 65 labels + 500 / 2,000 / 5,000 creatives
    python -m bench.pictures --creatives 2000 --json pictures.json

The card's figures are drawn from a calibration summary of 2,000 validation creatives and 38 labels (random
scores; drawing does not depend on their values), with a 100-step loss curve. The map projects random clustered
unit vectors of MiniLM's 384 dimensions (65 label vectors, the Pitt taxonomy's count, plus the creatives) with
UMAP as ctax.pictures.projection does; the first projection also pays numba's compilation, reported apart.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from ctax.labelling.calibration import curves
from ctax.pictures.figures import draw_all
from ctax.pictures.projection import project

console = Console()


def card_seconds(rng: np.random.Generator) -> float:
    names = {n: f"Tier/Label {n}" for n in range(38)}
    truth = rng.integers(0, 38, 2000).tolist()
    figures = {
        "new_label": curves.novelty_figure(rng.normal(1, 0.5, 2000), rng.normal(-1, 0.7, 2000), 0.2, 0.1),
        "wrong_label": curves.wrong_label_figure(rng.uniform(0, 0.2, 2000), rng.uniform(0, 1, 6000), 0.15, 0.2),
        "per_label": curves.per_label_accuracy(truth, [t if rng.random() < 0.8 else None for t in truth], names),
    }
    loss = [{"step": s, "loss": 3.0 / (1 + 0.1 * s)} for s in range(100)]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        draw_all(figures, loss, Path(out), "simulated new-label creatives")
    return time.perf_counter() - started


def clustered(rng: np.random.Generator, n: int, dim: int = 384, clusters: int = 38) -> np.ndarray:
    centres = rng.normal(size=(clusters, dim))
    vectors = centres[rng.integers(0, clusters, n)] + 0.8 * rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--creatives", type=int, nargs="*", default=[500, 2000, 5000])
    parser.add_argument("--labels", type=int, default=65)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    figures: dict[str, float] = {"card_first_s": card_seconds(rng), "card_s": card_seconds(rng)}
    started = time.perf_counter()
    project(clustered(rng, 60))  # compiles UMAP's numba code once, as a worker's first map does
    figures["umap_compile_s"] = time.perf_counter() - started
    for n in track(args.creatives, description="projecting", console=console):
        vectors = clustered(rng, args.labels + n)
        started = time.perf_counter()
        layout = project(vectors)
        assert layout.method == "umap" and layout.xy.shape == (len(vectors), 2)
        figures[f"map_{n}_s"] = time.perf_counter() - started
    table = Table("what", "seconds")
    table.add_row("model card, 5 figures (first, imports matplotlib)", f"{figures['card_first_s']:.2f}")
    table.add_row("model card, 5 figures", f"{figures['card_s']:.2f}")
    table.add_row("UMAP's first run (numba compilation, 60 points)", f"{figures['umap_compile_s']:.1f}")
    for n in args.creatives:
        table.add_row(f"map: {args.labels} labels + {n:,} creatives (UMAP)", f"{figures[f'map_{n}_s']:.1f}")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
