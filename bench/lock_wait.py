"""What a row lock held elsewhere does to the API on PostgreSQL, with the lock wait bounded and (nearly) not.

    python -m bench.lock_wait                              # lock waits of 2 s and 600 s, a 20 s hold
    python -m bench.lock_wait --waits 2 30 600 --hold 40 --json out.json

For each `--waits` value, `ctax api` starts alone (no worker: nothing else competes for the two cores) on a fresh
PostgreSQL database with CTAX_DATABASE_LOCK_WAIT_S set to it, and an admin creates a label. Another session then
holds that label's row (`SELECT ... FOR UPDATE`, as an admin's open psql transaction or a process stopped inside one
would) for `--hold` seconds, while `--writers` clients PATCH the label's name and `--readers` clients GET it (a read
PostgreSQL never blocks, but it needs one of the API's 40 request threads, which the waiting writers hold); the
clients go on for `--after` seconds once the lock is gone. A wait longer than the hold is how PostgreSQL behaved
before the bound (it waited for ever).

Reported per lock wait: writes answered 200 / 503 database_busy / otherwise, the longest a write waited, reads
during the hold with their p50 / p99 / max latency and failures, and how long after the lock went the first write
passed. Latencies are wall clock on a machine this process shares with the API: compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import psycopg
from rich.console import Console
from rich.table import Table

from bench.report import write_rows
from tests.support import PG_ADMIN_URL, ROOT, drop_pg_database, free_port

console = Console(width=160)
ADMIN = "bench-admin-key-0123456789"


@dataclass
class Row:
    lock_wait_s: float
    hold_s: float
    writes_ok: int
    writes_busy: int
    writes_other: int
    longest_write_s: float
    reads_during_hold: int
    read_p50_ms: float | None
    read_p99_ms: float | None
    read_max_ms: float | None
    read_errors: int
    first_write_after_release_s: float | None


@dataclass
class Answer:
    kind: str  # write | read
    began: float
    ended: float
    status: int | None
    body: str


async def _drive(url: str, label_id: int, writers: int, readers: int, until: float) -> list[Answer]:
    answers: list[Answer] = []
    timeout = aiohttp.ClientTimeout(total=900)
    async with aiohttp.ClientSession(url, headers={"X-API-Key": ADMIN}, timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=0)) as http:
        async def client(kind: str, n: int) -> None:
            i = 0
            while time.monotonic() < until:
                began, status, body = time.monotonic(), None, ""
                try:
                    if kind == "write":
                        request = http.patch(f"/v1/labels/{label_id}", json={"name": f"name {n}-{i}"})
                    else:
                        request = http.get(f"/v1/labels/{label_id}")
                    async with request as answer:
                        status, body = answer.status, (await answer.text())[:200]
                except (TimeoutError, aiohttp.ClientError) as exc:
                    body = repr(exc)
                answers.append(Answer(kind, began, time.monotonic(), status, body))
                i += 1
        await asyncio.gather(*(client("write", n) for n in range(writers)),
                             *(client("read", n) for n in range(readers)))
    return answers


def _start_api(work: Path, database_url: str, lock_wait_s: float) -> tuple[subprocess.Popen[bytes], str]:
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CTAX_DATA_DIR": str(work / "var"), "CTAX_DATABASE_URL": database_url,
           "CTAX_DATABASE_LOCK_WAIT_S": str(lock_wait_s), "CTAX_BOOTSTRAP_ADMIN_KEY": ADMIN,
           "CTAX_RATE_LIMIT_CREATIVES": "none", "CTAX_RATE_LIMIT_SEARCHES": "none", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "ctax", "db", "upgrade"], env=env, check=True, cwd=ROOT,
                   capture_output=True)
    port = free_port()
    log = (work / "api.log").open("ab")
    api = subprocess.Popen([sys.executable, "-m", "ctax", "api", "--port", str(port)], env=env, cwd=ROOT,
                           stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return api, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    api.kill()
    raise TimeoutError(f"the API did not start: see {work / 'api.log'}")


def measure(lock_wait_s: float, args: argparse.Namespace, work: Path) -> Row:
    name = f"ctax_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    api, url = _start_api(work, database_url, lock_wait_s)
    try:
        created = httpx.post(f"{url}/v1/labels", json={"path": "Bakery"}, headers={"X-API-Key": ADMIN}, timeout=30)
        created.raise_for_status()
        label_id = int(created.json()["id"])
        with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as holder:
            holder.execute("SELECT * FROM labels WHERE id = %s FOR UPDATE", (label_id,))
            began = time.monotonic()
            console.print(f"lock wait {lock_wait_s:g} s: the label's row held for {args.hold:g} s, "
                          f"{args.writers} writers and {args.readers} readers")
            released_at = began + args.hold
            loop = asyncio.new_event_loop()
            task = loop.create_task(_drive(url, label_id, args.writers, args.readers, released_at + args.after))
            loop.run_until_complete(asyncio.sleep(max(0.0, released_at - time.monotonic())))
            holder.rollback()
            released_at = time.monotonic()
            answers = loop.run_until_complete(task)
            loop.close()
        return _row(lock_wait_s, args.hold, answers, began, released_at)
    finally:
        api.terminate()
        api.wait(timeout=30)
        drop_pg_database(name)


def _row(lock_wait_s: float, hold_s: float, answers: list[Answer], began: float, released_at: float) -> Row:
    writes = [a for a in answers if a.kind == "write"]
    reads = [a for a in answers if a.kind == "read" and a.began < released_at]
    read_ms = np.array([(a.ended - a.began) * 1000 for a in reads if a.status == 200])
    passed = [a.ended for a in writes if a.status == 200 and a.ended >= released_at]

    def ms(q: float) -> float | None:
        return round(float(np.percentile(read_ms, q)), 1) if read_ms.size else None

    return Row(lock_wait_s, hold_s,
               writes_ok=sum(a.status == 200 for a in writes),
               writes_busy=sum(a.status == 503 and "database_busy" in a.body for a in writes),
               writes_other=sum(a.status != 200 and not (a.status == 503 and "database_busy" in a.body)
                                for a in writes),
               longest_write_s=round(max((a.ended - a.began for a in writes), default=0.0), 2),
               reads_during_hold=len(reads), read_p50_ms=ms(50), read_p99_ms=ms(99),
               read_max_ms=round(float(read_ms.max()), 1) if read_ms.size else None,
               read_errors=sum(a.status != 200 for a in reads),
               first_write_after_release_s=round(min(passed) - released_at, 2) if passed else None)


def print_table(rows: list[Row]) -> None:
    table = Table(title="A label's row locked elsewhere while clients write and read it (PostgreSQL)",
                  caption="writes: PATCH /v1/labels/{id}; reads: GET of the same label during the hold; "
                          "after release: when the first write passed")
    columns = ("lock wait s", "hold s", "writes 200", "503 busy", "other", "longest write s", "reads",
               "read p50 ms", "read p99 ms", "read max ms", "read errors", "after release s")
    for column in columns:
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(*(str(v) if v is not None else "-" for v in (
            f"{r.lock_wait_s:g}", f"{r.hold_s:g}", r.writes_ok, r.writes_busy, r.writes_other, r.longest_write_s,
            r.reads_during_hold, r.read_p50_ms, r.read_p99_ms, r.read_max_ms, r.read_errors,
            r.first_write_after_release_s)))
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waits", type=float, nargs="+", default=[2.0, 600.0],
                        help="CTAX_DATABASE_LOCK_WAIT_S values, one API each")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds the row stays locked")
    parser.add_argument("--after", type=float, default=5.0, help="seconds the clients go on after the release")
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ctax-lock-wait-") as tmp:
        rows = [measure(wait, args, Path(tmp) / f"wait-{wait:g}") for wait in args.waits]
    print_table(rows)
    write_rows(args.json, rows, console)


if __name__ == "__main__":
    main()
