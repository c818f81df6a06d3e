"""What an account's quota costs a post, and whether clients racing for its last places can pass it.

    python -m bench.quotas                                        # embedded profile, 0 and 100,000 held
    python -m bench.quotas --profile production --held 0 100000 --json out.json

The service starts as `make run` starts it (bench.load's Service: `ctax api` and a labelling worker, the Pitt
taxonomy and `--seed-rows` labelled Pitt ads), then the worker is stopped: posts are measured at the API, where the
quota is checked, without labelling competing for the two cores. One account is filled, straight into the database,
with `--held` creatives (failed ones: nothing labels or indexes them; a quota counts every creative an account
holds). For each amount held:
- *cost*: `--clients` connections post single text creatives for `--duration` seconds, alternately with the
  account's quota lifted ("none") and set far above what it holds (checked, never refused), twice each;
- *edge*: the quota is set `--room` creatives above what the account holds, and the same clients post until each
  has been refused: exactly `--room` must be stored.
Reported per drive: requests, accepted (202), refused (403 quota_exceeded), errors, accepted per second, latency
p50/p95 of accepted and p50 of refused posts; per edge, how many were stored beyond the quota (must be 0).
Latencies are wall-clock on a machine the API and this process share: compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, insert, select

from bench.fairness import _account_key
from bench.load import Service, ad_texts
from bench.report import write_rows
from ctax.enums import CreativeStatus, Source
from ctax.store.models import Creative
from ctax.store.session import Database

console = Console(width=160)
FILL_CHUNK = 5000


@dataclass
class Answers:
    ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # accepted | refused | error
    example_error: str = ""

    def add(self, status: int | None, body: str, seconds: float) -> str:
        kind = "accepted" if status == 202 else "refused" if status == 403 and "quota_exceeded" in body else "error"
        self.ms[kind].append(seconds * 1000)
        if kind == "error" and not self.example_error:
            self.example_error = f"{status} {body}"[:300]
        return kind


@dataclass
class Row:
    profile: str
    held: int
    drive: str  # no quota | quota far above | edge
    requests: int
    accepted: int
    refused_403: int
    errors: int
    accepted_per_s: float
    accepted_p50_ms: float | None
    accepted_p95_ms: float | None
    refused_p50_ms: float | None
    stored_beyond_quota: int | None = None  # edge only


def row(profile: str, held: int, drive: str, answers: Answers, seconds: float,
        beyond: int | None = None) -> Row:
    def p(kind: str, q: float) -> float | None:
        values = answers.ms.get(kind)
        return round(float(np.percentile(values, q)), 1) if values else None

    counts = {kind: len(answers.ms.get(kind, [])) for kind in ("accepted", "refused", "error")}
    return Row(profile, held, drive, sum(counts.values()), counts["accepted"], counts["refused"], counts["error"],
               round(counts["accepted"] / seconds, 1), p("accepted", 50), p("accepted", 95), p("refused", 50), beyond)


async def drive(url: str, key: str, clients: int, texts: list[str], until: float | None) -> tuple[Answers, float]:
    """Each client posts one creative after another until `until` or, with None, until it is refused once."""
    answers = Answers()
    started = time.perf_counter()
    async with aiohttp.ClientSession(url, headers={"X-API-Key": key}, timeout=aiohttp.ClientTimeout(total=60),
                                     connector=aiohttp.TCPConnector(limit=clients)) as http:
        async def client(n: int) -> None:
            while until is None or time.perf_counter() < until:
                since = time.perf_counter()
                try:
                    async with http.post("/v1/creatives", json={"ocr_text": texts[n % len(texts)]}) as response:
                        kind = answers.add(response.status, await response.text(), time.perf_counter() - since)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    kind = answers.add(None, repr(exc), time.perf_counter() - since)
                if until is None and kind == "refused":
                    return
                n += clients

        await asyncio.gather(*(client(i) for i in range(clients)))
    return answers, time.perf_counter() - started


def fill(db: Database, account_id: int, n: int) -> None:
    """`n` more creatives held by the account, written as a bulk insert (failed: no worker takes them up). Every
    change of quota has the next post count them (a first version of the count did not: the quota let 84,702
    through, measured against a count that did not know of these)."""
    for start in range(0, n, FILL_CHUNK):
        rows = [{"account_id": account_id, "source": Source.API, "status": CreativeStatus.FAILED,
                 "texts": [f"filler {start + i}"], "error": "bench.quotas filler"}
                for i in range(min(FILL_CHUNK, n - start))]
        with db.write() as session:
            session.execute(insert(Creative), rows)


def held_by(db: Database, account_id: int) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(Creative)
                                  .where(Creative.account_id == account_id)) or 0)


def set_quota(admin: httpx.Client, account_id: int, quota: int | str) -> None:
    admin.patch(f"/v1/accounts/{account_id}", json={"quotas": {"creatives": quota}}).raise_for_status()


def run(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    texts = ad_texts(2000, seed=17)
    with tempfile.TemporaryDirectory(prefix="ctax-quotas-") as tmp:
        service = Service(args.profile, Path(tmp))
        try:
            service.start(args.seed_rows)
            service.worker(False)
            url = service.processes.url
            db = Database(service.env.get("CTAX_DATABASE_URL") or f"sqlite:///{Path(tmp) / 'var' / 'ctax.db'}")
            with service.processes.client() as admin:
                account_id, key = _account_key(admin, "quota bench")
                for target in sorted(args.held):
                    fill(db, account_id, max(0, target - held_by(db, account_id)))
                    held = held_by(db, account_id)
                    console.print(f"[{args.profile}] account holds {held}: {args.clients} clients, "
                                  f"{args.duration:g} s a drive")
                    plan = [("none", "no quota"), (held + 10**7, "quota far above")] * 2
                    for quota, name in [("none", "no quota")] * 4 if args.without_quotas else plan:
                        if not args.without_quotas:
                            set_quota(admin, account_id, quota)
                        answers, seconds = asyncio.run(drive(url, key, args.clients, texts,
                                                             time.perf_counter() + args.duration))
                        rows.append(row(args.profile, held, name, answers, seconds))
                    if args.without_quotas:
                        continue
                    held = held_by(db, account_id)
                    set_quota(admin, account_id, held + args.room)
                    answers, seconds = asyncio.run(drive(url, key, args.clients, texts, None))
                    beyond = held_by(db, account_id) - (held + args.room)
                    rows.append(row(args.profile, held, "edge", answers, seconds, beyond))
                    for r in rows[-5:]:
                        if r.errors:
                            console.print(f"[yellow]{r.drive}: {r.errors} errors")
            db.dispose()
        finally:
            service.stop()
    return rows


def print_table(rows: list[Row]) -> None:
    table = Table(title="POST /v1/creatives with and without the account's quota checked",
                  caption="held: creatives the account holds; edge: the quota leaves --room places, clients post "
                          "until refused; beyond: stored past the quota (must be 0)")
    for column in ("profile", "held", "drive", "requests", "202", "403", "errors", "202/s", "202 p50", "202 p95",
                   "403 p50", "beyond"):
        table.add_column(column, justify="left" if column in ("profile", "drive") else "right")

    def ms(value: float | None) -> str:
        return "" if value is None else f"{value:.0f}"

    for r in rows:
        table.add_row(r.profile, str(r.held), r.drive, str(r.requests), str(r.accepted), str(r.refused_403),
                      str(r.errors), f"{r.accepted_per_s:.1f}", ms(r.accepted_p50_ms), ms(r.accepted_p95_ms),
                      ms(r.refused_p50_ms), "" if r.stored_beyond_quota is None else str(r.stored_beyond_quota))
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--held", type=int, nargs="+", default=[0, 100_000],
                        help="creatives the account holds before each round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each cost drive")
    parser.add_argument("--room", type=int, default=200, help="places left under the quota at the edge")
    parser.add_argument("--profile", choices=("embedded", "production"), default="embedded")
    parser.add_argument("--seed-rows", type=int, default=100, help="labelled Pitt ads imported first")
    parser.add_argument("--without-quotas", action="store_true",
                        help="only drives with no quota, never setting one: the same drives on a build from before "
                             "quotas (copy this file into it), to see what keeping the count costs every post")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    rows = run(args)
    print_table(rows)
    write_rows(args.json, rows, console)


if __name__ == "__main__":
    main()
