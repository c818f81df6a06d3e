"""The API under load: many clients posting single creatives while a reader probes what they read back.

    python -m bench.load                          # every scenario below, ~20 s each
    python -m bench.load --only embedded-open --duration 10 --json out.json
    python -m bench.load --only embedded-closed-worker --search-share 0.2   # a fifth of the requests search
    python -m bench.load --only embedded-closed --idempotency-keys          # each post with an Idempotency-Key

The service runs as processes (`ctax api` and `ctax worker`, as `make run` starts them) with the Pitt taxonomy and
1,000 labelled Pitt ads imported, on the embedded profile (SQLite, SQLite broker, Qdrant local mode) or the
production one (PostgreSQL + Redis). 50 clients post one text creative per request (a real Pitt ad text, a fifth
of them asserting a label); a reader fetches `GET /v1/creatives/{id}` of a posted creative and `GET /v1/labels`
ten times a second each. Scenarios:

- `*-open`: the clients offer a fixed total rate (open loop: a request is due every 1/rate s whatever the answers
  do; its latency counts from when it was due, so a stalled server cannot hide its queue);
- `*-closed`: each client posts again as soon as it has its answer (the API's capacity);
- the labelling worker is stopped for the API-only scenarios (creatives queue up; the API's dispatcher still sends
  them to the broker), and running, on the same cores, for `*-closed-worker` (on Redis the API is told a
  search's answer, on the SQLite result backend it polls for it).

Where the worker runs, a share of the requests (`--search-share`, default 0.1) are `POST /v1/search` instead of
posts: a Pitt ad text as the query, half of them filtered (flag `none` or `low_confidence`), reported as their own
rows (`POST /v1/search`; a 503, search busy or its worker not answering, counts as an error). The labelling worker
answers searches, so scenarios without it post only.

The scenarios start once the worker has indexed the imported creatives (its backfill); with `--during-backfill`
they start at once, while the index owner is busy with it for tens of seconds (as after an import or a promotion):
how searches and posts fare when the worker is stalled. A scenario with errors keeps the service's logs (`--logs`).

Latencies are wall-clock from this process, which shares the machine: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from rich.console import Console
from rich.table import Table

from bench.report import write_rows
from tests.support import PG_ADMIN_URL, ROOT, SHARED_DATA, ServiceProcesses, drop_pg_database

console = Console()
ADMIN = "bench-admin-key-0123456789"
REDIS_DB_URL = "redis://127.0.0.1:6379/6"  # the tests claim databases 8-15


@dataclass(frozen=True)
class Scenario:
    name: str
    profile: str  # embedded | production
    worker: bool
    mode: str  # open | closed
    rate: float | None = None  # total requests/s offered, open loop only


SCENARIOS = (
    Scenario("embedded-open", "embedded", worker=False, mode="open", rate=200.0),
    Scenario("embedded-closed", "embedded", worker=False, mode="closed"),
    Scenario("production-open", "production", worker=False, mode="open", rate=200.0),
    Scenario("production-closed", "production", worker=False, mode="closed"),
    Scenario("embedded-closed-worker", "embedded", worker=True, mode="closed"),
    Scenario("production-closed-worker", "production", worker=True, mode="closed"),
)


@dataclass
class Row:
    scenario: str
    profile: str
    worker: bool
    mode: str
    offered_per_s: float | None
    route: str
    requests: int
    per_s: float
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    # Latency of the answered requests alone, and each kind of error (status and error code, or the client's
    # exception) with its count and median latency: a refusal in 2 ms and a timeout after 15 s are both "errors".
    answered_p50_ms: float | None = None
    answered_p95_ms: float | None = None
    error_kinds: dict[str, dict[str, float]] = field(default_factory=dict)


class Recorder:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.answered: dict[str, list[float]] = defaultdict(list)
        self.by_kind: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.examples: dict[str, str] = {}

    def add(self, route: str, seconds: float, ok: bool, what: str = "") -> None:
        self.latencies[route].append(seconds)
        if ok:
            self.answered[route].append(seconds)
        else:
            self.by_kind[route][error_kind(what)].append(seconds)
            self.examples.setdefault(route, what[:300])

    def errors(self, route: str) -> int:
        return sum(map(len, self.by_kind[route].values()))


def error_kind(what: str) -> str:
    """A failed request's kind: `503 search_unavailable` from a 503 with that error code, or the exception's name."""
    status, _, body = what.partition(" ")
    if not status.isdigit():
        return what.split("(", 1)[0]
    try:
        return f"{status} {json.loads(body).get('error', '')}".strip()
    except (ValueError, AttributeError):
        return status


def ad_texts(n: int, seed: int) -> list[str]:
    rows = [json.loads(line) for line in (SHARED_DATA / "pitt_ads_dev.jsonl").open()]
    rng = random.Random(seed)
    return [rng.choice(row["texts"]) for row in rng.sample(rows, min(n, len(rows)))]


def leaf_labels() -> list[str]:
    paths = [line.strip() for line in (SHARED_DATA / "pitt_ads_taxonomy.txt").open() if line.strip()]
    return [p for p in paths if not any(other.startswith(p + "/") for other in paths)]


async def _post(http: aiohttp.ClientSession, body: dict[str, Any], rec: Recorder, due: float,
                posted: list[str], keyed: bool = False) -> None:
    extra = {"Idempotency-Key": uuid.uuid4().hex} if keyed else None
    try:
        async with http.post("/v1/creatives", json=body, headers=extra) as response:
            text = await response.text()
            ok = response.status == 202
            if ok:
                posted.append(json.loads(text)["id"])
        rec.add("POST /v1/creatives", time.perf_counter() - due, ok, f"{response.status} {text}")
    except (TimeoutError, aiohttp.ClientError) as exc:
        rec.add("POST /v1/creatives", time.perf_counter() - due, False, repr(exc))


async def _search(http: aiohttp.ClientSession, body: dict[str, Any], rec: Recorder, due: float) -> None:
    route = "POST /v1/search"
    try:
        async with http.post("/v1/search", json=body) as response:
            text = await response.text()
        rec.add(route, time.perf_counter() - due, response.status == 200, f"{response.status} {text}")
    except (TimeoutError, aiohttp.ClientError) as exc:
        rec.add(route, time.perf_counter() - due, False, repr(exc))


def search_body(rng: random.Random, texts: list[str]) -> dict[str, Any]:
    """A search as a reviewer or an ad server asks it: an ad's text, half of the time narrowed by flag."""
    body: dict[str, Any] = {"text": rng.choice(texts)[:500], "limit": 10}
    if rng.random() < 0.5:
        body["filters"] = {"flag": ["none", "low_confidence"]}
    return body


async def _request(http: aiohttp.ClientSession, rng: random.Random, share: float, texts: list[str],
                   labels: list[str], rec: Recorder, due: float, posted: list[str], keyed: bool = False) -> None:
    """One client request: a search with probability `share`, else a posted creative (`keyed`: with an
    Idempotency-Key of its own, as a client that retries safely sends)."""
    if share > 0 and rng.random() < share:
        await _search(http, search_body(rng, texts), rec, due)
    else:
        await _post(http, _body(rng, texts, labels), rec, due, posted, keyed)


def _body(rng: random.Random, texts: list[str], labels: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"ocr_text": rng.choice(texts)}
    if rng.random() < 0.2:
        body["asserted_label"] = rng.choice(labels)
    if rng.random() < 0.5:  # half of them from one of a few campaigns, as an ad server posts them
        body["campaign"] = f"load-campaign-{rng.randrange(8)}"
    return body


async def _open_loop(http: aiohttp.ClientSession, scenario: Scenario, clients: int, duration: float, rec: Recorder,
                     posted: list[str], texts: list[str], labels: list[str], share: float, keyed: bool) -> None:
    rng = random.Random(1)
    slots = asyncio.Semaphore(clients)
    interval = 1.0 / float(scenario.rate or 1.0)
    start = time.perf_counter()
    tasks = []

    async def one(due: float) -> None:
        async with slots:
            await _request(http, rng, share, texts, labels, rec, due, posted, keyed)

    n = 0
    while (due := start + n * interval) < start + duration:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(due)))
        n += 1
    await asyncio.gather(*tasks)


async def _closed_loop(http: aiohttp.ClientSession, clients: int, duration: float, rec: Recorder, posted: list[str],
                       texts: list[str], labels: list[str], share: float, keyed: bool) -> None:
    end = time.perf_counter() + duration

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < end:
            await _request(http, rng, share, texts, labels, rec, time.perf_counter(), posted, keyed)

    await asyncio.gather(*(client(n) for n in range(clients)))


async def _reader(http: aiohttp.ClientSession, stop: asyncio.Event, rec: Recorder, posted: list[str],
                  per_s: float = 10.0) -> None:
    rng = random.Random(2)
    while not stop.is_set():
        started = time.perf_counter()
        for route, path in (("GET /v1/creatives/{id}", f"/v1/creatives/{rng.choice(posted)}" if posted else None),
                            ("GET /v1/labels", "/v1/labels?limit=50")):
            if path is None:
                continue
            t0 = time.perf_counter()
            try:
                async with http.get(path) as response:
                    text = await response.text()
                rec.add(route, time.perf_counter() - t0, response.status == 200, f"{response.status} {text}")
            except (TimeoutError, aiohttp.ClientError) as exc:
                rec.add(route, time.perf_counter() - t0, False, repr(exc))
        await asyncio.sleep(max(0.0, 1.0 / per_s - (time.perf_counter() - started)))


async def drive(url: str, key: str, scenario: Scenario, clients: int, duration: float,
                search_share: float = 0.0, keyed: bool = False) -> Recorder:
    """`search_share` of the requests search (only where the worker runs: it answers searches)."""
    share = search_share if scenario.worker else 0.0
    rec = Recorder()
    posted: list[str] = []
    texts, labels = ad_texts(2000, 7), leaf_labels()
    headers = {"X-API-Key": key}
    timeout = aiohttp.ClientTimeout(total=60)
    # aiohttp, not httpx: on 2 cores the load generator shares the machine with the API, and httpx cost it about
    # twice the CPU per request. The reader has connections of its own, so its latency is the server's, not a wait
    # for a connection the posters hold.
    async with aiohttp.ClientSession(url, headers=headers, timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=clients)) as http, \
            aiohttp.ClientSession(url, headers=headers, timeout=timeout,
                                  connector=aiohttp.TCPConnector(limit=2)) as reading:
        stop = asyncio.Event()
        reader = asyncio.create_task(_reader(reading, stop, rec, posted))
        if scenario.mode == "open":
            await _open_loop(http, scenario, clients, duration, rec, posted, texts, labels, share, keyed)
        else:
            await _closed_loop(http, clients, duration, rec, posted, texts, labels, share, keyed)
        stop.set()
        await reader
    rec.latencies["_elapsed"] = [duration]
    return rec


def summarise(scenario: Scenario, rec: Recorder, duration: float) -> list[Row]:
    rows = []
    for route, values in sorted(rec.latencies.items()):
        if route.startswith("_"):
            continue
        ms = np.array(values) * 1000
        rows.append(Row(scenario.name, scenario.profile, scenario.worker, scenario.mode, scenario.rate, route,
                        len(values), round(len(values) / duration, 1), rec.errors(route),
                        *(round(float(np.percentile(ms, q)), 1) if len(ms) else None for q in (50, 95, 99)),
                        round(float(ms.max()), 1) if len(ms) else None,
                        *(_percentile(rec.answered[route], q) for q in (50, 95)),
                        {kind: {"n": len(seconds), "p50_ms": _percentile(seconds, 50) or 0.0}
                         for kind, seconds in sorted(rec.by_kind[route].items())}))
    return rows


def _percentile(seconds: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.array(seconds) * 1000, q)), 1) if seconds else None


class Service:
    """One profile's service for the scenarios that use it: set up once, the worker stopped or started."""

    def __init__(self, profile: str, work: Path) -> None:
        self.profile = profile
        self.work = work
        self.pg_name: str | None = None
        # No rate limits: the benches that start this service measure what it can take (bench.rate_limits sets one).
        env = {"CTAX_DATA_DIR": str(work / "var"), "CTAX_BOOTSTRAP_ADMIN_KEY": ADMIN, "CTAX_IMAGE_ENABLED": "false",
               "CTAX_OCR_ENABLED": "false", "CTAX_RATE_LIMIT_CREATIVES": "none", "CTAX_RATE_LIMIT_SEARCHES": "none"}
        if profile == "production":
            import psycopg
            import redis

            self.pg_name = f"ctax_bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.pg_name}"')
            env["CTAX_DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.pg_name}"
            env["CTAX_BROKER_URL"] = REDIS_DB_URL
            redis.Redis.from_url(REDIS_DB_URL).flushdb()
        self.env = env
        self.processes = ServiceProcesses(env, work / "logs")

    def start(self, seed_rows: int, during_backfill: bool = False) -> str:
        full = {**os.environ, **self.env}
        run = [sys.executable, "-m", "ctax"]
        subprocess.run([*run, "db", "upgrade"], env=full, check=True, cwd=ROOT, capture_output=True)
        subprocess.run([*run, "labels", "import", str(SHARED_DATA / "pitt_ads_taxonomy.txt")], env=full, check=True,
                       cwd=ROOT, capture_output=True)
        seed = self.work / "seed.jsonl"
        seed.write_text("".join((SHARED_DATA / "pitt_ads_dev.jsonl").open().readlines()[:seed_rows]))
        subprocess.run([*run, "creatives", "import", str(seed)], env=full, check=True, cwd=ROOT, capture_output=True)
        console.print(f"[{self.profile}] starting the API and a labelling worker (indexes {seed_rows} exemplars)")
        self.processes.start(timeout=600)
        with self.processes.client() as http:
            if not during_backfill:
                self._wait_for_backfill()
            account = http.post("/v1/accounts", json={"name": "load", "kind": "advertiser"})
            account.raise_for_status()  # poster keys belong to an account
            answer = http.post("/v1/api-keys", json={"name": "load poster", "role": "poster",
                                                     "account_id": account.json()["id"]})
            answer.raise_for_status()
            return str(answer.json()["key"])

    def _wait_for_backfill(self) -> None:
        """The scenarios measure the service after the imported creatives are indexed, not a worker busy with it."""
        indexed = self.processes.wait_for_backfill()
        console.print(f"[{self.profile}] backfill done: {indexed['creatives']} creatives indexed")

    def worker(self, running: bool) -> None:
        has = "worker-label" in self.processes.procs
        if running and not has:
            self.processes.start_worker("label")
            self.processes.wait_ready(600)
        elif not running and has:
            self.processes.kill_worker("label")

    def stop(self) -> None:
        self.processes.stop()
        if self.pg_name:
            drop_pg_database(self.pg_name)


def print_table(rows: list[Row]) -> None:
    table = Table(title="API under load (latency in ms, wall clock)")
    for column in ("scenario", "route", "requests", "req/s", "errors", "p50", "p95", "p99", "max"):
        table.add_column(column, justify="left" if column in ("scenario", "route") else "right")
    for r in rows:
        table.add_row(r.scenario, r.route, str(r.requests), f"{r.per_s:.1f}", str(r.errors),
                      *(f"{v:.1f}" if v is not None else "-" for v in (r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms)))
    console.print(table)
    kinds = Table(title="answered and refused, per route (latency in ms)")
    for column in ("scenario", "route", "answered", "p50", "p95", "errors by kind: count, p50"):
        kinds.add_column(column, justify="left" if column in ("scenario", "route") or "kind" in column else "right")
    for r in rows:
        errors = "; ".join(f"{kind}: {k['n']:.0f}, {k['p50_ms']:.0f}" for kind, k in r.error_kinds.items())
        kinds.add_row(r.scenario, r.route, str(r.requests - r.errors),
                      *(f"{v:.1f}" if v is not None else "-" for v in (r.answered_p50_ms, r.answered_p95_ms)),
                      errors or "-")
    console.print(kinds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=[s.name for s in SCENARIOS], help="run only these")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=None, help="open-loop total requests/s (default 200)")
    parser.add_argument("--search-share", type=float, default=0.1,
                        help="share of the requests that are POST /v1/search, where the worker runs (0: none)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per scenario")
    parser.add_argument("--seed-rows", type=int, default=1000, help="labelled Pitt ads imported first")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--idempotency-keys", action="store_true",
                        help="every post carries an Idempotency-Key of its own (a client that retries safely)")
    parser.add_argument("--during-backfill", action="store_true",
                        help="drive the service while its worker still backfills the imported creatives (an index "
                             "owner busy for tens of seconds, as after an import or a promotion); default: after")
    parser.add_argument("--logs", type=Path, default=Path("load-logs"),
                        help="where the service's logs are copied when a scenario had errors (default ./load-logs)")
    args = parser.parse_args()
    if not 0.0 <= args.search_share <= 1.0:
        parser.error(f"--search-share is {args.search_share}; give a share between 0 and 1")
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    if args.rate is not None:
        chosen = [Scenario(s.name, s.profile, s.worker, s.mode, args.rate if s.mode == "open" else None)
                  for s in chosen]
    rows: list[Row] = []
    for profile in ("embedded", "production"):
        scenarios = [s for s in chosen if s.profile == profile]
        if not scenarios:
            continue
        with tempfile.TemporaryDirectory(prefix=f"ctax-load-{profile}-") as tmp:
            service = Service(profile, Path(tmp))
            try:
                key = service.start(args.seed_rows, args.during_backfill)
                for scenario in scenarios:
                    service.worker(scenario.worker)
                    console.print(f"{scenario.name}: {args.clients} clients, {scenario.mode} loop"
                                  + (f" at {scenario.rate:.0f} requests/s" if scenario.rate else "")
                                  + f", worker {'running' if scenario.worker else 'stopped'}, {args.duration:.0f} s")
                    rec = asyncio.run(drive(service.processes.url, key, scenario, args.clients, args.duration,
                                            args.search_share, args.idempotency_keys))
                    for route, example in rec.examples.items():
                        console.print(f"[red]{scenario.name} {route} error, e.g.: {example}[/red]")
                    if rec.examples:  # the temp folder goes with the run: keep what explains the errors
                        kept = args.logs / f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
                        shutil.copytree(Path(tmp) / "logs", kept, dirs_exist_ok=True)
                        console.print(f"[red]the service's logs are kept in {kept}[/red]")
                    rows += summarise(scenario, rec, args.duration)
            finally:
                service.stop()
    print_table(rows)
    write_rows(args.json, rows, console)


if __name__ == "__main__":
    main()
