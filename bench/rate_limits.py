"""One account hammering the API beside another posting at a steady pace: what a rate limit buys the other.

    python -m bench.rate_limits                                    # no limit, then 600/minute; embedded profile
    python -m bench.rate_limits --limits none 600/minute --profile production --json out.json

For each `CTAX_RATE_LIMIT_CREATIVES` value the service starts afresh as `make run` starts it (`ctax api` and a
labelling worker, the Pitt taxonomy and `--seed-rows` labelled Pitt ads, images and OCR off); once its worker has
indexed them, for `--duration` seconds:
- the *hammer* account's `--clients` connections each post a single text creative (a real Pitt ad text) the moment
  the last answer came, and ignore 429 and Retry-After: a client in a retry loop, or a script gone wrong;
- the *steady* account posts one creative every `--every` seconds (open loop: a post's latency counts from when it
  was due, so a stalled API cannot hide its queue).
Reported per account: requests, answers by kind (202 accepted, 429 refused, anything else an error), latency of
accepted and of refused posts, creatives accepted per second; per run, the CPU seconds the API and the worker
spent during the drive. Latencies are wall-clock on a machine the API, the worker and this process share: compare
rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

from bench.fairness import _account_key
from bench.load import Service, ad_texts
from bench.report import write_rows

console = Console(width=160)  # the table whole, in a log as on a terminal


@dataclass
class Row:
    limit: str
    account: str  # hammer | steady
    requests: int
    accepted: int
    refused_429: int
    errors: int
    accepted_per_s: float
    accepted_p50_ms: float | None
    accepted_p95_ms: float | None
    refused_p50_ms: float | None
    api_cpu_s: float  # the API process, over the drive
    worker_cpu_s: float


class Answers:
    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = defaultdict(list)  # by kind: accepted | refused | error
        self.example_error = ""

    def add(self, status: int | None, seconds: float, what: str = "") -> None:
        kind = "accepted" if status == 202 else "refused" if status == 429 else "error"
        self.ms[kind].append(seconds * 1000)
        if kind == "error" and not self.example_error:
            self.example_error = what[:300]


async def _post(http: aiohttp.ClientSession, text: str, answers: Answers, since: float) -> None:
    try:
        async with http.post("/v1/creatives", json={"ocr_text": text}) as response:
            body = await response.text()
            answers.add(response.status, time.perf_counter() - since, f"{response.status} {body}")
    except (TimeoutError, aiohttp.ClientError) as exc:
        answers.add(None, time.perf_counter() - since, repr(exc))


async def _hammer(url: str, key: str, clients: int, until: float, texts: list[str]) -> Answers:
    answers = Answers()
    async with aiohttp.ClientSession(url, headers={"X-API-Key": key}, timeout=aiohttp.ClientTimeout(total=60),
                                     connector=aiohttp.TCPConnector(limit=clients)) as http:
        async def client(offset: int) -> None:
            n = offset
            while time.perf_counter() < until:
                await _post(http, texts[n % len(texts)], answers, time.perf_counter())
                n += clients

        await asyncio.gather(*(client(i) for i in range(clients)))
    return answers


async def _steady(url: str, key: str, every: float, until: float, texts: list[str]) -> Answers:
    answers = Answers()
    pending: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession(url, headers={"X-API-Key": key}, timeout=aiohttp.ClientTimeout(total=60),
                                     connector=aiohttp.TCPConnector(limit=8)) as http:
        due, n = time.perf_counter(), 0
        while due < until:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            pending.append(asyncio.create_task(_post(http, texts[n % len(texts)], answers, due)))
            due, n = due + every, n + 1
        await asyncio.gather(*pending)
    return answers


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _row(limit: str, account: str, answers: Answers, duration: float, api_cpu: float, worker_cpu: float) -> Row:
    def p(kind: str, q: float) -> float | None:
        values = answers.ms.get(kind)
        return round(float(np.percentile(values, q)), 1) if values else None

    counts = {kind: len(answers.ms.get(kind, [])) for kind in ("accepted", "refused", "error")}
    return Row(limit, account, sum(counts.values()), counts["accepted"], counts["refused"], counts["error"],
               round(counts["accepted"] / duration, 1), p("accepted", 50), p("accepted", 95), p("refused", 50),
               round(api_cpu, 1), round(worker_cpu, 1))


def run_one(limit: str, args: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="ctax-rate-limits-") as tmp:
        service = Service(args.profile, Path(tmp))
        service.processes.env["CTAX_RATE_LIMIT_CREATIVES"] = limit
        try:
            service.start(args.seed_rows)
            url = service.processes.url
            with service.processes.client() as http:
                _, hammer_key = _account_key(http, "hammer")
                _, steady_key = _account_key(http, "steady")
            texts = ad_texts(2000, seed=11)
            api = psutil.Process(service.processes.procs["api"].pid)
            worker = psutil.Process(service.processes.procs["worker-label"].pid)
            console.print(f"limit {limit}: {args.clients} hammering clients and one post every {args.every:g} s, "
                          f"for {args.duration:g} s")
            api0, worker0 = _cpu(api), _cpu(worker)

            async def drive() -> tuple[Answers, Answers]:
                until = time.perf_counter() + args.duration
                return await asyncio.gather(_hammer(url, hammer_key, args.clients, until, texts),
                                            _steady(url, steady_key, args.every, until, texts[::-1]))

            hammered, steady = asyncio.run(drive())
            api_cpu, worker_cpu = _cpu(api) - api0, _cpu(worker) - worker0
            for name, answers in (("hammer", hammered), ("steady", steady)):
                if answers.example_error:
                    console.print(f"[yellow]{name}: e.g. {answers.example_error}")
            return [_row(limit, "hammer", hammered, args.duration, api_cpu, worker_cpu),
                    _row(limit, "steady", steady, args.duration, api_cpu, worker_cpu)]
        finally:
            service.stop()


def print_table(rows: list[Row]) -> None:
    table = Table(title="One account hammering POST /v1/creatives beside another posting steadily",
                  caption="limit: CTAX_RATE_LIMIT_CREATIVES; ms: latency of accepted (202) and refused (429) posts; "
                          "CPU: seconds the API and the worker spent during the drive")
    for column in ("limit", "account", "requests", "202", "429", "errors", "202/s", "202 p50", "202 p95",
                   "429 p50", "API CPU", "worker CPU"):
        table.add_column(column, justify="left" if column in ("limit", "account") else "right")

    def ms(value: float | None) -> str:
        return "" if value is None else f"{value:.0f}"

    for r in rows:
        table.add_row(r.limit, r.account, str(r.requests), str(r.accepted), str(r.refused_429), str(r.errors),
                      f"{r.accepted_per_s:.1f}", ms(r.accepted_p50_ms), ms(r.accepted_p95_ms), ms(r.refused_p50_ms),
                      f"{r.api_cpu_s:.1f}", f"{r.worker_cpu_s:.1f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limits", nargs="+", default=["none", "600/minute"],
                        help="CTAX_RATE_LIMIT_CREATIVES values to compare (none: no limit)")
    parser.add_argument("--clients", type=int, default=16, help="the hammering account's connections")
    parser.add_argument("--every", type=float, default=0.2, help="seconds between the steady account's posts")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--profile", choices=("embedded", "production"), default="embedded")
    parser.add_argument("--seed-rows", type=int, default=300, help="labelled Pitt ads imported first")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    rows = [row for limit in args.limits for row in run_one(limit, args)]
    print_table(rows)
    write_rows(args.json, rows, console)


if __name__ == "__main__":
    main()
