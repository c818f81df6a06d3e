"""Before and after training on the Pitt ads, through `ctax eval` (the evaluation contract of DESIGN.md), over
three seeds by default: each figure is the mean with its spread (std, min, max) over the seeds' splits.

    python -m bench.pitt_eval                     # seeds 13,14,15: 70/30 split by ad id, 6 held-out labels
    python -m bench.pitt_eval --seeds 13 --epochs 1 --only trained
    python -m bench.pitt_eval --json figures.json # per-seed results and the aggregate, as JSON

Writes each seed's split to bench/out/pitt_{train,test}_s{seed}.jsonl, each run's JSON to bench/out/, and prints
one table (mean ± std; the JSON holds min and max too).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.seeds import DEFAULT_SEEDS, aggregate, cell, parse_seeds
from ctax.evaluation.run import EvalOptions, run_eval
from tests.support import SHARED_DATA

console = Console()
OUT = Path(__file__).resolve().parent / "out"
METRICS = ("top1", "top5", "tier1_accuracy", "novelty_auroc", "novelty_precision", "novelty_recall",
           "wrong_label_auroc", "wrong_label_precision", "wrong_label_recall", "known_flagged_new_rate")
# Before the novelty sweep re-decided the stream with all of it in the traffic window.
AT_ARRIVAL = ("novelty_auroc", "novelty_precision", "novelty_recall", "known_flagged_new_rate")
# Of the OCR rows (--ocr-test), labelled as image ads read by OCR after the test stream.
OCR_METRICS = ("top1", "novelty_auroc", "known_flagged_new_rate", "wrong_label_auroc", "n", "n_novel")


def split(seed: int, test_fraction: float = 0.3, out: Path = OUT) -> tuple[Path, Path]:
    """By ad id, through a seeded hash: an ad's texts never straddle the split."""
    out.mkdir(parents=True, exist_ok=True)
    train, test = out / f"pitt_train_s{seed}.jsonl", out / f"pitt_test_s{seed}.jsonl"
    with (SHARED_DATA / "pitt_ads_dev.jsonl").open() as source, train.open("w") as tr, test.open("w") as te:
        for line in source:
            ad_id = json.loads(line)["id"]
            bucket = int(hashlib.sha256(f"{seed}:{ad_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
            (te if bucket < test_fraction else tr).write(line)
    return train, test


def flatten(result: dict[str, Any]) -> dict[str, Any]:
    """One run's figures under flat names: the headline ones, and the at-arrival ones as `NAME at arrival`."""
    flat = {metric: result.get(metric) for metric in (*METRICS, "n_train", "n_test", "train_seconds", "seconds")}
    for metric in AT_ARRIVAL:
        flat[f"{metric} at arrival"] = (result.get("at_arrival") or {}).get(metric)
    flat["raised by the sweep"] = (result.get("novelty_sweep") or {}).get("raised")
    for metric in OCR_METRICS if "ocr" in result else ():
        flat[f"ocr {metric}"] = result["ocr"].get(metric)
    return flat


def summarise(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per version, each flat figure's mean and spread over its seeds."""
    return {name: aggregate([flatten(r) for r in runs], list(flatten(runs[0]))) for name, runs in results.items()}


def _one(name: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    train, test = split(seed)
    console.print(f"[bold]{name}, seed {seed}[/bold]: ctax eval --taxonomy pitt_ads_taxonomy.txt --train {train.name} "
                  f"--test {test.name} --holdout-labels {args.holdout_labels} --wrong-label-rate "
                  f"{args.wrong_label_rate} --seed {seed}{' --no-train' if name == 'pretrained' else ''}")
    started = time.perf_counter()
    work = OUT / f"eval-{name}-s{seed}"
    shutil.rmtree(work, ignore_errors=True)  # a fresh service each run: nothing carried over
    result = run_eval(EvalOptions(SHARED_DATA / "pitt_ads_taxonomy.txt", train, test, args.holdout_labels,
                                  args.wrong_label_rate, seed, no_train=name == "pretrained", epochs=args.epochs,
                                  work_dir=work, ocr_test=args.ocr_test))
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    (OUT / f"pitt_eval_{name}_s{seed}.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=parse_seeds, default=list(DEFAULT_SEEDS),
                        help="comma-separated seeds, one split and held-out draw each (default 13,14,15)")
    parser.add_argument("--seed", type=int, default=None, help="one seed only (the same as --seeds N)")
    parser.add_argument("--holdout-labels", type=int, default=6)
    parser.add_argument("--wrong-label-rate", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--only", choices=["pretrained", "trained"], default=None)
    parser.add_argument("--json", type=Path, default=None, help="write every run and the aggregate here")
    parser.add_argument("--ocr-test", type=Path, default=SHARED_DATA / "pitt_ads_ocr_dev.jsonl",
                        help="OCR texts reported apart (default the shared OCR dev file; 'none' for none)")
    args = parser.parse_args()
    if args.ocr_test is not None and str(args.ocr_test) == "none":
        args.ocr_test = None
    seeds = [args.seed] if args.seed is not None else args.seeds
    names = [n for n in ("pretrained", "trained") if not args.only or args.only == n]
    results = {name: [_one(name, seed, args) for seed in seeds] for name in names}
    summary = summarise(results)
    table = Table("metric", *(f"{name} (mean ± std, {len(seeds)} seed{'s' * (len(seeds) > 1)})" for name in names))
    for metric in next(iter(summary.values())):
        table.add_row(metric, *(cell(summary[name][metric]) for name in names))
    console.print(table)
    for seed, run in zip(seeds, next(iter(results.values())), strict=True):
        console.print(f"seed {seed} held-out labels: {', '.join(run['held_out_labels'])}")
    if args.json:
        args.json.write_text(json.dumps({"seeds": seeds, "summary": summary, "runs": results}, indent=2,
                                        default=str))


if __name__ == "__main__":
    main()
