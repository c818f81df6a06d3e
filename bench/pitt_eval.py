"""Before and after training on the Pitt ads, through `ctax eval` (the evaluation contract of DESIGN.md).

    python -m bench.pitt_eval                     # 70/30 split by ad id, 6 held-out labels, 20% wrong labels
    python -m bench.pitt_eval --epochs 1 --only trained

Writes the split to bench/out/pitt_{train,test}.jsonl, each run's JSON to bench/out/, and prints one table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ctax.evaluation.run import EvalOptions, run_eval
from tests.support import SHARED_DATA

console = Console()
OUT = Path(__file__).resolve().parent / "out"
METRICS = ("top1", "top5", "tier1_accuracy", "novelty_auroc", "novelty_precision", "novelty_recall",
           "wrong_label_auroc", "wrong_label_precision", "wrong_label_recall")


def split(seed: int, test_fraction: float = 0.3, out: Path = OUT) -> tuple[Path, Path]:
    """By ad id, through a seeded hash: an ad's texts never straddle the split."""
    out.mkdir(parents=True, exist_ok=True)
    train, test = out / "pitt_train.jsonl", out / "pitt_test.jsonl"
    with (SHARED_DATA / "pitt_ads_dev.jsonl").open() as source, train.open("w") as tr, test.open("w") as te:
        for line in source:
            ad_id = json.loads(line)["id"]
            bucket = int(hashlib.sha256(f"{seed}:{ad_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
            (te if bucket < test_fraction else tr).write(line)
    return train, test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--holdout-labels", type=int, default=6)
    parser.add_argument("--wrong-label-rate", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--only", choices=["pretrained", "trained"], default=None)
    args = parser.parse_args()
    train, test = split(args.seed)
    results = {}
    for name in ("pretrained", "trained"):
        if args.only and args.only != name:
            continue
        console.print(f"[bold]{name}[/bold]: ctax eval --taxonomy pitt_ads_taxonomy.txt --train {train.name} "
                      f"--test {test.name} --holdout-labels {args.holdout_labels} --wrong-label-rate "
                      f"{args.wrong_label_rate} --seed {args.seed}{' --no-train' if name == 'pretrained' else ''}")
        started = time.perf_counter()
        shutil.rmtree(OUT / f"eval-{name}", ignore_errors=True)  # a fresh service each run: nothing carried over
        results[name] = run_eval(EvalOptions(SHARED_DATA / "pitt_ads_taxonomy.txt", train, test,
                                             args.holdout_labels, args.wrong_label_rate, args.seed,
                                             no_train=name == "pretrained", epochs=args.epochs,
                                             work_dir=OUT / f"eval-{name}"))
        results[name]["wall_seconds"] = round(time.perf_counter() - started, 1)
        (OUT / f"pitt_eval_{name}.json").write_text(json.dumps(results[name], indent=2, default=str))
    table = Table("metric", *results)
    for metric in (*METRICS, "n_train", "n_test", "train_seconds", "seconds"):
        table.add_row(metric, *(f"{r[metric]:.4f}" if isinstance(r.get(metric), float) else str(r.get(metric))
                                for r in results.values()))
    # Before the novelty sweep re-decided the stream with all of it in the traffic window.
    for metric in ("novelty_auroc", "novelty_precision", "novelty_recall"):
        table.add_row(f"{metric} at arrival", *(f"{v:.4f}" if isinstance(v := (r.get("at_arrival") or {}).get(metric),
                                                                          float) else str(v)
                                                for r in results.values()))
    table.add_row("raised by the sweep", *(str((r.get("novelty_sweep") or {}).get("raised")) for r in results.values()))
    console.print(table)
    console.print(f"held-out labels: {', '.join(next(iter(results.values()))['held_out_labels'])}")


if __name__ == "__main__":
    main()
