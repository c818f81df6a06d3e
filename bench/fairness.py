"""One account's flood beside another account's trickle: how long the trickle waits to be labelled.

    python -m bench.fairness                          # --ahead 0 and 8, a flood of 6,000, embedded profile
    python -m bench.fairness --flood 3000 --ahead 8 --profile production --json out.json

For each bound (`CTAX_DISPATCH_AHEAD_BATCHES`: labelling messages sent to the broker and not yet taken by a worker;
0 is no bound, how the dispatcher worked before 2026-12-06: everything went to the broker's first-come queue at
once) the service starts afresh as `make run` starts it (`ctax api` and a labelling worker, the Pitt taxonomy and
`--seed-rows` labelled Pitt ads, images and OCR off), and once its worker has indexed them:
- the *flood* account posts `--flood` text creatives (real Pitt ad texts) through `POST /v1/creatives/batch`, 100 a
  request, as fast as the API takes them (a partner uploading its catalogue);
- meanwhile the *trickle* account posts one creative every `--every` seconds, `--trickle` of them (an advertiser's
  ad server posting as ads are booked).
When every creative is labelled, each account's wait is read from what the service recorded (`labelled_at -
created_at` of each creative), with the flood's drain time (its first post to its last label) and labelling rate.
Waits are wall-clock on a machine the API, the worker and this process share: compare rows of one run.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench.load import Service, ad_texts
from bench.report import write_rows

console = Console()
FLOOD_BATCH = 100


@dataclass
class Row:
    ahead_batches: int
    account: str  # flood | trickle
    creatives: int
    wait_p50_s: float
    wait_p95_s: float
    wait_max_s: float
    drain_s: float  # the account's first creative created to its last labelled
    labelled_per_s: float


def _account_key(http: httpx.Client, name: str) -> tuple[int, str]:
    account = http.post("/v1/accounts", json={"name": name, "kind": "advertiser"})
    account.raise_for_status()
    key = http.post("/v1/api-keys", json={"name": f"{name} poster", "role": "poster",
                                          "account_id": account.json()["id"]})
    key.raise_for_status()
    return int(account.json()["id"]), str(key.json()["key"])


def _flood(url: str, key: str, texts: list[str], done: threading.Event) -> None:
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=120) as http:
        for start in range(0, len(texts), FLOOD_BATCH):
            items = [{"ocr_text": text} for text in texts[start : start + FLOOD_BATCH]]
            http.post("/v1/creatives/batch", json={"items": items}).raise_for_status()
    done.set()


def _trickle(url: str, key: str, texts: list[str], every: float) -> None:
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=120) as http:
        due = time.monotonic()
        for text in texts:
            time.sleep(max(0.0, due - time.monotonic()))
            http.post("/v1/creatives", json={"ocr_text": text}).raise_for_status()
            due += every


def _creatives(http: httpx.Client, account_id: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = http.get("/v1/creatives", params={"account_id": account_id, "limit": 500,
                                                 "offset": len(items)}).json()
        items += page["items"]
        if len(items) >= page["total"] or not page["items"]:
            return items


def _wait_labelled(http: httpx.Client, total: int, progress: Progress) -> None:
    task = progress.add_task("labelling", total=total)
    while True:
        waiting = sum(http.get("/v1/creatives", params={"status": status, "limit": 1}).json()["total"]
                      for status in ("queued", "processing"))
        progress.update(task, completed=total - waiting)
        if waiting == 0:
            return
        time.sleep(1.0)


def _row(ahead: int, account: str, items: list[dict[str, Any]]) -> Row:
    created = np.array([datetime.fromisoformat(i["created_at"]).timestamp() for i in items])
    labelled = np.array([datetime.fromisoformat(i["labelled_at"]).timestamp() for i in items])
    wait = labelled - created
    drain = float(labelled.max() - created.min())
    return Row(ahead, account, len(items), float(np.percentile(wait, 50)), float(np.percentile(wait, 95)),
               float(wait.max()), drain, len(items) / drain if drain > 0 else float("nan"))


def run_one(ahead: int, args: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix=f"ctax-fairness-{ahead}-") as tmp:
        service = Service(args.profile, Path(tmp))
        service.processes.env["CTAX_DISPATCH_AHEAD_BATCHES"] = str(ahead)
        try:
            service.start(args.seed_rows)
            url = service.processes.url
            with service.processes.client() as http:
                flood_id, flood_key = _account_key(http, "flood")
                trickle_id, trickle_key = _account_key(http, "trickle")
                texts = ad_texts(args.flood + args.trickle, seed=ahead + 1)
                console.print(f"ahead {ahead}: {args.flood} creatives flood in, {args.trickle} trickle in, one every "
                              f"{args.every:g} s")
                posted = threading.Event()
                flood = threading.Thread(target=_flood, args=(url, flood_key, texts[: args.flood], posted))
                flood.start()
                _trickle(url, trickle_key, texts[args.flood :], args.every)
                flood.join()
                with Progress(console=console) as progress:
                    _wait_labelled(http, args.flood + args.trickle, progress)
                flooded, trickled = _creatives(http, flood_id), _creatives(http, trickle_id)
                unlabelled = [i["id"] for i in flooded + trickled if i["status"] != "labelled"]
                if unlabelled:
                    raise RuntimeError(f"{len(unlabelled)} creatives ended unlabelled, e.g. {unlabelled[:3]}")
                return [_row(ahead, "flood", flooded), _row(ahead, "trickle", trickled)]
        finally:
            service.stop()


def print_table(rows: list[Row]) -> None:
    table = Table(title="A flood beside a trickle: each account's wait to be labelled, and its drain (s)",
                  caption="ahead: CTAX_DISPATCH_AHEAD_BATCHES (0: no bound); per s: the account's creatives over its "
                          "drain")
    for column in ("ahead", "account", "creatives", "p50", "p95", "max", "drain", "per s"):
        table.add_column(column, justify="left" if column == "account" else "right")
    for r in rows:
        table.add_row(str(r.ahead_batches), r.account, str(r.creatives), f"{r.wait_p50_s:.1f}", f"{r.wait_p95_s:.1f}",
                      f"{r.wait_max_s:.1f}", f"{r.drain_s:.1f}", f"{r.labelled_per_s:.1f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ahead", type=int, nargs="+", default=[0, 8],
                        help="CTAX_DISPATCH_AHEAD_BATCHES values to compare (0: no bound)")
    parser.add_argument("--flood", type=int, default=6000, help="creatives the flood account posts at once")
    parser.add_argument("--trickle", type=int, default=40, help="creatives the other account posts, one at a time")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between the trickle's posts")
    parser.add_argument("--profile", choices=("embedded", "production"), default="embedded")
    parser.add_argument("--seed-rows", type=int, default=300, help="labelled Pitt ads imported first")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    rows = [row for ahead in args.ahead for row in run_one(ahead, args)]
    print_table(rows)
    write_rows(args.json, rows, console)


if __name__ == "__main__":
    main()
