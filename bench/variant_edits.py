"""Which edit of a known ad makes the service call it new: each unseen Pitt ad posted as it is and once per edit of
bench/arrival_streams.py (reworded, reordered, a price or date changed or added), each decided on its own.

    python -m bench.variant_edits                       # 60 ads, 2,000 labelled ads imported first
    python -m bench.variant_edits --sources 100 --seed 22 --json edits.json
    python -m bench.variant_edits --traffic-window 0     # no traffic evidence: what the edits do to the rest

The service runs as processes (`ctax api` and `ctax worker`, embedded profile, in a temporary directory) with the
Pitt taxonomy and the first `--seed-rows` Pitt ads imported as labelled examples (its pretrained version is
calibrated on them), and near-duplicate groups off (`CTAX_DUPLICATE_GROUPS=false`), so that no variant takes its
source's decision: each is judged on its own. The ads and their variants are posted in a shuffled order, all
asserting no label. Per kind (the source ads, then each edit): how many are flagged `new_label`, how many recent
creatives were nearer than their nearest labelled exemplar (`recent_like_it`), the learned fit (median), the top
label's similarity (mean) and top-1; per edit, its fit and similarity against its own source ad's, and how many
were flagged where their source was not. Why: bench.arrival's campaigns pattern flags a trained version's
variants at several times its rate on known ads (docs/benchmarks.md, "Many bursts, not one").
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.arrival_streams import EDITS
from bench.load import Service
from tests.support import SHARED_DATA

console = Console(width=160)
Verdict = dict[str, Any]  # flag, fit, top_path, top_similarity, recent_like_it


def posts(sources: list[dict[str, Any]], rng: random.Random) -> list[tuple[str, int, list[str]]]:
    """(kind, source index, texts) for every source ad and each of its edits, shuffled."""
    out = []
    for n, source in enumerate(sources):
        out.append(("source", n, list(source["texts"])))
        for kind, edit in EDITS.items():
            out.append((kind, n, [edit(text, rng) for text in source["texts"]]))
    rng.shuffle(out)
    return out


def verdict(body: dict[str, Any]) -> Verdict:
    top = (body.get("top_k") or [{}])[0]
    scores = body.get("scores") or {}
    return {"flag": body.get("flag"), "fit": scores.get("fit"), "top_path": top.get("path"),
            "top_similarity": top.get("similarity"), "recent_like_it": scores.get("recent_like_it") or 0}


def summarise(labels: list[str], found: dict[tuple[str, int], Verdict]) -> list[dict[str, Any]]:
    """One row per kind: `labels[n]` is source n's label, `found[(kind, n)]` the verdict on its post of that kind."""
    rows = []
    for kind in ("source", *EDITS):
        mine = [found[(kind, n)] for n in range(len(labels))]
        source = [found[("source", n)] for n in range(len(labels))]
        row: dict[str, Any] = {
            "kind": kind, "n": len(mine),
            "flagged_new_rate": sum(v["flag"] == "new_label" for v in mine) / len(mine),
            "recent_like_it_mean": statistics.fmean(v["recent_like_it"] for v in mine),
            "fit_median": statistics.median(v["fit"] for v in mine),
            "top_similarity_mean": statistics.fmean(v["top_similarity"] for v in mine),
            "top1": sum(v["top_path"] == label for v, label in zip(mine, labels, strict=True)) / len(mine),
        }
        if kind != "source":
            row |= {
                "fit_minus_source_median": statistics.median(v["fit"] - s["fit"] for v, s in zip(mine, source,
                                                                                                  strict=True)),
                "similarity_minus_source_mean": statistics.fmean(
                    v["top_similarity"] - s["top_similarity"] for v, s in zip(mine, source, strict=True)),
                "flagged_where_source_was_not": sum(v["flag"] == "new_label" and s["flag"] != "new_label"
                                                    for v, s in zip(mine, source, strict=True)),
            }
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=60, help="unseen Pitt ads (of two or more texts)")
    parser.add_argument("--seed-rows", type=int, default=2000, help="Pitt ads imported as labelled examples first")
    parser.add_argument("--traffic-window", type=int, default=None,
                        help="CTAX_NOVELTY_TRAFFIC_WINDOW (default: the service's; 0: no traffic evidence)")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = [json.loads(line) for line in (SHARED_DATA / "pitt_ads_dev.jsonl").open()]
    rng = random.Random(args.seed)
    sources = rng.sample([r for r in rows[args.seed_rows:] if len(r["texts"]) >= 2], args.sources)
    work = Path(tempfile.mkdtemp(prefix="ctax-variant-edits-"))
    service = Service("embedded", work)
    for env in (service.env, service.processes.env):
        env["CTAX_DUPLICATE_GROUPS"] = "false"  # each variant judged on its own
        if args.traffic_window is not None:
            env["CTAX_NOVELTY_TRAFFIC_WINDOW"] = str(args.traffic_window)
    key = service.start(args.seed_rows)
    try:
        planned = posts(sources, rng)
        ids = []
        with service.processes.client(key) as http:
            for kind, n, texts in planned:
                answer = http.post("/v1/creatives", json={"texts": texts})
                answer.raise_for_status()
                ids.append((kind, n, str(answer.json()["id"])))
        console.print(f"{len(ids)} posted; waiting until they are labelled")
        bodies = service.processes.wait_for([cid for _, _, cid in ids], timeout=900)
        found = {(kind, n): verdict(bodies[cid]) for kind, n, cid in ids}
    finally:
        service.stop()
        shutil.rmtree(work, ignore_errors=True)
    summary = summarise([s["label"] for s in sources], found)
    table = Table("posted as", "n", "flagged new_label", "recent_like_it", "fit (median)", "top sim (mean)", "top-1",
                  "fit - source's (median)", "sim - source's (mean)", "flagged, source not")
    for row in summary:
        table.add_row(row["kind"], str(row["n"]), f"{row['flagged_new_rate']:.1%}", f"{row['recent_like_it_mean']:.2f}",
                      f"{row['fit_median']:.2f}", f"{row['top_similarity_mean']:.3f}", f"{row['top1']:.1%}",
                      *(f"{row[k]:+.2f}" if k in row else "-" for k in ("fit_minus_source_median",
                                                                         "similarity_minus_source_mean")),
                      str(row.get("flagged_where_source_was_not", "-")))
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps({"seed": args.seed, "seed_rows": args.seed_rows,
                                         "traffic_window": args.traffic_window, "rows": summary}, indent=2))


if __name__ == "__main__":
    main()
