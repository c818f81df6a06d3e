"""How the trigger meets what is new however it arrives: crowd, trickle, burst and mixed (bench/arrival_streams.py)
on the Pitt split, pretrained and trained, over three seeds, through `ctax eval` (only the stream order differs).

    python -m bench.arrival                                   # 4 patterns x 2 versions x seeds 13,14,15
    python -m bench.arrival --seeds 13 --only pretrained --max-test 600 --max-train 1500 --json arrival.json
    CTAX_TRAIN_OCR_NOISE=0.5 python -m bench.arrival --patterns crowd --only trained --epochs 1 \
        --ocr-test ../shared/data/pitt_ads_ocr_dev.jsonl --max-test 600 --max-train 1500 --json noise.json

Every run trains its own service (the full configuration trains 12 times: hours on a small CPU machine). The
traffic window is `--traffic-window` (500 by default, so that the trickle stream spans several windows; the
service's default is 5000). Prints one table (mean ± std over the seeds) and, with --json, writes the rows:
pattern, version, seed, novelty_auroc_at_arrival, novelty_auroc_final, known_flagged_new_rate (for burst and
mixed: over the burst's variants), top1, wrong_label_auroc, seen_before_first_flag per held-out label, and how
near-duplicate grouping met the burst (n_burst_grouped, burst_groups, burst_source_first, burst_flagged_by_source).
Rows are written as they come; `--out DIR` gives a concurrent run its own split, stream and service files.

    python -m bench.arrival --patterns campaigns --only pretrained --json campaigns.json   # ten bursts per seed

A burst's variants take their source's decision, so one burst per seed says whether one ad is flagged; the
campaigns pattern (ten ads, a tenth of the variants each) measures the share over many bursts.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.arrival_streams import BURST_PREFIX, EXTRA_PATTERNS, PATTERNS, build, without_campaigns
from bench.pitt_eval import OUT, split
from bench.seeds import DEFAULT_SEEDS, aggregate, cell, parse_seeds
from ctax.config import Settings
from ctax.dataset.importing import scan_rows
from ctax.enums import Flag
from ctax.evaluation.run import EvalOptions, choose_holdout, run_eval
from ctax.taxonomy.importers import parse_taxonomy_file
from tests.support import SHARED_DATA

console = Console()
TAXONOMY = SHARED_DATA / "pitt_ads_taxonomy.txt"
FIGURES = ("novelty_auroc_at_arrival", "novelty_auroc_final", "known_flagged_new_rate",
           "known_flagged_new_rate_at_arrival", "top1", "wrong_label_auroc", "seen_before_first_flag_mean")


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.open() if line.strip()]


def _write(rows: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def prepare(seed: int, out: Path, max_train: int | None, max_test: int | None) -> tuple[Path, list[dict[str, Any]]]:
    """The seed's split (bench.pitt_eval's), each side cut to a seeded sample when a maximum is given."""
    train_path, test_path = split(seed, out=out)
    rng = random.Random(seed)
    train, test = _read(train_path), _read(test_path)
    if max_train is not None and len(train) > max_train:
        train = rng.sample(train, max_train)
    if max_test is not None and len(test) > max_test:
        test = rng.sample(test, max_test)
    return _write(train, out / f"arrival_train_s{seed}.jsonl"), test


def held_out_labels(train: Path, test: Path, n: int, seed: int, limits: Settings) -> set[str]:
    """The labels held out in every stream of this split: `ctax eval`'s own choice on the train and test files,
    passed to it (a stream's own counts could make it choose others: a trickle thins the held-out labels' creatives,
    a burst adds 200 of one label)."""
    paths = {item.path for item in parse_taxonomy_file(TAXONOMY.read_bytes()).labels}
    rows = scan_rows(train, limits).rows + scan_rows(test, limits).rows
    return {str(p) for p in choose_holdout(paths, rows, n, seed)}


def row_of(pattern: str, version: str, seed: int, result: dict[str, Any]) -> dict[str, Any]:
    """One JSON row from one evaluation (with its verdicts in posting order)."""
    at_arrival = result["at_arrival"]
    burst = [v for v in result["verdicts"] if str(v["external_id"]).startswith(BURST_PREFIX)]
    seen = {label: figures["seen_before_first_flag"] for label, figures in at_arrival["by_held_out_label"].items()}
    counted = [n for n in seen.values() if n is not None]

    def burst_rate(key: str) -> float | None:
        return sum(v[key] == Flag.NEW_LABEL for v in burst) / len(burst) if burst else None

    return {
        "pattern": pattern, "version": version, "seed": seed,
        "novelty_auroc_at_arrival": at_arrival["novelty_auroc"], "novelty_auroc_final": result["novelty_auroc"],
        "known_flagged_new_rate": burst_rate("flag") if burst else result["known_flagged_new_rate"],
        "known_flagged_new_rate_at_arrival": (burst_rate("flag_at_arrival") if burst
                                              else at_arrival["known_flagged_new_rate"]),
        "stream_known_flagged_new_rate": result["known_flagged_new_rate"],
        "top1": result["top1"], "wrong_label_auroc": result["wrong_label_auroc"],
        "seen_before_first_flag": seen, "never_flagged_labels": sum(n is None for n in seen.values()),
        "seen_before_first_flag_mean": statistics.fmean(counted) if counted else None,
        "n_stream": result["n_test"], "n_novel": result["n_novel_test"], "n_burst": len(burst),
        **burst_groups(result["verdicts"], burst),
        "held_out_labels": result["held_out_labels"],
        # The version's levels: from which similarity recent creatives are variants, and creatives group.
        "variant_similarity": (result.get("thresholds") or {}).get("variant_similarity"),
        "duplicate_similarity": (result.get("thresholds") or {}).get("duplicate_similarity"),
        **({"ocr": result["ocr"]} if "ocr" in result else {}),
    }


def burst_groups(verdicts: list[dict[str, Any]], burst: list[dict[str, Any]]) -> dict[str, Any]:
    """How near-duplicate grouping met the burst: how many variants joined a group, each group's root (a source
    ad or a variant) with its members and its flag at arrival, and whether each source ad arrived before its
    variants (only then can they join the source's group). Per source ad (one for burst and mixed, CAMPAIGNS for
    campaigns): its variants' share flagged `new_label`."""
    if not burst:
        return {"n_burst_grouped": 0, "burst_groups": {}, "burst_source_first": None, "burst_sources": 0,
                "burst_flagged_by_source": {}}
    def source_of(verdict: dict[str, Any]) -> str:
        return str(verdict["external_id"]).split("-", 2)[2]

    sources = list(dict.fromkeys(source_of(v) for v in burst))
    at = {str(v["external_id"]): n for n, v in enumerate(verdicts)}
    members = Counter(str(v["duplicate_of"]) for v in burst if v.get("duplicate_of"))
    groups = {root: {"members": n, "root_is_source": root in sources,
                     "root_flag_at_arrival": verdicts[at[root]]["flag_at_arrival"] if root in at else None}
              for root, n in members.most_common()}
    first = {source: min(at[str(v["external_id"])] for v in burst if source_of(v) == source) for source in sources}
    flagged = {source: statistics.fmean(v["flag"] == Flag.NEW_LABEL for v in burst if source_of(v) == source)
               for source in sources}
    return {"n_burst_grouped": sum(members.values()), "burst_groups": groups,
            "burst_source_first": all(at.get(source, len(verdicts)) < first[source] for source in sources),
            "burst_sources": len(sources), "burst_flagged_by_source": flagged}


def run(patterns: list[str], versions: list[str], seeds: list[int], args: argparse.Namespace,
        out: Path = OUT) -> list[dict[str, Any]]:
    """Every pattern x version x seed through `ctax eval`; the rows in that order."""
    base = Settings().model_copy(update={"novelty_traffic_window": args.traffic_window})
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in seeds:
        train, test = prepare(seed, out, args.max_train, args.max_test)
        held = held_out_labels(train, _write(test, out / f"arrival_test_s{seed}.jsonl"), args.holdout_labels, seed,
                               base)
        for pattern in patterns:
            built = build(pattern, test, held, seed, args.burst_size)
            if getattr(args, "no_campaign_ids", False):
                built = without_campaigns(built)
            stream = _write(built, out / f"arrival_{pattern}_s{seed}.jsonl")
            if getattr(args, "prepare_only", False):
                console.print(f"{pattern}, seed {seed}: {stream} written; held out: {', '.join(sorted(held))}")
                continue
            for version in versions:
                console.print(f"[bold]{pattern}[/bold], {version}, seed {seed}: {sum(1 for _ in stream.open())} "
                              f"creatives, held out: {', '.join(sorted(held))}")
                work = out / f"arrival-{pattern}-{version}-s{seed}"
                shutil.rmtree(work, ignore_errors=True)
                result = run_eval(EvalOptions(TAXONOMY, train, stream, args.holdout_labels, args.wrong_label_rate,
                                              seed, no_train=version == "pretrained", epochs=args.epochs,
                                              work_dir=work, verdicts=True, held_out=tuple(sorted(held)),
                                              ocr_test=getattr(args, "ocr_test", None)), base)
                rows.append({**row_of(pattern, version, seed, result),
                             "campaign_ids": not getattr(args, "no_campaign_ids", False)})
                if getattr(args, "json", None):  # every row as it comes: hours of runs are not lost to a late failure
                    args.json.write_text(json.dumps(rows, indent=2, default=str))
                shutil.rmtree(work, ignore_errors=True)
    return rows


def table(rows: list[dict[str, Any]]) -> Table:
    """Per pattern and version: each figure's mean ± std over the seeds."""
    shown = Table("pattern", "version", "seeds", *FIGURES, "never flagged")
    for pattern in dict.fromkeys(r["pattern"] for r in rows):
        for version in dict.fromkeys(r["version"] for r in rows):
            mine = [r for r in rows if r["pattern"] == pattern and r["version"] == version]
            if mine:
                figures = aggregate(mine, FIGURES)
                shown.add_row(pattern, version, str(len(mine)), *(cell(figures[f]) for f in FIGURES),
                              str(sum(r["never_flagged_labels"] for r in mine)))
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=parse_seeds, default=list(DEFAULT_SEEDS))
    parser.add_argument("--patterns", default=",".join(PATTERNS),
                        help=f"comma-separated, of {', '.join(PATTERNS + EXTRA_PATTERNS)} (campaigns: not by default)")
    parser.add_argument("--only", choices=["pretrained", "trained"], default=None)
    parser.add_argument("--holdout-labels", type=int, default=6)
    parser.add_argument("--wrong-label-rate", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--traffic-window", type=int, default=500)
    parser.add_argument("--burst-size", type=int, default=200)
    parser.add_argument("--no-campaign-ids", action="store_true", help="post a burst's variants without their "
                        "campaign id (a poster that sends none): campaigns are then told apart by similarity alone")
    parser.add_argument("--max-train", type=int, default=None, help="a seeded sample of the train split (reduced run)")
    parser.add_argument("--max-test", type=int, default=None, help="a seeded sample of the test split (reduced run)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--ocr-test", type=Path, default=None, help="OCR texts reported apart in each row (e.g. the "
                        "shared pitt_ads_ocr_dev.jsonl): the `ocr` block of `ctax eval`")
    parser.add_argument("--prepare-only", action="store_true", help="write the split and stream files, evaluate "
                        "nothing (to run `ctax eval` on them by hand)")
    parser.add_argument("--out", type=Path, default=OUT, help="where the split, the streams and the services go "
                        "(one per concurrent run: each rewrites its seed's files)")
    args = parser.parse_args()
    patterns = [p.strip() for p in args.patterns.split(",") if p.strip()]
    if unknown := [p for p in patterns if p not in PATTERNS + EXTRA_PATTERNS]:
        parser.error(f"unknown pattern {', '.join(unknown)}; choose from {', '.join(PATTERNS + EXTRA_PATTERNS)}")
    versions = [v for v in ("pretrained", "trained") if not args.only or args.only == v]
    rows = run(patterns, versions, args.seeds, args, out=args.out)
    if args.prepare_only:
        return
    Console(width=max(console.width, 200)).print(table(rows))  # wide: a log or pipe would cut every column
    for row in rows:
        if row["n_burst"]:
            console.print(f"{row['pattern']}, {row['version']}, seed {row['seed']}: {row['n_burst_grouped']} of "
                          f"{row['n_burst']} variants grouped (source ad first: {row['burst_source_first']}); "
                          f"groups: {row['burst_groups']}")
            if row["burst_sources"] > 1:
                rates = sorted(row["burst_flagged_by_source"].values(), reverse=True)
                console.print(f"  flagged new_label per source ad: {', '.join(f'{r:.0%}' for r in rates)}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
